// ublk del: STOP_DEV (the daemon's queues see every tag aborted and it exits), wait for the daemon,
// then DEL_DEV, which returns once every reference is gone. Bounded at every step.
import { existsSync, readFileSync } from "node:fs";
import { ControlDevice, listDevIds } from "../../ctrl/control.js";
import { UblkError } from "../../ctrl/errors.js";
import { UBLK_F_UNPRIVILEGED_DEV } from "../../uapi/ublk_cmd.js";
import { intOption, type ParsedArgs, UsageError } from "../args.js";
import { readState, removeState } from "../state.js";
import { stopDevice } from "./manage.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True while the process exists and is not a zombie (an unreaped daemon has finished its work). */
export function alive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return false;
  } catch {
    return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The real uid of process `pid`, or undefined when it is gone. */
function processUid(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export async function deleteDevice(
  ctrl: ControlDevice,
  devId: number,
  how: { stopped?: boolean; async?: boolean } = {},
): Promise<void> {
  const info = await ctrl.getDevInfo(devId);
  const unprivileged = (info.flags & UBLK_F_UNPRIVILEGED_DEV) !== 0;
  if (how.async && unprivileged)
    throw new Error(`device ${devId} is unprivileged: the driver refuses DEL_DEV_ASYNC for it; drop --async`);
  const pids = new Set<number>([info.ublksrvPid]);
  const state = readState(devId, unprivileged ? info.ownerUid : undefined);
  if (state) pids.add(state.pid);
  if (!how.stopped) await ctrl.stopDev(devId);
  if (how.async) {
    // DEL_DEV_ASYNC: the id goes at once; the driver frees the device when its last user lets go.
    await ctrl.delDevAsync(devId);
    removeState(devId);
    return;
  }
  for (const pid of pids) {
    if (!(await waitGone(pid, 30_000))) {
      // A daemon that does not leave after its device stopped is stuck: make it. An unprivileged
      // device's owner chose the pids the driver and the state file report: kill only their processes.
      if (unprivileged && processUid(pid) !== info.ownerUid) continue;
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
      await waitGone(pid, 10_000);
    }
  }
  try {
    await ctrl.delDev(devId);
  } catch (err) {
    // ENODEV: the daemon deleted it already; ENOENT: it is doing so (its char device node is gone).
    if (!(err instanceof UblkError && (err.code === "ENODEV" || err.code === "ENOENT"))) throw err;
  }
  removeState(devId);
  const deadline = Date.now() + 10_000;
  while ((existsSync(`/dev/ublkb${devId}`) || existsSync(`/dev/ublkc${devId}`)) && Date.now() < deadline)
    await sleep(20);
}

export async function del(args: ParsedArgs): Promise<number> {
  const all = args.flags.has("all");
  const safe = args.flags.has("safe");
  if (!all && args.options.number === undefined) throw new UsageError("del needs -n ID or -a");
  const ids = all ? listDevIds() : [intOption(args.options, "number", -1, 0, 2 ** 20)];
  const ctrl = await ControlDevice.open();
  let status = 0;
  try {
    for (const id of ids) {
      try {
        if (safe && !(await stopDevice(ctrl, id, true))) {
          status = 1;
          continue;
        }
        await deleteDevice(ctrl, id, { stopped: safe, async: args.flags.has("async") });
      } catch (err) {
        if (all && err instanceof UblkError && (err.code === "ENODEV" || err.code === "ENOENT")) continue;
        // -a as a user: all of *their* devices; the others' (and root's) are not theirs to delete.
        if (all && err instanceof UblkError && (err.code === "EACCES" || err.code === "EPERM")) continue;
        process.stderr.write(`ublk: ${err instanceof Error ? err.message : err}\n`);
        status = 1;
      }
    }
  } finally {
    ctrl.close();
  }
  return status;
}
