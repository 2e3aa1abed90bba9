// Shared helpers for tests that need the real ublk driver. They run inside the VM harness
// (npm run test:vm); anywhere without /dev/ublk-control they skip and say why.
import assert from "node:assert/strict";
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { featureNames } from "../../src/uapi/ublk_cmd.js";

export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export const skipReason: string | false = !existsSync("/dev/ublk-control")
  ? "needs the ublk driver (/dev/ublk-control): run `npm run test:vm`"
  : process.getuid?.() !== 0
    ? "needs root"
    : false;

/** The loaded driver's GET_FEATURES mask (0 outside the VM), read once per test file. */
export const driverFeatures: bigint = (() => {
  if (skipReason) return 0n;
  // test/run.ts asks once per boot; a file run on its own asks itself.
  const given = /^0x[0-9a-f]+$/.exec(process.env.UBLK_TS_TEST_FEATURES ?? "");
  if (given) return BigInt(given[0]);
  const r = spawnSync(process.execPath, [CLI, "features"], { encoding: "utf8", timeout: 60_000 });
  const m = /^ublk_drv features: (0x[0-9a-f]+)/m.exec(r.stdout ?? "");
  if (!m) throw new Error(`ublk features printed no mask: ${r.stdout}${r.stderr}`);
  return BigInt(m[1]);
})();

/**
 * Skip reason for a test that needs driver features (UBLK_F_* bits): false when the driver has them
 * all. Tests choose by GET_FEATURES, as ublk-ts itself does, never by kernel version.
 */
export function needs(...flags: number[]): string | false {
  if (skipReason) return skipReason;
  const missing = flags.filter((f) => (driverFeatures & BigInt(f)) === 0n);
  if (missing.length === 0) return false;
  return `the driver lacks ${featureNames(missing.reduce((a, f) => a | BigInt(f), 0n)).join(", ")}`;
}

/**
 * For a test whose subject is above the driver (a target's mapped mode, CLI input checks, the
 * supervisor): when `npm test` boots both kernels it runs in the `kernel` guest only, to keep the
 * suite's time down; any other run (one kernel, named files, --every-kernel) runs it everywhere.
 */
export function oneGuest(kernel: "6.12" | "7.3"): string | false {
  if (skipReason) return skipReason;
  const here = process.env.UBLK_TS_VM_KERNEL;
  if (process.env.UBLK_TS_TEST_SPLIT !== "1" || !here || here === kernel) return false;
  return `above the driver: runs in the ${kernel} guest (npm test -- --every-kernel runs it here too)`;
}

/** The opposite: for tests of the refusal a driver without the feature must give. */
export function hasAny(...flags: number[]): string | false {
  if (skipReason) return skipReason;
  const present = flags.filter((f) => (driverFeatures & BigInt(f)) !== 0n);
  if (present.length === 0) return false;
  return `the driver has ${featureNames(present.reduce((a, f) => a | BigInt(f), 0n)).join(", ")}`;
}

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

/** The device's entry in `ublk list -n ID --json`. */
export function listedDevice<T>(id: number): T {
  const r = ublk("list", "-n", String(id), "--json");
  if (r.code !== 0) throw new Error(`ublk list -n ${id} failed: ${r.stderr}`);
  return JSON.parse(r.stdout)[0] as T;
}

/** `ublk add ARGS` is refused with exactly one stderr line, matching `pattern`. */
export function assertAddRefused(args: string[], pattern: RegExp): void {
  const r = ublk("add", ...args);
  assert.notEqual(r.code, 0, `ublk add ${args.join(" ")} was accepted`);
  assert.match(r.stderr, pattern);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
}

/**
 * A new image file `dir/name` of `size` (truncate's syntax): sparse, or written in full with zeros
 * (`full`), replacing any file of that name.
 */
export function freshImage(dir: string, name: string, size: string, full = false): string {
  mkdirSync(dir, { recursive: true });
  const path = `${dir}/${name}`;
  rmSync(path, { force: true });
  sh(full ? `head -c ${size} /dev/zero >${path}` : `truncate -s ${size} ${path}`);
  return path;
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

/** Pids of ublk-ts daemons (`main.js __daemon ...`) still running, zombies excluded. */
export function daemonPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (argv.includes("__daemon") && argv.some((a) => a.endsWith("/cli/main.js"))) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** ublk block and char device nodes present under /dev (ublk-control excluded). */
export function ublkNodes(): string[] {
  return readdirSync("/dev")
    .filter((n) => /^ublk[bc]\d+$/.test(n))
    .map((n) => `/dev/${n}`)
    .sort();
}

/** Polls `check` every `stepMs` until it returns true or `ms` pass; resolves to its last answer. */
export async function waitFor(check: () => boolean, ms: number, stepMs = 200): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
}

export interface FioJob {
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

/** Runs fio like `fio()` but returns its exit code and jobs even when it fails. */
export function fioRun(args: string, timeoutMs = 180_000): { code: number; jobs: FioJob[]; output: string } {
  const r = sh(`fio --output-format=json ${args}`, { allowFail: true, timeoutMs });
  if (r.code === -1) throw new Error(`fio did not finish within ${timeoutMs} ms: fio ${args}\n${r.stderr}`);
  const start = r.stdout.indexOf("{");
  let jobs: FioJob[] = [];
  try {
    if (start >= 0) jobs = (JSON.parse(r.stdout.slice(start)) as { jobs: FioJob[] }).jobs;
  } catch {
    // fio died mid-report: the caller sees no jobs
  }
  return { code: r.code, jobs, output: `${r.stdout}\n${r.stderr}` };
}

/**
 * Two fio writers on disjoint `perJobMiB` halves from offset 0 (random 4k-256k writes with crc32c
 * verify headers), then a verify-only pass replaying the same seed: asserts both passes are clean.
 * Returns the job line so a caller can replay the verify pass.
 */
export function fioWriteThenVerify(dev: string, perJobMiB: number, seed: number): string {
  const job =
    `--name=wv --filename=${dev} --rw=randwrite --bsrange=4k-256k --direct=1 --ioengine=io_uring ` +
    `--iodepth=16 --numjobs=2 --size=${perJobMiB}M --offset_increment=${perJobMiB}M --randseed=${seed} ` +
    "--verify=crc32c --verify_state_save=0";
  const w = fioRun(`${job} --do_verify=0`);
  if (w.code !== 0 || w.jobs.some((j) => j.error !== 0))
    throw new Error(`fio write pass failed:\n${w.output}`);
  const v = fioRun(`${job} --verify_only=1`);
  if (v.code !== 0 || v.jobs.length !== 2 || v.jobs.some((j) => j.error !== 0))
    throw new Error(`fio verify pass failed:\n${v.output}`);
  return job;
}
