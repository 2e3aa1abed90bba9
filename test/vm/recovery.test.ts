// User recovery against the 6.12 driver: a daemon SIGKILLed mid-IO, a new one takes over.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, test } from "node:test";
import { addDevice, deleteAll, sh, skipReason, sleep, ublk } from "./helpers.js";

after(() => {
  if (!skipReason) deleteAll();
});

function info(id: number): { state: string; daemon_pid: number; flags: number } {
  const r = ublk("list", "-n", String(id), "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout)[0];
}

async function waitState(id: number, state: string, ms = 45_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (info(id).state !== state) {
    assert.ok(Date.now() < deadline, `device ${id} did not become ${state} within ${ms} ms`);
    await sleep(500);
  }
}

const fioArgs = (dev: string, extra: string) =>
  `--name=w --filename=${dev} --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 --size=24M ` +
  `--verify=crc32c --verify_state_save=0 --output-format=json ${extra}`;

test("loop -r 1 -i 1: SIGKILL mid-fio, recover: fio sees no error and the data verifies", {
  skip: skipReason,
}, async () => {
  sh("truncate -s 64M /tmp/rec-img");
  const id = addDevice("-t", "loop", "-r", "1", "-i", "1", "-q", "2", "/tmp/rec-img");
  const dev = `/dev/ublkb${id}`;
  assert.ok(info(id).flags & (1 << 3), "USER_RECOVERY was not granted");
  const fio = spawn("bash", ["-c", `fio ${fioArgs(dev, "--do_verify=0")}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  await sleep(3000);
  process.kill(info(id).daemon_pid, "SIGKILL");
  await waitState(id, "QUIESCED");
  const rec = ublk("recover", "-n", String(id));
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, /state LIVE/);
  assert.equal(await fioDone, 0, `fio failed: ${out}`);
  const job = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
  assert.equal(job.error, 0);
  assert.ok(job.write.io_bytes > 0);
  const verify = sh(`fio ${fioArgs(dev, "--verify_only=1")}`);
  assert.equal(
    JSON.parse(verify.stdout.slice(verify.stdout.indexOf("{"))).jobs[0].error,
    0,
    "verify pass failed",
  );
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("-r 1 without reissue: new IO works after recovery; a QUIESCED device can be deleted", {
  skip: skipReason,
}, async () => {
  sh("truncate -s 32M /tmp/rec2-img");
  const id = addDevice("-t", "loop", "-r", "-q", "1", "/tmp/rec2-img");
  const dev = `/dev/ublkb${id}`;
  process.kill(info(id).daemon_pid, "SIGKILL");
  await waitState(id, "QUIESCED");
  assert.equal(ublk("recover", "-n", String(id)).code, 0);
  sh(`dd if=/dev/urandom of=/tmp/rec2-src bs=1M count=4 status=none`);
  sh(`dd if=/tmp/rec2-src of=${dev} bs=1M oflag=direct status=none`);
  sh(`cmp -n 4194304 /tmp/rec2-src ${dev}`);
  // Kill again and delete while QUIESCED.
  process.kill(info(id).daemon_pid, "SIGKILL");
  await waitState(id, "QUIESCED");
  assert.equal(ublk("del", "-n", String(id)).code, 0);
  assert.equal(sh(`ls /dev/ublkb${id} 2>/dev/null || true`).stdout.trim(), "");
});

test("recover refuses a device made without -r, with one clear line", { skip: skipReason }, () => {
  const id = addDevice("-t", "null", "-q", "1");
  const r = ublk("recover", "-n", String(id));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ublk: .*without user recovery/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.equal(info(id).state, "LIVE");
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});
