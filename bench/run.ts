// `npm run bench`: ublk-ts against the kernel's null_blk and loop drivers, measured with fio in one
// VM boot (or directly, as root on a kernel with ublk). The guest side is guest.js; this side picks
// its one-line JSON result out of the streamed output and writes bench/results/latest-<kernel>.{json,md,svg}
// (smoke.* for --smoke and partial.* for a subset, so neither overwrites a full measurement).
import { spawn } from "node:child_process";
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { cpus, release } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureHostTools } from "../src/host/ensure.js";
import { runInVm } from "../src/vm/index.js";
import { DEFAULT_KERNEL, parseKernelId } from "../src/vm/kernels.js";
import {
  type BenchOptions,
  type BenchResult,
  BenchUsageError,
  deviceConfigs,
  estimateSeconds,
  jobsFor,
  optionsToArgs,
  parseOptions,
  RESULT_MARKER,
  USAGE,
} from "./common.js";
import { markdown, svg, textTable } from "./report.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GUEST = "dist/bench/guest.js";
const RESULTS = join(ROOT, "bench", "results");
const VM_CPUS = 2;

function hostCpuModel(): string | undefined {
  try {
    return /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1].trim();
  } catch {
    return undefined;
  }
}

/** Passes output through line by line, keeping back the result line. */
class Demux {
  private carry = "";
  result: string | undefined;
  push(chunk: string): void {
    const text = this.carry + chunk;
    const lines = text.split("\n");
    this.carry = lines.pop() ?? "";
    for (const l of lines) this.line(l);
  }
  end(): void {
    if (this.carry) this.line(this.carry);
    this.carry = "";
  }
  private line(l: string): void {
    const at = l.indexOf(RESULT_MARKER);
    if (at >= 0) {
      this.result = l.slice(at + RESULT_MARKER.length);
      if (at > 0) process.stdout.write(`${l.slice(0, at)}\n`);
    } else process.stdout.write(`${l}\n`);
  }
}

function runDirect(command: string, out: Demux): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", command], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.setEncoding("utf8").on("data", (d: string) => out.push(d));
    child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

const minutes = (s: number) => `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;

async function main(argv: string[]): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseOptions(argv);
  } catch (e) {
    if (e instanceof BenchUsageError) {
      if (e.message) process.stderr.write(`bench: ${e.message}\n`);
      process.stderr.write(`${USAGE}\n`);
      return e.message ? 2 : 0;
    }
    throw e;
  }
  ensureHostTools(["bench"], { what: "npm run bench" });
  // A peer's binary runs in the guest from the same path (the VM sees the host's root): check it here.
  for (const p of o.peers ?? []) {
    p.path = resolve(p.path);
    try {
      accessSync(p.path, constants.X_OK);
    } catch {
      process.stderr.write(`bench: --peer ${p.name}=${p.path}: not an executable file\n`);
      return 2;
    }
  }
  const direct = existsSync("/dev/ublk-control") && process.getuid?.() === 0;
  const kernel = parseKernelId(o.kernel ?? DEFAULT_KERNEL);
  const where = direct ? "host (no VM)" : "qemu TCG VM";
  const est = estimateSeconds(o);
  const devices = deviceConfigs(o).length;
  const runs = devices * jobsFor(o).length * o.repeat;
  process.stdout.write(
    `[bench] ${devices} devices, ${runs} fio runs of ${o.rampSec}+${o.runtimeSec} s, in ${where}: ` +
      `about ${minutes(est)} (estimate)\n`,
  );
  const command = `UBLK_BENCH_WHERE=${JSON.stringify(where)} ${process.execPath} ${GUEST} ${optionsToArgs(o).join(" ")}`;
  const out = new Demux();
  const t0 = Date.now();
  let status: number;
  if (direct) status = await runDirect(command, out);
  else {
    const r = await runInVm({
      command,
      kernel,
      cwd: ROOT,
      cpus: VM_CPUS,
      // Generous: a loaded machine slows TCG a lot; a hung guest still ends.
      timeoutMs: (est * 2 + 600) * 1000,
      onOutput: (s) => out.push(s),
      onBootRetry: (n, why) => process.stderr.write(`[bench] VM boot ${n} failed (${why}); booting again\n`),
    });
    status = r.status < 0 ? 1 : r.status;
  }
  out.end();
  const wall = Math.round((Date.now() - t0) / 1000);
  if (!out.result) {
    process.stderr.write(`[bench] no result from the guest (exit ${status}) after ${minutes(wall)}\n`);
    return status === 0 ? 1 : status;
  }
  const res = JSON.parse(out.result) as BenchResult;
  res.machine.hostCpu = hostCpuModel();
  res.machine.hostCpus = cpus().length;
  res.wallSec = wall;
  mkdirSync(RESULTS, { recursive: true });
  // One report per kernel series; a run straight on a ublk host is filed under its own series.
  const series = direct ? release().split(".").slice(0, 2).join(".") : kernel;
  // A subset (--only, --jobs, --queues) never overwrites the full table.
  const partial = o.only || o.jobs || o.queues || o.variants;
  const base = join(RESULTS, `${o.smoke ? "smoke" : partial ? "partial" : "latest"}-${series}`);
  writeAtomic(`${base}.json`, `${JSON.stringify(res, null, 2)}\n`);
  writeAtomic(`${base}.md`, markdown(res));
  writeAtomic(`${base}.svg`, svg(res));
  process.stdout.write(`\n${textTable(res)}\n`);
  if (res.errors.length > 0) {
    process.stdout.write(`${res.errors.length} error(s):\n${res.errors.map((e) => `  ${e}`).join("\n")}\n`);
  }
  process.stdout.write(
    `[bench] ${o.smoke ? "smoke run" : "run"} took ${minutes(wall)} (estimate was ${minutes(est)}); ` +
      `wrote ${base}.{json,md,svg}\n`,
  );
  if (status === 0 && !res.ok) return 1;
  return status;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`[bench] ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
