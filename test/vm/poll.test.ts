// Polling before sleeping (--poll_us, src/queue/adaptive-poll.ts): data stays right whether a queue
// thread polls or always sleeps, and a daemon whose device went idle stops polling (no CPU burnt).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, test } from "node:test";
import {
  addDevice,
  deleteAll,
  fioRun,
  fioWriteThenVerify,
  listedDevice,
  skipReason,
  sleep,
  ublk,
} from "./helpers.js";

after(() => {
  if (!skipReason) deleteAll();
});

/** utime + stime of one thread, in clock ticks. */
function ticks(pid: number, tid: number): number {
  const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
    .replace(/^.*\) /, "")
    .split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

for (const poll of ["0", "500"]) {
  test(`ram, --poll_us ${poll}: fio verify at depth 1 and 16, then an idle queue thread uses no CPU`, {
    skip: skipReason,
  }, async () => {
    const id = addDevice("-t", "ram", "--size", "64M", "-q", "1", "--poll_us", poll);
    const dev = `/dev/ublkb${id}`;
    fioWriteThenVerify(dev, 8, 11);
    // Depth 1 is where polling pays, and where a lost wake-up would show as a stall.
    const qd1 = fioRun(
      `--name=qd1 --filename=${dev} --rw=randrw --bs=4k --direct=1 --ioengine=io_uring --iodepth=1 ` +
        "--size=16M --offset=32M --verify=crc32c --verify_state_save=0",
    );
    assert.equal(qd1.code, 0, `fio qd1 verify failed:\n${qd1.output}`);
    // The queue thread itself: V8's compiler and GC threads may still be busy after the IO.
    const listed = listedDevice<{ daemon_pid: number; queues: { tid: number }[] }>(id);
    const [pid, tid] = [listed.daemon_pid, listed.queues[0].tid];
    await sleep(1000); // the last poll ends and backs off
    const before = ticks(pid, tid);
    await sleep(3000);
    const used = ticks(pid, tid) - before; // 100 ticks a second; a thread still polling takes ~300
    assert.ok(used < 30, `an idle queue thread used ${used} ticks in 3 s (polling should have stopped)`);
    assert.equal(ublk("del", "-n", String(id)).code, 0);
    assert.ok(!existsSync(dev), `${dev} still exists after del`);
  });
}
