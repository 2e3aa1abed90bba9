// Shared helpers for tests that need the real ublk driver. They run inside the VM harness
// (npm run test:vm); anywhere without /dev/ublk-control they skip and say why.
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export const skipReason: string | false = !existsSync("/dev/ublk-control")
  ? "needs the ublk driver (/dev/ublk-control): run `npm run test:vm`"
  : process.getuid?.() !== 0
    ? "needs root"
    : false;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function toRun(r: SpawnSyncReturns<string>): Run {
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/** Runs the ublk CLI. */
export function ublk(...args: string[]): Run {
  return toRun(spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120_000 }));
}

/** Runs a shell command; throws with its output when it fails unless allowFail. */
export function sh(command: string, opts: { allowFail?: boolean; timeoutMs?: number } = {}): Run {
  const r = toRun(
    spawnSync("bash", ["-c", command], { encoding: "utf8", timeout: opts.timeoutMs ?? 300_000 }),
  );
  if (r.code !== 0 && !opts.allowFail) {
    throw new Error(`'${command}' exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  }
  return r;
}

/** `ublk add ...` that must succeed; returns the device id it printed. */
export function addDevice(...args: string[]): number {
  const r = ublk("add", ...args);
  if (r.code !== 0) throw new Error(`ublk add ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  const m = /^dev id (\d+): /m.exec(r.stdout);
  if (!m) throw new Error(`ublk add printed no device line: ${r.stdout}`);
  return Number(m[1]);
}

export function listedIds(): number[] {
  const r = ublk("list", "--json");
  if (r.code !== 0) throw new Error(`ublk list failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { dev_id: number }[]).map((d) => d.dev_id);
}

/** Removes every ublk device (test cleanup). */
export function deleteAll(): void {
  ublk("del", "-a");
}

/** Runs fio with the given arguments and returns its JSON result's jobs. */
export function fio(args: string): {
  jobs: { error: number; read: { io_bytes: number }; write: { io_bytes: number } }[];
} {
  const r = sh(`fio --output-format=json ${args}`, { timeoutMs: 600_000 });
  return JSON.parse(r.stdout.slice(r.stdout.indexOf("{")));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
