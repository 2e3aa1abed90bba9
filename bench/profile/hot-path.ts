// The queue's per-request JS alone, on the host: a QueueLoop over a plain file standing in for
// /dev/ublkcN (only its descriptor mapping and fd are used) and the null target; each round hands
// the loop one READ's CQE (decode, dispatch, target, settle, the commit's SQE) the way a wake-up
// would, then marks the SQ consumed so no system call is made. Process CPU per request, so host load
// matters less than for wall time. `node dist/bench/profile/hot-path.js [ROUNDS] [QUEUE_LOOP_MODULE]`
// (the module of another checkout's dist/src/queue/queue-loop.js compares two versions).
import { closeSync, ftruncateSync, openSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const rounds = Number(process.argv[2] ?? 2_000_000);
const modulePath = process.argv[3];
const DEPTH = 128;

async function main(): Promise<void> {
  const loopUrl = modulePath
    ? pathToFileURL(modulePath).href
    : new URL("../../src/queue/queue-loop.js", import.meta.url).href;
  const { QueueLoop } = await import(loopUrl);
  const nullTarget = (await import(new URL("../../src/targets/null.js", loopUrl).href)).default;
  const file = join(tmpdir(), `ublk-hot-path-${process.pid}`);
  const fd = openSync(file, "w+");
  ftruncateSync(fd, 1 << 20);
  // Every tag's descriptor (24 bytes): READ of 8 sectors at sector 8 * tag. The queue maps it read-only.
  const iods = new Uint32Array(DEPTH * 6);
  for (let tag = 0; tag < DEPTH; tag++) iods.set([0, 8, 8 * tag, 0], tag * 6);
  writeSync(fd, iods, 0, iods.byteLength, 0);
  const q = new QueueLoop(
    { devId: 0, qid: 0, depth: DEPTH, bufSize: 4096, charFd: fd, flags: 0 },
    nullTarget,
    null,
    () => {},
  );
  const ring = q.ring;
  const ctl = ring.ctl as Uint32Array; // [SQ_TAIL, SQ_HEAD, ...]: pretend the kernel took every SQE
  const onCqe = q.onCqe as (userData: number, res: number) => void;
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      onCqe(i & (DEPTH - 1), 0);
      ctl[1] = ctl[0];
    }
  };
  run(200_000); // tier up first
  const c0 = process.cpuUsage();
  run(rounds);
  const c = process.cpuUsage(c0);
  console.log(
    `${modulePath ?? "this checkout"}: ${rounds} requests, CPU ${(((c.user + c.system) / rounds) * 1000).toFixed(1)} ns per request`,
  );
  closeSync(fd);
  unlinkSync(file);
}

main();
