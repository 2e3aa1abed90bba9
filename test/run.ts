// The project's test command: host tests (pure units and io_uring on this kernel) directly, then the
// tests that need the ublk driver inside the VM harness, booted once. Prints one closing total.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ensureHostTools } from "../src/host/ensure.js";
import { runInVm } from "../src/vm/index.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const args = new Set(process.argv.slice(2).filter((a) => a.startsWith("--")));
// Any other arguments pick VM test files by name: `npm run test:vm -- recovery lifecycle`.
const picked = process.argv.slice(2).filter((a) => !a.startsWith("--"));
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

async function runVm(): Promise<Totals> {
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
      child.on("exit", (code) => resolve(totals(out, code === 0)));
    });
  }
  const res = await runInVm({
    command,
    cwd: root,
    timeoutMs: 80 * 60_000,
    onOutput: (chunk) => process.stdout.write(chunk),
    onBootRetry: (boot, reason) => process.stderr.write(`vm: boot ${boot} failed (${reason}); retrying\n`),
  });
  if (res.timedOut) process.stderr.write("vm: the VM test run timed out\n");
  return totals(res.output, res.status === 0);
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
if (!args.has("--host-only")) {
  process.stdout.write("== VM tests (real ublk driver, Linux 6.12 under qemu) ==\n");
  all.push(await runVm());
}
const pass = all.reduce((n, t) => n + t.pass, 0);
const fail = all.reduce((n, t) => n + t.fail, 0);
const skipped = all.reduce((n, t) => n + t.skipped, 0);
const ok = all.every((t) => t.ok) && fail === 0;
process.stdout.write(`\ntests: ${pass} passed, ${fail} failed, ${skipped} skipped\n`);
if (!ok && fail === 0) process.stdout.write("a test run did not finish: see above\n");
process.exitCode = ok ? 0 : 1;
