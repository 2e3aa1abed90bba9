import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { run, shq, which } from "./exec.js";
import { GUEST_INIT } from "./guest-init.js";

/** Modules the guest loads at boot (plus their dependencies); built-ins are skipped. */
export const GUEST_MODULES = [
  "virtio_pci",
  "netfs",
  "9pnet",
  "9pnet_virtio",
  "9p",
  "configfs",
  "ublk_drv",
  "null_blk",
  "loop",
  "brd",
  "nbd",
];

/**
 * Packed but loaded on demand (mount autoloads them via the kernel's modprobe, or modprobe them):
 * under TCG inserting ext4 takes ~1.5 s and xfs ~3 s against a ~6 s boot. Kernel arg
 * ublkvm.load=ext4,xfs loads them at boot. btrfs and f2fs mount zoned devices; dm_mod serves
 * dmsetup (dm-stripe, the kernel's own striping).
 */
export const ON_DEMAND_MODULES = ["ext4", "xfs", "btrfs", "f2fs", "dm_mod"];

/** Bump when the layout changes in a way the hash below does not see. */
const FORMAT = 1;

export function initramfsKey(): string {
  const h = createHash("sha256").update(
    `${FORMAT}\n${GUEST_MODULES.join(" ")}\n${ON_DEMAND_MODULES.join(" ")}\n${GUEST_INIT}`,
  );
  return h.digest("hex").slice(0, 16);
}

const modName = (path: string) =>
  basename(path)
    .replace(/\.ko(\.xz|\.gz|\.zst)?$/, "")
    .replace(/-/g, "_");

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : [];
}

/** Module names in load order (dependencies and "pre:" softdeps first) with their paths. */
export function resolveModules(modDir: string, wanted: string[]): { name: string; path: string }[] {
  const paths = new Map<string, string>();
  const deps = new Map<string, string[]>();
  for (const l of lines(join(modDir, "modules.dep"))) {
    const [path, rest = ""] = l.split(":");
    paths.set(modName(path), path);
    deps.set(modName(path), rest.split(" ").filter(Boolean).map(modName));
  }
  const builtin = new Set(lines(join(modDir, "modules.builtin")).map(modName));
  const aliases = new Map<string, string[]>();
  for (const l of lines(join(modDir, "modules.alias"))) {
    const [, alias, mod] = l.split(" ");
    if (alias && mod && !/[*?[]/.test(alias)) aliases.set(alias, [...(aliases.get(alias) ?? []), mod]);
  }
  const soft = new Map<string, { pre: string[]; post: string[] }>();
  for (const l of lines(join(modDir, "modules.softdep"))) {
    const words = l.split(/\s+/);
    if (words[0] !== "softdep" || !words[1]) continue;
    const entry = { pre: [] as string[], post: [] as string[] };
    let list: string[] | undefined;
    for (const w of words.slice(2)) {
      if (w === "pre:") list = entry.pre;
      else if (w === "post:") list = entry.post;
      else list?.push(w);
    }
    soft.set(modName(words[1]), entry);
  }
  // A softdep may name a module or an alias (ext4 wants "crc32c", provided by several drivers).
  const lookup = (n: string) => (paths.has(modName(n)) ? [modName(n)] : (aliases.get(n) ?? []));

  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name) || builtin.has(name) || !paths.has(name)) return;
    seen.add(name);
    for (const d of deps.get(name) ?? []) visit(d);
    for (const s of soft.get(name)?.pre ?? []) lookup(s).forEach(visit);
    order.push(name);
    for (const s of soft.get(name)?.post ?? []) lookup(s).forEach(visit);
  };
  for (const w of wanted) {
    if (!builtin.has(w) && !paths.has(w)) throw new Error(`kernel module ${w} not found in ${modDir}`);
    visit(w);
  }
  return order.map((name) => ({ name, path: paths.get(name)! }));
}

/** Builds a newc cpio (uncompressed: TCG is slow at inflating) with busybox, /init and the modules. */
export async function buildInitramfs(modDir: string, kver: string, out: string): Promise<void> {
  // Debian's kernel .debs ship no modules.dep (postinst runs depmod); make our own. depmod wants
  // <base>/lib/modules/<kver>, so point it at a scratch base whose lib/modules links to the tree.
  if (!existsSync(join(modDir, "modules.dep"))) {
    const base = `${out}.depmod`;
    rmSync(base, { recursive: true, force: true });
    mkdirSync(join(base, "lib/modules"), { recursive: true });
    symlinkSync(modDir, join(base, "lib/modules", kver));
    try {
      await run("depmod", ["-b", base, kver]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }
  const boot = resolveModules(modDir, GUEST_MODULES);
  const bootNames = new Set(boot.map((m) => m.name));
  const mods = [...boot, ...resolveModules(modDir, ON_DEMAND_MODULES).filter((m) => !bootNames.has(m.name))];

  const stage = `${out}.d`;
  rmSync(stage, { recursive: true, force: true });
  const sMod = join(stage, "lib/modules", kver);
  for (const d of ["bin", "etc/ublk-vm", "dev", "proc", "sys"])
    mkdirSync(join(stage, d), { recursive: true });
  mkdirSync(sMod, { recursive: true });
  const busybox = which("busybox");
  if (!busybox) throw new Error("busybox not found");
  copyFileSync(busybox, join(stage, "bin/busybox"));
  chmodSync(join(stage, "bin/busybox"), 0o755);
  await writeFile(join(stage, "init"), GUEST_INIT, { mode: 0o755 });

  const compressed: string[] = [];
  for (const m of mods) {
    const dst = join(sMod, m.path);
    mkdirSync(dirname(dst), { recursive: true });
    copyFileSync(join(modDir, m.path), dst);
    if (m.path.endsWith(".xz")) compressed.push(dst);
    else if (!m.path.endsWith(".ko")) throw new Error(`unsupported module compression: ${m.path}`);
  }
  if (compressed.length) await run("xz", ["-d", ...compressed]);
  for (const f of ["modules.builtin", "modules.builtin.modinfo", "modules.order"]) {
    if (existsSync(join(modDir, f))) copyFileSync(join(modDir, f), join(sMod, f));
  }
  // Indexes over the .ko files as staged: busybox and the chroot's kmod both read them.
  await run("depmod", ["-b", stage, kver]);
  const list = boot.map((m) => `${m.name} ${m.path.replace(/\.xz$/, "")}\n`).join("");
  await writeFile(join(stage, "etc/ublk-vm/modules"), list);

  const pack = `cd ${shq(stage)} && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > ${shq(`${out}.tmp`)}`;
  await run("sh", ["-c", pack]);
  renameSync(`${out}.tmp`, out);
  rmSync(stage, { recursive: true, force: true });
  const lazy = mods.filter((m) => !bootNames.has(m.name)).map((m) => m.name);
  process.stderr.write(`[vm] initramfs modules: ${[...bootNames].join(" ")}; on demand: ${lazy.join(" ")}\n`);
}
