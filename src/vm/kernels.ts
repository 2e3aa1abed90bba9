// The kernels the harness boots: Debian builds of two ublk drivers, old and new. ublk-ts itself picks
// its data paths by what GET_FEATURES reports; these exist so that both drivers get tested.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  aptCacheRoot,
  aptDownload,
  aptFindPackages,
  compareNatural,
  debExtract,
  debVersion,
  type Suite,
} from "./debian-apt.js";

export const KERNEL_IDS = ["6.12", "7.3"] as const;
export type KernelId = (typeof KERNEL_IDS)[number];
export const DEFAULT_KERNEL: KernelId = "6.12";

interface KernelSeries {
  id: KernelId;
  suite: Suite;
  /** For apt-cache search (POSIX regex). */
  aptRegex: string;
  /** The package naming a build; group 1 is its ABI name ("6.12.117+deb12"). */
  imageRe: RegExp;
  /** Everything a boot tree needs: image, modules, modules.builtin. */
  packages(abi: string): string[];
}

const SERIES: Record<KernelId, KernelSeries> = {
  "6.12": {
    id: "6.12",
    suite: "host",
    aptRegex: "^linux-image-6\\.12\\.[0-9]+\\+deb12-amd64-unsigned$",
    imageRe: /^linux-image-(6\.12\.\d+\+deb12)-amd64-unsigned$/,
    packages: (abi) => [`linux-image-${abi}-amd64-unsigned`],
  },
  // Debian 13 splits a kernel into the image, its modules and linux-base (modules.builtin...).
  "7.3": {
    id: "7.3",
    suite: "trixie-backports",
    aptRegex: "^linux-binary-unsigned-7\\.[0-9]+\\.[0-9]+\\+deb13-amd64$",
    imageRe: /^linux-binary-unsigned-(7\.\d+\.\d+\+deb13)-amd64$/,
    packages: (abi) => [
      `linux-binary-unsigned-${abi}-amd64`,
      `linux-modules-${abi}-amd64`,
      `linux-base-${abi}-amd64`,
    ],
  },
};

export function parseKernelId(s: string): KernelId {
  const id = KERNEL_IDS.find((k) => k === s);
  if (!id) throw new Error(`unknown kernel '${s}': use one of ${KERNEL_IDS.join(", ")}`);
  return id;
}

/**
 * The newest build of the series known to apt. A series "7.3" takes the newest 7.3.x; when the
 * suite has moved past it, the newest 7.x, said in the log.
 */
export async function findKernelBuild(id: KernelId, log: (s: string) => void): Promise<string> {
  const s = SERIES[id];
  const abis = (await aptFindPackages(s.suite, s.aptRegex, s.imageRe, log))
    .map((n) => s.imageRe.exec(n)![1])
    .sort(compareNatural);
  if (abis.length === 0) throw new Error(`no Debian kernel package for Linux ${id} (${s.aptRegex})`);
  const exact = abis.filter((a) => a.startsWith(`${id}.`));
  if (exact.length === 0) log(`no ${id}.x build in ${s.suite}; taking ${abis.at(-1)}`);
  return (exact.length ? exact : abis).at(-1)!;
}

export interface KernelTree {
  /** ABI name, e.g. 6.12.117+deb12 */
  abi: string;
  /** uname -r, e.g. 6.12.117+deb12-amd64 */
  kernelVersion: string;
  /** Debian version of the image package. */
  packageVersion: string;
  packages: string[];
  root: string;
  /** The directory holding modules.builtin and kernel/. */
  modDir: string;
  /** The compressed boot image (bzImage). */
  vmlinuz: string;
}

/** Where a boot tree keeps its modules and image: /lib (Debian 12) or /usr/lib (Debian 13). */
export function locateTree(root: string): Omit<KernelTree, "abi" | "packageVersion" | "packages"> {
  for (const base of ["lib/modules", "usr/lib/modules"]) {
    const dir = join(root, base);
    if (!existsSync(dir)) continue;
    const kernelVersion = readdirSync(dir).find((v) => existsSync(join(dir, v, "kernel")));
    if (!kernelVersion) continue;
    const modDir = join(dir, kernelVersion);
    const vmlinuz = [join(root, "boot", `vmlinuz-${kernelVersion}`), join(modDir, "vmlinuz.unsigned")].find(
      existsSync,
    );
    if (!vmlinuz) throw new Error(`no kernel image for ${kernelVersion} in ${root}`);
    return { kernelVersion, root, modDir, vmlinuz };
  }
  throw new Error(`no lib/modules/<version>/kernel in ${root}`);
}

/** Downloads and unpacks one build of the series into `dir`/linux-<abi>. */
export async function fetchKernelTree(
  id: KernelId,
  dir: string,
  log: (s: string) => void,
): Promise<KernelTree> {
  const s = SERIES[id];
  const abi = await findKernelBuild(id, log);
  const packages = s.packages(abi);
  const dl = join(dir, "download");
  rmSync(dl, { recursive: true, force: true });
  log(`apt-get download ${packages.join(" ")}`);
  const debs = await aptDownload(s.suite, packages, dl);
  const packageVersion = await debVersion(debs[0]);
  const tmp = join(dl, "root");
  for (const deb of debs) await debExtract(deb, tmp);
  const root = join(dir, `linux-${abi}`);
  rmSync(root, { recursive: true, force: true });
  renameSync(tmp, root);
  rmSync(dl, { recursive: true, force: true });
  return { abi, packageVersion, packages, ...locateTree(root) };
}

/**
 * An include dir whose <linux/ublk_cmd.h> is the one of this kernel series (from Debian's
 * linux-headers-<abi>-common); other <linux/...> includes fall through to the host's /usr/include.
 */
export async function ensureUblkHeader(id: KernelId, log: (s: string) => void = () => {}): Promise<string> {
  const cache = join(aptCacheRoot(), "..", "uapi", id);
  const incDir = join(cache, "include");
  const target = join(incDir, "linux", "ublk_cmd.h");
  if (existsSync(target)) return incDir;
  const abi = await findKernelBuild(id, log);
  const pkg = `linux-headers-${abi}-common`;
  const work = join(cache, `work-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  try {
    const [deb] = await aptDownload(SERIES[id].suite, [pkg], work);
    await debExtract(deb, join(work, "x"));
    const src = join(work, "x", "usr/src", `linux-headers-${abi}-common`, "include/uapi/linux/ublk_cmd.h");
    if (!existsSync(src)) throw new Error(`${pkg} has no include/uapi/linux/ublk_cmd.h`);
    mkdirSync(join(incDir, "linux"), { recursive: true });
    // Rename into place so concurrent test processes never see a partial file.
    renameSync(src, `${target}.${process.pid}.tmp`);
    renameSync(`${target}.${process.pid}.tmp`, target);
    writeFileSync(join(cache, "SOURCE"), `${pkg}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return incDir;
}
