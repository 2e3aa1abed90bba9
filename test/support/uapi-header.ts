// Provides the Linux 6.12 <linux/ublk_cmd.h> (from Debian's linux-headers-6.12*-common package)
// so tests can check src/uapi against the real header rather than whatever the host ships.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const DEFAULT_CACHE = "/var/cache/ublk-ts/uapi";
const SERIES = "6.12";

function run(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

// Natural order on the digit runs of a package name: 6.12.117 > 6.12.99.
function compareNatural(a: string, b: string): number {
  const na = a.match(/\d+/g)?.map(Number) ?? [];
  const nb = b.match(/\d+/g)?.map(Number) ?? [];
  for (let i = 0; i < Math.max(na.length, nb.length); i++) {
    const d = (na[i] ?? -1) - (nb[i] ?? -1);
    if (d !== 0) return d;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function searchCommonPackages(): string[] {
  const out = run("apt-cache", ["search", "--names-only", `^linux-headers-${SERIES.replace(".", "\\.")}`]);
  return out
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => /^linux-headers-6\.12\S*-common$/.test(n) && !/-(rt|cloud)\b/.test(n));
}

function pickPackage(): string {
  let names = searchCommonPackages();
  if (names.length === 0) {
    run("apt-get", ["update"]);
    names = searchCommonPackages();
  }
  if (names.length === 0) throw new Error(`no linux-headers-${SERIES}*-common package known to apt`);
  return names.sort(compareNatural)[names.length - 1]!;
}

function findFile(dir: string, suffix: string): string | undefined {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) {
      const hit = findFile(p, suffix);
      if (hit) return hit;
    } else if (p.endsWith(suffix)) {
      return p;
    }
  }
  return undefined;
}

function writableCacheDir(): string {
  const env = process.env["UBLK_TS_UAPI_CACHE"];
  if (env) return env;
  try {
    mkdirSync(DEFAULT_CACHE, { recursive: true });
    return DEFAULT_CACHE;
  } catch {
    // Non-root hosts cannot create /var/cache entries.
    return join(homedir(), ".cache", "ublk-ts", "uapi");
  }
}

/**
 * Returns an include dir in which `<linux/ublk_cmd.h>` is the 6.12 header; other
 * `<linux/...>` includes fall through to the host's /usr/include.
 */
export function ensureUapiHeader(): string {
  const cache = writableCacheDir();
  const incDir = join(cache, "include");
  const target = join(incDir, "linux", "ublk_cmd.h");
  if (existsSync(target)) return incDir;

  let pkg: string;
  try {
    pkg = pickPackage();
  } catch (e) {
    throw new Error(
      `cannot obtain linux-headers-${SERIES}*-common via apt (${(e as Error).message}); ` +
        `need apt-cache/apt-get/dpkg-deb and a Debian ${SERIES} kernel repo, or put the header at ${target}`,
    );
  }
  const work = join(cache, `work-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    run("apt-get", ["download", pkg], work);
    const deb = readdirSync(work).find((f) => f.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${pkg} produced no .deb`);
    run("dpkg-deb", ["-x", join(work, deb), join(work, "x")]);
    const src = findFile(join(work, "x"), "/include/uapi/linux/ublk_cmd.h");
    if (!src) throw new Error(`${pkg} has no include/uapi/linux/ublk_cmd.h`);
    mkdirSync(join(incDir, "linux"), { recursive: true });
    // Copy then rename so concurrent test processes never see a partial file.
    const tmp = `${target}.${process.pid}.tmp`;
    copyFileSync(src, tmp);
    renameSync(tmp, target);
    writeFileSync(join(cache, "SOURCE"), `${pkg}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return incDir;
}
