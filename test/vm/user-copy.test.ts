// User copy (-u, UBLK_F_USER_COPY): no buffer per tag; every byte moves by reads and writes on
// /dev/ublkcN. The same data checks as the default path: fio crc32c verify with 1 and 2 queues, bytes
// read back, ext4 + fsck, and a daemon killed under fio and recovered with reissue.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
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
  sleep,
  ublk,
} from "./helpers.js";

const DIR = "/tmp/ublk-user-copy-test"; // the guest's tmpfs
const USER_COPY = 1 << 7;
const NEED_GET_DATA = 1 << 2;

after(() => {
  if (skipReason) return;
  sh(`umount -q ${DIR}/mnt`, { allowFail: true });
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

function image(name: string, size: string, full = false): string {
  return freshImage(DIR, name, size, full);
}

function listed(id: number): {
  flags: number;
  state: string;
  daemon_pid: number;
  target_info: Record<string, unknown> | null;
} {
  const r = ublk("list", "-n", String(id), "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout)[0];
}

function del(id: number): void {
  const r = ublk("del", "-n", String(id));
  assert.equal(r.code, 0, `ublk del -n ${id}: ${r.stderr}`);
}

/** Writes 3 MiB + 512 bytes of random data at `seekKiB` through the device and reads it back. */
function bytesReadBack(dev: string, seekKiB: number): void {
  const src = `${DIR}/src`;
  const back = `${DIR}/back`;
  sh(`head -c $((3 * 1024 * 1024 + 512)) /dev/urandom >${src}`);
  sh(`dd if=${src} of=${dev} bs=512 seek=${seekKiB * 2} oflag=direct conv=notrunc status=none`);
  sh(`dd if=${dev} of=${back} bs=512 skip=${seekKiB * 2} count=$((6 * 1024 + 1)) iflag=direct status=none`);
  assert.ok(readFileSync(back).equals(readFileSync(src)), "bytes read back differ from bytes written");
}

test("-u with -g is refused with one line and leaves no device", { skip: skipReason }, () => {
  const r = ublk("add", "-t", "null", "-u", "-g");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ublk: [^\n]*-u[^\n]*\n$/, `unexpected message: ${r.stderr}`);
  assert.equal(readFileSync("/proc/partitions", "utf8").includes("ublkb"), false, "a device was left behind");
});

for (const queues of ["1", "2"]) {
  test(`loop -u -q ${queues}: fio crc32c write then verify, bytes read back`, { skip: skipReason }, () => {
    const img = image(`q${queues}.img`, "64M");
    const id = addDevice("-t", "loop", "-u", "-q", queues, img);
    const info = listed(id);
    assert.ok(info.flags & USER_COPY, `USER_COPY not granted (flags ${info.flags.toString(16)})`);
    assert.equal(info.flags & NEED_GET_DATA, 0, "NEED_GET_DATA must be off with user copy");
    fioWriteThenVerify(`/dev/ublkb${id}`, 8, 11);
    bytesReadBack(`/dev/ublkb${id}`, 40 * 1024 + 3);
    del(id);
  });
}

test("ram -u and loop -u over a mapped file: the queue copies straight from and into their memory", {
  skip: oneGuest("6.12"),
}, () => {
  const ram = addDevice("-t", "ram", "-u", "--size", "32M", "-q", "2");
  assert.ok(listed(ram).flags & USER_COPY);
  fioWriteThenVerify(`/dev/ublkb${ram}`, 8, 12);
  bytesReadBack(`/dev/ublkb${ram}`, 20 * 1024 + 1);
  del(ram);

  const img = image("mapped.img", "32M", true);
  const loop = addDevice("-t", "loop", "-u", "-q", "2", img);
  assert.equal(listed(loop).target_info?.mapped_reads, true, "a fully written tmpfs file is served mapped");
  fioWriteThenVerify(`/dev/ublkb${loop}`, 8, 13);
  bytesReadBack(`/dev/ublkb${loop}`, 20 * 1024 + 5);
  del(loop);
  // Everything went into the file itself.
  const direct = sh(
    `dd if=${img} bs=512 skip=$((40 * 1024 + 10)) count=$((6 * 1024 + 1)) status=none | sha256sum`,
  );
  assert.equal(direct.stdout.split(" ")[0], sh(`sha256sum ${DIR}/src`).stdout.split(" ")[0]);
});

test("loop -u: ext4 made and filled through user copy fscks clean and reads back after a remount", {
  skip: skipReason,
}, () => {
  sh("modprobe ext4");
  const img = image("ext4.img", "64M");
  const mnt = `${DIR}/mnt`;
  mkdirSync(mnt, { recursive: true });
  sh(
    `mkdir -p ${DIR}/files && cd ${DIR}/files && head -c 4095 /dev/urandom >short && ` +
      "head -c $((5 * 1024 * 1024 + 7)) /dev/urandom >big && " +
      "for i in $(seq 1 20); do head -c $((i * 1111)) /dev/urandom >f$i; done",
  );
  const sums = (root: string) =>
    sh(`cd ${root} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`).stdout;
  const expected = sums(`${DIR}/files`);
  const id = addDevice("-t", "loop", "-u", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  sh(`mkfs.ext4 -q -F ${dev}`);
  sh(`mount -t ext4 ${dev} ${mnt} && cp -a ${DIR}/files/. ${mnt}/ && umount ${mnt}`);
  const fsck = sh(`fsck.ext4 -fn ${dev}`, { allowFail: true });
  assert.equal(fsck.code, 0, `fsck.ext4 -fn found problems:\n${fsck.stdout}\n${fsck.stderr}`);
  sh(`mount -t ext4 -o ro ${dev} ${mnt}`);
  try {
    assert.equal(sums(mnt), expected, "files differ after a remount");
  } finally {
    sh(`umount ${mnt}`);
  }
  del(id);
});

test("loop -u -r 1 -i 1: SIGKILL mid-fio, recover: fio sees no error, the data verifies, user copy stays on", {
  skip: skipReason,
}, async () => {
  const img = image("rec.img", "64M");
  const id = addDevice("-t", "loop", "-u", "-r", "1", "-i", "1", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  const job =
    `--name=w --filename=${dev} --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 ` +
    "--size=16M --verify=crc32c --verify_state_save=0";
  const fio = spawn("bash", ["-c", `fio --output-format=json ${job} --do_verify=0`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  await sleep(2500);
  process.kill(listed(id).daemon_pid, "SIGKILL");
  const deadline = Date.now() + 45_000;
  while (listed(id).state !== "QUIESCED") {
    assert.ok(Date.now() < deadline, "the device did not become QUIESCED");
    await sleep(500);
  }
  const rec = ublk("recover", "-n", String(id));
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, /state LIVE/);
  assert.ok(listed(id).flags & USER_COPY);
  assert.equal(await fioDone, 0, `fio failed: ${out}`);
  const verify = fioRun(`${job} --verify_only=1`);
  assert.equal(verify.code, 0, `verify pass failed:\n${verify.output}`);
  assert.ok(verify.jobs.length === 1 && verify.jobs[0].error === 0, verify.output);
  del(id);
});
