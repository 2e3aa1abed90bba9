// Checks src/uapi against the real <linux/ublk_cmd.h> of both harness kernels by generating,
// compiling and running a C program that prints every layout, constant and inline helper result
// the TS module declares. The module follows the newest header (7.3): there everything must exist
// and match. Against 6.12 the names that header has must match too; names it lacks (newer) are
// skipped, and a struct's size is compared only when the 6.12 struct has all of the TS fields.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import * as uapi from "../../src/uapi/ublk_cmd.js";
import type { KernelId } from "../../src/vm/kernels.js";
import { ensureUapiHeader, headerText } from "../support/uapi-header.js";

type Layout = { size: number; fields: Record<string, { offset: number; size: number }> };

const layouts = Object.entries(uapi)
  .filter(([k]) => k.endsWith("_LAYOUT"))
  .map(([k, v]) => [k.slice(0, -"_LAYOUT".length), v as Layout] as const);
const constants = Object.entries(uapi).filter(
  (e): e is [string, number | bigint] =>
    /^UBLK/.test(e[0]) && (typeof e[1] === "number" || typeof e[1] === "bigint"),
);

/** One call of a header inline function, in C and in TS; the results must be equal. */
interface HelperCase {
  fn: string;
  c: string;
  ts: () => number | bigint;
}
const iod = (op_flags: number): uapi.ublksrv_io_desc => ({
  op_flags,
  nr_sectors: 0,
  start_sector: 0n,
  addr: 0n,
});
const sqeAddr = 0x89abcdef_12345678n;
const reg = { index: 0xbeef, flags: 0x81, reserved0: 0x7f, reserved1: 0xdeadbeef };
const zcAddr = 0x1234_89abcdefn;
const helperCases: HelperCase[] = [
  {
    fn: "ublksrv_get_op",
    c: "ublksrv_get_op(&(struct ublksrv_io_desc){ .op_flags = 0xfedcba98u })",
    ts: () => uapi.ublksrv_get_op(iod(0xfedcba98)),
  },
  {
    fn: "ublksrv_get_flags",
    c: "ublksrv_get_flags(&(struct ublksrv_io_desc){ .op_flags = 0xfedcba98u })",
    ts: () => uapi.ublksrv_get_flags(iod(0xfedcba98)),
  },
  ...(["index", "flags", "reserved0", "reserved1"] as const).map((k) => ({
    fn: "ublk_sqe_addr_to_auto_buf_reg",
    c: `ublk_sqe_addr_to_auto_buf_reg(0x${sqeAddr.toString(16)}ULL).${k}`,
    ts: () => uapi.ublk_sqe_addr_to_auto_buf_reg(sqeAddr)[k],
  })),
  {
    fn: "ublk_auto_buf_reg_to_sqe_addr",
    c: `ublk_auto_buf_reg_to_sqe_addr(&(struct ublk_auto_buf_reg){ ${Object.entries(reg)
      .map(([k, v]) => `.${k} = ${v}u`)
      .join(", ")} })`,
    ts: () => uapi.ublk_auto_buf_reg_to_sqe_addr(reg),
  },
  {
    fn: "ublk_shmem_zc_addr",
    c: "ublk_shmem_zc_addr(0xfffe, 0xfffffffdu)",
    ts: () => uapi.ublk_shmem_zc_addr(0xfffe, 0xfffffffd),
  },
  {
    fn: "ublk_shmem_zc_index",
    c: `ublk_shmem_zc_index(0x${zcAddr.toString(16)}ULL)`,
    ts: () => uapi.ublk_shmem_zc_index(Number(zcAddr)),
  },
  {
    fn: "ublk_shmem_zc_offset",
    c: `ublk_shmem_zc_offset(0x${zcAddr.toString(16)}ULL)`,
    ts: () => uapi.ublk_shmem_zc_offset(Number(zcAddr)),
  },
  // Reserved high bits set: only the bigint form can carry them.
  {
    fn: "ublk_shmem_zc_index",
    c: "ublk_shmem_zc_index(0xffff123489abcdefULL)",
    ts: () => uapi.ublk_shmem_zc_index(0xffff123489abcdefn),
  },
  {
    fn: "ublk_shmem_zc_offset",
    c: "ublk_shmem_zc_offset(0xffff123489abcdefULL)",
    ts: () => uapi.ublk_shmem_zc_offset(0xffff123489abcdefn),
  },
];

/** What a header declares, parsed from its text (comments removed). */
interface HeaderNames {
  /** Object-like UBLK* macros (function-like ones are not constants). */
  macros: Set<string>;
  /** Struct name -> body text. */
  structs: Map<string, string>;
  inlines: Set<string>;
}
function parseHeader(text: string): HeaderNames {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const macros = new Set(
    [...code.matchAll(/^[ \t]*#[ \t]*define[ \t]+(UBLK\w*)(\()?/gm)].filter((m) => !m[2]).map((m) => m[1]!),
  );
  const structs = new Map(
    [...code.matchAll(/^struct\s+(\w+)\s*\{([\s\S]*?)^\};/gm)].map((m) => [
      m[1]!,
      m[2]!.replace(/^\s*#.*$/gm, ""),
    ]),
  );
  const inlines = new Set([...code.matchAll(/static\s+inline\b[^(;{]*?\b(\w+)\s*\(/g)].map((m) => m[1]!));
  return { macros, structs, inlines };
}
const hasField = (body: string, field: string) =>
  new RegExp(`\\b${field}\\s*(\\[[^\\]]*\\])?\\s*;`).test(body);

/** The part of the TS module a header can be checked against, and what was left out. */
interface Selection {
  sizes: string[];
  fields: [string, string][];
  consts: string[];
  helpers: HelperCase[];
  skipped: string[];
}
function select(h: HeaderNames): Selection {
  const sel: Selection = { sizes: [], fields: [], consts: [], helpers: [], skipped: [] };
  for (const [s, l] of layouts) {
    const body = h.structs.get(s);
    if (body === undefined) {
      sel.skipped.push(`struct ${s}`);
      continue;
    }
    const names = Object.keys(l.fields);
    for (const fl of names) {
      if (hasField(body, fl)) sel.fields.push([s, fl]);
      else sel.skipped.push(`${s}.${fl}`);
    }
    if (names.every((fl) => hasField(body, fl))) sel.sizes.push(s);
    else sel.skipped.push(`sizeof ${s}`);
  }
  for (const [name] of constants) {
    if (h.macros.has(name)) sel.consts.push(name);
    else sel.skipped.push(name);
  }
  for (const c of helperCases) {
    if (h.inlines.has(c.fn)) sel.helpers.push(c);
    else sel.skipped.push(`${c.fn}()`);
  }
  return sel;
}

function cProgram(sel: Selection): string {
  const lines = [
    "#include <stdio.h>",
    "#include <stddef.h>",
    "#include <errno.h>", // UBLK_IO_RES_ABORT is -ENODEV
    "#include <linux/ioctl.h>", // the header uses _IOR/_IOWR without including this
    "#include <linux/ublk_cmd.h>",
    "int main(void) {",
  ];
  for (const s of sel.sizes) lines.push(`  printf("size ${s} %zu\\n", sizeof(struct ${s}));`);
  for (const [s, f] of sel.fields) {
    lines.push(
      `  printf("field ${s} ${f} %zu %zu\\n", offsetof(struct ${s}, ${f}), sizeof(((struct ${s} *)0)->${f}));`,
    );
  }
  // Signed print: UBLK_IO_RES_ABORT is negative; everything else fits below 2^63.
  for (const name of sel.consts) lines.push(`  printf("const ${name} %lld\\n", (long long)(${name}));`);
  sel.helpers.forEach((h, i) => {
    lines.push(`  printf("helper ${i} %llu\\n", (unsigned long long)(${h.c}));`);
  });
  lines.push("  return 0;", "}");
  return lines.join("\n");
}

/** Compiles and runs the probe against kernel `id`'s header; returns the number of checks made. */
async function checkAgainst(id: KernelId, sel: Selection): Promise<number> {
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
  } catch {
    assert.fail("no C compiler: install one, e.g. `apt-get install gcc libc6-dev linux-libc-dev`");
  }
  const inc = await ensureUapiHeader(id);
  const dir = mkdtempSync(join(tmpdir(), "ublk-uapi-"));
  try {
    writeFileSync(join(dir, "probe.c"), cProgram(sel));
    try {
      execFileSync("cc", ["-std=gnu11", "-Wall", "-Werror", `-I${inc}`, "-o", "probe", "probe.c"], {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      const err = e as { stderr?: Buffer };
      assert.fail(
        `probe.c failed to compile against ${id} (TS name absent from header?):\n${err.stderr?.toString()}`,
      );
    }
    const out = execFileSync(join(dir, "probe"), { encoding: "utf8" });
    const seen = new Set<string>();
    for (const line of out.trim().split("\n")) {
      const [kind, ...rest] = line.split(" ");
      if (kind === "size") {
        const [s, n] = rest as [string, string];
        const l = layouts.find(([k]) => k === s)![1];
        assert.equal(l.size, Number(n), `${id}: sizeof(struct ${s})`);
      } else if (kind === "field") {
        const [s, f, off, size] = rest as [string, string, string, string];
        const fl = layouts.find(([k]) => k === s)![1].fields[f]!;
        assert.deepEqual(fl, { offset: Number(off), size: Number(size) }, `${id}: struct ${s}.${f}`);
      } else if (kind === "const") {
        const [name, val] = rest as [string, string];
        const ts = constants.find(([k]) => k === name)![1];
        assert.equal(BigInt(ts), BigInt(val), `${id}: ${name}`);
      } else {
        const [i, val] = rest as [string, string];
        const h = sel.helpers[Number(i)]!;
        assert.equal(BigInt(h.ts()), BigInt(val), `${id}: ${h.c}`);
      }
      seen.add(line);
    }
    const checks = sel.sizes.length + sel.fields.length + sel.consts.length + sel.helpers.length;
    assert.equal(seen.size, checks, `${id}: probe printed fewer lines than checks asked`);
    return checks;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("uapi layouts, constants and helpers match the Linux 7.3 header, all of them", async () => {
  const sel = select(parseHeader(await headerText("7.3")));
  assert.deepEqual(sel.skipped, [], "TS names the 7.3 header does not have");
  const checks = await checkAgainst("7.3", sel);
  assert.ok(checks >= 250, `only ${checks} checks`);
});

test("uapi names the Linux 6.12 header has match it too", async (t) => {
  const h612 = parseHeader(await headerText("6.12"));
  const h73 = parseHeader(await headerText("7.3"));
  const sel = select(h612);
  // Skipping is for names newer than 6.12 only: each skipped name must be in the 7.3 header.
  const newer = select(h73);
  for (const s of sel.skipped) {
    assert.ok(!newer.skipped.includes(s), `${s} is skipped for 6.12 but not a 7.3 name either`);
  }
  for (const expected of [
    "struct ublk_batch_io",
    "UBLK_F_AUTO_BUF_REG",
    "ublk_params.dma",
    "sizeof ublk_params",
  ])
    assert.ok(sel.skipped.includes(expected), `${expected} should be newer than 6.12`);
  assert.ok(sel.sizes.includes("ublksrv_io_desc") && sel.fields.length >= 55, "6.12 selection too small");
  const checks = await checkAgainst("6.12", sel);
  t.diagnostic(`6.12: ${checks} checks; newer, skipped: ${sel.skipped.join(" ")}`);
  assert.ok(checks >= 150, `only ${checks} checks`);
});

for (const id of ["6.12", "7.3"] as const) {
  test(`every plain UBLK* macro of the ${id} header is exported`, async () => {
    const { macros } = parseHeader(await headerText(id));
    assert.ok(macros.size > 80, `only ${macros.size} macros parsed`);
    const missing = [...macros].filter((m) => !(m in uapi));
    assert.deepEqual(missing, [], "header macros not exported by src/uapi/ublk_cmd.ts");
  });

  test(`every struct and inline function of the ${id} header has a TS counterpart`, async () => {
    const { structs, inlines } = parseHeader(await headerText(id));
    const names = new Set(layouts.map(([s]) => s));
    assert.deepEqual(
      [...structs.keys()].filter((s) => !names.has(s)),
      [],
      "structs without a *_LAYOUT",
    );
    assert.ok(inlines.size >= 2, `only ${inlines.size} inline functions parsed`);
    const lacking = [...inlines].filter((fn) => typeof (uapi as Record<string, unknown>)[fn] !== "function");
    assert.deepEqual(lacking, [], "inline functions without a TS function of the same name");
    const tested = new Set(helperCases.map((c) => c.fn));
    assert.deepEqual(
      [...inlines].filter((fn) => !tested.has(fn)),
      [],
      "inline functions without a helper case",
    );
  });
}

test("the 7.3 header declares exactly the structs and fields the module has layouts for", async () => {
  const { structs } = parseHeader(await headerText("7.3"));
  assert.deepEqual([...structs.keys()].sort(), layouts.map(([s]) => s).sort());
  for (const [s, l] of layouts) {
    // The identifier before each `;` of the body: members, union members and nested structs.
    const declared = [...structs.get(s)!.matchAll(/(\w+)\s*(?:\[[^\]]*\])?\s*;/g)].map((m) => m[1]!);
    assert.ok(declared.length > 0, `no fields parsed for struct ${s}`);
    assert.deepEqual(declared.sort(), Object.keys(l.fields).sort(), `fields of struct ${s}`);
  }
});
