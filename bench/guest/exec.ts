// Process plumbing of the guest half of the benchmark: progress lines, checked commands, the undo
// stack that tears every device down whatever happens, and CPU-tick sampling.
import { type ChildProcess, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
export const WORK_DIR = "/tmp/ublk-bench";
export const DAEMON_LOG = "/run/ublk-ts/ublk-ts.log";

const T0 = Date.now();
export const say = (s: string) =>
  process.stdout.write(`[bench ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

export interface Cmd {
  code: number;
  stdout: string;
  stderr: string;
}

export function cmd(file: string, args: string[], timeoutMs = 120_000): Cmd {
  const r = spawnSync(file, args, { encoding: "utf8", timeout: timeoutMs });
  const code = r.error || r.signal ? -1 : (r.status ?? -1);
  const why = r.error ? ` (${r.error.message})` : r.signal ? ` (signal ${r.signal})` : "";
  return { code, stdout: r.stdout ?? "", stderr: `${r.stderr ?? ""}${why}` };
}

/** Runs a command that must succeed; the error names it, its exit status and its last output. */
export function must(file: string, args: string[], timeoutMs?: number): string {
  const r = cmd(file, args, timeoutMs);
  if (r.code !== 0) {
    const name = file === process.execPath ? "ublk" : basename(file);
    throw new Error(
      `${name} ${args.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}`,
    );
  }
  return r.stdout;
}

export const ublk = (...args: string[]) => must(process.execPath, [CLI, ...args]);

// ---- teardown: everything set up registers its undo here, run in reverse, each at most once ----

const undo: { what: string; fn: () => void }[] = [];
export const teardownErrors: string[] = [];

export function onTeardown(what: string, fn: () => void): void {
  undo.push({ what, fn });
}

/** A mark to tear down to: what is set up after it goes, what was before stays. */
export const teardownMark = () => undo.length;

/** Undoes the set-up steps newer than `mark` (all of them by default). */
export function teardown(mark = 0): void {
  while (undo.length > mark) {
    const u = undo.pop()!;
    try {
      u.fn();
    } catch (e) {
      const msg = `teardown of ${u.what} failed: ${(e as Error).message}`;
      teardownErrors.push(msg);
      say(msg);
    }
  }
}

let current: ChildProcess | undefined;
/** The long-running child (fio) to kill if the benchmark is interrupted. */
export function setCurrentChild(c: ChildProcess | undefined): void {
  current = c;
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    say(`${sig}: stopping, tearing down`);
    current?.kill("SIGKILL");
    teardown();
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

// ---- sampling ----

export let CLK_TCK = 100;
export function readClockTick(): void {
  CLK_TCK = Number(cmd("getconf", ["CLK_TCK"]).stdout.trim()) || 100;
}

/** utime+stime of a /proc/PID/stat line, in clock ticks; for a process, all its threads. */
export function ticksOf(stat: string): number {
  // Fields after "pid (comm)": state is field 3, utime 14, stime 15 (the comm may hold spaces).
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const t = Number(f[11]) + Number(f[12]);
  if (!Number.isFinite(t)) throw new Error(`cannot read CPU ticks from: ${stat.slice(0, 200)}`);
  return t;
}

export const readTicks = (pid: number) => ticksOf(readFileSync(`/proc/${pid}/stat`, "utf8"));

export async function waitForNode(dev: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(dev) || !existsSync(`/sys/block/${basename(dev)}`)) {
    if (Date.now() > end) throw new Error(`${dev} did not appear within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function daemonLogTail(): void {
  if (!existsSync(DAEMON_LOG)) return;
  const lines = readFileSync(DAEMON_LOG, "utf8").trimEnd().split("\n").slice(-20);
  say(`last lines of ${DAEMON_LOG}:\n${lines.map((l) => `    ${l}`).join("\n")}`);
}
