// The built-in ram target: a RAM disk in the daemon whose reads and writes the driver copies straight
// from and into that memory (NEED_GET_DATA).
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, fioRun, fioWriteThenVerify, sh, skipReason, ublk } from "./helpers.js";

const MiB = 1024 * 1024;

after(() => {
  if (skipReason) return;
  deleteAll();
  rmSync("/tmp/ram-test", { recursive: true, force: true });
});

test("ram: a missing --size and user recovery are refused with one line each", { skip: skipReason }, () => {
  const noSize = ublk("add", "-t", "ram");
  assert.notEqual(noSize.code, 0);
  assert.match(noSize.stderr.trim(), /^[^\n]*--size[^\n]*$/, `unexpected message: ${noSize.stderr}`);
  const rec = ublk("add", "-t", "ram", "--size", "8M", "-r", "1");
  assert.notEqual(rec.code, 0);
  assert.match(rec.stderr.trim(), /^[^\n]*recovery[^\n]*$/, `unexpected message: ${rec.stderr}`);
  assert.equal(readFileSync("/proc/partitions", "utf8").includes("ublkb"), false, "a device was left behind");
});

test("ram, 2 queues: unwritten blocks read as zeros, fio verify passes, written bytes read back, del removes it", {
  skip: skipReason,
}, () => {
  const id = addDevice("-t", "ram", "--size", "128M", "-q", "2");
  const dev = `/dev/ublkb${id}`;
  const list = JSON.parse(ublk("list", "--json", "-n", String(id)).stdout)[0];
  assert.ok(list.flags & 0x04, "the ram target runs with UBLK_F_NEED_GET_DATA");
  assert.equal(sh(`blockdev --getsize64 ${dev}`).stdout.trim(), String(128 * MiB));
  const zeros = sh(`dd if=${dev} bs=1M skip=100 count=4 iflag=direct status=none | od -An -tx1 | sort -u`);
  assert.equal(zeros.stdout.trim().split("\n")[0].trim(), "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00");

  const job = fioWriteThenVerify(dev, 16, 5);

  sh("mkdir -p /tmp/ram-test && head -c 8388608 /dev/urandom >/tmp/ram-test/src");
  sh(`dd if=/tmp/ram-test/src of=${dev} bs=256k seek=256 oflag=direct status=none`); // at 64 MiB
  sh(`dd if=${dev} of=/tmp/ram-test/back bs=64k skip=1024 count=128 iflag=direct status=none`);
  assert.ok(
    readFileSync("/tmp/ram-test/back").equals(readFileSync("/tmp/ram-test/src")),
    "bytes read back differ from bytes written",
  );
  // The fio region is still intact after the other writes.
  const again = fioRun(`${job} --verify_only=1`);
  assert.equal(again.code, 0, `fio verify after more writes failed:\n${again.output}`);

  assert.equal(ublk("del", "-n", String(id)).code, 0);
  assert.ok(!existsSync(dev), `${dev} still exists after del`);
});
