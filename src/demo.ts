// npm run demo: the main job, end to end. A loop device over a fresh image file, a filesystem on it,
// files written and read back, fio verify, delete, and the same image through the kernel's own loop
// driver. Runs directly where ublk_drv is loaded, otherwise inside the VM harness.
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureHostTools } from "./host/ensure.js";
import { checked } from "./host/spawn.js";

const CLI = fileURLToPath(new URL("./cli/main.js", import.meta.url));
const root = fileURLToPath(new URL("../..", import.meta.url));

/** Runs a program; a failure throws one line with its name, exit status and last stderr lines. */
function sh(cmd: string, args: string[], name = cmd): string {
  return checked(name, spawnSync(cmd, args, { encoding: "utf8", timeout: 300_000 }));
}

const ublk = (...args: string[]) => sh(process.execPath, [CLI, ...args], "ublk");

const sha = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

let failed = false;
async function step<T>(title: string, fn: () => T | Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    const out = await fn();
    const detail = typeof out === "string" && out ? `: ${out}` : "";
    process.stdout.write(`  ok    ${title}${detail} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    return out;
  } catch (err) {
    failed = true;
    process.stdout.write(`  FAIL  ${title}: ${err instanceof Error ? err.message || err.name : err}\n`);
    throw err;
  }
}

async function demo(): Promise<void> {
  const work = mkdtempSync("/tmp/ublk-ts-demo-");
  const image = join(work, "disk.img");
  const mnt = join(work, "mnt");
  mkdirSync(mnt);
  const files = new Map<string, string>();
  let devId = -1;
  let mounted = "";
  let loopDev = "";
  try {
    process.stdout.write("ublk-ts demo: a TypeScript-served block device, end to end\n");
    await step("create a 256 MiB image file", () => {
      sh("truncate", ["-s", "256M", image]);
      return image;
    });
    devId = await step("ublk add -t loop (device LIVE, served by TypeScript)", () => {
      const out = ublk("add", "-t", "loop", "-q", "2", image);
      const id = Number(/^dev id (\d+)/.exec(out)?.[1] ?? Number.NaN);
      if (!Number.isInteger(id)) throw new Error(`unexpected output: ${out}`);
      return id;
    });
    const dev = `/dev/ublkb${devId}`;
    spawnSync("modprobe", ["ext4"]);
    await step(`mkfs.ext4 ${dev}`, () => void sh("mkfs.ext4", ["-q", "-F", dev]));
    await step(`mount ${dev}`, () => {
      sh("mount", [dev, mnt]);
      mounted = mnt;
    });
    await step("write 8 files of random data", () => {
      for (let i = 0; i < 8; i++) {
        const name = `file${i}.bin`;
        const data = randomBytes((i + 1) * 512 * 1024);
        writeFileSync(join(mnt, name), data);
        files.set(name, createHash("sha256").update(data).digest("hex"));
      }
      sh("sync", []);
      return `${[...files.keys()].length} files`;
    });
    await step("remount and read them back: checksums match", () => {
      sh("umount", [mnt]);
      sh("mount", [dev, mnt]);
      for (const [name, sum] of files) if (sha(join(mnt, name)) !== sum) throw new Error(`${name} differs`);
      return "all equal";
    });
    await step("fio: 5 s random writes with crc32c verify", () => {
      const out = sh("fio", [
        "--name=verify",
        `--filename=${join(mnt, "fio.dat")}`,
        "--size=32M",
        "--rw=randwrite",
        "--bs=4k",
        "--direct=1",
        "--ioengine=io_uring",
        "--iodepth=16",
        "--verify=crc32c",
        "--time_based",
        "--runtime=5",
        "--output-format=json",
      ]);
      const job = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
      if (job.error !== 0) throw new Error(`fio error ${job.error}`);
      return `${Math.round(job.write.iops)} write IOPS, verify clean`;
    });
    await step("unmount and fsck.ext4 -fn: clean", () => {
      sh("umount", [mnt]);
      mounted = "";
      sh("fsck.ext4", ["-fn", dev]);
    });
    await step(`ublk del -n ${devId}: device gone`, () => {
      ublk("del", "-n", String(devId));
      if (existsSync(dev)) throw new Error(`${dev} still exists`);
      devId = -1;
    });
    await step("the image through the kernel's loop driver shows the same files", () => {
      loopDev = sh("losetup", ["-f", "--show", "-r", image]).trim();
      sh("mount", ["-o", "ro", loopDev, mnt]);
      mounted = mnt;
      for (const [name, sum] of files) if (sha(join(mnt, name)) !== sum) throw new Error(`${name} differs`);
      return `${loopDev}: ${files.size} files equal`;
    });
  } finally {
    if (mounted) spawnSync("umount", [mounted]);
    if (loopDev) spawnSync("losetup", ["-d", loopDev]);
    if (devId >= 0) spawnSync(process.execPath, [CLI, "del", "-n", String(devId)]);
    rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  if (!existsSync("/dev/ublk-control") && !process.env.UBLK_TS_IN_VM) {
    spawnSync("modprobe", ["ublk_drv"], { stdio: "ignore" });
  }
  try {
    // Everything the demo spawns, here or in the VM (which runs this machine's programs), and the
    // VM's own tools when it needs one: a single apt-get on a fresh machine.
    const vm = !existsSync("/dev/ublk-control") && !process.env.UBLK_TS_IN_VM;
    ensureHostTools(vm ? ["demo", "vm"] : ["demo"], { what: "the demo" });
  } catch (err) {
    process.stdout.write(`  FAIL  host tools: ${(err as Error).message}\ndemo FAILED\n`);
    return 1;
  }
  if (existsSync("/dev/ublk-control")) {
    try {
      await demo();
    } catch {
      // the failing step has been printed
    }
    process.stdout.write(failed ? "demo FAILED\n" : "demo passed\n");
    return failed ? 1 : 0;
  }
  process.stdout.write("no ublk driver on this kernel: running the demo in the VM (Linux 6.12 under qemu)\n");
  const { runInVm } = await import("./vm/index.js");
  const res = await runInVm({
    command: `UBLK_TS_IN_VM=1 ${process.execPath} dist/src/demo.js`,
    cwd: root,
    onOutput: (c) => process.stdout.write(c),
    onBootRetry: (boot, reason) => process.stderr.write(`vm: boot ${boot} failed (${reason}); retrying\n`),
  });
  return res.status;
}

process.exitCode = await main().catch((err: unknown) => {
  // e.g. the VM could not be provisioned or booted: one line, not a stack
  process.stdout.write(`demo FAILED: ${err instanceof Error ? err.message || err.name : String(err)}\n`);
  return 1;
});
