// A device under measurement, and how a ublk-ts one comes up: `ublk add` through the CLI, then the
// daemon's pid and queue placement from `ublk list --json`.
import type { DeviceConfig } from "../common.js";
import { QUEUE_DEPTH } from "../common.js";
import { onTeardown, readTicks, ublk, waitForNode } from "./exec.js";

export interface LiveDevice {
  dev: string;
  /** Process whose CPU time is sampled per run (the serving daemon). */
  daemonPid?: number;
  queueCpus?: number[][];
  note: string;
}

/** One kind of device in the benchmark: a ublk-ts target and the kernel driver it is compared with. */
export interface GuestKind {
  /** Once before the first device of the kind; a throw fails every row of the kind. */
  prepare?(): void | Promise<void>;
  /** The kernel's own driver doing the same job. */
  setUpReference(c: DeviceConfig): Promise<LiveDevice>;
  /** `ublk add` arguments naming the target and its options (`-t` included). */
  ublkTarget(c: DeviceConfig): string[];
}

interface ListedDevice {
  dev_id: number;
  daemon_pid: number;
  flags: number;
  state: string;
  queues: { qid: number; tid: number; cpus: number[] }[];
}

export async function setUpUblk(c: DeviceConfig, target: string[]): Promise<LiveDevice> {
  const args = ["add", ...target, "-q", String(c.queues), "-d", String(QUEUE_DEPTH), ...c.flags];
  const out = ublk(...args);
  const m = /^dev id (\d+): /m.exec(out);
  if (!m) throw new Error(`ublk ${args.join(" ")} printed no "dev id N:" line: ${out.trim()}`);
  const id = m[1];
  onTeardown(`ublk device ${id}`, () => ublk("del", "-n", id));
  const listed = (JSON.parse(ublk("list", "-n", id, "--json")) as ListedDevice[])[0];
  if (listed?.state !== "LIVE") throw new Error(`ublk device ${id} is not LIVE: ${JSON.stringify(listed)}`);
  if (listed.queues.length !== c.queues) {
    throw new Error(`ublk device ${id} lists ${listed.queues.length} queue(s), asked for ${c.queues}`);
  }
  const dev = `/dev/ublkb${id}`;
  await waitForNode(dev);
  readTicks(listed.daemon_pid); // fails now, not mid-run, if the pid is wrong
  const queueCpus = [...listed.queues].sort((a, b) => a.qid - b.qid).map((q) => q.cpus);
  const pins = listed.queues.map((q) => `q${q.qid} tid ${q.tid} cpus ${q.cpus.join(",")}`).join("; ");
  return {
    dev,
    daemonPid: listed.daemon_pid,
    queueCpus,
    note: `ublk ${args.join(" ")}: daemon ${listed.daemon_pid}, flags 0x${listed.flags.toString(16)}; ${pins}`,
  };
}
