// Commands that act on a live device without deleting it: quiesce (hand it to a new daemon),
// update_size (resize it online), stop (stop it, optionally only when nobody has it open).
import { ControlDevice, type DevInfo } from "../../ctrl/control.js";
import { UblkError } from "../../ctrl/errors.js";
import { parseSize } from "../../targets/size.js";
import * as U from "../../uapi/ublk_cmd.js";
import { adminRequest } from "../admin.js";
import { intOption, type ParsedArgs, UsageError } from "../args.js";
import { stateName } from "../format.js";
import { alive, deleteDevice } from "./del.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function deviceId(args: ParsedArgs, command: string): number {
  if (args.options.number === undefined) throw new UsageError(`${command} needs -n ID`);
  return intOption(args.options, "number", -1, 0, 2 ** 20);
}

async function withCtrl<T>(fn: (ctrl: ControlDevice) => Promise<T>): Promise<T> {
  const ctrl = await ControlDevice.open();
  try {
    return await fn(ctrl);
  } finally {
    ctrl.close();
  }
}

function needFlag(info: DevInfo, flag: number, what: string): void {
  if (info.flags & flag) return;
  throw new UsageError(
    `device ${info.devId} was created without ${U.featureNames(flag)[0]}, which ${what} needs ` +
      `(flags 0x${info.flags.toString(16)}; ublk features shows what this driver offers)`,
  );
}

/**
 * ublk quiesce -n ID: the driver aborts the daemon's idle commands once every queue has an idle tag;
 * the daemon finishes what it holds and leaves; the device waits QUIESCED, IO queued, for `recover`.
 */
export async function quiesce(args: ParsedArgs): Promise<number> {
  const devId = deviceId(args, "quiesce");
  const timeoutMs = intOption(args.options, "timeout", 10_000, 0, 3_600_000);
  return withCtrl(async (ctrl) => {
    const before = await ctrl.getDevInfo(devId);
    needFlag(before, U.UBLK_F_QUIESCE, "quiesce");
    if (before.state !== U.UBLK_S_DEV_LIVE)
      throw new UsageError(`device ${devId} is ${stateName(before.state)}, not LIVE: nothing to quiesce`);
    try {
      await ctrl.quiesceDev(devId, timeoutMs);
    } catch (err) {
      if (err instanceof UblkError && err.code === "EBUSY")
        throw new Error(`device ${devId}: every tag stayed busy for ${timeoutMs} ms; try again later`);
      throw err;
    }
    // The daemon sees its commands aborted, completes what it holds and exits; the driver then
    // marks the device QUIESCED.
    const deadline = Date.now() + 60_000;
    let info = await ctrl.getDevInfo(devId);
    while ((alive(before.ublksrvPid) || info.state === U.UBLK_S_DEV_LIVE) && Date.now() < deadline) {
      await sleep(100);
      info = await ctrl.getDevInfo(devId);
    }
    if (info.state === U.UBLK_S_DEV_LIVE)
      throw new Error(
        `device ${devId} is still LIVE a minute after QUIESCE_DEV (daemon ${before.ublksrvPid})`,
      );
    process.stdout.write(
      `dev id ${devId}: state ${stateName(info.state)}; serve it again with 'ublk recover -n ${devId}'\n`,
    );
    return 0;
  });
}

/** ublk update_size -n ID -s SIZE: the daemon's target makes room, then UPDATE_SIZE. */
export async function updateSize(args: ParsedArgs): Promise<number> {
  const devId = deviceId(args, "update_size");
  if (args.options.size === undefined) throw new UsageError("update_size needs -s SIZE (bytes, or K/M/G/T)");
  let size: number;
  try {
    size = parseSize(args.options.size, "-s");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const info = await withCtrl((ctrl) => ctrl.getDevInfo(devId));
  needFlag(info, U.UBLK_F_UPDATE_SIZE, "update_size");
  const owner = info.flags & U.UBLK_F_UNPRIVILEGED_DEV ? info.ownerUid : undefined;
  const reply = await adminRequest(devId, { op: "resize", size }, undefined, owner);
  if (!reply.ok) throw new Error(`device ${devId}: ${reply.error}`);
  process.stdout.write(`dev id ${devId}: dev_capacity ${reply.size / 512} (${reply.size} bytes)\n`);
  return 0;
}

/**
 * STOP_DEV, or with --safe TRY_STOP_DEV, which the driver refuses while the disk is open. Exported for
 * `del --safe`. Returns false (and says why) when a safe stop was refused.
 */
export async function stopDevice(ctrl: ControlDevice, devId: number, safe: boolean): Promise<boolean> {
  if (!safe) {
    await ctrl.stopDev(devId);
    return true;
  }
  const info = await ctrl.getDevInfo(devId);
  needFlag(info, U.UBLK_F_SAFE_STOP_DEV, "--safe");
  try {
    await ctrl.tryStopDev(devId);
    return true;
  } catch (err) {
    if (!(err instanceof UblkError && err.code === "EBUSY")) throw err;
    process.stderr.write(
      `ublk: device ${devId} is in use (mounted or open): not stopped; close it first, or drop --safe\n`,
    );
    return false;
  }
}

/** ublk stop -n ID [--safe]: the device stops and its daemon removes it (as del does). */
export async function stop(args: ParsedArgs): Promise<number> {
  const devId = deviceId(args, "stop");
  return withCtrl(async (ctrl) => {
    if (!(await stopDevice(ctrl, devId, args.flags.has("safe")))) return 1;
    await deleteDevice(ctrl, devId, { stopped: true });
    return 0;
  });
}
