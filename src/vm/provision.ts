import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
} from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, which } from "./exec.js";
import { buildInitramfs, initramfsKey } from "./initramfs.js";
import { DEFAULT_KERNEL, fetchKernelTree, type KernelId, locateTree } from "./kernels.js";
import { extractVmlinux } from "./vmlinux.js";

export interface VmAssets {
  kernel: string;
  initramfs: string;
  kernelVersion: string;
  series: KernelId;
}

interface Manifest extends VmAssets {
  packages: string[];
  packageVersion: string;
  /** Extracted kernel packages (boot/ or usr/lib/modules/). */
  root: string;
  /** Changes with anything derived from the package; a mismatch rebuilds kernel image and initramfs. */
  key: string;
}

/** Bump when derived assets change in a way initramfsKey() does not see. */
const ASSETS_FORMAT = 3;
const assetsKey = () => `${ASSETS_FORMAT}:${initramfsKey()}`;

/** Host tools the VM needs, by the Debian package providing them. */
const HOST_PACKAGES: { pkg: string; bin: string }[] = [
  { pkg: "qemu-system-x86", bin: "qemu-system-x86_64" },
  { pkg: "busybox-static", bin: "busybox" },
  { pkg: "cpio", bin: "cpio" },
  { pkg: "xz-utils", bin: "xz" },
  // depmod builds module indexes (the kernel .deb ships none); modprobe/lsmod serve the guest's chroot.
  { pkg: "kmod", bin: "depmod" },
  // unpacks vmlinux from the zstd bzImage so qemu can boot it directly (PVH)
  { pkg: "zstd", bin: "zstd" },
];

export function cacheDir(): string {
  return process.env.UBLK_TS_VM_CACHE || "/var/cache/ublk-ts/vm";
}

function log(msg: string): void {
  process.stderr.write(`[vm] ${msg}\n`);
}

/** True if the ELF file has no PT_INTERP, i.e. it can run in an initramfs without libc. */
function isStaticElf(path: string): boolean {
  const buf = Buffer.alloc(8192);
  const fd = openSync(path, "r");
  try {
    readSync(fd, buf, 0, buf.length, 0);
  } finally {
    closeSync(fd);
  }
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2) return false;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    if (off + 4 > buf.length) return false;
    if (buf.readUInt32LE(off) === 3) return false; // PT_INTERP
  }
  return true;
}

async function ensureHostPackages(): Promise<void> {
  const missing = HOST_PACKAGES.filter(({ pkg, bin }) => {
    const path = which(bin);
    return !path || (pkg === "busybox-static" && !isStaticElf(path));
  }).map((p) => p.pkg);
  if (missing.length === 0) return;
  const cmd = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (process.getuid?.() !== 0) throw new Error(`VM host tools missing; as root run: ${cmd}`);
  log(cmd);
  const args = ["install", "-y", "--no-install-recommends", ...missing];
  if ((await run("apt-get", args, { passthrough: true, allowFail: true })).code !== 0) {
    log("apt-get update");
    await run("apt-get", ["update"], { passthrough: true });
    await run("apt-get", args, { passthrough: true });
  }
}

/** Serializes provisioning between processes: a lock directory holding the owner's pid. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, ".lock");
  for (let waited = 0; ; waited += 500) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      let pid = 0;
      try {
        pid = Number(readFileSync(join(lock, "pid"), "utf8"));
      } catch {
        // owner has not written its pid yet
      }
      let alive = true;
      if (pid > 0) {
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
      }
      if (!alive || waited > 30 * 60_000) rmSync(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    await writeFile(join(lock, "pid"), String(process.pid));
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

function readManifest(path: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Manifest;
  } catch {
    return undefined;
  }
}

/**
 * Makes sure the host tools, the kernel and its initramfs exist; cheap when all are cached. Each
 * kernel series has its own directory under the cache. UBLK_TS_VM_REFRESH=1 looks for a newer build.
 */
export async function ensureVmAssets(id: KernelId = DEFAULT_KERNEL): Promise<VmAssets> {
  await ensureHostPackages();
  const dir = join(cacheDir(), id);
  const manifestPath = join(dir, "manifest.json");
  // A plain boolean, not a type guard: false must not narrow a manifest away.
  const valid = (m: Manifest | undefined): boolean =>
    !!m &&
    existsSync(m.kernel) &&
    existsSync(m.initramfs) &&
    m.key === assetsKey() &&
    !process.env.UBLK_TS_VM_REFRESH;
  const cached = readManifest(manifestPath);
  if (cached && valid(cached)) return pick(cached);
  mkdirSync(dir, { recursive: true });
  return withLock(dir, async () => {
    const old = readManifest(manifestPath);
    if (old && valid(old)) return pick(old); // another process finished meanwhile
    const reuse = old && existsSync(old.root) && !process.env.UBLK_TS_VM_REFRESH;
    const k = reuse
      ? { ...locateTree(old.root), packageVersion: old.packageVersion, packages: old.packages }
      : await fetchKernelTree(id, dir, log);
    const vmlinux = join(dir, `vmlinux-${k.kernelVersion}`);
    const pvh = existsSync(vmlinux) || extractVmlinux(k.vmlinuz, vmlinux);
    if (!pvh) log("no PVH vmlinux could be unpacked; booting the bzImage (about 2 s slower)");
    const initramfs = join(dir, `initramfs-${k.kernelVersion}.cpio`);
    log(`building ${initramfs}`);
    await buildInitramfs(k.modDir, k.kernelVersion, initramfs);
    const m: Manifest = {
      series: id,
      packages: k.packages,
      packageVersion: k.packageVersion,
      kernelVersion: k.kernelVersion,
      kernel: pvh ? vmlinux : k.vmlinuz,
      root: k.root,
      initramfs,
      key: assetsKey(),
    };
    await writeFile(`${manifestPath}.tmp`, `${JSON.stringify(m, null, 2)}\n`);
    renameSync(`${manifestPath}.tmp`, manifestPath);
    if (old && old.root !== m.root) {
      // a newer kernel replaced it; drop the stale tree and images
      rmSync(old.root, { recursive: true, force: true });
      rmSync(old.initramfs, { force: true });
      if (old.kernel !== m.kernel) rmSync(old.kernel, { force: true });
    }
    log(`VM assets ready: Linux ${m.kernelVersion} (${m.packages.join(" ")} ${m.packageVersion})`);
    return pick(m);
  });
}

function pick(m: Manifest): VmAssets {
  return { kernel: m.kernel, initramfs: m.initramfs, kernelVersion: m.kernelVersion, series: m.series };
}
