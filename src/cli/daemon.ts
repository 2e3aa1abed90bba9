// The process that serves one device. Started detached by `ublk add` (or in the foreground), it
// reports LIVE or the failure to whoever started it, then serves until SIGTERM/SIGINT or until the
// device is stopped from outside (`ublk del`), and always deletes what it created.
import { accessSync, appendFileSync, constants } from "node:fs";
import { refusalReason } from "../ctrl/access.js";
import { UblkDevice } from "../device.js";
import { UBLK_F_UNPRIVILEGED_DEV, UBLK_F_USER_RECOVERY, UBLK_S_DEV_DEAD } from "../uapi/ublk_cmd.js";
import { serveAdmin } from "./admin.js";
import { formatDevice } from "./format.js";
import { ensureRunDir } from "./run-dir.js";
import { type AddSpec, LOG_FILE, readState, removeState, writeState } from "./state.js";

export type DaemonReport = { type: "live"; text: string; devId: number } | { type: "error"; message: string };

export function daemonLogger(devId: () => number | undefined): (msg: string) => void {
  return (msg: string) => {
    const id = devId();
    const line = `${new Date().toISOString()} ublk-ts[${process.pid}]${id === undefined ? "" : ` dev ${id}`}: ${msg}\n`;
    try {
      ensureRunDir();
      appendFileSync(LOG_FILE, line);
    } catch {
      process.stderr.write(line);
    }
  };
}

/**
 * An unprivileged device is its owner's to use once udev has handed them /dev/ublkbN (the rule runs
 * when the disk appears, at START_DEV): `add` returns after that, so the next command can open it.
 */
async function waitBlockDevAccess(dev: UblkDevice, log: (msg: string) => void): Promise<void> {
  if (!(dev.info.flags & UBLK_F_UNPRIVILEGED_DEV)) return;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      accessSync(dev.blockDevice, constants.R_OK | constants.W_OK);
      return;
    } catch {
      if (Date.now() > deadline) {
        log(`${dev.blockDevice} is not yours to open: ${refusalReason(dev.devId, "EACCES", "open")}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

export async function runDaemon(
  spec: AddSpec,
  report: (r: DaemonReport) => void,
  log: (msg: string) => void,
  mode: "add" | "recover" = "add",
): Promise<number> {
  let dev: UblkDevice;
  try {
    dev =
      mode === "recover"
        ? await UblkDevice.recover({
            devId: spec.devId,
            threads: spec.nthreads,
            target: spec.target,
            targetOptions: spec.targetOptions,
            autoBufRegFallback: spec.autoBufRegFallback,
            pollUs: spec.pollUs,
            log,
          })
        : await UblkDevice.create({
            target: spec.target,
            targetOptions: spec.targetOptions,
            devId: spec.devId,
            queues: spec.queues,
            threads: spec.nthreads,
            depth: spec.depth,
            maxIoBufBytes: spec.maxIoBufBytes,
            flags: spec.flags,
            autoBufRegFallback: spec.autoBufRegFallback,
            autoZeroCopy: spec.autoZeroCopy,
            shmem: spec.shmem,
            pollUs: spec.pollUs,
            params: spec.params,
            log,
          });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log(`${mode} failed: ${message}`);
    report({ type: "error", message });
    return 1;
  }
  writeState({
    devId: dev.devId,
    pid: process.pid,
    spec: { ...spec, devId: dev.devId },
    queues: dev.queues,
    targetInfo: { ...dev.setup.description, ...dev.sharedMemoryInfo },
  });
  const { toUblkParams } = await import("../ctrl/params.js");
  const text = formatDevice(
    dev.info,
    toUblkParams(dev.params, dev.sizeBytes, dev.info.maxIoBufBytes),
    dev.queues,
  );
  await waitBlockDevAccess(dev, log);
  log(`LIVE: ${dev.blockDevice} target ${spec.target}`);
  const closeAdmin = serveAdmin(dev.devId, async (req) => {
    if (req.op !== "resize") return { ok: false, error: `unknown request ${JSON.stringify(req)}` };
    await dev.resize(req.size);
    // A recovery re-opens the target with the saved options: they must describe the new size.
    if (spec.targetOptions.size !== undefined) spec.targetOptions.size = String(req.size);
    writeState({ ...readState(dev.devId)!, spec: { ...spec, devId: dev.devId } });
    log(`resized to ${req.size} bytes`);
    return { ok: true, size: dev.size };
  });
  report({ type: "live", text, devId: dev.devId });

  let signalled = false;
  const onSignal = (sig: string) => {
    if (signalled) return;
    signalled = true;
    log(`${sig}: stopping`);
    void dev.stop();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGHUP", () => {}); // detached: a closing terminal must not kill the device

  // Queues end when the device is stopped, by us or by `ublk del`; stop() is idempotent either way.
  await dev.ended;
  closeAdmin();
  if (!dev.stopRequested) {
    // Ended without a stop and not DEAD: the device was quiesced (`ublk quiesce`, a daemon upgrade).
    // Leave it, and the saved state, for the next daemon.
    const info = await dev.getInfo().catch(() => null);
    if (info && info.state !== UBLK_S_DEV_DEAD && info.flags & UBLK_F_USER_RECOVERY) {
      log(`quiesced: handing the device over ('ublk recover -n ${dev.devId}' serves it again)`);
      await dev.release();
      log("exited");
      return 0;
    }
  }
  try {
    await dev.stop();
  } catch (err) {
    // `ublk del` may have deleted it first.
    if ((err as { code?: string }).code !== "ENODEV")
      log(`stop: ${err instanceof Error ? err.message : err}`);
  }
  removeState(dev.devId, process.pid);
  log("exited");
  return 0;
}
