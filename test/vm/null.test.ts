import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, fio, skipReason, ublk } from "./helpers.js";

after(() => {
  if (!skipReason) deleteAll();
});

test("null target, 2 queues depth 64: fio 4k randread and randwrite run without errors", {
  skip: skipReason,
}, () => {
  const id = addDevice("-t", "null", "-q", "2", "-d", "64", "--size", "1G");
  const dev = `/dev/ublkb${id}`;
  assert.ok(existsSync(dev));
  for (const rw of ["randread", "randwrite"]) {
    const out = fio(
      `--name=${rw} --filename=${dev} --rw=${rw} --bs=4k --direct=1 --ioengine=io_uring --iodepth=32 --time_based --runtime=5`,
    );
    const job = out.jobs[0];
    assert.equal(job.error, 0, `${rw}: fio reported error ${job.error}`);
    const bytes = rw === "randread" ? job.read.io_bytes : job.write.io_bytes;
    assert.ok(bytes > 0, `${rw}: no IO completed`);
  }
  assert.equal(ublk("del", "-n", String(id)).code, 0);
  assert.ok(!existsSync(dev), `${dev} still exists after del`);
});
