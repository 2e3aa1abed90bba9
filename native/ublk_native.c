/*
 * ublk-ts native addon: the small, dumb part.
 *
 * It sets up io_uring rings and hands their SQE/CQE arrays to JavaScript as ArrayBuffers, so that
 * TypeScript fills SQEs and reads CQEs in place. The only per-batch native call is ringEnter(), which
 * publishes the SQ tail and CQ head with release stores, calls io_uring_enter(2) when there is work for
 * the kernel, and reads the kernel's SQ head and CQ tail with acquire loads into a shared control block.
 * Wake-ups come from an eventfd registered with the ring and watched by uv_poll on the calling thread's
 * own event loop (so each worker thread gets its own). Everything else here is a thin syscall wrapper:
 * mmap of the ublk char device's iod array, page-aligned buffers, thread affinity, PR_SET_IO_FLUSHER.
 *
 * Raw syscalls with <linux/io_uring.h> rather than liburing: the surface we need is a handful of calls,
 * the memory ordering is a few lines of C11 atomics, and nothing extra has to be installed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <node_api.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* Control block shared with JS as a Uint32Array. JS owns SQ_TAIL and CQ_HEAD; native fills the rest. */
enum { CTL_SQ_TAIL, CTL_SQ_HEAD, CTL_CQ_HEAD, CTL_CQ_TAIL, CTL_SQ_FLAGS, CTL_CQ_OVERFLOW, CTL_WORDS = 8 };

typedef struct ring ring_t;
typedef struct env_state {
  ring_t *rings; /* open rings of this environment, closed by the cleanup hook */
  napi_async_cleanup_hook_handle cleanup;
  int closing_polls;
} env_state_t;

struct ring {
  ring_t *next;
  env_state_t *es;
  napi_env env;
  int fd;
  int efd;
  int closed;
  unsigned setup_flags;
  unsigned sq_entries, cq_entries, sqe_size, cqe_size;
  void *sq_ptr, *cq_ptr, *sqes;
  size_t sq_len, cq_len, sqes_len;
  _Atomic uint32_t *ksq_head, *ksq_tail, *ksq_flags, *kcq_head, *kcq_tail, *kcq_overflow;
  uint32_t *sq_array;
  uint32_t ctl[CTL_WORDS];
  napi_ref buf_refs[3]; /* sqes, cqes, ctl ArrayBuffers: detached on close */
  uv_poll_t *poll;
  napi_ref poll_cb;
  napi_async_context poll_ctx;
};

#define CHECK(call)                                                                                      \
  do {                                                                                                   \
    if ((call) != napi_ok) return NULL;                                                                  \
  } while (0)

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < want) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return -1;
  }
  return 0;
}

static int64_t arg_i64(napi_env env, napi_value v) {
  int64_t out = 0;
  napi_get_value_int64(env, v, &out);
  return out;
}

static ring_t *arg_ring(napi_env env, napi_value v) {
  ring_t *r = NULL;
  if (napi_get_value_external(env, v, (void **)&r) != napi_ok || r == NULL) {
    napi_throw_type_error(env, NULL, "not a ring handle");
    return NULL;
  }
  if (r->closed) {
    napi_throw_error(env, "ERING_CLOSED", "ring is closed");
    return NULL;
  }
  return r;
}

/* ---- ring lifetime ---- */

static void ring_unmap(ring_t *r) {
  if (r->sqes) munmap(r->sqes, r->sqes_len);
  if (r->cq_ptr && r->cq_ptr != r->sq_ptr) munmap(r->cq_ptr, r->cq_len);
  if (r->sq_ptr) munmap(r->sq_ptr, r->sq_len);
  r->sqes = r->cq_ptr = r->sq_ptr = NULL;
}

static void poll_closed(uv_handle_t *h) {
  env_state_t *es = h->data;
  free(h);
  if (es && --es->closing_polls == 0 && es->cleanup) {
    napi_remove_async_cleanup_hook(es->cleanup);
    es->cleanup = NULL;
  }
}

static void ring_stop_poll(ring_t *r, napi_env env) {
  if (!r->poll) return;
  uv_poll_stop(r->poll);
  r->poll->data = r->es;
  r->es->closing_polls++;
  uv_close((uv_handle_t *)r->poll, poll_closed);
  r->poll = NULL;
  if (env) {
    if (r->poll_cb) napi_delete_reference(env, r->poll_cb);
    if (r->poll_ctx) napi_async_destroy(env, r->poll_ctx);
  }
  r->poll_cb = NULL;
  r->poll_ctx = NULL;
}

/* Releases kernel resources. With env != NULL also detaches the JS views so stale ones read as empty. */
static void ring_release(ring_t *r, napi_env env) {
  if (r->closed) return;
  r->closed = 1;
  ring_stop_poll(r, env);
  for (int i = 0; i < 3; i++) {
    if (!r->buf_refs[i]) continue;
    if (env) {
      napi_value ab;
      if (napi_get_reference_value(env, r->buf_refs[i], &ab) == napi_ok && ab) napi_detach_arraybuffer(env, ab);
      napi_delete_reference(env, r->buf_refs[i]);
    }
    r->buf_refs[i] = NULL;
  }
  ring_unmap(r);
  if (r->efd >= 0) close(r->efd);
  if (r->fd >= 0) close(r->fd);
  r->efd = r->fd = -1;
  /* unlink from the environment's list */
  for (ring_t **p = &r->es->rings; *p; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      break;
    }
  }
}

static void ring_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  ring_t *r = data;
  if (!r->closed) ring_release(r, NULL);
  (void)env;
  free(r);
}

static void noop_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

static napi_value make_view(napi_env env, void *p, size_t len, napi_ref *ref) {
  napi_value ab;
  CHECK(napi_create_external_arraybuffer(env, p, len, noop_finalize, NULL, &ab));
  CHECK(napi_create_reference(env, ab, 1, ref));
  return ab;
}

static int sys_io_uring_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_io_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

/* io_uring_enter with a wait bound (IORING_ENTER_EXT_ARG, Linux 5.11+): -1/ETIME when it runs out. */
static int sys_io_uring_enter_timeout(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                                      int64_t timeout_ns) {
  struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
  struct io_uring_getevents_arg arg;
  memset(&arg, 0, sizeof arg);
  arg.ts = (uint64_t)(uintptr_t)&ts;
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags | IORING_ENTER_EXT_ARG, &arg,
                      sizeof arg);
}

static int sys_io_uring_register(int fd, unsigned op, void *arg, unsigned nr) {
  return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

/* ringSetup(entries, flags, cqEntries) -> { handle, fd, sqEntries, cqEntries, sqeSize, sqes, cqes, ctl, features } */
static napi_value ring_setup(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, 3, argv)) return NULL;
  env_state_t *es;
  CHECK(napi_get_instance_data(env, (void **)&es));
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = (uint32_t)arg_i64(env, argv[1]);
  int64_t cq_entries = arg_i64(env, argv[2]);
  if (cq_entries > 0) {
    p.flags |= IORING_SETUP_CQSIZE;
    p.cq_entries = (uint32_t)cq_entries;
  }
  int fd = sys_io_uring_setup((unsigned)arg_i64(env, argv[0]), &p);
  if (fd < 0) return throw_errno(env, "io_uring_setup", errno);

  ring_t *r = calloc(1, sizeof *r);
  if (!r) {
    close(fd);
    return throw_errno(env, "ringSetup", ENOMEM);
  }
  r->env = env;
  r->es = es;
  r->fd = fd;
  r->efd = -1;
  r->setup_flags = p.flags;
  r->sq_entries = p.sq_entries;
  r->cq_entries = p.cq_entries;
  r->sqe_size = (p.flags & IORING_SETUP_SQE128) ? 128 : 64;
  r->cqe_size = (p.flags & IORING_SETUP_CQE32) ? 32 : 16;
  r->sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
  r->cq_len = p.cq_off.cqes + (size_t)p.cq_entries * r->cqe_size;
  r->sqes_len = (size_t)p.sq_entries * r->sqe_size;
  int single = p.features & IORING_FEAT_SINGLE_MMAP;
  if (single) r->sq_len = r->cq_len = r->sq_len > r->cq_len ? r->sq_len : r->cq_len;

  r->sq_ptr = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (r->sq_ptr == MAP_FAILED) goto fail;
  r->cq_ptr = single ? r->sq_ptr
                     : mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                            IORING_OFF_CQ_RING);
  if (r->cq_ptr == MAP_FAILED) goto fail;
  r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) goto fail;

  char *sq = r->sq_ptr, *cq = r->cq_ptr;
  r->ksq_head = (void *)(sq + p.sq_off.head);
  r->ksq_tail = (void *)(sq + p.sq_off.tail);
  r->ksq_flags = (void *)(sq + p.sq_off.flags);
  r->sq_array = (void *)(sq + p.sq_off.array);
  r->kcq_head = (void *)(cq + p.cq_off.head);
  r->kcq_tail = (void *)(cq + p.cq_off.tail);
  r->kcq_overflow = (void *)(cq + p.cq_off.overflow);
  /* Identity SQ index array: JS fills SQE slot (tail & mask) and only moves the tail. */
  for (unsigned i = 0; i < p.sq_entries; i++) r->sq_array[i] = i;
  r->ctl[CTL_SQ_TAIL] = r->ctl[CTL_SQ_HEAD] = atomic_load_explicit(r->ksq_head, memory_order_acquire);
  r->ctl[CTL_CQ_HEAD] = r->ctl[CTL_CQ_TAIL] = atomic_load_explicit(r->kcq_head, memory_order_acquire);

  r->next = es->rings;
  es->rings = r;

  napi_value out, handle, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_external(env, r, ring_finalize, NULL, &handle));
  napi_set_named_property(env, out, "handle", handle);
  napi_set_named_property(env, out, "fd", num(env, fd));
  napi_set_named_property(env, out, "sqEntries", num(env, p.sq_entries));
  napi_set_named_property(env, out, "cqEntries", num(env, p.cq_entries));
  napi_set_named_property(env, out, "sqeSize", num(env, r->sqe_size));
  napi_set_named_property(env, out, "cqeSize", num(env, r->cqe_size));
  napi_set_named_property(env, out, "features", num(env, p.features));
  if (!(v = make_view(env, r->sqes, r->sqes_len, &r->buf_refs[0]))) return NULL;
  napi_set_named_property(env, out, "sqes", v);
  if (!(v = make_view(env, cq + p.cq_off.cqes, (size_t)p.cq_entries * r->cqe_size, &r->buf_refs[1]))) return NULL;
  napi_set_named_property(env, out, "cqes", v);
  if (!(v = make_view(env, r->ctl, sizeof r->ctl, &r->buf_refs[2]))) return NULL;
  napi_set_named_property(env, out, "ctl", v);
  return out;

fail: {
  int err = errno;
  if (r->sqes == MAP_FAILED) r->sqes = NULL;
  if (r->cq_ptr == MAP_FAILED) r->cq_ptr = NULL;
  if (r->sq_ptr == MAP_FAILED) r->sq_ptr = NULL;
  ring_unmap(r);
  close(fd);
  free(r);
  return throw_errno(env, "io_uring mmap", err);
}
}

/*
 * ringEnter(handle, toSubmit, minComplete, flags[, timeoutNs]) -> result of io_uring_enter (or 0 when no
 * syscall was needed), negative errno on failure (-ETIME when a wait for minComplete ran past timeoutNs).
 * Publishes ctl[SQ_TAIL] and ctl[CQ_HEAD] first, refreshes ctl[SQ_HEAD], ctl[CQ_TAIL], ctl[SQ_FLAGS]
 * after. EINTR is returned, not retried: the caller decides.
 */
static napi_value ring_enter(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "missing arguments");
    return NULL;
  }
  ring_t *r = arg_ring(env, argv[0]);
  if (!r) return NULL;
  unsigned to_submit = (unsigned)arg_i64(env, argv[1]);
  unsigned min_complete = (unsigned)arg_i64(env, argv[2]);
  unsigned flags = (unsigned)arg_i64(env, argv[3]);
  int64_t timeout_ns = argc > 4 ? arg_i64(env, argv[4]) : 0;

  /* Release: SQE contents written by JS must be visible before the kernel sees the new tail; CQEs read
   * by JS must be consumed before the kernel may reuse their slots. */
  atomic_store_explicit(r->ksq_tail, r->ctl[CTL_SQ_TAIL], memory_order_release);
  atomic_store_explicit(r->kcq_head, r->ctl[CTL_CQ_HEAD], memory_order_release);

  int ret = 0;
  if (to_submit || min_complete || (flags & IORING_ENTER_GETEVENTS)) {
    if (min_complete) flags |= IORING_ENTER_GETEVENTS;
    ret = timeout_ns > 0 && min_complete ? sys_io_uring_enter_timeout(r->fd, to_submit, min_complete, flags, timeout_ns)
                                         : sys_io_uring_enter(r->fd, to_submit, min_complete, flags);
    if (ret < 0) ret = -errno;
  }
  r->ctl[CTL_SQ_HEAD] = atomic_load_explicit(r->ksq_head, memory_order_acquire);
  r->ctl[CTL_CQ_TAIL] = atomic_load_explicit(r->kcq_tail, memory_order_acquire);
  r->ctl[CTL_SQ_FLAGS] = atomic_load_explicit(r->ksq_flags, memory_order_relaxed);
  r->ctl[CTL_CQ_OVERFLOW] = atomic_load_explicit(r->kcq_overflow, memory_order_relaxed);
  return num(env, ret);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  ring_t *r = h->data;
  uint64_t count;
  /* Drain the eventfd first, then read the tail: a CQE posted after the drain signals again, so none
   * can be missed (the other order loses a CQE posted between the two steps). One read resets it. */
  while (read(r->efd, &count, sizeof count) < 0 && errno == EINTR) {
  }
  /* With DEFER_TASKRUN completions wait as task work until this thread asks for events. */
  if (r->setup_flags & IORING_SETUP_DEFER_TASKRUN) {
    atomic_store_explicit(r->kcq_head, r->ctl[CTL_CQ_HEAD], memory_order_release);
    sys_io_uring_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS);
  }
  /* Refresh the control block here so the JS handler can reap without another native call. */
  r->ctl[CTL_SQ_HEAD] = atomic_load_explicit(r->ksq_head, memory_order_acquire);
  r->ctl[CTL_CQ_TAIL] = atomic_load_explicit(r->kcq_tail, memory_order_acquire);
  napi_env env = r->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, result;
  if (r->poll_cb && napi_get_reference_value(env, r->poll_cb, &cb) == napi_ok && cb) {
    napi_get_global(env, &recv); /* MakeCallback needs an object receiver */
    if (napi_make_callback(env, r->poll_ctx, recv, cb, 0, NULL, &result) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* ringPoll(handle, callback): call back on this thread's event loop whenever completions arrive. */
static napi_value ring_poll(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, 2, argv)) return NULL;
  ring_t *r = arg_ring(env, argv[0]);
  if (!r) return NULL;
  if (r->poll) {
    napi_throw_error(env, "EBUSY", "ring is already polled");
    return NULL;
  }
  if (r->efd < 0) {
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0) return throw_errno(env, "eventfd", errno);
    if (sys_io_uring_register(r->fd, IORING_REGISTER_EVENTFD, &r->efd, 1) < 0) {
      int err = errno;
      close(r->efd);
      r->efd = -1;
      return throw_errno(env, "IORING_REGISTER_EVENTFD", err);
    }
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  r->poll = calloc(1, sizeof *r->poll);
  if (!r->poll) return throw_errno(env, "ringPoll", ENOMEM);
  int rc = uv_poll_init(loop, r->poll, r->efd);
  if (rc == 0) {
    r->poll->data = r;
    rc = uv_poll_start(r->poll, UV_READABLE, on_poll);
  }
  if (rc != 0) {
    free(r->poll);
    r->poll = NULL;
    napi_throw_error(env, uv_err_name(rc), uv_strerror(rc));
    return NULL;
  }
  napi_value name;
  CHECK(napi_create_reference(env, argv[1], 1, &r->poll_cb));
  CHECK(napi_create_string_utf8(env, "ublk-ts:ring", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &r->poll_ctx));
  return NULL;
}

/* ringUnpoll(handle): stop waking JS (the ring stays usable; ringPoll may be called again). */
static napi_value ring_unpoll(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  ring_t *r = arg_ring(env, argv[0]);
  if (r) ring_stop_poll(r, env);
  return NULL;
}

/* ringClose(handle): closing the fd makes the kernel cancel whatever is still in flight. */
static napi_value ring_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  ring_t *r = NULL;
  if (napi_get_value_external(env, argv[0], (void **)&r) != napi_ok || !r) return NULL;
  ring_release(r, env);
  return NULL;
}

/*
 * ringRegister(handle, opcode, arg, nr) -> io_uring_register(2)'s result, or -errno. `arg` is an
 * ArrayBuffer holding the opcode's argument (laid out by the caller), or null. Setup-time only.
 */
static napi_value ring_register(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (get_args(env, info, 4, argv)) return NULL;
  ring_t *r = arg_ring(env, argv[0]);
  if (!r) return NULL;
  unsigned op = (unsigned)arg_i64(env, argv[1]);
  void *arg = NULL;
  bool is_ab = false;
  CHECK(napi_is_arraybuffer(env, argv[2], &is_ab));
  if (is_ab) {
    size_t len;
    CHECK(napi_get_arraybuffer_info(env, argv[2], &arg, &len));
  }
  unsigned nr = (unsigned)arg_i64(env, argv[3]);
  int rc = sys_io_uring_register(r->fd, op, arg, nr);
  return num(env, rc < 0 ? -errno : rc);
}

/* ---- memory ---- */

static void free_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

/* allocBuffer(size) -> ArrayBuffer backed by page-aligned anonymous memory (freed on GC). */
static napi_value alloc_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  size_t len = (size_t)arg_i64(env, argv[0]);
  if (len == 0) len = 1;
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return throw_errno(env, "allocBuffer", errno);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, len, free_finalize, (void *)(uintptr_t)len, &ab) != napi_ok) {
    munmap(p, len);
    return NULL;
  }
  return ab;
}

/* bufferAddress(arrayBufferOrView) -> the user address as a Number (x86-64 addresses fit in 2^53). */
static napi_value buffer_address(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  void *data = NULL;
  size_t len = 0;
  bool is_ab = false, is_view = false;
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (is_ab) {
    CHECK(napi_get_arraybuffer_info(env, argv[0], &data, &len));
  } else {
    napi_is_typedarray(env, argv[0], &is_view);
    if (!is_view) {
      napi_throw_type_error(env, NULL, "expected an ArrayBuffer or a typed array");
      return NULL;
    }
    napi_typedarray_type type;
    size_t length, offset;
    napi_value ab;
    CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset));
  }
  return num(env, (double)(uintptr_t)data);
}

/* mmapFile(fd, offset, length, writable, populate = true) -> ArrayBuffer. Must be released with
 * munmapBuffer(). */
static napi_value mmap_file(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc = 5;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "mmapFile(fd, offset, length, writable[, populate])");
    return NULL;
  }
  int fd = (int)arg_i64(env, argv[0]);
  off_t off = (off_t)arg_i64(env, argv[1]);
  size_t len = (size_t)arg_i64(env, argv[2]);
  bool writable = false;
  napi_get_value_bool(env, argv[3], &writable);
  bool populate = true;
  if (argc > 4) napi_get_value_bool(env, argv[4], &populate);
  void *p = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED | (populate ? MAP_POPULATE : 0),
                 fd, off);
  if (p == MAP_FAILED) return throw_errno(env, "mmap", errno);
  napi_value ab;
  /* No finalizer unmaps it: the mapping pins the file (a ublk char device must be released before
   * DEL_DEV can finish), so its lifetime is explicit. */
  if (napi_create_external_arraybuffer(env, p, len, noop_finalize, NULL, &ab) != napi_ok) {
    munmap(p, len);
    return NULL;
  }
  return ab;
}

static napi_value munmap_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  void *data = NULL;
  size_t len = 0;
  CHECK(napi_get_arraybuffer_info(env, argv[0], &data, &len));
  if (data && len) {
    if (munmap(data, len) < 0) return throw_errno(env, "munmap", errno);
    CHECK(napi_detach_arraybuffer(env, argv[0]));
  }
  return NULL;
}

/* ---- threads ---- */

static napi_value get_tid(napi_env env, napi_callback_info info) {
  (void)info;
  return num(env, (double)syscall(SYS_gettid));
}

/* setAffinity(cpus[]) -> 0 or -errno, for the calling thread only. */
static napi_value set_affinity(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return NULL;
  uint32_t n = 0;
  CHECK(napi_get_array_length(env, argv[0], &n));
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    CHECK(napi_get_element(env, argv[0], i, &el));
    int64_t cpu = arg_i64(env, el);
    if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET((int)cpu, &set);
  }
  int rc = sched_setaffinity(0, sizeof set, &set);
  return num(env, rc < 0 ? -errno : 0);
}

static napi_value get_affinity(napi_env env, napi_callback_info info) {
  (void)info;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) < 0) return throw_errno(env, "sched_getaffinity", errno);
  napi_value arr;
  CHECK(napi_create_array(env, &arr));
  uint32_t k = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &set)) napi_set_element(env, arr, k++, num(env, cpu));
  return arr;
}

/* setIoFlusher() -> 0 or -errno: a thread serving a block device must not recurse into its own writeback. */
static napi_value set_io_flusher(napi_env env, napi_callback_info info) {
  (void)info;
  int rc = prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
  return num(env, rc < 0 ? -errno : 0);
}

/* ---- environment ---- */

static void env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  env_state_t *es = arg;
  es->cleanup = handle;
  es->closing_polls++; /* hold the hook until every poll handle has closed */
  while (es->rings) ring_release(es->rings, NULL);
  if (--es->closing_polls == 0) {
    napi_remove_async_cleanup_hook(handle);
    es->cleanup = NULL;
  }
}

static void env_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

NAPI_MODULE_INIT() {
  env_state_t *es = calloc(1, sizeof *es);
  if (!es) return NULL;
  napi_set_instance_data(env, es, env_free, NULL);
  napi_add_async_cleanup_hook(env, env_cleanup, es, NULL);
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"ringSetup", ring_setup},       {"ringEnter", ring_enter},       {"ringPoll", ring_poll},
      {"ringUnpoll", ring_unpoll},     {"ringClose", ring_close},       {"ringRegister", ring_register},
      {"allocBuffer", alloc_buffer},
      {"bufferAddress", buffer_address}, {"mmapFile", mmap_file},       {"munmapBuffer", munmap_buffer},
      {"gettid", get_tid},             {"setAffinity", set_affinity},   {"getAffinity", get_affinity},
      {"setIoFlusher", set_io_flusher},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f) != napi_ok) return NULL;
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  napi_set_named_property(env, exports, "pageSize", num(env, (double)sysconf(_SC_PAGESIZE)));
  return exports;
}
