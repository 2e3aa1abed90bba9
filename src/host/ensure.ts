// Installs the host tools a command needs on first use, as the VM assets are: with apt-get when
// root, otherwise refused with one line naming what is missing and the command that installs it.
import { spawnSync } from "node:child_process";
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { delimiter, join } from "node:path";
import { spawnFailure } from "./spawn.js";
import { type HostTool, type ToolUse, toolsFor } from "./tools.js";

/** Finds an executable on PATH plus the sbin dirs, which non-login root shells often lack. */
export function findProgram(name: string): string | undefined {
  if (name.startsWith("/")) return existsSync(name) ? name : undefined;
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const d of ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
    if (!dirs.includes(d)) dirs.push(d);
  }
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** True if the ELF file has no PT_INTERP, i.e. it can run in an initramfs without libc. */
export function isStaticElf(path: string): boolean {
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

function usable(t: HostTool, find: (bin: string) => string | undefined): boolean {
  const path = find(t.bin);
  // A dynamically linked busybox cannot be the initramfs's /init.
  return !!path && (t.pkg !== "busybox-static" || isStaticElf(path));
}

/** The tools of these uses that are not installed. */
export function missingTools(uses: readonly ToolUse[], find = findProgram): HostTool[] {
  return toolsFor(uses).filter((t) => !t.optional && !usable(t, find));
}

/** The packages that provide these tools, each once, in list order. */
export function packagesOf(tools: readonly HostTool[]): string[] {
  return [...new Set(tools.map((t) => t.pkg))];
}

export const installCommand = (pkgs: readonly string[]) =>
  `apt-get install -y --no-install-recommends ${pkgs.join(" ")}`;

/** One line: what is missing, for what, and the command that installs it. */
export function missingMessage(tools: readonly HostTool[], what: string): string {
  const names = tools.map((t) => t.bin.slice(t.bin.lastIndexOf("/") + 1));
  return `${what} needs ${names.join(", ")} (not installed); as root run: ${installCommand(packagesOf(tools))}`;
}

/** The VM guest runs the host's root: it can use what the host installed, but not install. */
function inVmGuest(): boolean {
  try {
    return readFileSync("/proc/cmdline", "utf8").includes("ublkvm.run=");
  } catch {
    return false;
  }
}

function apt(args: string[], log: (msg: string) => void): void {
  log(`apt-get ${args.join(" ")}`);
  // Waits for another apt (a concurrent first run) rather than failing on its lock.
  const r = spawnSync("apt-get", ["-o", "DPkg::Lock::Timeout=300", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    encoding: "utf8",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
  const failure = spawnFailure("apt-get", r);
  if (failure) throw new Error(failure);
}

/**
 * Makes sure every tool the given uses need is installed. Root installs what is missing (apt-get
 * update first only if the plain install fails); anyone else gets an Error saying what to run.
 */
export function ensureHostTools(
  uses: readonly ToolUse[],
  opts: { what?: string; log?: (msg: string) => void } = {},
): void {
  const what = opts.what ?? uses.join(" and ");
  const log = opts.log ?? ((m: string) => process.stderr.write(`[tools] ${m}\n`));
  const missing = missingTools(uses);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || inVmGuest() || !findProgram("apt-get")) {
    throw new Error(missingMessage(missing, what));
  }
  const pkgs = packagesOf(missing);
  log(`${what} needs ${missing.map((t) => t.bin).join(", ")}: installing ${pkgs.join(" ")}`);
  const install = ["install", "-y", "-q", "--no-install-recommends", ...pkgs];
  try {
    apt(install, log);
  } catch {
    apt(["update", "-q"], log);
    apt(install, log);
  }
  const still = missingTools(uses);
  if (still.length > 0)
    throw new Error(`apt-get installed ${pkgs.join(" ")} but ${missingMessage(still, what)}`);
}
