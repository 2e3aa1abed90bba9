// A user's own target module, loaded by path, serves real IO on every queue thread.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { addDevice, deleteAll, fio, sh, skipReason, ublk } from "./helpers.js";

// The README's example, in TypeScript: it runs as is (Node's type stripping, or tsx on Node 20).
const example = fileURLToPath(new URL("../../../examples/ram-target.ts", import.meta.url));

after(() => {
  if (!skipReason) deleteAll();
});

test("examples/ram-target.ts: data written through the device reads back equal", { skip: skipReason }, () => {
  const id = addDevice("-t", example, "--size", "8M", "-q", "2");
  const dev = `/dev/ublkb${id}`;
  assert.equal(sh(`blockdev --getsize64 ${dev}`).stdout.trim(), String(8 * 2 ** 20));
  sh(`dd if=/dev/urandom of=/tmp/ram-src bs=1M count=8 status=none`);
  sh(`dd if=/tmp/ram-src of=${dev} bs=256k oflag=direct status=none`);
  sh(`dd if=${dev} of=/tmp/ram-back bs=64k iflag=direct status=none`);
  sh("cmp /tmp/ram-src /tmp/ram-back");
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("a .mts target outside any package, with types and an interface, serves every queue", {
  skip: skipReason,
}, () => {
  const mod = "/tmp/pattern-target.mts";
  // Each queue thread loads the module itself: a type left unstripped there would fail the device.
  sh(`cat > ${mod} <<'TS'
interface Pattern { byte: number }
type Req = { offset: number; length: number; buffer: Uint8Array };
const fill = (req: Req, p: Pattern): number => (req.buffer.fill(p.byte + (req.offset >> 20), 0, req.length), req.length);
export default {
  name: "pattern",
  open: (_options: Record<string, unknown>) => ({ size: 4 * 1024 * 1024, state: { byte: 40 } satisfies Pattern }),
  read: (req: Req, ctx: { state: Pattern }): number => fill(req, ctx.state),
  write: (req: Req): number => req.length,
};
TS`);
  const id = addDevice("-t", mod, "-q", "2");
  const dev = `/dev/ublkb${id}`;
  // 1 MiB steps: byte 40 + the MiB index, through both queues (taskset pins the reader per queue).
  for (const cpu of [0, 1]) {
    const r = sh(
      `taskset -c ${cpu} dd if=${dev} bs=4k skip=768 count=1 iflag=direct status=none | od -An -tu1 | head -1`,
    );
    assert.match(r.stdout, /^\s*43\s+43\s+43/);
  }
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("a target that throws fails only that request, and the device stays up", { skip: skipReason }, () => {
  const mod = "/tmp/flaky-target.mjs";
  sh(`cat > ${mod} <<'JS'
export default {
  name: "flaky",
  open: () => ({ size: 8 * 1024 * 1024, state: null }),
  read(req) { if (req.offset === 4096) throw Object.assign(new Error("bad sector"), { errno: 61 }); req.buffer.fill(7, 0, req.length); return req.length; },
  write: (req) => req.length,
};
JS`);
  const id = addDevice("-t", mod, "-q", "1");
  const dev = `/dev/ublkb${id}`;
  const bad = sh(`dd if=${dev} of=/dev/null bs=4k skip=1 count=1 iflag=direct`, { allowFail: true });
  assert.notEqual(bad.code, 0, "the read of the failing sector should fail");
  const good = sh(`dd if=${dev} bs=4k skip=2 count=1 iflag=direct status=none | od -An -tu1 | head -1`);
  assert.match(good.stdout, /^\s*7\s+7\s+7/);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("an async target (Promises settled from the event loop) serves data correctly, also under fio", {
  skip: skipReason,
}, () => {
  // Every request completes from a timer or setImmediate, so the queue must wait on its event loop
  // while Promises are pending and go back to its blocking wait after.
  const mod = "/tmp/async-target.mjs";
  sh(`cat > ${mod} <<'JS'
const later = (fn) => new Promise((resolve) => (Math.random() < 0.5 ? setImmediate : setTimeout)(() => resolve(fn())));
export default {
  name: "async-ram",
  open: () => ({ size: 8 * 1024 * 1024, state: new SharedArrayBuffer(8 * 1024 * 1024) }),
  read: (req, { state }) => later(() => (req.buffer.set(new Uint8Array(state, req.offset, req.length)), req.length)),
  write: (req, { state }) => later(() => (new Uint8Array(state, req.offset, req.length).set(req.data), req.length)),
};
JS`);
  const id = addDevice("-t", mod, "-q", "2");
  const dev = `/dev/ublkb${id}`;
  sh("dd if=/dev/urandom of=/tmp/async-src bs=1M count=8 status=none");
  sh(`dd if=/tmp/async-src of=${dev} bs=64k oflag=direct status=none`);
  sh(`cmp /tmp/async-src ${dev}`);
  const r = fio(
    `--name=a --filename=${dev} --rw=randrw --bs=4k --direct=1 --ioengine=io_uring --iodepth=8 --size=8M --time_based --runtime=3`,
  );
  assert.equal(r.jobs[0].error, 0);
  assert.ok(r.jobs[0].read.io_bytes > 0 && r.jobs[0].write.io_bytes > 0);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});
