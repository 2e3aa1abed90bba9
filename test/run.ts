// The project's test command: host tests (pure units and io_uring on this kernel) directly, then the
// tests that need the ublk driver inside the VM harness, booted once. Prints one closing total.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureHostTools } from "../src/host/ensure.js";
import { runInVm } from "../src/vm/index.js";
import { KERNEL_IDS, type KernelId, parseKernelId } from "../src/vm/kernels.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
// --kernel K (repeatable) picks the kernels of the VM suite, default all; any other plain arguments
// pick VM test files by name: `npm run test:vm -- --kernel 7.3 recovery lifecycle`. --every-kernel
// runs the target-level files (ONE_KERNEL) on every kernel instead of one.
const argv = process.argv.slice(2);
const kernels: KernelId[] = [];
const picked: string[] = [];
const args = new Set<string>();
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--kernel") kernels.push(parseKernelId(argv[++i] ?? ""));
  else if (a.startsWith("--kernel=")) kernels.push(parseKernelId(a.slice(9)));
  else if (a.startsWith("--")) args.add(a);
  else picked.push(a);
}
const kernelsGiven = kernels.length > 0;
if (!kernelsGiven) kernels.push(...KERNEL_IDS);

/**
 * VM files whose subject is a target's own TypeScript (an image format, a network protocol, a fault
 * policy, a config file) or the daemon's own hygiene (many devices, add/del cycles leaking nothing),
 * above the queue paths that null, loop and ram test on every kernel. When
 * `npm test` boots both kernels each of these runs in one of them, spread so that the two guests
 * finish together; `--every-kernel`, `--kernel K` or naming files runs them everywhere asked.
 */
const ONE_KERNEL: Readonly<Record<string, KernelId>> = {
  // 7.3 has more tests of its own (batch, zero copy, shared memory, per-IO daemons...).
  qcow2: "6.12",
  nbd: "6.12",
  many: "6.12",
  "up-down": "6.12",
  stripe: "6.12",
  zoned: "6.12",
  "fault-inject": "7.3",
  "custom-target": "7.3",
};

function vmFilesFor(kernel: KernelId, split: boolean): string {
  const names =
    picked.length > 0
      ? picked.map((p) => p.replace(/(\.test)?\.[jt]s$/, ""))
      : readdirSync(join(root, "dist/test/vm"))
          .filter((f) => f.endsWith(".test.js"))
          .map((f) => f.slice(0, -".test.js".length))
          .filter((n) => !split || (ONE_KERNEL[n] ?? kernel) === kernel);
  return names.map((n) => `dist/test/vm/${n}.test.js`).join(" ");
}

interface Totals {
  pass: number;
  fail: number;
  skipped: number;
  ok: boolean;
}

/** Reads the node test runner's closing "ℹ pass N" lines. */
function totals(output: string, exitOk: boolean): Totals {
  const num = (key: string) => Number(new RegExp(`^[ℹ#] ${key} (\\d+)`, "m").exec(output)?.[1] ?? 0);
  const t = { pass: num("pass"), fail: num("fail") + num("cancelled"), skipped: num("skipped"), ok: exitOk };
  if (!/^[ℹ#] tests \d+/m.test(output)) t.ok = false; // the runner never finished
  return t;
}

function runHost(): Promise<Totals> {
  const testArgs = ["--test", "--test-reporter=spec", "dist/test/unit/", "dist/test/host/"];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, testArgs, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
      process.stdout.write(d);
    });
    child.on("exit", (code) => resolve(totals(out, code === 0)));
  });
}

/** Streams a kernel's output line by line with its name in front, so parallel runs stay readable. */
function prefixed(tag: string): (chunk: string) => void {
  let carry = "";
  return (chunk) => {
    const lines = (carry + chunk).split("\n");
    carry = lines.pop() ?? "";
    for (const l of lines) process.stdout.write(`${tag} ${l}\n`);
  };
}

async function runVm(
  kernel: KernelId,
  split: boolean,
  tag?: string,
): Promise<Totals & { kernelVersion: string }> {
  // Inside the guest the suite runs as on a ublk-capable host: one file at a time, devices are global.
  const direct = existsSync("/dev/ublk-control");
  const files = vmFilesFor(kernel, split);
  // The driver's feature mask, asked once here rather than by each test file's own `ublk features`.
  const mask = `$(${process.execPath} dist/src/cli/main.js features | sed -n 's/^ublk_drv features: //p')`;
  const splitEnv = split ? "export UBLK_TS_TEST_SPLIT=1; " : "";
  const command = `${splitEnv}export UBLK_TS_TEST_FEATURES=${mask}; ${process.execPath} --test --test-concurrency=1 --test-reporter=spec ${files}`;
  if (direct) {
    return new Promise((resolve) => {
      const child = spawn("bash", ["-c", command], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d;
        process.stdout.write(d);
      });
      child.on("exit", (code) => resolve({ ...totals(out, code === 0), kernelVersion: "this host" }));
    });
  }
  const res = await runInVm({
    command,
    kernel,
    cwd: root,
    timeoutMs: 80 * 60_000,
    onOutput: tag ? prefixed(tag) : (chunk) => process.stdout.write(chunk),
    onBootRetry: (boot, reason) =>
      process.stderr.write(`vm${tag ? ` ${tag}` : ""}: boot ${boot} failed (${reason}); retrying\n`),
  });
  if (res.timedOut) process.stderr.write("vm: the VM test run timed out\n");
  return { ...totals(res.output, res.status === 0), kernelVersion: res.kernelVersion };
}

try {
  ensureHostTools(["test"], { what: "npm test" });
} catch (err) {
  process.stdout.write(`tests: cannot run: ${(err as Error).message}\n`);
  process.exit(1);
}
const all: Totals[] = [];
if (!args.has("--vm-only")) {
  process.stdout.write("== host tests (unit, io_uring) ==\n");
  all.push(await runHost());
}
const perKernel: string[] = [];
if (!args.has("--host-only")) {
  // Inside a ublk-capable machine (the guest itself) there is one kernel: the running one.
  const runKernels = existsSync("/dev/ublk-control") ? kernels.slice(0, 1) : kernels;
  // Several kernels boot side by side (--serial: one after the other): much of a VM test's time is
  // waiting (boots, sleeps, fio's start-up), so two guests on two CPUs take far less than twice one.
  const parallel = runKernels.length > 1 && !args.has("--serial");
  const split = runKernels.length > 1 && !kernelsGiven && picked.length === 0 && !args.has("--every-kernel");
  process.stdout.write(
    `== VM tests (real ublk driver under qemu): Linux ${runKernels.join(" and ")}${parallel ? ", in parallel, lines tagged by kernel" : ""} ==\n`,
  );
  if (split) {
    const where = runKernels.map(
      (k) =>
        `${Object.keys(ONE_KERNEL)
          .filter((n) => ONE_KERNEL[n] === k)
          .join(", ")} on ${k}`,
    );
    process.stdout.write(
      `   target-level files run on one kernel each: ${where.join("; ")} (--every-kernel: all)\n`,
    );
  }
  const results: (Totals & { kernelVersion: string })[] = [];
  if (parallel) results.push(...(await Promise.all(runKernels.map((k) => runVm(k, split, `[${k}]`)))));
  else for (const k of runKernels) results.push(await runVm(k, split));
  for (const t of results) {
    all.push(t);
    perKernel.push(
      `  Linux ${t.kernelVersion}: ${t.pass} pass, ${t.fail} fail, ${t.skipped} skip${t.ok ? "" : " (did not finish)"}`,
    );
  }
}
const pass = all.reduce((n, t) => n + t.pass, 0);
const fail = all.reduce((n, t) => n + t.fail, 0);
const skipped = all.reduce((n, t) => n + t.skipped, 0);
const ok = all.every((t) => t.ok) && fail === 0;
if (perKernel.length) process.stdout.write(`\nVM suite per kernel:\n${perKernel.join("\n")}\n`);
process.stdout.write(`\ntests: ${pass} passed, ${fail} failed, ${skipped} skipped\n`);
if (!ok && fail === 0) process.stdout.write("a test run did not finish: see above\n");
process.exitCode = ok ? 0 : 1;
