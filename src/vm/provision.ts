import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ensureHostTools } from "../host/ensure.js";
import { run } from "./exec.js";
import { buildInitramfs, initramfsKey } from "./initramfs.js";
import { extractVmlinux } from "./vmlinux.js";

export interface VmAssets {
  kernel: string;
  initramfs: string;
  kernelVersion: string;
}

interface Manifest extends VmAssets {
  package: string;
  packageVersion: string;
  /** Extracted kernel package (boot/, lib/modules/). */
  root: string;
  /** Changes with anything derived from the package; a mismatch rebuilds kernel image and initramfs. */
  key: string;
}

/** Bump when derived assets change in a way initramfsKey() does not see. */
const ASSETS_FORMAT = 2;
const assetsKey = () => `${ASSETS_FORMAT}:${initramfsKey()}`;

const KERNEL_RE = /^linux-image-6\.12\.(\d+)\+deb12-amd64-unsigned$/;
/** The same for apt's POSIX regex, which has no \d; excludes the -rt- and -cloud- flavours. */
const KERNEL_APT_RE = "^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64-unsigned$";

export function cacheDir(): string {
  return process.env.UBLK_TS_VM_CACHE || "/var/cache/ublk-ts/vm";
}

function log(msg: string): void {
  process.stderr.write(`[vm] ${msg}\n`);
}

async function ensureHostPackages(): Promise<void> {
  ensureHostTools(["vm"], { what: "the VM harness", log });
}

async function findKernelPackage(): Promise<string> {
  const search = async () =>
    (await run("apt-cache", ["search", "--names-only", KERNEL_APT_RE])).stdout
      .split("\n")
      .map((l) => l.split(" ")[0])
      .filter((n) => KERNEL_RE.test(n));
  let names = await search();
  if (names.length === 0) {
    log("no 6.12 kernel package known to apt; apt-get update");
    await run("apt-get", ["update"], { passthrough: true });
    names = await search();
  }
  if (names.length === 0) throw new Error("no package matches linux-image-6.12.*+deb12-amd64-unsigned");
  const patch = (n: string) => Number(KERNEL_RE.exec(n)![1]);
  return names.sort((a, b) => patch(a) - patch(b)).at(-1)!;
}

/** Downloads and unpacks the kernel package; returns the extracted tree and versions. */
async function fetchKernel(dir: string): Promise<Omit<Manifest, "kernel" | "initramfs" | "key">> {
  const pkg = await findKernelPackage();
  const dl = join(dir, "download");
  rmSync(dl, { recursive: true, force: true });
  mkdirSync(dl, { recursive: true });
  log(`apt-get download ${pkg} (into ${dl})`);
  // As root apt drops to user _apt, who cannot write our cache dir; it would warn and carry on.
  const asRoot = process.getuid?.() === 0 ? ["-o", "APT::Sandbox::User=root"] : [];
  await run("apt-get", [...asRoot, "download", pkg], { cwd: dl, passthrough: true });
  const deb = readdirSync(dl).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
  if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb in ${dl}`);
  const packageVersion = (await run("dpkg-deb", ["-f", join(dl, deb), "Version"])).stdout.trim();
  const tmp = join(dl, "root");
  log(`dpkg-deb -x ${deb}`);
  await run("dpkg-deb", ["-x", join(dl, deb), tmp]);
  const kernelVersion = readdirSync(join(tmp, "lib/modules"))[0];
  if (!kernelVersion) throw new Error(`${deb} has no lib/modules/<version>`);
  const root = join(dir, `linux-${kernelVersion}`);
  rmSync(root, { recursive: true, force: true });
  renameSync(tmp, root);
  rmSync(dl, { recursive: true, force: true });
  if (!existsSync(join(root, "boot", `vmlinuz-${kernelVersion}`))) {
    throw new Error(`${deb} has no boot/vmlinuz-${kernelVersion}`);
  }
  return { package: pkg, packageVersion, kernelVersion, root };
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
 * Makes sure the host tools, the kernel and the initramfs exist; cheap when all are cached.
 * Set UBLK_TS_VM_REFRESH=1 to look for a newer kernel package.
 */
export async function ensureVmAssets(): Promise<VmAssets> {
  await ensureHostPackages();
  const dir = cacheDir();
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
    const k = reuse ? old : await fetchKernel(dir);
    const vmlinuz = join(k.root, "boot", `vmlinuz-${k.kernelVersion}`);
    const vmlinux = join(k.root, "boot", `vmlinux-${k.kernelVersion}`);
    const pvh = existsSync(vmlinux) || extractVmlinux(vmlinuz, vmlinux);
    if (!pvh) log("no PVH vmlinux could be unpacked; booting the bzImage (about 2 s slower)");
    const initramfs = join(dir, `initramfs-${k.kernelVersion}.cpio`);
    log(`building ${initramfs}`);
    await buildInitramfs(k.root, k.kernelVersion, initramfs);
    const m: Manifest = {
      package: k.package,
      packageVersion: k.packageVersion,
      kernelVersion: k.kernelVersion,
      kernel: pvh ? vmlinux : vmlinuz,
      root: k.root,
      initramfs,
      key: assetsKey(),
    };
    await writeFile(`${manifestPath}.tmp`, `${JSON.stringify(m, null, 2)}\n`);
    renameSync(`${manifestPath}.tmp`, manifestPath);
    if (old && old.root !== m.root) {
      // a newer kernel replaced it; drop the stale tree and image
      rmSync(old.root, { recursive: true, force: true });
      rmSync(old.initramfs, { force: true });
    }
    log(`VM assets ready: ${m.package} ${m.packageVersion}`);
    return pick(m);
  });
}

function pick(m: Manifest): VmAssets {
  return { kernel: m.kernel, initramfs: m.initramfs, kernelVersion: m.kernelVersion };
}
