// The queue thread's ring sequence without ublk, in C: per round one NOP goes in and the thread waits
// for its CQE in the same io_uring_enter (GETEVENTS with an EXT_ARG timeout, as ublk-ts's
// submitAndWaitFor), then reaps it. Same setup flags as ublk-ts's queue rings. ring-seq.ts runs the
// identical sequence through ublk-ts's Ring (one N-API call per round, SQE/CQE handled in JS); the
// difference is what the JS + N-API layer adds per wake-up. Build: cc -O2 ring-seq.c -luring
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

/* CPU time (user + system) of the process, seconds: less disturbed than wall time on a busy host. */
static double cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 200000;
  struct io_uring ring;
  struct io_uring_params p = {0};
  p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = 512;
  p.flags |= IORING_SETUP_CQSIZE;
  int ret = io_uring_queue_init_params(256, &ring, &p);
  if (ret < 0) {
    fprintf(stderr, "ring-seq: io_uring_queue_init_params: %d\n", ret);
    return 1;
  }
  struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
  double t0 = now(), c0 = cpu();
  for (int i = 0; i < rounds; i++) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    sqe->user_data = i;
    struct io_uring_cqe *cqe;
    ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
    if (ret < 0) {
      fprintf(stderr, "ring-seq: wait: %d\n", ret);
      return 1;
    }
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) n++;
    io_uring_cq_advance(&ring, n);
  }
  double dt = now() - t0, dc = cpu() - c0;
  printf("C liburing: %d rounds, %.2f us per round (CPU %.2f us)\n", rounds, dt * 1e6 / rounds, dc * 1e6 / rounds);
  return 0;
}
