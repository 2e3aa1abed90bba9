// The prebuilt addons in prebuilds/ are what `npm install ublk-ts` runs on machines without a
// compiler: they must be built from the current native/ source, for the arch their folder names.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const PREBUILDS = { "linux-x64": 62, "linux-arm64": 183 } as const; // ELF e_machine: x86-64, AArch64
const file = (dir: string) => `${ROOT}/prebuilds/${dir}/ublk-ts.glibc.node`;

test("prebuilds/ were built from the current native source (else run: npm run prebuilds)", () => {
  const recorded = readFileSync(`${ROOT}/prebuilds/SOURCE.sha256`, "utf8").trim();
  const current = execFileSync(process.execPath, [`${ROOT}/scripts/native-source-hash.mjs`], {
    encoding: "utf8",
  }).trim();
  assert.equal(recorded, current, "native/ or binding.gyp changed after the prebuilds were made");
});

test("each prebuild is a shared object for the arch its folder names", () => {
  for (const [dir, machine] of Object.entries(PREBUILDS)) {
    const elf = readFileSync(file(dir));
    assert.equal(elf.readUInt32BE(0), 0x7f454c46, `${dir}: not ELF`);
    assert.equal(elf[4], 2, `${dir}: not 64-bit`);
    assert.equal(elf.readUInt16LE(16), 3, `${dir}: not a shared object`);
    assert.equal(elf.readUInt16LE(18), machine, `${dir}: wrong machine`);
  }
});

test("the prebuild for this machine loads and exports the addon's functions", {
  skip: !(`${process.platform}-${process.arch}` in PREBUILDS),
}, () => {
  const addon = createRequire(import.meta.url)(file(`${process.platform}-${process.arch}`)) as Record<
    string,
    unknown
  >;
  for (const fn of ["ringSetup", "ringEnter", "ringPoll", "allocBuffer", "mmapFile", "setAffinity"])
    assert.equal(typeof addon[fn], "function", fn);
  assert.equal(addon.pageSize, 4096);
});
