// The host tool list (src/host/tools.ts) must name every program the demo, the tests, the benchmark
// and the VM harness spawn, or a fresh machine fails half way with "not found". This scans their
// sources for spawned programs (argv[0] of spawn/spawnSync/execFileSync/run/must/cmd/which calls,
// and every command word of the shell lines passed to sh/bash) and checks each against the list.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { missingMessage, missingTools, packagesOf } from "../../src/host/ensure.js";
import { spawnFailure } from "../../src/host/spawn.js";
import { HOST_TOOLS, type ToolUse, toolsFor } from "../../src/host/tools.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** Shell words that are not programs to install. */
const SHELL_BUILTINS = new Set(
  "cd echo exit export exec set unset read true false test [ printf command if then else elif fi do done while for until case esac in time wait trap kill shift return local eval break continue . : { } ( ) !".split(
    " ",
  ),
);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...sources(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

function useOf(path: string): ToolUse | undefined {
  if (path === "src/demo.ts") return "demo";
  if (path.startsWith("src/vm/")) return "vm";
  if (path.startsWith("test/")) return "test";
  if (path.startsWith("bench/")) return "bench";
  return undefined;
}

/** Command words of a shell line: the first word of each simple command. */
export function shellPrograms(line: string): string[] {
  const text = line
    .replace(/<<-?\s*'?(\w+)'?\n[\s\S]*?\n\s*\1\b/g, "") // heredoc bodies are data
    .replace(/\$\{[^}]*\}/g, "$X"); // template substitutions
  const out: string[] = [];
  for (const segment of text.split(/\|\||&&|[|;\n`]|\$\(|\bthen\b|\bdo\b|\belse\b/)) {
    const words = segment
      .trim()
      .replace(/^[({!\s]+/, "")
      .split(/\s+/);
    let i = 0;
    while (i < words.length && /^\w+=/.test(words[i])) i++; // VAR=value prefixes
    const w = words[i];
    if (!w || SHELL_BUILTINS.has(w) || /^[$"'<>&0-9-]/.test(w) || /[<>]/.test(w)) continue;
    out.push(w);
  }
  return out;
}

/** Programs a source file spawns. */
export function spawnedPrograms(src: string): string[] {
  const out: string[] = [];
  const call = /\b(?:spawnSync|spawn|execFileSync|execFile|run|must|cmd|which|findProgram)\(\s*"([^"]+)"/g;
  for (const m of src.matchAll(call)) {
    if (/\s/.test(m[1])) out.push(...shellPrograms(m[1]));
    else out.push(m[1]);
  }
  const shell = /\b(?:sh|bash)\(\s*`((?:[^`\\]|\\.)*)`/g;
  for (const m of src.matchAll(shell)) out.push(...shellPrograms(m[1]));
  // sh("prog", [args]) runs a program, sh("a shell line") a shell.
  for (const m of src.matchAll(/\bsh\(\s*"([^"]*)"(\s*,\s*\[)?/g)) {
    if (m[2]) out.push(m[1]);
    else out.push(...shellPrograms(m[1]));
  }
  return out.filter((p) => !p.startsWith("$") && p !== "node");
}

test("the scanner finds the command words of shell lines", () => {
  assert.deepEqual(shellPrograms("dd if=$" + "{a} bs=4k | od -An -tu1 | head -1"), ["dd", "od", "head"]);
  assert.deepEqual(shellPrograms("umount -q x; losetup -j y | cut -d: -f1 | xargs -r losetup -d"), [
    "umount",
    "losetup",
    "cut",
    "xargs",
  ]);
  assert.deepEqual(shellPrograms("cat > /tmp/t.mjs <<'JS'\nexport default { read() {} };\nJS"), ["cat"]);
  assert.deepEqual(shellPrograms("LC_ALL=C sort -z && mkfs.ext4 -q $(echo x)"), ["sort", "mkfs.ext4"]);
  assert.deepEqual(spawnedPrograms('spawnSync("fio", []); sh(`blkdiscard -o 1 $' + "{dev}`);"), [
    "fio",
    "blkdiscard",
  ]);
});

test("every program the demo, tests, bench and VM harness spawn is in the host tool list", () => {
  const missing: string[] = [];
  let seen = 0;
  for (const path of [...sources("src"), ...sources("test"), ...sources("bench")]) {
    const use = useOf(path);
    if (!use || path === "test/unit/host-tools.test.ts") continue; // its examples are not spawned
    const names = new Set(toolsFor([use]).map((t) => t.bin));
    for (const prog of spawnedPrograms(readFileSync(join(ROOT, path), "utf8"))) {
      seen++;
      if (!names.has(prog))
        missing.push(`${prog} (spawned by ${relative(ROOT, join(ROOT, path))}, use ${use})`);
    }
  }
  assert.ok(seen > 50, `the scan found only ${seen} spawned programs: is it still reading the sources?`);
  assert.deepEqual([...new Set(missing)], [], "add these to HOST_TOOLS in src/host/tools.ts");
});

test("the demo's tools include fio, e2fsprogs and the VM's qemu only where they are used", () => {
  const demo = toolsFor(["demo"]).map((t) => t.bin);
  for (const p of ["fio", "mkfs.ext4", "fsck.ext4", "losetup", "mount", "truncate"])
    assert.ok(demo.includes(p), p);
  assert.ok(!demo.includes("qemu-system-x86_64"), "the VM's own tools come with the VM use");
  for (const t of HOST_TOOLS) assert.ok(t.uses.length > 0 && t.pkg, t.bin);
});

test("a missing tool is reported in one line with the apt-get command", () => {
  const gone = new Set(["fio", "mkfs.ext4", "fsck.ext4"]);
  const missing = missingTools(["demo"], (bin) => (gone.has(bin) ? undefined : `/usr/bin/${bin}`));
  assert.deepEqual(
    missing.map((t) => t.bin),
    ["fio", "mkfs.ext4", "fsck.ext4"],
  );
  assert.deepEqual(packagesOf(missing), ["fio", "e2fsprogs"]);
  const msg = missingMessage(missing, "the demo");
  assert.equal(
    msg,
    "the demo needs fio, mkfs.ext4, fsck.ext4 (not installed); as root run: apt-get install -y --no-install-recommends fio e2fsprogs",
  );
  assert.ok(!msg.includes("\n"));
});

test("a failed program is reported with its name, status and last stderr lines", () => {
  const enoent = Object.assign(new Error("spawnSync fio ENOENT"), { code: "ENOENT" });
  assert.equal(
    spawnFailure("fio", { error: enoent, status: null, signal: null }),
    "fio: not installed (Debian package fio)",
  );
  assert.equal(
    spawnFailure("/sbin/mkfs.ext4", { status: 1, signal: null, stderr: "a\n\nb\nc\nd: bad\n" }),
    "mkfs.ext4: exit status 1: b | c | d: bad",
  );
  assert.equal(
    spawnFailure("fio", { status: null, signal: "SIGKILL", stderr: "" }),
    "fio: killed by SIGKILL: no output",
  );
  assert.equal(spawnFailure("fio", { status: 0, signal: null }), undefined);
});
