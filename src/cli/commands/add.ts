// ublk add: create a device and return once it is LIVE, leaving a daemon serving it.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ParsedArgs } from "../args.js";
import { type DaemonReport, daemonLogger, runDaemon } from "../daemon.js";
import { specFromArgs } from "../spec.js";

const MAIN = fileURLToPath(new URL("../main.js", import.meta.url));

export async function add(args: ParsedArgs): Promise<number> {
  const spec = specFromArgs(args);
  const quiet = args.flags.has("quiet");
  if (args.flags.has("foreground")) {
    let devId: number | undefined;
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
    );
  }
  // Detach a daemon and wait for its one report over IPC.
  const child = spawn(process.execPath, [MAIN, "__daemon", JSON.stringify(spec)], {
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
export async function daemonMain(specJson: string): Promise<number> {
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
  );
}
