// One-line reports of a spawned program that failed: missing, killed, timed out, or exited non-zero,
// with its name, exit status and the last lines of its stderr (never an empty message).
import type { SpawnSyncReturns } from "node:child_process";
import { hostTool } from "./tools.js";

/** The last `lines` non-empty lines of a program's output, joined with " | ". */
export function lastLines(text: string | Buffer | null | undefined, lines = 3): string {
  const all = String(text ?? "")
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  return all.slice(-lines).join(" | ");
}

export interface ExitInfo {
  /** Set when the program could not be started (ENOENT: not installed) or was timed out. */
  error?: Error & { code?: string };
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr?: string | Buffer | null;
  stdout?: string | Buffer | null;
}

/** Why `name` failed, in one line; undefined if it succeeded. */
export function spawnFailure(name: string, r: ExitInfo): string | undefined {
  const prog = name.slice(name.lastIndexOf("/") + 1);
  if (r.error?.code === "ENOENT") {
    const t = hostTool(prog);
    return `${prog}: not installed${t ? ` (Debian package ${t.pkg})` : ""}`;
  }
  const tail = lastLines(r.stderr) || lastLines(r.stdout) || "no output";
  if (r.error?.code === "ETIMEDOUT") return `${prog}: timed out and was killed: ${tail}`;
  if (r.error) return `${prog}: ${r.error.message}`;
  if (r.signal) return `${prog}: killed by ${r.signal}: ${tail}`;
  if (r.status !== 0) return `${prog}: exit status ${r.status}: ${tail}`;
  return undefined;
}

/** Throws the one-line report if a spawnSync result failed; returns its stdout otherwise. */
export function checked(name: string, r: SpawnSyncReturns<string>): string {
  const failure = spawnFailure(name, r);
  if (failure) throw new Error(failure);
  return r.stdout;
}
