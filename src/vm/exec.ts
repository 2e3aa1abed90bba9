import { spawn } from "node:child_process";

/** Runs a program, collects stdout, rejects with stderr on a non-zero exit. */
export function run(
  file: string,
  args: string[],
  opts: { cwd?: string; passthrough?: boolean; allowFail?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: opts.cwd,
      // passthrough: show a long-running tool's progress on our stderr (stdout stays clean).
      stdio: opts.passthrough ? ["ignore", 2, 2] : ["ignore", "pipe", "pipe"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const c = code ?? 128;
      if (c !== 0 && !opts.allowFail) {
        const why = signal ? `signal ${signal}` : `exit ${c}`;
        reject(new Error(`${file} ${args.join(" ")} failed (${why}): ${stderr.trim().slice(-2000)}`));
      } else {
        resolve({ code: c, stdout, stderr });
      }
    });
  });
}

/** Finds an executable on PATH plus the sbin dirs (the host tools' lookup, under its old name here). */
export { findProgram as which } from "../host/ensure.js";

/** Quotes a string for POSIX sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
