// Checks src/uapi against the real Linux 6.12 <linux/ublk_cmd.h> by generating, compiling
// and running a C program that prints every layout and constant the TS module declares.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as uapi from "../../src/uapi/ublk_cmd.js";
import { ensureUapiHeader, headerText } from "../support/uapi-header.js";

type Layout = { size: number; fields: Record<string, { offset: number; size: number }> };

const layouts = Object.entries(uapi)
  .filter(([k]) => k.endsWith("_LAYOUT"))
  .map(([k, v]) => [k.slice(0, -"_LAYOUT".length), v as Layout] as const);
const constants = Object.entries(uapi).filter(
  (e): e is [string, number | bigint] =>
    /^UBLK/.test(e[0]) && (typeof e[1] === "number" || typeof e[1] === "bigint"),
);

function requireCc(): void {
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
  } catch {
    assert.fail("no C compiler: install one, e.g. `apt-get install gcc libc6-dev linux-libc-dev`");
  }
}

function cProgram(): string {
  const lines = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    "#include <errno.h>", // UBLK_IO_RES_ABORT is -ENODEV
    "#include <linux/ioctl.h>", // the header uses _IOR/_IOWR without including this
    "#include <linux/ublk_cmd.h>",
    "int main(void) {",
  ];
  for (const [s, l] of layouts) {
    lines.push(`  printf("size ${s} %zu\\n", sizeof(struct ${s}));`);
    for (const f of Object.keys(l.fields)) {
      lines.push(
        `  printf("field ${s} ${f} %zu %zu\\n", offsetof(struct ${s}, ${f}), sizeof(((struct ${s} *)0)->${f}));`,
      );
    }
  }
  // Signed print: UBLK_IO_RES_ABORT is negative; everything else fits below 2^63.
  for (const [name] of constants) lines.push(`  printf("const ${name} %lld\\n", (long long)(${name}));`);
  lines.push("  return 0;", "}");
  return lines.join("\n");
}

test("uapi layouts and constants match the Linux 6.12 header", async () => {
  requireCc();
  const inc = await ensureUapiHeader("6.12");
  const dir = mkdtempSync(join(tmpdir(), "ublk-uapi-"));
  try {
    writeFileSync(join(dir, "probe.c"), cProgram());
    try {
      execFileSync("cc", ["-std=gnu11", "-Wall", "-Werror", `-I${inc}`, "-o", "probe", "probe.c"], {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      const err = e as { stderr?: Buffer };
      assert.fail(`probe.c failed to compile (TS name absent from header?):\n${err.stderr?.toString()}`);
    }
    const out = execFileSync(join(dir, "probe"), { encoding: "utf8" });
    const seen = new Set<string>();
    for (const line of out.trim().split("\n")) {
      const [kind, ...rest] = line.split(" ");
      if (kind === "size") {
        const [s, n] = rest as [string, string];
        const l = layouts.find(([k]) => k === s)![1];
        assert.equal(l.size, Number(n), `sizeof(struct ${s})`);
      } else if (kind === "field") {
        const [s, f, off, size] = rest as [string, string, string, string];
        const fl = layouts.find(([k]) => k === s)![1].fields[f]!;
        assert.deepEqual(fl, { offset: Number(off), size: Number(size) }, `struct ${s}.${f}`);
      } else {
        const [name, val] = rest as [string, string];
        const ts = constants.find(([k]) => k === name)![1];
        assert.equal(BigInt(ts), BigInt(val), name);
      }
      seen.add(line);
    }
    const nFields = layouts.reduce((n, [, l]) => n + Object.keys(l.fields).length, 0);
    assert.equal(seen.size, layouts.length + nFields + constants.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every plain UBLK* macro in the header is exported", async () => {
  const text = await headerText("6.12");
  const macros = [...text.matchAll(/^[ \t]*#[ \t]*define[ \t]+(UBLK\w*)(\()?/gm)]
    .filter((m) => m[2] === undefined) // function-like macros are not constants
    .map((m) => m[1]!);
  assert.ok(macros.length > 80, `only ${macros.length} macros parsed`);
  const missing = macros.filter((m) => !(m in uapi));
  assert.deepEqual(missing, [], "header macros not exported by src/uapi/ublk_cmd.ts");
});

test("every struct of the header has a layout", async () => {
  const text = await headerText("6.12");
  const structs = [...text.matchAll(/^struct\s+(\w+)\s*\{/gm)].map((m) => m[1]!);
  assert.deepEqual(structs.sort(), layouts.map(([s]) => s).sort());
});
