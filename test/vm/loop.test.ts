// The loop target over a file on tmpfs, checked the way a user would: fio's own data verification,
// an ext4 filesystem that the kernel's loop driver reads back identically once ublk is gone, and
// discard / write-zeroes that reach the backing file.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { after, test } from "node:test";
import {
  addDevice,
  deleteAll,
  fioRun,
  fioWriteThenVerify,
  freshImage,
  oneGuest,
  sh,
  skipReason,
  ublk,
} from "../vm/helpers.js";

const DIR = "/tmp/ublk-loop-test"; // the guest's tmpfs
const MiB = 1024 * 1024;

after(() => {
  if (skipReason) return;
  // A failed test may have left the filesystem mounted or the kernel loop device attached.
  sh(`umount -q ${DIR}/mnt; losetup -j ${DIR}/ext4.img | cut -d: -f1 | xargs -r losetup -d`, {
    allowFail: true,
  });
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

function image(name: string, size: string): string {
  return freshImage(DIR, name, size);
}

function del(id: number): void {
  const r = ublk("del", "-n", String(id));
  assert.equal(r.code, 0, `ublk del -n ${id}: ${r.stderr}`);
  assert.ok(!existsSync(`/dev/ublkb${id}`), `/dev/ublkb${id} still exists after del`);
  assert.ok(!existsSync(`/dev/ublkc${id}`), `/dev/ublkc${id} still exists after del`);
}

/** Device size in bytes as the block layer sees it. */
function blockDevBytes(id: number): number {
  return Number(readFileSync(`/sys/block/ublkb${id}/size`, "utf8").trim()) * 512;
}

/** Reads `len` bytes at `off` from a device with O_DIRECT (no page cache in the way). */
function readDirect(path: string, off: number, len: number): Buffer {
  const out = `${DIR}/readback`;
  sh(
    `dd if=${path} of=${out} bs=1M iflag=direct,skip_bytes,count_bytes skip=${off} count=${len} status=none`,
  );
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

/** Bytes the file really occupies (st_blocks is in 512-byte units). */
const allocated = (path: string) => statSync(path).blocks * 512;

test("loop, 2 queues: fio randwrite with crc32c verify headers, then a verify-only pass over the same blocks", {
  skip: skipReason,
}, () => {
  const img = image("fio.img", "256M");
  const id = addDevice("-t", "loop", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  assert.equal(blockDevBytes(id), 256 * MiB, "device size differs from the backing file's");
  assert.equal(listed(id).target_info?.mapped_reads, false, "a sparse file must not be served mapped");

  // Two writers (one per queue, roughly) on disjoint 16 MiB halves of the first 32 MiB; the same
  // seed makes the verify pass replay the same offsets and sizes.
  const perJob = 16 * MiB;
  const job =
    `--name=v --filename=${dev} --rw=randwrite --bsrange=4k-256k --direct=1 --ioengine=io_uring ` +
    `--iodepth=16 --numjobs=2 --size=${perJob} --offset_increment=${perJob} --randseed=4242 ` +
    "--verify=crc32c --verify_state_save=0";

  const w = fioRun(`${job} --do_verify=0`);
  assert.equal(w.code, 0, `fio write pass failed:\n${w.output}`);
  assert.equal(w.jobs.length, 2);
  for (const j of w.jobs) {
    assert.equal(j.error, 0, `write pass error ${j.error}`);
    assert.equal(j.write.io_bytes, perJob, "the write pass did not write its whole region");
  }

  const v = fioRun(`${job} --verify_only=1`);
  assert.equal(v.code, 0, `fio verify pass failed:\n${v.output}`);
  for (const j of v.jobs) assert.equal(j.error, 0, `verify pass error ${j.error}`);
  assert.ok(
    v.jobs.reduce((n, j) => n + j.read.io_bytes, 0) >= 2 * perJob,
    `the verify pass read less than was written:\n${v.output}`,
  );

  // The verify pass must be able to fail: clobber 1 MiB inside the second job's region.
  sh(`dd if=/dev/zero of=${dev} bs=1M seek=24 count=1 oflag=direct conv=notrunc status=none`);
  const bad = fioRun(`${job} --verify_only=1`);
  assert.ok(
    bad.code !== 0 || bad.jobs.some((j) => j.error !== 0),
    `fio verify did not notice 1 MiB of zeros written over its data:\n${bad.output}`,
  );

  del(id);
});

test("loop: ext4 made and filled through ublk fscks clean and reads back identically through the kernel loop driver", {
  skip: skipReason,
}, () => {
  sh("modprobe ext4");
  const img = image("ext4.img", "256M");
  const src = `${DIR}/src`;
  const mnt = `${DIR}/mnt`;
  mkdirSync(src, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  // Odd sizes on purpose: partial blocks, a file spanning many extents, many small files.
  sh(
    `cd ${src} && head -c 1 /dev/urandom >one && head -c 4095 /dev/urandom >short && ` +
      "dd if=/dev/urandom of=mid bs=1M count=3 status=none && " +
      "head -c $((17 * 1024 * 1024 + 12345)) /dev/urandom >big && " +
      "dd if=/dev/urandom of=large bs=1M count=24 status=none && " +
      "mkdir -p dir/sub && for i in $(seq 1 30); do head -c $((i * 777)) /dev/urandom >dir/sub/f$i; done",
  );
  const sums = (root: string) =>
    sh(`cd ${root} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`).stdout;
  const expected = sums(src);
  assert.equal(expected.trim().split("\n").length, 35);

  const id = addDevice("-t", "loop", "-q", "2", "-f", img);
  const dev = `/dev/ublkb${id}`;
  sh(`mkfs.ext4 -q -F ${dev}`);
  sh(`mount -t ext4 ${dev} ${mnt}`);
  try {
    sh(`cp -a ${src}/. ${mnt}/ && sync`);
    assert.equal(sums(mnt), expected, "files differ right after writing them through ublk");
  } finally {
    sh(`umount ${mnt}`);
  }
  const fsck = sh(`fsck.ext4 -fn ${dev}`, { allowFail: true });
  assert.equal(fsck.code, 0, `fsck.ext4 -fn found problems:\n${fsck.stdout}\n${fsck.stderr}`);
  del(id);

  // ublk is gone: everything must be in the backing file itself.
  const loopDev = sh(`losetup -f --show -r ${img}`).stdout.trim();
  assert.match(loopDev, /^\/dev\/loop\d+$/);
  try {
    sh(`mount -t ext4 -o ro ${loopDev} ${mnt}`);
    try {
      assert.equal(sums(mnt), expected, "files read through the kernel loop driver differ");
    } finally {
      sh(`umount ${mnt}`);
    }
  } finally {
    sh(`losetup -d ${loopDev}`);
  }
});

test("loop: blkdiscard punches the range out of the backing file and blkdiscard -z zeroes a range; the rest is intact", {
  skip: skipReason,
}, () => {
  const img = image("discard.img", "256M");
  const pattern = `${DIR}/pattern`;
  sh(`head -c ${64 * MiB} /dev/urandom >${pattern}`);
  const data = readFileSync(pattern);
  const id = addDevice("-t", "loop", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  sh(`dd if=${pattern} of=${dev} bs=1M oflag=direct conv=notrunc status=none`);
  assert.ok(readDirect(dev, 0, 64 * MiB).equals(data), "data read back differs from data written");

  const before = allocated(img);
  assert.ok(before >= 64 * MiB, `backing file has only ${before} bytes allocated after a 64 MiB write`);
  sh(`blkdiscard -o ${8 * MiB} -l ${16 * MiB} ${dev}`);
  const afterDiscard = allocated(img);
  assert.equal(
    before - afterDiscard,
    16 * MiB,
    `discarding 16 MiB freed ${before - afterDiscard} bytes of the backing file`,
  );

  sh(`blkdiscard -z -o ${40 * MiB} -l ${8 * MiB} ${dev}`);

  const zeros = (n: number) => Buffer.alloc(n);
  const expectRegions = (b: Buffer, what: string) => {
    assert.equal(b.length, 64 * MiB);
    assert.ok(
      b.subarray(0, 8 * MiB).equals(data.subarray(0, 8 * MiB)),
      `${what}: data before the discard changed`,
    );
    assert.ok(b.subarray(8 * MiB, 24 * MiB).equals(zeros(16 * MiB)), `${what}: discarded range is not zeros`);
    assert.ok(
      b.subarray(24 * MiB, 40 * MiB).equals(data.subarray(24 * MiB, 40 * MiB)),
      `${what}: data between the ranges changed`,
    );
    assert.ok(
      b.subarray(40 * MiB, 48 * MiB).equals(zeros(8 * MiB)),
      `${what}: write-zeroes range is not zeros`,
    );
    assert.ok(
      b.subarray(48 * MiB).equals(data.subarray(48 * MiB)),
      `${what}: data after the zeroed range changed`,
    );
  };
  expectRegions(readDirect(dev, 0, 64 * MiB), "through the device");
  expectRegions(readFileSync(img).subarray(0, 64 * MiB), "in the backing file");
  assert.equal(statSync(img).size, 256 * MiB, "discard changed the backing file's size");
  del(id);
});

/** `ublk list --json` entry of a device. */
function listed(id: number): { flags: number; target_info: Record<string, unknown> | null } {
  const r = ublk("list", "--json", "-n", String(id));
  assert.equal(r.code, 0, `ublk list: ${r.stderr}`);
  return JSON.parse(r.stdout)[0];
}

test("loop over a fully written tmpfs file: IO is copied straight from and into the mapped file; after a discard it goes through io_uring and stays correct", {
  skip: oneGuest("6.12"),
}, () => {
  mkdirSync(DIR, { recursive: true });
  const img = `${DIR}/mapped.img`;
  sh(`head -c ${64 * MiB} /dev/urandom >${img}`);
  const data = readFileSync(img);
  // --no_auto_zc: where the driver has automatic buffer registration, add would take zero copy.
  const id = addDevice("-t", "loop", "-q", "2", "--no_auto_zc", img);
  const dev = `/dev/ublkb${id}`;
  const entry = listed(id);
  assert.equal(entry.target_info?.mapped_reads, true, "a fully allocated tmpfs file should be served mapped");
  assert.ok(entry.flags & 0x04, "mapped mode needs UBLK_F_NEED_GET_DATA");
  assert.ok(readDirect(dev, 0, 64 * MiB).equals(data), "device bytes differ from the file's");

  fioWriteThenVerify(dev, 16, 77);
  const written = readFileSync(img);
  assert.ok(readDirect(dev, 0, 64 * MiB).equals(written), "after fio, device bytes differ from the file's");
  assert.ok(
    !written.subarray(0, 32 * MiB).equals(data.subarray(0, 32 * MiB)),
    "fio's writes never reached the file",
  );

  // A hole turns the mapping off (touching a hole through it would allocate); data stays right.
  const before = allocated(img);
  sh(`blkdiscard -o ${40 * MiB} -l ${8 * MiB} ${dev}`);
  assert.equal(before - allocated(img), 8 * MiB, "the discard did not punch the backing file");
  const patch = Buffer.alloc(MiB, 0x5a);
  sh(
    `head -c ${MiB} /dev/zero | tr '\\0' 'Z' | dd of=${dev} bs=1M seek=56 oflag=direct conv=notrunc status=none`,
  );
  const expected = Buffer.from(written);
  expected.fill(0, 40 * MiB, 48 * MiB);
  patch.copy(expected, 56 * MiB);
  assert.ok(readDirect(dev, 0, 64 * MiB).equals(expected), "after the discard, device bytes are wrong");
  assert.ok(readFileSync(img).equals(expected), "after the discard, the file's bytes are wrong");
  del(id);
});
