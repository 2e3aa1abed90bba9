// The project's test command: host tests (pure units and io_uring on this kernel) directly, then the
// tests that need the ublk driver inside the VM harness, booted once. Prints one closing total.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { runInVm } from "../src/vm/index.js";
import { KERNEL_IDS, type KernelId, parseKernelId } from "../src/vm/kernels.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
// --kernel K (repeatable) picks the kernels of the VM suite, default all; any other plain arguments
// pick VM test files by name: `npm run test:vm -- --kernel 7.3 recovery lifecycle`.
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
if (kernels.length === 0) kernels.push(...KERNEL_IDS);
const vmFiles =
  picked.length === 0
    ? "dist/test/vm/"
    : picked.map((p) => `dist/test/vm/${p.replace(/(\.test)?\.[jt]s$/, "")}.test.js`).join(" ");

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

async function runVm(kernel: KernelId): Promise<Totals & { kernelVersion: string }> {
  // Inside the guest the suite runs as on a ublk-capable host: one file at a time, devices are global.
  const direct = existsSync("/dev/ublk-control");
  const command = `${process.execPath} --test --test-concurrency=1 --test-reporter=spec ${vmFiles}`;
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
    onOutput: (chunk) => process.stdout.write(chunk),
    onBootRetry: (boot, reason) => process.stderr.write(`vm: boot ${boot} failed (${reason}); retrying\n`),
  });
  if (res.timedOut) process.stderr.write("vm: the VM test run timed out\n");
  return { ...totals(res.output, res.status === 0), kernelVersion: res.kernelVersion };
}

const all: Totals[] = [];
if (!args.has("--vm-only")) {
  process.stdout.write("== host tests (unit, io_uring) ==\n");
  all.push(await runHost());
}
const perKernel: string[] = [];
if (!args.has("--host-only")) {
  // Inside a ublk-capable machine (the guest itself) there is one kernel: the running one.
  for (const k of existsSync("/dev/ublk-control") ? kernels.slice(0, 1) : kernels) {
    process.stdout.write(`== VM tests (real ublk driver, Linux ${k} under qemu) ==\n`);
    const t = await runVm(k);
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
