// The stripe target (RAID-0 over backing files): fio's own data verification over the whole device
// with 1, 2 and 4 queues, the chunk layout read straight out of the files once the device is gone,
// ext4 on top, and refusal of bad geometry.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, fioWriteThenVerify, listedIds, sh, skipReason, ublk } from "./helpers.js";

const DIR = "/tmp/ublk-stripe-test"; // the guest's tmpfs
const MiB = 1024 * 1024;

after(() => {
  if (skipReason) return;
  sh(`umount -q ${DIR}/mnt`, { allowFail: true });
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

/** `count` sparse backing files of `bytes` each. */
function files(name: string, count: number, bytes: number): string[] {
  mkdirSync(DIR, { recursive: true });
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const path = `${DIR}/${name}${i}`;
    rmSync(path, { force: true });
    sh(`truncate -s ${bytes} ${path}`);
    out.push(path);
  }
  return out;
}

function del(id: number): void {
  const r = ublk("del", "-n", String(id));
  assert.equal(r.code, 0, `ublk del -n ${id}: ${r.stderr}`);
  assert.ok(!existsSync(`/dev/ublkb${id}`), `/dev/ublkb${id} still exists after del`);
}

const blockDevBytes = (id: number) => Number(readFileSync(`/sys/block/ublkb${id}/size`, "utf8").trim()) * 512;

// Queue counts with file counts and chunk sizes that vary together: an odd file count, the smallest
// and the largest chunk, and requests (4k-256k) that span several chunks and files.
for (const [queues, nfiles, chunk] of [
  [1, 3, "4K"],
  [2, 2, "64K"],
  [4, 4, "512K"],
] as const) {
  test(`stripe -q ${queues}, ${nfiles} files, chunk ${chunk}: fio crc32c write then verify over the whole device`, {
    skip: skipReason,
  }, () => {
    const backing = files(`q${queues}-`, nfiles, 4 * MiB);
    const id = addDevice("-t", "stripe", "-q", String(queues), "--chunk_size", chunk, ...backing);
    const dev = `/dev/ublkb${id}`;
    const size = blockDevBytes(id);
    assert.equal(size, nfiles * 4 * MiB, "capacity is not the sum of the files");
    fioWriteThenVerify(dev, size / 2 / MiB, 100 + queues);
    // Every file got its share of the data.
    for (const f of backing) {
      const allocated = Number(sh(`stat -c %b ${f}`).stdout.trim()) * 512;
      assert.ok(allocated >= 2 * MiB, `${f} holds only ${allocated} bytes after fio wrote the whole device`);
    }
    del(id);
  });
}

test("stripe: chunk k of the device is at chunk k / N of file k mod N (files read after del); sizes round down to whole chunks", {
  skip: skipReason,
}, () => {
  const chunk = 16 * 1024;
  const nfiles = 3;
  // 1 MiB plus a partial chunk: the tail is not used.
  const backing = files("layout", nfiles, MiB + 5000);
  const id = addDevice("-t", "stripe", "--chunk_size", "16384", "-q", "2", ...backing);
  const dev = `/dev/ublkb${id}`;
  const size = blockDevBytes(id);
  assert.equal(size, nfiles * MiB, "each file should count for its whole 16K chunks only");
  const data = randomBytes(size);
  writeFileSync(`${DIR}/pattern`, data);
  // 1 MiB requests cover whole stripe rows and more: each file's part is several pieces (writev).
  sh(`dd if=${DIR}/pattern of=${dev} bs=1M oflag=direct status=none`);
  // Odd-sized requests straddling chunk boundaries, read back through the device.
  sh(`dd if=${dev} of=${DIR}/back bs=12k iflag=direct status=none`);
  assert.ok(
    readFileSync(`${DIR}/back`).equals(data),
    "bytes read through the device differ from those written",
  );
  const listed = ublk("list", "-v", "-n", String(id));
  assert.match(listed.stdout, /target stripe .*chunk_size 16384/);
  del(id);

  const contents = backing.map((f) => readFileSync(f));
  for (let k = 0; k < size / chunk; k++) {
    const file = contents[k % nfiles];
    const at = Math.floor(k / nfiles) * chunk;
    assert.ok(
      file.subarray(at, at + chunk).equals(data.subarray(k * chunk, (k + 1) * chunk)),
      `chunk ${k} is not at offset ${at} of file ${k % nfiles}`,
    );
  }
});

test("stripe: ext4 made, filled and read back through a 2-file stripe fscks clean", {
  skip: skipReason,
}, () => {
  sh("modprobe ext4");
  const backing = files("ext4-", 2, 32 * MiB);
  const mnt = `${DIR}/mnt`;
  mkdirSync(mnt, { recursive: true });
  sh(
    `mkdir -p ${DIR}/src && cd ${DIR}/src && head -c 4097 /dev/urandom >a && ` +
      "dd if=/dev/urandom of=b bs=1M count=9 status=none && for i in $(seq 1 20); do head -c $((i * 3001)) /dev/urandom >f$i; done",
  );
  const sums = (root: string) =>
    sh(`cd ${root} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`).stdout;
  const expected = sums(`${DIR}/src`);
  const id = addDevice("-t", "stripe", "-q", "2", ...backing);
  const dev = `/dev/ublkb${id}`;
  sh(`mkfs.ext4 -q -F ${dev}`);
  sh(`mount -t ext4 ${dev} ${mnt}`);
  try {
    sh(`cp -a ${DIR}/src/. ${mnt}/ && sync`);
  } finally {
    sh(`umount ${mnt}`);
  }
  sh(`mount -t ext4 ${dev} ${mnt}`);
  try {
    assert.equal(sums(mnt), expected, "files differ after a remount");
  } finally {
    sh(`umount ${mnt}`);
  }
  const fsck = sh(`fsck.ext4 -fn ${dev}`, { allowFail: true });
  assert.equal(fsck.code, 0, `fsck.ext4 -fn found problems:\n${fsck.stdout}\n${fsck.stderr}`);
  del(id);
});

// The other refusals (chunk size, file count, missing file) are checked on the host
// (test/host/fault-stripe-options.test.ts); this one goes through the CLI and its daemon.
test("stripe refuses files of unequal size with one line and leaves no device", { skip: skipReason }, () => {
  const before = listedIds();
  const [a] = files("bad-a", 1, 4 * MiB);
  const [b] = files("bad-b", 1, 2 * MiB);
  const r = ublk("add", "-t", "stripe", a, b);
  assert.notEqual(r.code, 0, "files of unequal size were accepted");
  assert.match(r.stderr, /^ublk: .*same size in whole 65536-byte chunks/);
  assert.equal(r.stderr.trim().split("\n").length, 1, `more than one line: ${r.stderr}`);
  assert.deepEqual(listedIds(), before, "a refused add left a device behind");
});
