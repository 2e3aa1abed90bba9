// The qcow2 target's image handling on the host (no ublk driver needed): requests go straight to
// the target's ops (test/support/qcow2-harness.ts) and QEMU's own tools are the oracle:
// `qemu-img check` must find the image consistent and `qemu-img compare` equal to a raw file that
// got the same writes; images written by qemu-io must read back as `qemu-img convert` says.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Worker } from "node:worker_threads";
import { Qcow2Harness } from "../support/qcow2-harness.js";

const MiB = 1024 * 1024;
const haveQemuImg = spawnSync("qemu-img", ["--version"]).status === 0;
const skip = haveQemuImg ? false : "needs qemu-img and qemu-io (Debian package qemu-utils)";
const dir = mkdtempSync(join(tmpdir(), "ublk-ts-qcow2-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(cmd: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function must(cmd: string, ...args: string[]): string {
  const r = run(cmd, args);
  assert.equal(r.code, 0, `${cmd} ${args.join(" ")}: ${r.out}`);
  return r.out;
}

/** qemu-img check: exits 0 on a clean image (3: leaks only, 2: corruption). */
function checkClean(img: string): void {
  const r = run("qemu-img", ["check", img]);
  assert.equal(r.code, 0, `qemu-img check ${img}:\n${r.out}`);
}

/** Deterministic pseudo-random numbers (xorshift32). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

function randomData(next: () => number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i += 4) b.writeUInt32LE(next(), i);
  return b;
}

/** Random 512-aligned writes of 512 B..192 KiB through the target and into a raw mirror. */
function randomWrites(h: Qcow2Harness, mirror: Buffer, count: number, seed: number): void {
  const next = rng(seed);
  for (let i = 0; i < count; i++) {
    const len = ((next() % 384) + 1) * 512;
    const off = (next() % ((mirror.length - len) / 512)) * 512;
    const data = randomData(next, len);
    h.write(off, data);
    data.copy(mirror, off);
  }
}

function readAll(h: Qcow2Harness): Buffer {
  const out = Buffer.alloc(h.size);
  for (let off = 0; off < h.size; off += 512 * 1024) h.read(off, 512 * 1024).copy(out, off);
  return out;
}

for (const compat of ["1.1", "0.10"]) {
  test(`qcow2 v${compat === "1.1" ? 3 : 2}: random writes allocate clusters; qemu-img check is clean and compare equals the raw mirror`, {
    skip,
  }, () => {
    const img = join(dir, `rw-${compat}.qcow2`);
    must("qemu-img", "create", "-q", "-f", "qcow2", "-o", `compat=${compat}`, img, "16M");
    const mirror = Buffer.alloc(16 * MiB);
    const h = new Qcow2Harness(img);
    try {
      randomWrites(h, mirror, 300, 7);
      h.flush();
      assert.ok(readAll(h).equals(mirror), "read back differs from what was written");
    } finally {
      h.close();
    }
    checkClean(img);
    const raw = join(dir, `rw-${compat}.raw`);
    writeFileSync(raw, mirror);
    must("qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, raw);
  });
}

for (const bits of [1, 8, 64]) {
  test(`small clusters and ${bits}-bit refcounts: new refcount blocks are allocated as the file grows`, {
    skip,
  }, () => {
    const img = join(dir, `small-${bits}.qcow2`);
    must(
      "qemu-img",
      "create",
      "-q",
      "-f",
      "qcow2",
      "-o",
      `cluster_size=1024,refcount_bits=${bits}`,
      img,
      "8M",
    );
    const mirror = Buffer.alloc(8 * MiB);
    const h = new Qcow2Harness(img);
    try {
      randomWrites(h, mirror, 200, 11);
      h.discard(MiB, 2 * MiB);
      mirror.fill(0, MiB, 3 * MiB);
      randomWrites(h, mirror, 50, 12);
    } finally {
      h.close();
    }
    checkClean(img);
    const raw = join(dir, `small-${bits}.raw`);
    writeFileSync(raw, mirror);
    must("qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, raw);
  });
}

test("an image written by qemu-io reads back as qemu-img convert reads it", { skip }, () => {
  const img = join(dir, "qio.qcow2");
  must("qemu-img", "create", "-q", "-f", "qcow2", img, "8M");
  must(
    "qemu-io",
    "-f",
    "qcow2",
    "-c",
    "write -P 0xab 0 1M",
    "-c",
    "write -P 0xcd 3M 4k",
    "-c",
    "write -P 0x11 5000k 100k",
    "-c",
    "write -z 512k 64k",
    img,
  );
  const raw = join(dir, "qio.raw");
  must("qemu-img", "convert", "-O", "raw", img, raw);
  const h = new Qcow2Harness(img);
  try {
    assert.ok(readAll(h).equals(readFileSync(raw)), "target reads differ from qemu-img convert");
  } finally {
    h.close();
  }
});

test("backing file: reads fall through, writes copy-on-write, the base is untouched", { skip }, () => {
  const base = join(dir, "base.qcow2");
  const top = join(dir, "top.qcow2");
  must("qemu-img", "create", "-q", "-f", "qcow2", base, "8M");
  must("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", "-c", "write -P 0x33 1M 64k", base);
  must("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top);
  const baseRaw = join(dir, "base.raw");
  must("qemu-img", "convert", "-O", "raw", base, baseRaw);
  const mirror = readFileSync(baseRaw);
  const h = new Qcow2Harness(top);
  try {
    assert.ok(readAll(h).equals(mirror), "overlay does not read as its base");
    randomWrites(h, mirror, 100, 3);
    h.discard(6 * MiB, 1 * MiB); // a discard must not let the base show through stale data
    mirror.fill(0, 6 * MiB, 7 * MiB);
    assert.ok(readAll(h).equals(mirror), "overlay reads differ after writes");
  } finally {
    h.close();
  }
  checkClean(top);
  checkClean(base);
  const expect = join(dir, "top.raw");
  writeFileSync(expect, mirror);
  must("qemu-img", "compare", "-F", "raw", top, expect);
  must("qemu-img", "compare", "-F", "raw", base, baseRaw);
});

test("compressed clusters read back, and a write over one copies it out", { skip }, () => {
  const raw = join(dir, "comp-src.raw");
  const next = rng(5);
  const src = Buffer.alloc(4 * MiB);
  for (let off = 0; off < src.length; off += 64 * 1024) {
    // compressible: runs of a byte with some noise
    src.fill(next() & 0xff, off, off + 32 * 1024);
    randomData(next, 4096).copy(src, off + 32 * 1024);
  }
  writeFileSync(raw, src);
  const img = join(dir, "comp.qcow2");
  must("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, img);
  const h = new Qcow2Harness(img);
  try {
    assert.ok(readAll(h).equals(src), "compressed image reads differ from its source");
    randomWrites(h, src, 40, 9);
    assert.ok(readAll(h).equals(src), "reads differ after writes over compressed clusters");
  } finally {
    h.close();
  }
  checkClean(img);
  writeFileSync(raw, src);
  must("qemu-img", "compare", "-F", "raw", img, raw);
});

test("discard frees clusters, which later writes reuse instead of growing the file", { skip }, () => {
  const img = join(dir, "discard.qcow2");
  must("qemu-img", "create", "-q", "-f", "qcow2", img, "16M");
  const h = new Qcow2Harness(img);
  let grown: number;
  try {
    h.write(0, randomData(rng(1), 8 * MiB));
    grown = statSync(img).size;
    h.discard(0, 16 * MiB);
    assert.ok(readAll(h).equals(Buffer.alloc(16 * MiB)), "discarded range does not read as zeros");
    h.write(4 * MiB, randomData(rng(2), 8 * MiB));
  } finally {
    h.close();
  }
  checkClean(img);
  assert.equal(statSync(img).size, grown, "the file grew although discarded clusters were free");
});

test("two threads allocating at once (as two queues do) keep the image consistent", { skip }, async () => {
  const img = join(dir, "threads.qcow2");
  // 4 KiB clusters: both halves share L2 tables and refcount blocks, so the lock is what keeps
  // the two allocators apart.
  must("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, "8M");
  const opener = new Qcow2Harness(img);
  const half = 4 * MiB;
  try {
    const mirrors = await Promise.all(
      [0, 1].map(
        (i) =>
          new Promise<Buffer>((resolve, reject) => {
            const w = new Worker(new URL("../support/qcow2-writer.js", import.meta.url), {
              workerData: { setup: opener.setup, start: i * half, length: half, seed: 17 + i, count: 300 },
            });
            w.once("message", (m: Uint8Array) => resolve(Buffer.from(m)));
            w.once("error", reject);
          }),
      ),
    );
    const raw = join(dir, "threads.raw");
    writeFileSync(raw, Buffer.concat(mirrors));
    assert.ok(readAll(opener).equals(readFileSync(raw)), "reads differ from what the threads wrote");
    opener.close();
    checkClean(img);
    must("qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, raw);
  } catch (err) {
    opener.close();
    throw err;
  }
});
