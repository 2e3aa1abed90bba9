#!/usr/bin/env node
import { shq } from "./exec.js";
import { DEFAULT_KERNEL, type KernelId, parseKernelId } from "./kernels.js";
import { ensureVmAssets } from "./provision.js";
import { runInVm } from "./run.js";

const USAGE =
  "usage: npm run vm -- [--kernel 6.12|7.3] [--provision] [--timeout=SEC] [--mem=MIB] [--cpus=N] [--append=KERNEL_ARGS] [--] <command...>";

/** Host variables worth seeing in the guest; everything else stays out. */
const PASS_ENV = /^(CI|NO_COLOR|FORCE_COLOR|NODE_OPTIONS|DEBUG|UBLK_(?!TS_VM_).*)$/;

async function main(argv: string[]): Promise<number> {
  let provision = false;
  let timeoutMs: number | undefined;
  let memoryMiB: number | undefined;
  let cpus: number | undefined;
  let kernelArgs: string | undefined;
  let kernel: KernelId = DEFAULT_KERNEL;
  let i = 0;
  for (; i < argv.length && argv[i].startsWith("--"); i++) {
    if (argv[i] === "--") {
      i++;
      break;
    }
    const eq = argv[i].indexOf("=");
    const key = eq < 0 ? argv[i] : argv[i].slice(0, eq);
    const val = eq < 0 ? "" : argv[i].slice(eq + 1);
    if (key === "--provision") provision = true;
    else if (key === "--kernel") kernel = parseKernelId(eq < 0 ? (argv[++i] ?? "") : val);
    else if (key === "--timeout") timeoutMs = Number(val) * 1000;
    else if (key === "--mem") memoryMiB = Number(val);
    else if (key === "--cpus") cpus = Number(val);
    else if (key === "--append") kernelArgs = val;
    else {
      process.stderr.write(`${USAGE}\n`);
      return 2;
    }
  }
  const rest = argv.slice(i);
  if (provision) {
    const a = await ensureVmAssets(kernel);
    process.stderr.write(`[vm] kernel ${a.kernelVersion}: ${a.kernel}\n[vm] initramfs: ${a.initramfs}\n`);
    return 0;
  }
  if (rest.length === 0) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  // One argument is a shell command line; several are an argv to keep intact.
  const command = rest.length === 1 ? rest[0] : rest.map(shq).join(" ");
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && PASS_ENV.test(k)) env[k] = v;
  const r = await runInVm({
    command,
    kernel,
    cwd: process.env.INIT_CWD || process.cwd(),
    env,
    timeoutMs,
    memoryMiB,
    cpus,
    kernelArgs,
    onOutput: (s) => process.stdout.write(s),
    onBootRetry: (n, why) => process.stderr.write(`[vm] boot ${n} failed (${why}); booting again\n`),
  });
  return r.status < 0 ? 1 : r.status;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`[vm] ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
