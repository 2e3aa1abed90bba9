// The driver's own capabilities as the CLI exposes them: features, granted flags, NEED_GET_DATA,
// parameters and queue affinity.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, driverFeatures, fio, sh, skipReason, ublk } from "./helpers.js";

/** /sys/block/ublkbN/queue/NAME */
const queueAttr = (id: number, name: string) =>
  readFileSync(`/sys/block/ublkb${id}/queue/${name}`, "utf8").trim();

after(() => {
  if (!skipReason) deleteAll();
});

test("ublk features prints every bit the driver reports, each by name, in the selftest format", {
  skip: skipReason,
}, () => {
  const r = ublk("features");
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  const mask = BigInt(/^ublk_drv features: (0x[0-9a-f]+)$/.exec(lines[0])?.[1] ?? "-1");
  assert.equal(mask, driverFeatures);
  // Both harness kernels: 6.12 reports 0x1fe, 7.3 0x1fffff; every bit of either has a name.
  assert.ok(mask === 0x1fen || mask === 0x1fffffn, `unexpected mask 0x${mask.toString(16)}`);
  let bits = 0;
  for (let bit = 0n; bit < 64n; bit++) if (mask & (1n << bit)) bits++;
  assert.equal(lines.length, 1 + bits);
  assert.equal(
    lines[1],
    mask & 1n
      ? `${"0x1".padEnd(18)}: UBLK_F_SUPPORT_ZERO_COPY`
      : `${"0x2".padEnd(18)}: UBLK_F_URING_CMD_COMP_IN_TASK`,
  );
  assert.ok(lines.includes(`${"0x100".padEnd(18)}: UBLK_F_ZONED`));
  assert.ok(!r.stdout.includes("UNKNOWN"), r.stdout);
});

test("-g 1 (NEED_GET_DATA): granted, and loop data verifies through fio", { skip: skipReason }, () => {
  sh("truncate -s 64M /tmp/ngd-img");
  const id = addDevice("-t", "loop", "-g", "-q", "2", "/tmp/ngd-img");
  const listed = JSON.parse(ublk("list", "-n", String(id), "--json").stdout)[0];
  assert.ok(listed.flags & (1 << 2), "NEED_GET_DATA was not granted");
  const args = `--name=g --filename=/dev/ublkb${id} --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 --size=8M --verify=crc32c --verify_state_save=0`;
  assert.equal(fio(`${args} --do_verify=0`).jobs[0].error, 0);
  assert.equal(fio(`${args} --verify_only=1`).jobs[0].error, 0);
  sh(`cmp -n 8388608 /tmp/ngd-img /dev/ublkb${id}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("parameters reach the block layer; each queue thread runs on the CPUs it lists", {
  skip: skipReason,
}, () => {
  const id = addDevice(
    "-t",
    "null",
    "-q",
    "2",
    "--size",
    "1G",
    "--logical_block_size",
    "4096",
    "--physical_block_size",
    "4096",
    "--io_opt",
    "65536",
    "--max_sectors",
    "256",
    "--rotational",
    "1",
    "--read_only",
    "1",
  );
  const q = (name: string) => queueAttr(id, name);
  assert.equal(q("logical_block_size"), "4096");
  assert.equal(q("physical_block_size"), "4096");
  assert.equal(q("optimal_io_size"), "65536");
  assert.equal(q("max_sectors_kb"), "128");
  assert.equal(q("rotational"), "1");
  assert.equal(readFileSync(`/sys/block/ublkb${id}/ro`, "utf8").trim(), "1");
  const text = ublk("list", "-n", String(id)).stdout;
  assert.match(text, /block size 4096 dev_capacity 2097152/);
  for (const m of text.matchAll(/queue (\d+): tid (\d+) affinity\(([\d ]+)\)/g)) {
    const allowed =
      /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${m[2]}/status`, "utf8"))?.[1] ?? "";
    // "0-2,5" -> "0 1 2 5"
    const cpus = allowed.split(",").flatMap((r) => {
      const [a, b = a] = r.split("-").map(Number);
      return Array.from({ length: b - a + 1 }, (_, i) => a + i);
    });
    assert.equal(cpus.join(" "), m[3].trim(), `queue ${m[1]} thread is not pinned as listed`);
  }
  const bad = ublk("add", "-t", "null", "--logical_block_size", "1000");
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^ublk: logical block size 1000/);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("io_min, chunk, write cache, FUA, discard and write-zeroes limits reach sysfs and GET_PARAMS", {
  skip: skipReason,
}, () => {
  sh("truncate -s 64M /tmp/par-img");
  const id = addDevice(
    ...["-t", "loop", "-q", "1", "--io_min", "8192", "--chunk_sectors", "256", "--wc", "1", "--fua", "1"],
    ...["--discard_granularity", "8192", "--max_discard_sectors", "4096", "--max_discard_segments", "1"],
    ...["--max_write_zeroes_sectors", "2048", "/tmp/par-img"],
  );
  const q = (name: string) => queueAttr(id, name);
  assert.equal(q("minimum_io_size"), "8192");
  assert.equal(q("chunk_sectors"), "256");
  assert.equal(q("write_cache"), "write back");
  assert.equal(q("fua"), "1");
  assert.equal(q("discard_granularity"), "8192");
  assert.equal(q("discard_max_bytes"), String(4096 * 512));
  assert.equal(q("max_discard_segments"), "1");
  assert.equal(q("write_zeroes_max_bytes"), String(2048 * 512));
  // list -v prints what GET_PARAMS returns from the driver.
  const v = ublk("list", "-n", String(id), "-v").stdout;
  assert.match(v, /io_min 8192 /);
  assert.match(v, /chunk_sectors 256 /);
  assert.match(
    v,
    /discard_granularity 8192 .*max_discard_sectors 4096 max_write_zeroes_sectors 2048 max_discard_segments 1/,
  );
  // Without a volatile cache the block layer sends no flushes and says so.
  const wt = addDevice("-t", "null", "-q", "1", "--size", "64M", "--wc", "0", "--fua", "0");
  assert.equal(queueAttr(wt, "write_cache"), "write through");
  assert.equal(queueAttr(wt, "fua"), "0");
  assert.equal(ublk("del", "-n", String(wt)).code, 0);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("-g (NEED_GET_DATA): mkfs.ext4, files written and read back, fsck clean", { skip: skipReason }, () => {
  sh(
    "modprobe ext4; truncate -s 64M /tmp/ngfs-img && dd if=/dev/urandom of=/tmp/ngfs-src bs=1M count=2 status=none",
  );
  const id = addDevice("-t", "loop", "-g", "-q", "2", "/tmp/ngfs-img");
  const dev = `/dev/ublkb${id}`;
  sh(`mkfs.ext4 -q -F ${dev} && mkdir -p /tmp/ngfs-mnt && mount ${dev} /tmp/ngfs-mnt`);
  try {
    sh("for i in 1 2 3 4; do cp /tmp/ngfs-src /tmp/ngfs-mnt/f$i; done; sync");
    sh(
      "umount /tmp/ngfs-mnt && mount " +
        dev +
        " /tmp/ngfs-mnt && for i in 1 2 3 4; do cmp /tmp/ngfs-src /tmp/ngfs-mnt/f$i; done",
    );
  } finally {
    sh("umount /tmp/ngfs-mnt", { allowFail: true });
  }
  sh(`fsck.ext4 -fn ${dev}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});
