// Per-IO daemons (--nthreads N --per_io_tasks): kublk's split of the (queue, tag) pairs between the
// threads, their CPUs, and the command-line rules.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { parseEntry } from "../../src/cli/devices-file.js";
import { specFromArgs } from "../../src/cli/spec.js";
import { perIoShares } from "../../src/queue/per-io.js";
import { perIoThreadCpus } from "../../src/queue/placement.js";
import { UBLK_F_PER_IO_DAEMON } from "../../src/uapi/ublk_cmd.js";

test("thread t serves entries t, t+N, ... of the (qid, tag) list, queue major; every pair once", () => {
  for (const [queues, depth, n] of [
    [1, 8, 2],
    [2, 8, 4],
    [8, 4, 2],
    [3, 5, 4],
    [2, 4, 8],
  ]) {
    const shares = perIoShares(queues, depth, n);
    assert.equal(shares.length, n);
    const seen = new Set<number>();
    for (const s of shares)
      for (const q of s.queues)
        for (const tag of q.tags) {
          const i = q.qid * depth + tag;
          assert.equal(i % n, s.thread, `pair ${q.qid}/${tag} on thread ${s.thread}`);
          assert.ok(!seen.has(i));
          seen.add(i);
        }
    assert.equal(seen.size, queues * depth);
  }
  assert.deepEqual(perIoShares(1, 4, 2), [
    { thread: 0, queues: [{ qid: 0, tags: [0, 2] }] },
    { thread: 1, queues: [{ qid: 0, tags: [1, 3] }] },
  ]);
  // 2 queues of depth 4 on 4 threads: each thread takes one tag of each queue.
  assert.deepEqual(perIoShares(2, 4, 4)[1], {
    thread: 1,
    queues: [
      { qid: 0, tags: [1] },
      { qid: 1, tags: [1] },
    ],
  });
});

test("a per-IO daemon runs on the union of its queues' CPUs (a single CPU leaves it unpinned)", () => {
  assert.deepEqual(perIoThreadCpus([[1], [0]], "auto"), [0, 1]);
  assert.deepEqual(perIoThreadCpus([[1], [1]], "auto"), []);
  assert.deepEqual(perIoThreadCpus([[0, 1]], "driver"), [0, 1]);
});

const spec = (...argv: string[]) => specFromArgs(parseArgs(argv));

test("--nthreads N --per_io_tasks asks for UBLK_F_PER_IO_DAEMON; N alone must be the queue count", () => {
  const s = spec("-t", "null", "-q", "2", "--nthreads", "4", "--per_io_tasks");
  assert.equal(s.nthreads, 4);
  assert.ok(s.flags & UBLK_F_PER_IO_DAEMON);
  const plain = spec("-t", "null", "-q", "2", "--nthreads", "2");
  assert.equal(plain.nthreads, undefined);
  assert.equal(plain.flags & UBLK_F_PER_IO_DAEMON, 0);
  // --per_io_tasks without --nthreads: one thread per queue, still per-IO daemons.
  assert.equal(spec("-t", "null", "-q", "3", "--per_io_tasks").nthreads, 3);
  const refused: [string[], RegExp][] = [
    [
      ["-q", "2", "--nthreads", "4"],
      /--nthreads 4 differs from the queue count 2: that needs --per_io_tasks/,
    ],
    [["-q", "1", "-d", "2", "--nthreads", "3", "--per_io_tasks"], /more than the 2 tags/],
    [["-q", "1", "--nthreads", "2", "--per_io_tasks", "-b"], /-b .*not supported/],
    [["-q", "1", "--nthreads", "2", "--per_io_tasks", "--shmem_zc"], /--shmem_zc is not supported/],
    [["-q", "1", "--nthreads", "0", "--per_io_tasks"], /out of range/],
  ];
  for (const [args, pattern] of refused)
    assert.throws(
      () => spec("-t", "null", ...args),
      (e: unknown) => e instanceof UsageError && pattern.test(e.message),
    );
  assert.throws(() => spec("-t", "nbd", "--host", "h", "--per_io_tasks"), /not for -t nbd/);
});

test("a declared device (devices.d) takes them as options: nthreads and per_io_tasks", () => {
  const entry = { target: "null", options: { queues: 1, nthreads: 2, per_io_tasks: true } };
  const { spec: s } = parseEntry("pio", JSON.stringify(entry));
  assert.equal(s.nthreads, 2);
  assert.ok(s.flags & UBLK_F_PER_IO_DAEMON);
});
