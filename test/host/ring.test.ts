// io_uring on the host kernel: these need io_uring, not ublk.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Worker } from "node:worker_threads";
import { native } from "../../src/native.js";
import { Ring } from "../../src/uring/ring.js";

const dir = mkdtempSync(join(tmpdir(), "ublk-ts-ring-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function collect(ring: Ring, count: number): Map<number, number> {
  const seen = new Map<number, number>();
  while (seen.size < count) {
    ring.submitAndWait(1);
    ring.reap((ud, res) => {
      assert.ok(!seen.has(ud), `user data ${ud} completed twice`);
      seen.set(ud, res);
    });
  }
  return seen;
}

test("NOP round trip carries user data back", () => {
  const ring = new Ring({ entries: 4 });
  try {
    const off = ring.sqe();
    ring.prepNop(off, 0xdeadbeef);
    const done = collect(ring, 1);
    assert.deepEqual([...done], [[0xdeadbeef, 0]]);
    assert.equal(ring.ready, 0);
  } finally {
    ring.close();
  }
});

test("submitAndWaitFor submits, returns at the first CQE, and gives up after its timeout", () => {
  const ring = new Ring({ entries: 4, flags: 1 << 8 /* COOP_TASKRUN, as the queue loop uses */ });
  try {
    ring.prepNop(ring.sqe(), 11);
    assert.equal(ring.submitAndWaitFor(5e9), true);
    assert.equal(ring.pending, 0);
    const seen: number[] = [];
    ring.reap((ud) => seen.push(ud));
    assert.deepEqual(seen, [11]);
    const t0 = process.hrtime.bigint();
    assert.equal(ring.submitAndWaitFor(30e6), false, "nothing in flight: the wait must time out");
    const waitedMs = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(waitedMs >= 25 && waitedMs < 2000, `waited ${waitedMs} ms for a 30 ms timeout`);
    assert.equal(ring.ready, 0);
  } finally {
    ring.close();
  }
});

test("write then read a temp file through the ring returns the same bytes", () => {
  const path = join(dir, "rw.bin");
  writeFileSync(path, Buffer.alloc(0));
  const fd = openSync(path, "r+");
  const ring = new Ring({ entries: 8 });
  try {
    const src = native.allocBuffer(64 * 1024);
    const dst = native.allocBuffer(64 * 1024);
    const data = randomBytes(64 * 1024);
    new Uint8Array(src).set(data);
    ring.prepWrite(ring.sqe(), fd, native.bufferAddress(src), data.length, 4096, 1);
    assert.equal(collect(ring, 1).get(1), data.length);
    ring.prepRead(ring.sqe(), fd, native.bufferAddress(dst), data.length, 4096, 2);
    assert.equal(collect(ring, 1).get(2), data.length);
    assert.ok(Buffer.from(dst).equals(data), "bytes read differ from bytes written");
    assert.ok(readFileSync(path).subarray(4096).equals(data), "file content differs");
  } finally {
    ring.close();
    closeSync(fd);
  }
});

test("writev gathers and readv scatters through iovec arrays", () => {
  const path = join(dir, "rwv.bin");
  writeFileSync(path, Buffer.alloc(0));
  const fd = openSync(path, "r+");
  const ring = new Ring({ entries: 8 });
  try {
    const buf = native.allocBuffer(16 * 1024);
    const base = native.bufferAddress(buf);
    const iov = native.allocBuffer(2 * 16);
    const iovBase = native.bufferAddress(iov);
    const v = new DataView(iov);
    // Two pieces, in the order they are to land in the file: bytes 8K..12K, then 0..4K.
    const setIov = (i: number, addr: number, len: number) => {
      v.setBigUint64(i * 16, BigInt(addr), true);
      v.setBigUint64(i * 16 + 8, BigInt(len), true);
    };
    setIov(0, base + 8192, 4096);
    setIov(1, base, 4096);
    const data = randomBytes(16 * 1024);
    new Uint8Array(buf).set(data);
    ring.prepWritev(ring.sqe(), fd, iovBase, 2, 512, 1);
    assert.equal(collect(ring, 1).get(1), 8192);
    const file = readFileSync(path);
    assert.ok(file.subarray(512, 512 + 4096).equals(data.subarray(8192, 12288)), "first piece misplaced");
    assert.ok(file.subarray(512 + 4096, 512 + 8192).equals(data.subarray(0, 4096)), "second piece misplaced");
    new Uint8Array(buf).fill(0);
    ring.prepReadv(ring.sqe(), fd, iovBase, 2, 512, 2);
    assert.equal(collect(ring, 1).get(2), 8192);
    assert.ok(Buffer.from(buf, 8192, 4096).equals(data.subarray(8192, 12288)));
    assert.ok(Buffer.from(buf, 0, 4096).equals(data.subarray(0, 4096)));
  } finally {
    ring.close();
    closeSync(fd);
  }
});

test("a TIMEOUT completes with -ETIME after its time, not before", () => {
  const ring = new Ring({ entries: 4 });
  try {
    const ts = native.allocBuffer(16);
    const v = new DataView(ts);
    v.setBigInt64(0, 0n, true);
    v.setBigInt64(8, 30_000_000n, true); // 30 ms
    const t0 = process.hrtime.bigint();
    ring.prepTimeout(ring.sqe(), native.bufferAddress(ts), 7);
    ring.prepNop(ring.sqe(), 8);
    const done = collect(ring, 2);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(done.get(7), -62, "a timer ends with -ETIME");
    assert.ok(ms >= 29, `the timer fired after ${ms} ms`);
  } finally {
    ring.close();
  }
});

for (const [name, flags] of [
  ["", 0],
  [" (DEFER_TASKRUN ring, as queues use)", (1 << 8) | (1 << 12) | (1 << 13)],
] as const) {
  test(`a completion wakes a JS callback while the event loop stays free${name}`, async () => {
    const ring = new Ring({ entries: 4, flags });
    const fifo = join(dir, `wake${flags}.fifo`);
    // A pipe read stays pending until the timer writes, so the event loop must keep turning meanwhile.
    const { execFileSync } = await import("node:child_process");
    execFileSync("mkfifo", [fifo]);
    const rfd = openSync(fifo, "r+");
    const buf = native.allocBuffer(4096);
    try {
      let timerRan = false;
      const woke = new Promise<number>((resolve) => {
        ring.poll(() => {
          ring.reap((ud, res) => {
            if (ud === 7) resolve(res);
          });
        });
      });
      ring.prepRead(ring.sqe(), rfd, native.bufferAddress(buf), 4096, 0, 7);
      ring.submit();
      setTimeout(() => {
        timerRan = true;
        writeFileSync(fifo, "hello");
      }, 50);
      const res = await woke;
      assert.ok(timerRan, "completion arrived before the timer: the loop was not needed");
      assert.equal(res, 5);
      assert.equal(Buffer.from(buf, 0, 5).toString(), "hello");
    } finally {
      ring.close();
      closeSync(rfd);
    }
  });
}

test("a read on a bad fd completes with -EBADF", () => {
  const ring = new Ring({ entries: 4 });
  try {
    const buf = native.allocBuffer(4096);
    ring.prepRead(ring.sqe(), 9999, native.bufferAddress(buf), 4096, 0, 3);
    assert.equal(collect(ring, 1).get(3), -9);
  } finally {
    ring.close();
  }
});

test("a full submission queue is flushed without losing operations", () => {
  const ring = new Ring({ entries: 8, cqEntries: 16 });
  try {
    const total = 200;
    const seen = new Set<number>();
    for (let i = 0; i < total; i++) {
      let off = ring.sqe();
      if (off < 0) {
        ring.submit();
        ring.reap((ud) => seen.add(ud));
        off = ring.sqe();
      }
      assert.ok(off >= 0);
      ring.prepNop(off, i);
    }
    while (seen.size < total) {
      ring.submitAndWait(1);
      ring.reap((ud) => seen.add(ud));
    }
    assert.equal(seen.size, total);
    for (let i = 0; i < total; i++) assert.ok(seen.has(i), `lost NOP ${i}`);
  } finally {
    ring.close();
  }
});

test("closing a ring with operations in flight is clean, and the closed ring refuses use", async () => {
  const ring = new Ring({ entries: 4 });
  const fifo = join(dir, "pending.fifo");
  const { execFileSync } = await import("node:child_process");
  execFileSync("mkfifo", [fifo]);
  const rfd = openSync(fifo, "r+");
  const buf = native.allocBuffer(4096);
  ring.poll(() => {});
  ring.prepRead(ring.sqe(), rfd, native.bufferAddress(buf), 4096, 0, 1);
  ring.submit();
  ring.close();
  ring.close();
  assert.throws(() => ring.submit(), /closed/);
  closeSync(rfd);
});

test("rings work inside worker threads, including one left open at exit", async () => {
  const code = `
    const { parentPort, workerData } = require("node:worker_threads");
    import(workerData.ringUrl).then(({ Ring }) => {
      const ring = new Ring({ entries: 4 });
      ring.poll(() => {
        let got = -1;
        ring.reap((ud) => { got = ud; });
        if (got < 0) return;
        parentPort.postMessage(got);
        if (workerData.leaveOpen) process.exit(0); else { ring.close(); }
      });
      ring.prepNop(ring.sqe(), workerData.tag);
      ring.submit();
    });
  `;
  const ringUrl = new URL("../../src/uring/ring.js", import.meta.url).href;
  for (const [tag, leaveOpen] of [
    [11, false],
    [12, true],
    [13, false],
  ] as const) {
    const worker = new Worker(code, { eval: true, workerData: { ringUrl, tag, leaveOpen } });
    const got = await new Promise<number>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    assert.equal(got, tag);
    const exitCode = await new Promise<number>((resolve) => worker.once("exit", resolve));
    assert.equal(exitCode, 0);
  }
});

test("aligned buffers and addresses", () => {
  const a = native.allocBuffer(8192);
  assert.equal(a.byteLength, 8192);
  assert.equal(native.bufferAddress(a) % native.pageSize, 0);
  const view = new Uint8Array(a, 100, 10);
  assert.equal(native.bufferAddress(view), native.bufferAddress(a) + 100);
  assert.ok(native.gettid() > 0);
  assert.ok(native.getAffinity().length >= 1);
});
