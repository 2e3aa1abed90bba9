// A device under measurement, and how a ublk-ts one comes up: `ublk add` through the CLI, then the
// daemon's pid and queue placement from `ublk list --json`.
import type { DeviceConfig } from "../common.js";
import { QUEUE_DEPTH, threadsOf } from "../common.js";
import { type Peer, parsePeerAdd } from "../peers.js";
import { must, onTeardown, readTicks, ublk, waitForNode } from "./exec.js";

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
  /** The same for another server's `add` (--peer); absent when the peers have no such target. */
  peerTarget?(peer: Peer): string[];
}

interface ListedDevice {
  dev_id: number;
  daemon_pid: number;
  flags: number;
  state: string;
  queues: { qid: number; tid: number; cpus: number[]; thread?: number }[];
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
  if (listed.queues.length !== threadsOf(c)) {
    throw new Error(`ublk device ${id} lists ${listed.queues.length} thread(s), asked for ${threadsOf(c)}`);
  }
  const dev = `/dev/ublkb${id}`;
  await waitForNode(dev);
  readTicks(listed.daemon_pid); // fails now, not mid-run, if the pid is wrong
  // Per-IO daemons list a thread each (its index in `thread`), others a queue each.
  const order = (q: ListedDevice["queues"][number]) => q.thread ?? q.qid;
  const queueCpus = [...listed.queues].sort((a, b) => order(a) - order(b)).map((q) => q.cpus);
  const pins = listed.queues
    .map(
      (q) => `${q.thread === undefined ? `q${q.qid}` : `t${q.thread}`} tid ${q.tid} cpus ${q.cpus.join(",")}`,
    )
    .join("; ");
  return {
    dev,
    daemonPid: listed.daemon_pid,
    queueCpus,
    note: `ublk ${args.join(" ")}: daemon ${listed.daemon_pid}, flags 0x${listed.flags.toString(16)}; ${pins}`,
  };
}

/** Another ublk server's device, through its own CLI: `PATH add ... -q Q -d D`, `PATH del -n ID`. */
export async function setUpPeer(c: DeviceConfig, peer: Peer, target: string[]): Promise<LiveDevice> {
  const args = ["add", ...target, "-q", String(c.queues), "-d", String(QUEUE_DEPTH)];
  const out = must(peer.path, args, 60_000);
  const added = parsePeerAdd(out);
  if (!added) throw new Error(`${peer.path} ${args.join(" ")} printed no "dev id N:" line: ${out.trim()}`);
  const id = String(added.id);
  onTeardown(`${peer.name} device ${id}`, () => must(peer.path, ["del", "-n", id], 60_000));
  const dev = `/dev/ublkb${id}`;
  await waitForNode(dev);
  if (added.pid !== undefined) readTicks(added.pid);
  return {
    dev,
    daemonPid: added.pid,
    note: `${peer.path} ${args.join(" ")}: daemon ${added.pid ?? "?"}`,
  };
}
