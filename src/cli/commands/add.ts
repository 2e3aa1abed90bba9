// ublk add: create a device and return once it is LIVE, leaving a daemon serving it.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { checkControlAccess } from "../../ctrl/access.js";
import { ControlDevice, UBLK_CONTROL_PATH } from "../../ctrl/control.js";
import { UBLK_F_UNPRIVILEGED_DEV, UBLK_F_USER_RECOVERY } from "../../uapi/ublk_cmd.js";
import { intOption, type ParsedArgs, UsageError } from "../args.js";
import type { DaemonReport } from "../daemon.js";
import { specFromArgs } from "../spec.js";
import { type AddSpec, readState } from "../state.js";

const MAIN = fileURLToPath(new URL("../main.js", import.meta.url));

export async function add(args: ParsedArgs): Promise<number> {
  return start(specFromArgs(args), args, "add");
}

/** ublk recover -n ID [-t TARGET options...]: a new daemon takes over a QUIESCED device. */
export async function recover(args: ParsedArgs): Promise<number> {
  const devId = intOption(args.options, "number", -1, 0, 2 ** 20);
  if (devId < 0) throw new UsageError("recover needs -n ID");
  let spec: AddSpec;
  if (args.options.type) spec = { ...specFromArgs(args), devId };
  else {
    const saved = readState(devId);
    if (!saved)
      throw new UsageError(`no saved state for device ${devId}: give -t TARGET and its options (as for add)`);
    spec = saved.spec;
  }
  await checkRecoverable(devId);
  return start(spec, args, "recover");
}

/** The refusals a recovering daemon would meet first, said at once and without starting one. */
async function checkRecoverable(devId: number): Promise<void> {
  checkControlAccess(UBLK_CONTROL_PATH);
  const ctrl = await ControlDevice.open();
  try {
    const info = await ctrl.getDevInfo(devId); // no such device, or not the caller's
    if (info.flags & UBLK_F_UNPRIVILEGED_DEV && !(info.flags & UBLK_F_USER_RECOVERY))
      throw new UsageError(`device ${devId} is unprivileged: the driver gives such devices no user recovery`);
  } finally {
    ctrl.close();
  }
}

export async function start(spec: AddSpec, args: ParsedArgs, mode: "add" | "recover"): Promise<number> {
  checkControlAccess(UBLK_CONTROL_PATH); // before any daemon starts: a user without the udev rule
  const quiet = args.flags.has("quiet");
  if (args.flags.has("foreground")) {
    let devId: number | undefined;
    // The daemon's code (device, queues, targets) loads only where it runs: here, or in the child.
    const { runDaemon } = await import("../daemon.js");
    const log = (m: string) =>
      process.stderr.write(`ublk-ts${devId === undefined ? "" : ` dev ${devId}`}: ${m}\n`);
    return runDaemon(
      spec,
      (r) => {
        if (r.type === "live") {
          devId = r.devId;
          if (!quiet) process.stdout.write(r.text);
        } else process.stderr.write(`ublk: ${r.message}\n`);
      },
      quiet ? () => {} : log,
      mode,
    );
  }
  // Detach a daemon (or its supervisor) and wait for its one report over IPC.
  const supervise = args.flags.has("supervise");
  if (supervise && !(spec.flags & UBLK_F_USER_RECOVERY))
    throw new UsageError("--supervise needs user recovery: add -r 1 (and -i 1 to lose no in-flight IO)");
  const entry = supervise ? "__supervise" : "__daemon";
  const child = spawn(process.execPath, [MAIN, entry, JSON.stringify(spec), mode], {
    detached: true,
    stdio: ["ignore", "ignore", "ignore", "ipc"],
  });
  const report = await new Promise<DaemonReport>((resolve) => {
    child.once("message", (m) => resolve(m as DaemonReport));
    child.once("exit", (code, signal) =>
      resolve({
        type: "error",
        message: `the daemon exited before the device was live (${signal ?? `code ${code}`})`,
      }),
    );
    child.once("error", (err) => resolve({ type: "error", message: err.message }));
  });
  child.disconnect?.();
  child.unref();
  if (report.type === "error") {
    process.stderr.write(`ublk: ${report.message}\n`);
    return 1;
  }
  if (!quiet) process.stdout.write(report.text);
  return 0;
}

/** Body of the detached daemon process (`main.js __daemon SPEC`). */
export async function daemonMain(specJson: string, mode: string): Promise<number> {
  const { daemonLogger, runDaemon } = await import("../daemon.js");
  const spec = JSON.parse(specJson);
  let devId: number | undefined;
  const log = daemonLogger(() => devId);
  process.on("uncaughtException", (err) => {
    log(`uncaught: ${err.stack ?? err}`);
    process.exit(1);
  });
  return runDaemon(
    spec,
    (r) => {
      if (r.type === "live") devId = r.devId;
      // Once the starter has its answer the IPC channel must go, or it would keep us tied to it.
      process.send?.(r, () => {
        if (r.type === "live") process.disconnect?.();
      });
    },
    log,
    mode === "recover" ? "recover" : "add",
  );
}
