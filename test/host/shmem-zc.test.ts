// Shared-memory zero copy (--shmem_zc) without the driver: the options kublk spells, the queues'
// table of registered regions (a flagged request lands on its bytes in the region), and the socket an
// application passes its memory's descriptor through (io_uring SCM_RIGHTS, both ends).
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, truncateSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { specFromArgs } from "../../src/cli/spec.js";
import { native } from "../../src/native.js";
import { Request } from "../../src/queue/request.js";
import { newRegionTable, publishRegion, SharedRegions, withdrawRegion } from "../../src/queue/shmem-zc.js";
import { ShmemSocketServer, SocketError, shareMemory } from "../../src/shmem-socket.js";
import * as U from "../../src/uapi/ublk_cmd.js";

const dir = mkdtempSync(join(tmpdir(), "ublk-ts-shmem-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("--shmem_zc, --htlb FILE and --rdonly_shmem_buf as kublk spells them; bad combinations refused", () => {
  const spec = specFromArgs(
    parseArgs(["-t", "null", "--shmem_zc", "--htlb", "/mnt/h/buf", "--rdonly_shmem_buf"]),
  );
  assert.ok(spec.flags & U.UBLK_F_SHMEM_ZC);
  assert.deepEqual(spec.shmem, { file: "/mnt/h/buf", readOnly: true });
  assert.deepEqual(specFromArgs(parseArgs(["-t", "null", "--shmem_zc"])).shmem, {
    file: undefined,
    readOnly: undefined,
  });
  for (const [argv, why] of [
    [["--htlb", "/f"], /go with --shmem_zc/],
    [["--shmem_zc", "--rdonly_shmem_buf"], /give --htlb/],
    [["--shmem_zc", "-r", "1"], /user recovery/],
    [["--shmem_zc", "-u", "--metadata_size", "8"], /integrity/],
  ] as const) {
    assert.throws(
      () => specFromArgs(parseArgs(["-t", "null", ...argv])),
      (e: Error) => {
        assert.ok(e instanceof UsageError);
        assert.match(e.message, why);
        return true;
      },
    );
  }
});

/** A descriptor array with tag `tag` holding a READ of `len` bytes flagged SHMEM_ZC at (index, offset). */
function iods(tag: number, len: number, index: number, offset: number): Uint32Array {
  const v = new DataView(new ArrayBuffer(4 * U.ublksrv_io_desc_LAYOUT.size));
  const at = tag * U.ublksrv_io_desc_LAYOUT.size;
  v.setUint32(at, U.UBLK_IO_OP_READ | U.UBLK_IO_F_SHMEM_ZC, true);
  v.setUint32(at + 4, len / 512, true);
  const addr = U.ublk_shmem_zc_addr(index, offset);
  v.setUint32(at + 16, addr % 2 ** 32, true);
  v.setUint32(at + 20, Math.floor(addr / 2 ** 32), true);
  return new Uint32Array(v.buffer);
}

test("a flagged request is served from its region: address, bytes, and back to its own buffer", () => {
  const path = join(dir, "region");
  const fd = openSync(path, "w+");
  truncateSync(path, 64 * 1024);
  const table = newRegionTable();
  publishRegion(table, 3, fd, 64 * 1024, true);
  const regions = new SharedRegions(table);
  const own = native.allocBuffer(4096);
  const req = new Request(0, 1, new Uint8Array(own), native.bufferAddress(own), false);
  try {
    let view = iods(1, 4096, 3, 8192);
    req.decode(view);
    assert.ok(regions.attach(req, view));
    assert.ok(req.inRegion);
    assert.notEqual(req.address, native.bufferAddress(own));
    assert.equal(req.data.length, 4096);
    req.data.set(Buffer.from("shared bytes")); // what a target reads into the request's data
    const back = Buffer.alloc(12);
    readSync(fd, back, 0, 12, 8192);
    assert.equal(back.toString(), "shared bytes", "the data landed in the file at the request's offset");
    assert.throws(() => req.serveFrom(12345), /shared memory/);
    req.leaveRegion();
    assert.equal(req.address, native.bufferAddress(own), "the commit carries the tag's own buffer again");
    assert.equal(req.buffer.buffer, own);
    // No such index, or past the region's end: nothing to serve from.
    view = iods(1, 4096, 4, 0);
    req.decode(view);
    assert.equal(regions.attach(req, view), false);
    view = iods(1, 8192, 3, 60 * 1024);
    req.decode(view);
    assert.equal(regions.attach(req, view), false);
    withdrawRegion(table, 3);
    view = iods(1, 4096, 3, 0);
    req.decode(view);
    assert.equal(regions.attach(req, view), false, "an unregistered buffer is dropped");
    assert.equal(regions.served, 1);
  } finally {
    regions.close();
    closeSync(fd);
  }
});

test("the socket passes an application's descriptor to the daemon and its answer back", async (t) => {
  const path = join(dir, "ublkb9.sock");
  let server: ShmemSocketServer;
  try {
    server = await ShmemSocketServer.listen(
      path,
      async (fd) => {
        try {
          if (writeSync(fd, "from the daemon", 0) !== 15) throw new Error("short write");
          return 7;
        } finally {
          closeSync(fd);
        }
      },
      () => {},
    );
  } catch (err) {
    if (err instanceof SocketError && err.errno === 22) {
      t.skip("this kernel's io_uring lacks BIND/LISTEN (Linux >= 6.11)");
      return;
    }
    throw err;
  }
  const file = join(dir, "mem");
  const fd = openSync(file, "w+");
  try {
    assert.equal(await shareMemory(path, fd), 7);
    const got = Buffer.alloc(15);
    readSync(fd, got, 0, 15, 0);
    assert.equal(got.toString(), "from the daemon", "the daemon wrote through the descriptor it received");
  } finally {
    server.close();
    closeSync(fd);
  }
  await assert.rejects(shareMemory(path, 0), /connect/, "the socket is gone once closed");
});

test("a registration the daemon refuses reaches the application as its errno", async (t) => {
  const path = join(dir, "ublkb8.sock");
  let server: ShmemSocketServer;
  try {
    server = await ShmemSocketServer.listen(
      path,
      async (fd) => {
        closeSync(fd);
        throw Object.assign(new Error("no room"), { errno: 28 });
      },
      () => {},
    );
  } catch (err) {
    if (err instanceof SocketError && err.errno === 22) {
      t.skip("this kernel's io_uring lacks BIND/LISTEN (Linux >= 6.11)");
      return;
    }
    throw err;
  }
  const fd = openSync(join(dir, "mem2"), "w+");
  try {
    await assert.rejects(shareMemory(path, fd), (e: SocketError) => e.errno === 28);
  } finally {
    server.close();
    closeSync(fd);
  }
});
