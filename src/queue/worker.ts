// Entry point of a queue thread: one per hardware queue, or with per-IO daemons (UBLK_F_PER_IO_DAEMON)
// one of --nthreads serving its share of every queue's tags (one QueueLoop per queue it touches). It
// pins itself to the CPUs the driver suggests, marks itself an IO flusher, serves, and reports back to
// the device's main thread.
import { parentPort, workerData } from "node:worker_threads";
import { native } from "../native.js";
import { loadTarget } from "../targets/registry.js";
import { type QueueConfig, QueueLoop } from "./queue-loop.js";

export interface QueueWorkerData {
  /** One per queue this thread serves (with `tags` set for a per-IO daemon's share). */
  cfgs: QueueConfig[];
  /** Per-IO daemons: this thread's index (0..nthreads-1); absent for a thread per queue. */
  thread?: number;
  targetUrl: string;
  state: unknown;
  cpus: number[];
}

export type QueueWorkerMessage =
  | { type: "prepared" }
  | { type: "ready"; tid: number; cpus: number[] }
  | { type: "log"; message: string }
  | { type: "error"; message: string }
  | { type: "done" };

const port = parentPort!;
const data = workerData as QueueWorkerData;
const post = (m: QueueWorkerMessage) => port.postMessage(m);
const log = (message: string) => post({ type: "log", message });
const name = data.thread === undefined ? `queue ${data.cfgs[0].qid}` : `thread ${data.thread}`;

async function main(): Promise<void> {
  if (data.cpus.length > 0 && native.setAffinity(data.cpus) < 0) log(`${name}: cannot set affinity`);
  native.setIoFlusher();
  const target = await loadTarget(data.targetUrl);
  // Everything slow (thread start-up, module loading) is done before the device's char fd is handed
  // over: during recovery the driver cannot take over again if a daemon dies between
  // START_USER_RECOVERY and its first queue being ready, so that window must stay short.
  const charFd = await new Promise<number | null>((resolve) => {
    port.on("message", function first(m: { type: string; charFd?: number }) {
      port.off("message", first);
      resolve(m.type === "start" ? (m.charFd as number) : null);
    });
    post({ type: "prepared" });
  });
  if (charFd === null) {
    port.close();
    return;
  }
  // One loop waits inside io_uring_enter; several on one thread must all wait through the event loop.
  const eventLoop = data.cfgs.length > 1;
  const queues = data.cfgs.map(
    (cfg) => new QueueLoop({ ...cfg, charFd, eventLoop }, target, data.state, log),
  );
  port.on("message", (m: { type: string }) => {
    if (m.type === "close") for (const q of queues) q.close();
  });
  for (const q of queues) await q.start();
  post({ type: "ready", tid: native.gettid(), cpus: native.getAffinity() });
  await Promise.all(queues.map((q) => q.done));
  post({ type: "done" });
  port.close();
}

main().catch((err: unknown) => {
  post({ type: "error", message: err instanceof Error ? err.message : String(err) });
  port.close();
});
