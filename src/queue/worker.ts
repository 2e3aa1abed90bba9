// Entry point of a queue thread: one per hardware queue. It pins itself to the CPUs the driver
// suggests, marks itself an IO flusher, serves the queue, and reports back to the device's main thread.
import { parentPort, workerData } from "node:worker_threads";
import { native } from "../native.js";
import { loadTarget } from "../targets/registry.js";
import { type QueueConfig, QueueLoop } from "./queue-loop.js";

export interface QueueWorkerData {
  cfg: QueueConfig;
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

async function main(): Promise<void> {
  if (data.cpus.length > 0 && native.setAffinity(data.cpus) < 0)
    log(`queue ${data.cfg.qid}: cannot set affinity`);
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
  const queue = new QueueLoop({ ...data.cfg, charFd }, target, data.state, log);
  port.on("message", (m: { type: string }) => {
    if (m.type === "close") queue.close();
  });
  await queue.start();
  post({ type: "ready", tid: native.gettid(), cpus: native.getAffinity() });
  await queue.done;
  post({ type: "done" });
  port.close();
}

main().catch((err: unknown) => {
  post({ type: "error", message: err instanceof Error ? err.message : String(err) });
  port.close();
});
