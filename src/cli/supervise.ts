// `ublk add --supervise`: a small parent that restarts a dead daemon and recovers the device without a
// person. It holds no device file itself, so the driver sees the daemon's death, quiesces the device
// (user recovery), and the replacement daemon takes over with START/END_USER_RECOVERY.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type DaemonReport, daemonLogger } from "./daemon.js";
import type { AddSpec } from "./state.js";

const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));
/** More restarts than this within a minute means the daemon cannot stay up: give up. */
const MAX_RESTARTS_PER_MINUTE = 5;

export async function superviseMain(specJson: string, firstMode: string): Promise<number> {
  const spec = JSON.parse(specJson) as AddSpec;
  let devId: number | undefined;
  const log = daemonLogger(() => devId);
  let mode = firstMode === "recover" ? "recover" : "add";
  let reported = false;
  let stopping = false;
  let child: ReturnType<typeof spawn> | null = null;
  const forward = (sig: NodeJS.Signals) => {
    stopping = true;
    child?.kill(sig);
  };
  process.on("SIGTERM", () => forward("SIGTERM"));
  process.on("SIGINT", () => forward("SIGINT"));
  process.on("SIGHUP", () => {});
  const restarts: number[] = [];

  for (;;) {
    const c = spawn(process.execPath, [MAIN, "__daemon", JSON.stringify(spec), mode], {
      stdio: ["ignore", "ignore", "ignore", "ipc"],
    });
    child = c;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      c.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const report = await Promise.race([
      new Promise<DaemonReport>((resolve) => c.once("message", (m) => resolve(m as DaemonReport))),
      exited.then(
        (e): DaemonReport => ({
          type: "error",
          message: `the daemon exited (${e.signal ?? `code ${e.code}`})`,
        }),
      ),
    ]);
    if (!reported) {
      reported = true;
      await new Promise<void>((resolve) => process.send?.(report, () => resolve()) ?? resolve());
      process.disconnect?.();
    }
    if (report.type === "error") {
      log(`supervisor: ${mode} failed: ${report.message}`);
      return 1;
    }
    devId = report.devId;
    spec.devId = report.devId;
    log(`supervisor: daemon ${c.pid} serving`);
    const { code, signal } = await exited;
    if (stopping || (code === 0 && signal === null)) {
      log("supervisor: daemon finished; exiting");
      return 0;
    }
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && restarts[0] < now - 60_000) restarts.shift();
    if (restarts.length > MAX_RESTARTS_PER_MINUTE) {
      log(
        `supervisor: the daemon died ${restarts.length} times in a minute; giving up (device left for 'ublk recover')`,
      );
      return 1;
    }
    log(`supervisor: daemon ${c.pid} died (${signal ?? `code ${code}`}); recovering`);
    mode = "recover";
  }
}
