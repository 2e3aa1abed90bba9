// The two halves of batched IO commands (-b) that need no ublk driver: the element buffers of
// COMMIT_IO_CMDS (partial commits are sent again from where the driver stopped) and the provided
// buffer ring the multishot fetch writes tags into, exercised through the host's io_uring.
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ElementBuffers } from "../../src/queue/batch-commit.js";
import { TagBufferRing } from "../../src/queue/batch-fetch.js";
import {
  IORING_CQE_BUFFER_SHIFT,
  IORING_CQE_F_BUFFER,
  IORING_OP_READ,
  IOSQE_BUFFER_SELECT,
  SQE_BUF_INDEX,
  SQE_FLAGS,
} from "../../src/uring/constants.js";
import { Ring } from "../../src/uring/ring.js";

const ELEM = 16; // header + buffer address
const EBUSY = 16;
const ENOBUFS = 105;

/** Element buffers over plain memory at made-up addresses, so tests see exactly what is sent. */
function buffers(capacity: number): { eb: ElementBuffers; views: DataView[] } {
  const views: DataView[] = [];
  const eb = new ElementBuffers(
    ELEM,
    capacity,
    (n) => {
      const ab = new ArrayBuffer(n);
      views.push(new DataView(ab));
      return ab;
    },
    () => 0x10000 * views.length,
  );
  return { eb, views };
}

function element(v: DataView, i: number): { tag: number; result: number; addr: number } {
  const o = i * ELEM;
  return {
    tag: v.getUint16(o, true),
    result: v.getInt32(o + 4, true),
    addr: v.getUint32(o + 8, true) + v.getUint32(o + 12, true) * 2 ** 32,
  };
}

test("one wake-up's commits fill one buffer in order, with tag, result and buffer address", () => {
  const { eb, views } = buffers(8);
  eb.add(3, 4096, 0x7f0000001000);
  eb.add(5, -5, 0x7f0000002000);
  assert.equal(eb.pending, 2);
  const b = eb.take();
  assert.ok(b);
  assert.deepEqual(b, { index: 0, address: 0x10000, count: 2 });
  assert.equal(eb.pending, 0);
  assert.deepEqual(element(views[0], 0), { tag: 3, result: 4096, addr: 0x7f0000001000 });
  assert.deepEqual(element(views[0], 1), { tag: 5, result: -5, addr: 0x7f0000002000 });
  assert.equal(eb.take(), null, "nothing new: no command");
  // While that buffer is in flight, new commits go to another one.
  eb.add(1, 512);
  assert.equal(eb.take()?.index, 1);
  assert.equal(eb.allocated, 2);
  // A complete commit frees the buffer for the next batch.
  assert.deepEqual(eb.completed(0, 2 * ELEM), { resend: null, refusedTag: -1, error: 0 });
  eb.add(7, 1);
  assert.equal(eb.take()?.index, 0);
  assert.equal(eb.allocated, 2);
});

test("a partial commit drops the refused element and sends the rest again from the same buffer", () => {
  const { eb } = buffers(8);
  for (const tag of [10, 11, 12, 13, 14]) eb.add(tag, 4096, 0x1000 * tag);
  const b = eb.take();
  assert.ok(b);
  // The driver committed 10 and 11, stopped at 12 (refused): 13 and 14 go again.
  const first = eb.completed(b.index, 2 * ELEM);
  assert.equal(first.refusedTag, 12);
  assert.equal(first.error, 0);
  assert.deepEqual(first.resend, { index: b.index, address: b.address + 3 * ELEM, count: 2 });
  assert.equal(eb.tagAt(b.index, 3), 13);
  // The resend fails outright on its first element (-EBUSY): 14 goes again on its own.
  const second = eb.completed(b.index, -EBUSY);
  assert.equal(second.refusedTag, 13);
  assert.equal(second.error, -EBUSY);
  assert.deepEqual(second.resend, { index: b.index, address: b.address + 4 * ELEM, count: 1 });
  // Its last element committed: the buffer is free, and reused.
  assert.deepEqual(eb.completed(b.index, ELEM), { resend: null, refusedTag: -1, error: 0 });
  eb.add(1, 1);
  assert.equal(eb.take()?.index, b.index);
  assert.equal(eb.allocated, 1);
});

test("a refused last element leaves nothing to resend; a batch never exceeds the queue depth", () => {
  const { eb } = buffers(2);
  eb.add(0, 1);
  eb.add(1, 1);
  assert.throws(() => eb.add(2, 1), /more than 2 elements/);
  const b = eb.take();
  assert.ok(b);
  const out = eb.completed(b.index, ELEM);
  assert.equal(out.refusedTag, 1);
  assert.equal(out.resend, null);
  eb.add(0, 1);
  assert.equal(eb.take()?.index, b.index, "the buffer was freed");
});

test("the tag buffer ring: io_uring picks a registered buffer per read, names it, and takes it back", () => {
  const dir = mkdtempSync(join(tmpdir(), "ublk-ts-batch-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "tags");
  // Pairs of u16 "tags": read n returns 100 + n, 200 + n.
  const words = new Uint16Array(20);
  for (let n = 0; n < 10; n++) words.set([100 + n, 200 + n], 2 * n);
  writeFileSync(path, words);
  const fd = openSync(path, "r");
  const ring = new Ring({ entries: 8 });
  try {
    const tags = new TagBufferRing(ring, 3, 4);
    assert.equal(tags.entries, 4);
    assert.equal(tags.bufBytes, 8);
    tags.register();
    const seen: { res: number; flags: number }[] = [];
    const read = (n: number) => {
      const off = ring.sqe();
      ring.prepRw(off, IORING_OP_READ, fd, 0, 4, 4 * n, n); // the kernel picks the buffer
      ring.sqeView.setUint8(off + SQE_FLAGS, IOSQE_BUFFER_SELECT);
      ring.sqeView.setUint16(off + SQE_BUF_INDEX, 3, true);
      ring.submitAndWait(1);
      ring.reap((_ud, res, flags) => seen.push({ res, flags }));
      return seen[seen.length - 1];
    };
    // Five reads through four buffers: the fifth works only because the first was given back.
    for (let n = 0; n < 5; n++) {
      const { res, flags } = read(n);
      assert.equal(res, 4, `read ${n}: ${res}`);
      assert.ok(flags & IORING_CQE_F_BUFFER, "no provided buffer used");
      const bid = flags >>> IORING_CQE_BUFFER_SHIFT;
      assert.deepEqual([tags.tag(bid, 0), tags.tag(bid, 1)], [100 + n, 200 + n]);
      if (n === 0) tags.give(bid);
    }
    assert.equal(read(5).res, -ENOBUFS, "all four buffers are out: the next read must find none");
    // reset() starts over with every buffer in the ring.
    tags.reset();
    const { res, flags } = read(6);
    assert.equal(res, 4);
    assert.deepEqual([tags.tag(flags >>> IORING_CQE_BUFFER_SHIFT, 0)], [106]);
  } finally {
    ring.close();
    closeSync(fd);
  }
});
