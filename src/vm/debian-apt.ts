// Debian packages for the VM harness and the UAPI tests, fetched with the ordinary apt client.
// Packages of the host's own release come through the host's apt configuration as it is. Packages of
// another suite (trixie-backports, for Linux 7.x) go through a private sources list with private
// list and cache dirs, so the host's apt setup is never touched.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./exec.js";

/** "host": the host's configured sources; anything else: that suite of the host's Debian mirror. */
export type Suite = "host" | "trixie-backports";

export function aptCacheRoot(): string {
  return process.env.UBLK_TS_APT_CACHE || "/var/cache/ublk-ts/apt";
}

const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

/** Reads the host's apt sources (deb822 and one-line) for the URI that serves its main archive. */
export function hostDebianMirror(): string {
  const uris: string[] = [];
  const dir = "/etc/apt/sources.list.d";
  const files = existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [];
  for (const f of ["/etc/apt/sources.list", ...files]) {
    if (!/\.(list|sources)$/.test(f) || !existsSync(f)) continue;
    const text = readFileSync(f, "utf8");
    if (f.endsWith(".sources")) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (k: string) => new RegExp(`^${k}:\\s*(.+)$`, "mi").exec(stanza)?.[1]?.trim() ?? "";
        if (/^(no|false)$/i.test(field("Enabled"))) continue;
        const suites = field("Suites").split(/\s+/);
        if (!field("Types").split(/\s+/).includes("deb") || !field("Components").includes("main")) continue;
        if (suites.some((s) => s && !s.includes("security"))) uris.push(...field("URIs").split(/\s+/));
      }
    } else {
      for (const l of text.split("\n")) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(l.trim());
        if (m && !m[2].includes("security") && m[3].split(/\s+/).includes("main")) uris.push(m[1]);
      }
    }
  }
  const uri = uris.find((u) => /\/debian\/?$/.test(u)) ?? uris[0];
  if (!uri) throw new Error("no Debian archive with 'main' found in the host's apt sources");
  return uri.replace(/\/$/, "");
}

/** apt-get/apt-cache options that point apt at a private setup for `suite`. */
function privateOptions(suite: Suite): string[] {
  if (suite === "host") return [];
  const dir = join(aptCacheRoot(), suite);
  const list = join(dir, "sources.list");
  for (const d of ["lists/partial", "cache/archives/partial"]) mkdirSync(join(dir, d), { recursive: true });
  const line = `deb [signed-by=${KEYRING}] ${hostDebianMirror()} ${suite} main\n`;
  if (!existsSync(list) || readFileSync(list, "utf8") !== line) writeFileSync(list, line);
  return [
    ...["-o", `Dir::Etc::SourceList=${list}`, "-o", "Dir::Etc::SourceParts=/dev/null"],
    ...["-o", `Dir::State::Lists=${join(dir, "lists")}`, "-o", `Dir::Cache=${join(dir, "cache")}`],
  ];
}

// As root apt drops to user _apt for downloads, who cannot write our dirs; it would warn and carry on.
const sandbox = () => (process.getuid?.() === 0 ? ["-o", "APT::Sandbox::User=root"] : []);

async function update(suite: Suite, log: (s: string) => void): Promise<void> {
  log(`apt-get update${suite === "host" ? "" : ` (private list for ${suite})`}`);
  await run("apt-get", [...privateOptions(suite), ...sandbox(), "update"], { passthrough: true });
}

/**
 * Package names matching `aptRegex` (POSIX, for apt-cache) and then `re`; updates the lists once when
 * nothing matches (a fresh machine, or a private suite never fetched).
 */
export async function aptFindPackages(
  suite: Suite,
  aptRegex: string,
  re: RegExp,
  log: (s: string) => void,
): Promise<string[]> {
  const search = async () =>
    (await run("apt-cache", [...privateOptions(suite), "search", "--names-only", aptRegex])).stdout
      .split("\n")
      .map((l) => l.split(" ")[0] ?? "")
      .filter((n) => re.test(n));
  let names = await search();
  if (names.length === 0) {
    await update(suite, log);
    names = await search();
  }
  return names;
}

/** Downloads packages into `dest` (made if needed); returns the .deb paths in the order asked. */
export async function aptDownload(suite: Suite, pkgs: string[], dest: string): Promise<string[]> {
  mkdirSync(dest, { recursive: true });
  await run("apt-get", [...privateOptions(suite), ...sandbox(), "download", ...pkgs], {
    cwd: dest,
    passthrough: true,
  });
  const files = readdirSync(dest);
  return pkgs.map((p) => {
    const deb = files.find((f) => f.startsWith(`${p}_`) && f.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${p} produced no .deb in ${dest}`);
    return join(dest, deb);
  });
}

export async function debVersion(deb: string): Promise<string> {
  return (await run("dpkg-deb", ["-f", deb, "Version"])).stdout.trim();
}

export async function debExtract(deb: string, dest: string): Promise<void> {
  await run("dpkg-deb", ["-x", deb, dest]);
}

/** Natural order on the digit runs of a package name: 6.12.117 > 6.12.99. */
export function compareNatural(a: string, b: string): number {
  const na = a.match(/\d+/g)?.map(Number) ?? [];
  const nb = b.match(/\d+/g)?.map(Number) ?? [];
  for (let i = 0; i < Math.max(na.length, nb.length); i++) {
    const d = (na[i] ?? -1) - (nb[i] ?? -1);
    if (d !== 0) return d;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}
