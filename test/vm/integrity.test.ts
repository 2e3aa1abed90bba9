// Integrity metadata (UBLK_F_INTEGRITY, kublk's --metadata_size and friends): the block layer
// generates T10 PI on writes and checks it on reads, and the loop target keeps it in IMAGE.meta.
// A corrupted tuple in that file, or a flipped data byte in the image, must fail the read of that
// block and of no other: the PI really goes through the target and back. A driver without the
// feature refuses the option in one line.
import assert from "node:assert/strict";
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { after, test } from "node:test";
import { UBLK_F_INTEGRITY, UBLK_F_USER_COPY } from "../../src/uapi/ublk_cmd.js";
import { addDevice, deleteAll, fioRun, freshImage, hasAny, needs, sh, skipReason, ublk } from "./helpers.js";

const DIR = "/tmp/ublk-integrity-test"; // the guest's tmpfs

after(() => {
  if (skipReason) return;
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

/** Inverts the byte at `offset` of `path` behind the device's back. */
function flipByte(path: string, offset: number): void {
  const fd = openSync(path, "r+");
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads each of `blocks` (512 bytes, O_DIRECT: no page cache between us and the PI check) in one
 * shell, and returns each block's dd error message ("" when the read succeeded).
 */
function readEach(dev: string, blocks: number[]): Map<number, string> {
  const out = sh(
    `for b in ${blocks.join(" ")}; do ` +
      `e=$(dd if=${dev} of=/dev/null bs=512 skip=$b count=1 iflag=direct status=none 2>&1) && e=; ` +
      'echo "$b:$e"; done',
  ).stdout;
  return new Map(
    out
      .trim()
      .split("\n")
      .map((l) => [Number(l.split(":")[0]), l.slice(l.indexOf(":") + 1)]),
  );
}

test("loop -u with T10-DIF type 1 PI: sysfs shows the format, PI round-trips through IMAGE.meta, corruption fails only its block", {
  skip: needs(UBLK_F_INTEGRITY, UBLK_F_USER_COPY),
}, () => {
  const img = freshImage(DIR, "pi.img", "64M", true);
  const id = addDevice(
    ...["-t", "loop", "-u", "-q", "2", "--integrity_capable", "--integrity_reftag"],
    ...["--metadata_size", "16", "--pi_offset", "8", "--csum_type", "t10dif", "--tag_size", "2", img],
  );
  const dev = `/dev/ublkb${id}`;
  const sysfs = (name: string) => readFileSync(`/sys/block/ublkb${id}/integrity/${name}`, "utf8").trim();
  assert.equal(sysfs("format"), "T10-DIF-TYPE1-CRC");
  assert.equal(sysfs("device_is_integrity_capable"), "1");
  assert.equal(sysfs("protection_interval_bytes"), "512");
  assert.equal(sysfs("tag_size"), "2");
  assert.equal(sysfs("write_generate"), "1");
  assert.equal(sysfs("read_verify"), "1");
  const meta = `${img}.meta`;
  assert.equal(statSync(meta).size, ((64 << 20) / 512) * 16, "16 bytes of metadata per block");

  // Two jobs of random writes, each verified by crc32c as it goes: every read is PI-checked.
  const fio = fioRun(
    `--name=pi --filename=${dev} --rw=randwrite --bsrange=4k-128k --direct=1 --ioengine=io_uring ` +
      "--iodepth=8 --numjobs=2 --size=2M --offset_increment=2M --verify=crc32c --verify_state_save=0",
  );
  assert.ok(fio.code === 0 && fio.jobs.length === 2 && fio.jobs.every((j) => j.error === 0), fio.output);

  // 1 MiB of known bytes at 32 MiB, read back through the PI check.
  const first = 65536;
  const src = `${DIR}/src`;
  sh(
    `head -c 1048576 /dev/urandom >${src} && ` +
      `dd if=${src} of=${dev} bs=64k seek=512 oflag=direct conv=notrunc status=none && ` +
      `dd if=${dev} of=${DIR}/back bs=64k skip=512 count=16 iflag=direct status=none`,
  );
  assert.ok(readFileSync(`${DIR}/back`).equals(readFileSync(src)), "bytes read back differ");

  // The file holds each block's tuple at pi_offset: big-endian reference tag = the block number.
  const tuples = readFileSync(meta);
  for (const block of [first, first + 1, first + 2047]) {
    assert.equal(tuples.readUInt32BE(block * 16 + 8 + 4), block, `reference tag of block ${block}`);
  }
  const unwritten = 20000;
  assert.ok(
    tuples.subarray(unwritten * 16, unwritten * 16 + 16).every((b) => b === 0xff),
    "never written: 0xFF",
  );

  // Behind the device's back, a wrong reference tag for one block and a flipped data byte in
  // another: those two blocks fail (EILSEQ), their neighbours and unwritten blocks read.
  const badTag = first + 100;
  const badData = first + 300;
  flipByte(meta, badTag * 16 + 15);
  flipByte(img, badData * 512 + 17);
  const errors = readEach(dev, [unwritten, badTag - 1, badTag, badTag + 1, badData, badData + 1]);
  const EILSEQ = /Invalid or incomplete multibyte or wide character/;
  assert.match(
    errors.get(badTag) ?? "",
    EILSEQ,
    `block ${badTag}, its ref tag corrupted, read without EILSEQ`,
  );
  assert.match(
    errors.get(badData) ?? "",
    EILSEQ,
    `block ${badData}, its data corrupted, read without EILSEQ`,
  );
  for (const ok of [unwritten, badTag - 1, badTag + 1, badData + 1])
    assert.equal(errors.get(ok), "", `block ${ok} must read: ${errors.get(ok)}`);

  const del = ublk("del", "-n", String(id));
  assert.equal(del.code, 0, del.stderr);
});

test("without UBLK_F_INTEGRITY, --metadata_size is refused in one line naming it, and nothing is created", {
  skip: hasAny(UBLK_F_INTEGRITY),
}, () => {
  const img = freshImage(DIR, "old.img", "16M");
  const r = ublk("add", "-t", "loop", "-u", "--metadata_size", "8", "--csum_type", "ip", img);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ublk: [^\n]*UBLK_F_INTEGRITY[^\n]*\n$/, `unexpected message: ${r.stderr}`);
  assert.equal(readFileSync("/proc/partitions", "utf8").includes("ublkb"), false, "a device was left behind");
  assert.equal(existsSync(`${img}.meta`), false, "the metadata file was created anyway");
});
