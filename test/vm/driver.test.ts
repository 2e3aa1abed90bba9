// The driver's own capabilities as the CLI exposes them: features, granted flags, NEED_GET_DATA,
// parameters and queue affinity.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, fio, sh, skipReason, ublk } from "./helpers.js";

after(() => {
  if (!skipReason) deleteAll();
});

test("ublk features prints the 6.12 driver's bits in the selftest format", { skip: skipReason }, () => {
  const r = ublk("features");
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines[0], "ublk_drv features: 0x1fe");
  assert.equal(lines.length, 9);
  assert.equal(lines[1], `${"0x2".padEnd(18)}: UBLK_F_URING_CMD_COMP_IN_TASK`);
  assert.ok(lines.includes(`${"0x100".padEnd(18)}: UBLK_F_ZONED`));
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

test("parameters reach the block layer; each queue thread is pinned to its CPUs", {
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
  const q = (name: string) => readFileSync(`/sys/block/ublkb${id}/queue/${name}`, "utf8").trim();
  assert.equal(q("logical_block_size"), "4096");
  assert.equal(q("physical_block_size"), "4096");
  assert.equal(q("optimal_io_size"), "65536");
  assert.equal(q("max_sectors_kb"), "128");
  assert.equal(q("rotational"), "1");
  assert.equal(readFileSync(`/sys/block/ublkb${id}/ro`, "utf8").trim(), "1");
  const text = ublk("list", "-n", String(id)).stdout;
  assert.match(text, /block size 4096 dev_capacity 2097152/);
  for (const m of text.matchAll(/queue (\d+): tid (\d+) affinity\(([\d ]+)\)/g)) {
    const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${m[2]}/status`, "utf8"))?.[1];
    assert.equal(allowed, m[3].trim().split(" ").join(","), `queue ${m[1]} thread is not pinned as listed`);
  }
  const bad = ublk("add", "-t", "null", "--logical_block_size", "1000");
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^ublk: logical block size 1000/);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});
