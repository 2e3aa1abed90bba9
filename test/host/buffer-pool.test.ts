// The NEED_GET_DATA buffer pool: allocates only on demand, never hands out a buffer the kernel may
// still be reading (retired but not yet recycled after a submit).
import assert from "node:assert/strict";
import { test } from "node:test";
import { BufferPool } from "../../src/queue/buffer-pool.js";

test("buffers are allocated on demand, page-aligned, and reused only after recycle()", () => {
  const pool = new BufferPool(64 * 1024);
  assert.equal(pool.allocated, 0, "nothing is allocated before a request needs it");
  const a = pool.acquire();
  const b = pool.acquire();
  assert.equal(pool.allocated, 2);
  assert.notEqual(a.address, b.address);
  assert.equal(a.address % 4096, 0);
  assert.equal(a.bytes.length, 64 * 1024);
  pool.retire(a);
  const c = pool.acquire();
  assert.notEqual(c.index, a.index, "a retired buffer must not be reused before the commit was submitted");
  assert.equal(pool.allocated, 3);
  pool.recycle();
  const d = pool.acquire();
  assert.equal(d.index, a.index, "after recycle() the buffer is reused instead of allocating");
  assert.equal(pool.allocated, 3);
});
