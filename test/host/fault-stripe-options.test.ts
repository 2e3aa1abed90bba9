// The stripe and fault_inject targets refuse bad options in open(), before any device exists; this
// runs that check on the host with real files (no ublk needed).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import faultInject from "../../src/targets/fault_inject.js";
import stripe from "../../src/targets/stripe.js";
import type { TargetOptions } from "../../src/targets/target.js";

const dir = mkdtempSync(join(tmpdir(), "ublk-ts-targets-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

function file(name: string, bytes: number): string {
  const path = join(dir, name);
  writeFileSync(path, "");
  truncateSync(path, bytes);
  return path;
}

test("stripe: capacity is the files' whole chunks added up; a partial chunk at a file's end is left out", async () => {
  const a = file("a", 4 * MiB + 5000);
  const b = file("b", 4 * MiB + 60000);
  const setup = await stripe.open({ files: [a, b], chunk_size: "64K" });
  try {
    assert.equal(setup.size, 8 * MiB);
    assert.equal(setup.params?.ioMin, 64 * 1024);
    assert.equal(setup.params?.ioOpt, 128 * 1024);
    assert.equal(setup.params?.volatileCache, true, "flushes must reach the target");
    assert.equal(setup.description?.chunk_size, 65536);
  } finally {
    await stripe.close?.(setup);
  }
});

test("stripe refuses bad geometry with one-line errors", async () => {
  const a = file("ra", 4 * MiB);
  const b = file("rb", 2 * MiB);
  const tiny = file("tiny", 8192);
  const cases: [TargetOptions, RegExp][] = [
    [{ files: [a, b] }, /same size in whole 65536-byte chunks: .*ra has 4194304, .*rb has 2097152/],
    [{ files: [a, a, a, a, a] }, /at most 4 backing files, not 5/],
    [{ files: [a], chunk_size: "3000" }, /power of two from 4K to 512K/],
    [{ files: [a], chunk_size: "2K" }, /power of two from 4K to 512K/],
    [{ files: [a], chunk_size: "1M" }, /power of two from 4K to 512K/],
    [{}, /needs 1 to 4 backing files/],
    [{ files: [a, join(dir, "missing")] }, /does not exist/],
    [{ files: [tiny] }, /smaller than one 65536-byte chunk/],
  ];
  for (const [options, pattern] of cases) {
    await assert.rejects(async () => stripe.open(options), pattern, JSON.stringify(options));
  }
});

test("fault_inject: a null device of 250G by default (as kublk), or a backing file's size", async () => {
  const setup = await faultInject.open({ delay_us: "100", seed: "9" });
  assert.equal(setup.size, 250 * 2 ** 30);
  assert.equal(setup.description?.seed, 9);
  assert.equal(setup.description?.delay_us, 100);
  const f = file("fi", 3 * MiB);
  const withFile = await faultInject.open({ file: f, error_sectors: "8-15" });
  try {
    assert.equal(withFile.size, 3 * MiB);
    assert.equal(withFile.description?.error_sectors, "8-15");
    assert.equal(typeof withFile.description?.seed, "number", "a random seed is shown so the run can repeat");
  } finally {
    await faultInject.close?.(withFile);
  }
});

test("fault_inject refuses bad options with one-line errors", async () => {
  const f = file("fb", MiB);
  const cases: [TargetOptions, RegExp][] = [
    [{ error_rate: "1.5" }, /--error_rate 1.5: expected a number from 0 to 1/],
    [{ error_rate: "x" }, /--error_rate x/],
    [{ delay_us: "-1" }, /--delay_us -1: expected an integer/],
    [{ die_after: "2.5" }, /--die_after 2.5: expected an integer/],
    [{ slow_rate: "0.1" }, /--slow_rate needs --slow_us/],
    [{ error_sectors: "9-3" }, /FIRST-LAST/],
    [{ error_sectors: "abc" }, /FIRST-LAST/],
    [{ file: f, error_sectors: "4096-4100" }, /past the end/],
    [{ file: f, size: "1G" }, /--size or a backing file, not both/],
    [{ seed: "-3" }, /--seed -3/],
  ];
  for (const [options, pattern] of cases) {
    await assert.rejects(async () => faultInject.open(options), pattern, JSON.stringify(options));
  }
});
