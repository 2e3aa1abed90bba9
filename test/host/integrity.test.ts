// Integrity metadata (UBLK_F_INTEGRITY) without the driver: kublk's options and their refusals, the
// parameters SET_PARAMS gets, the user-copy position of a request's metadata (bit 62), and the loop
// target's metadata file and its IO on a real io_uring.
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { specFromArgs } from "../../src/cli/spec.js";
import { type IntegrityParams, mergeParams, toUblkParams, validateParams } from "../../src/ctrl/params.js";
import { native } from "../../src/native.js";
import { QueueIntegrity } from "../../src/queue/integrity.js";
import { Request } from "../../src/queue/request.js";
import { MetadataIo, openMetadataFile } from "../../src/targets/loop-metadata.js";
import type { IoRequest, QueueContext } from "../../src/targets/target.js";
import { LBMD_PI_CSUM_CRC16_T10DIF, LBMD_PI_CSUM_NONE } from "../../src/uapi/lbmd.js";
import * as U from "../../src/uapi/ublk_cmd.js";
import { SQE_FD, SQE_FLAGS, SQE_LEN, SQE_OFF, SQE_OPCODE } from "../../src/uring/constants.js";
import { Ring } from "../../src/uring/ring.js";

const dir = mkdtempSync(join(tmpdir(), "ublk-ts-integrity-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const add = (...argv: string[]) => specFromArgs(parseArgs(argv));

test("kublk's integrity options become the device's integrity parameters; loop's second FILE is the metadata's", () => {
  const spec = add(
    "-t",
    "loop",
    "-u",
    "--integrity_capable",
    "--integrity_reftag",
    "--metadata_size",
    "64",
    "--pi_offset",
    "56",
    "--csum_type",
    "t10dif",
    "data.img",
    "meta.img",
  );
  assert.deepEqual(spec.params.integrity, {
    metadataSize: 64,
    piOffset: 56,
    csumType: LBMD_PI_CSUM_CRC16_T10DIF,
    capable: true,
    refTag: true,
    tagSize: 0,
  });
  assert.equal(spec.targetOptions.file, "data.img");
  assert.equal(spec.targetOptions.metadata_file, "meta.img");
  assert.equal(add("-t", "null", "-u").params.integrity, undefined);
});

test("integrity options are refused in one line without -u, without --metadata_size, or malformed", () => {
  const cases: [string[], RegExp][] = [
    [["--metadata_size", "8"], /only by user copy: add -u/],
    [["-u", "--csum_type", "ip"], /--csum_type needs --metadata_size/],
    [["-u", "--integrity_reftag"], /--integrity_reftag needs --metadata_size/],
    [["-u", "--metadata_size", "8", "--csum_type", "crc32"], /--csum_type takes ip, t10dif or nvme/],
    [["-u", "--metadata_size", "0"], /--metadata_size 0 is out of range/],
    [["-u", "--metadata_size", "256"], /out of range/],
  ];
  for (const [argv, pattern] of cases) {
    assert.throws(
      () => add("-t", "null", ...argv),
      (e: Error) => e instanceof UsageError && pattern.test(e.message),
    );
  }
  // A second FILE is the metadata's only with integrity.
  assert.throws(() => add("-t", "loop", "-u", "a.img", "b.img"), /unexpected arguments: b.img/);
});

test("parameters: the driver's checks as one line; SET_PARAMS carries interval = logical block", () => {
  const ip = (over: Partial<IntegrityParams>): IntegrityParams => ({
    metadataSize: 8,
    piOffset: 0,
    csumType: LBMD_PI_CSUM_CRC16_T10DIF,
    capable: false,
    refTag: true,
    tagSize: 0,
    ...over,
  });
  const check = (i: IntegrityParams) => validateParams(mergeParams({ integrity: i }), 1 << 20, 1 << 19);
  assert.equal(check(ip({})), null);
  assert.match(check(ip({ piOffset: 4 })) ?? "", /8-byte PI tuple at offset 4 does not fit in 8 bytes/);
  assert.match(check(ip({ csumType: LBMD_PI_CSUM_NONE })) ?? "", /reference tag needs a checksum type/);
  assert.match(check(ip({ csumType: 3 })) ?? "", /unknown integrity checksum type 3/);

  const p = mergeParams({
    logicalBlockSize: 4096,
    integrity: ip({ metadataSize: 16, piOffset: 8, capable: true }),
  });
  const k = toUblkParams(p, 1 << 20, 1 << 19);
  assert.ok(k.types & U.UBLK_PARAM_TYPE_INTEGRITY);
  assert.deepEqual(k.integrity, {
    flags: 3, // LBMD_PI_CAP_INTEGRITY | LBMD_PI_CAP_REFTAG
    max_integrity_segments: 0,
    interval_exp: 12,
    metadata_size: 16,
    pi_offset: 8,
    csum_type: LBMD_PI_CSUM_CRC16_T10DIF,
    tag_size: 0,
  });
  assert.equal(toUblkParams(mergeParams(), 1 << 20, 1 << 19).types & U.UBLK_PARAM_TYPE_INTEGRITY, 0);
});

/** A request as the queue decodes it from its io_desc. */
function decoded(qid: number, tag: number, op: number, flags: number, sectors: number): Request {
  const req = new Request(qid, tag, new Uint8Array(0), 0, true);
  const iod = new DataView(new ArrayBuffer((tag + 1) * 24));
  iod.setUint32(tag * 24, op | flags, true);
  iod.setUint32(tag * 24 + 4, sectors, true);
  req.decode(new Uint32Array(iod.buffer));
  return req;
}

test("a request's metadata is read and written at its user-copy position with bit 62 set", () => {
  const ring = new Ring({ entries: 8 });
  try {
    const charFd = 77;
    const q = new QueueIntegrity({ metadataSize: 8, intervalShift: 9 }, 4, 64 * 1024, charFd, 3);
    const write = decoded(3, 2, U.UBLK_IO_OP_WRITE, U.UBLK_IO_F_INTEGRITY, 8);
    q.attach(write);
    assert.equal(write.integrity?.length, 64, "8 bytes for each of 8 sectors");
    assert.equal(q.startCopyIn(ring, write, 1), true);
    const v = ring.sqeView;
    const pos = (off: number) => v.getBigUint64(off + SQE_OFF, true);
    const expected = (1n << 62n) | (0x80000000n + (3n << 41n) + (2n << 25n));
    assert.equal(v.getUint8(SQE_OPCODE), 22 /* IORING_OP_READ */);
    assert.equal(v.getInt32(SQE_FD, true), charFd);
    assert.equal(v.getUint32(SQE_LEN, true), 64);
    assert.equal(pos(0), expected);
    assert.equal(q.awaiting(2), true);
    // A short copy asks for the rest, at the metadata byte it stopped at.
    assert.equal(q.copiedIn(ring, write, 24, 1), 0);
    assert.equal(pos(64), expected + 24n);
    assert.equal(v.getUint32(64 + SQE_LEN, true), 40);
    assert.equal(q.copiedIn(ring, write, 40, 1), 1);
    assert.equal(q.awaiting(2), false);

    const read = decoded(3, 1, U.UBLK_IO_OP_READ, U.UBLK_IO_F_INTEGRITY, 16);
    q.attach(read);
    assert.ok(
      read.integrity?.every((b) => b === 0xff),
      "a READ's metadata starts as 0xFF",
    );
    assert.equal(q.prepCopyOut(ring, read, 4096, 2), true, "4 KiB read: 64 bytes of metadata");
    assert.equal(v.getUint8(128 + SQE_OPCODE), 23 /* IORING_OP_WRITE */);
    assert.equal(v.getUint32(128 + SQE_LEN, true), 64);
    assert.equal(v.getUint8(128 + SQE_FLAGS), 4 /* IOSQE_IO_LINK: the commit waits for it */);
    assert.equal(pos(128), (1n << 62n) | (0x80000000n + (3n << 41n) + (1n << 25n)));

    const plain = decoded(3, 0, U.UBLK_IO_OP_WRITE, 0, 8);
    q.attach(plain);
    assert.equal(plain.integrity, null, "no UBLK_IO_F_INTEGRITY, no metadata");
    assert.equal(q.startCopyIn(ring, plain, 1), false);
  } finally {
    ring.close();
  }
});

test("loop's metadata file: created full of 0xFF, short ones extended, and IO joined with the data's", () => {
  const format = { metadataSize: 8, intervalBytes: 512 };
  const path = join(dir, "img.meta");
  const meta = openMetadataFile(path, 1 << 20, format);
  assert.equal(statSync(path).size, 16384);
  assert.ok(readFileSync(path).every((b) => b === 0xff));
  const short = join(dir, "short.meta");
  writeFileSync(short, Buffer.alloc(100, 0x11));
  const m2 = openMetadataFile(short, 1 << 20, format);
  const bytes = readFileSync(short);
  assert.equal(bytes.length, 16384);
  assert.ok(bytes.subarray(0, 100).every((b) => b === 0x11) && bytes.subarray(100).every((b) => b === 0xff));
  closeSync(m2.fd);

  const ring = new Ring({ entries: 8 });
  try {
    const ctx = { ring, userData: (tag: number, sub = 0) => (sub << 24) | tag } as unknown as QueueContext;
    const io = new MetadataIo(meta, 4, 3);
    const mem = native.allocBuffer(64);
    const integrity = new Uint8Array(mem).fill(0xab);
    const req = (op: number, offset: number, carries: boolean) =>
      ({
        tag: 1,
        op,
        offset,
        length: 4096,
        integrity: carries ? integrity : null,
        integrityAddress: native.bufferAddress(mem),
      }) as unknown as IoRequest;
    const run = (r: IoRequest, submit: () => void): number | symbol => {
      submit();
      let out: number | symbol = -1;
      for (let seen = 0; seen < 1; ) {
        ring.submitAndWait(1);
        seen += ring.reap((_, res) => {
          // The data's half "completes" with the full length right after the metadata's.
          io.settle(r, res, true);
          out = io.settle(r, 4096, false);
        });
      }
      return out;
    };
    const w = req(U.UBLK_IO_OP_WRITE, 8192, true);
    assert.equal(
      run(w, () => io.write(ctx, w, false)),
      4096,
    );
    const file = readFileSync(path);
    assert.ok(
      file.subarray(128, 192).every((b) => b === 0xab),
      "block 16's metadata at byte 16 * 8",
    );
    assert.ok(file.subarray(0, 128).every((b) => b === 0xff) && file[192] === 0xff, "nothing else touched");
    const unprotected = req(U.UBLK_IO_OP_WRITE, 8192 + 2048, false);
    run(unprotected, () => io.write(ctx, unprotected, false));
    const after = readFileSync(path);
    assert.ok(after.subarray(128, 160).every((b) => b === 0xab));
    assert.ok(
      after.subarray(160, 224).every((b) => b === 0xff),
      "a WRITE without metadata marks it unwritten",
    );
    integrity.fill(0);
    const r = req(U.UBLK_IO_OP_READ, 8192, true);
    assert.equal(
      run(r, () => io.read(ctx, r)),
      4096,
    );
    assert.ok(
      integrity.subarray(0, 32).every((b) => b === 0xab) && integrity.subarray(32).every((b) => b === 0xff),
    );
  } finally {
    ring.close();
  }
});
