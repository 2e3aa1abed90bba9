// Daemon state in the run directory (/run/ublk-ts for root, a per-user one otherwise: run-dir.ts):
// one JSON file per device, written once the device is LIVE. `list` reads queue tids from it;
// recovery reads the target and its options from it.
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { QueueInfo } from "../device.js";
import { ensureRunDir, RUN_DIR, runDirFor } from "./run-dir.js";

export { RUN_DIR };
export const LOG_FILE = join(RUN_DIR, "ublk-ts.log");

/** Everything needed to (re)start the daemon for a device. */
export interface AddSpec {
  /** The declared device (devices.d/NAME.json) this one was brought up from, if any. */
  name?: string;
  target: string;
  targetOptions: Record<string, string | boolean | string[]>;
  devId: number;
  queues: number;
  /** --per_io_tasks: how many threads serve the queues (UBLK_F_PER_IO_DAEMON is in `flags`). */
  nthreads?: number;
  depth: number;
  /** --poll_us: a queue thread's poll before sleeping (default: the queue loop's). */
  pollUs?: number;
  maxIoBufBytes: number;
  flags: number;
  /** --auto_zc_fallback (not a driver flag: how the queues answer UBLK_IO_F_NEED_REG_BUF). */
  autoBufRegFallback?: boolean;
  /** --no_auto_zc: false keeps the copying path where zero copy would be taken by default. */
  autoZeroCopy?: boolean;
  /** --shmem_zc's --htlb FILE and --rdonly_shmem_buf (the flag itself is UBLK_F_SHMEM_ZC). */
  shmem?: { file?: string; readOnly?: boolean };
  params: Record<string, unknown>;
}

export interface DaemonState {
  devId: number;
  pid: number;
  spec: AddSpec;
  queues: QueueInfo[];
  /** What the target reported about itself (TargetSetup.description), for `list`. */
  targetInfo?: Record<string, string | number | boolean>;
}

const statePath = (devId: number) => join(RUN_DIR, `${devId}.json`);

export function writeState(state: DaemonState): void {
  ensureRunDir();
  const tmp = `${statePath(state.devId)}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(tmp, statePath(state.devId));
}

/**
 * The saved state of device `devId`: this user's, or (`ownerUid` given, for root looking at another
 * user's unprivileged device) the one in its owner's run directory.
 */
export function readState(devId: number, ownerUid?: number): DaemonState | null {
  const mine = process.getuid?.() ?? 0;
  const path =
    ownerUid === undefined || ownerUid === mine
      ? statePath(devId)
      : join(runDirFor(ownerUid), `${devId}.json`);
  try {
    return JSON.parse(readFileSync(path, "utf8")) as DaemonState;
  } catch {
    return null;
  }
}

export function removeState(devId: number, pid?: number): void {
  const s = readState(devId);
  if (pid !== undefined && s && s.pid !== pid) return; // a newer daemon owns it now
  rmSync(statePath(devId), { force: true });
}
