// Batched IO commands (-b, UBLK_F_BATCH_IO): each queue preps all its tags with one command, takes
// requests from one multishot fetch and commits each wake-up's results with one command. The same
// data checks as the per-tag path, on the copying path and with zero copy; on a driver without the
// feature, the one-line refusal.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import * as U from "../../src/uapi/ublk_cmd.js";
import {
  addDevice,
  assertAddRefused,
  daemonPids,
  deleteAll,
  fioRun,
  fioWriteThenVerify,
  freshImage,
  hasAny,
  listedDevice,
  listedIds,
  needs,
  sh,
  skipReason,
  sleep,
  ublk,
  waitFor,
} from "./helpers.js";

const DIR = "/tmp/ublk-batch-test"; // the guest's tmpfs

after(() => {
  if (skipReason) return;
  sh(`umount -q ${DIR}/mnt`, { allowFail: true });
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

const listed = (id: number) => listedDevice<{ flags: number; state: string; daemon_pid: number }>(id);
const refusedInOneLine = assertAddRefused;

test("-b is refused in one line with -g or -u, and no device is left", { skip: skipReason }, () => {
  for (const other of [["-g"], ["-u"]])
    refusedInOneLine(["-t", "null", "-b", ...other], /^ublk: -b .*: drop -[gu]$/m);
  assert.deepEqual(listedIds(), []);
});

test("a driver without UBLK_F_BATCH_IO refuses -b in one line naming it, and no device is left", {
  skip: hasAny(U.UBLK_F_BATCH_IO),
}, () => {
  refusedInOneLine(["-t", "null", "--batch"], /^ublk: .*UBLK_F_BATCH_IO/);
  assert.deepEqual(listedIds(), []);
});

/** Writes a random MiB at `mib` through the device and checks the backing file holds it. */
function landsInFile(dev: string, img: string, mib: number): void {
  sh(
    `head -c 1M /dev/urandom >${DIR}/chunk && dd if=${DIR}/chunk of=${dev} bs=1M seek=${mib} oflag=direct status=none`,
  );
  sh(`cmp ${DIR}/chunk <(dd if=${img} bs=1M skip=${mib} count=1 status=none)`);
}

test("loop -b -q 1: fio crc32c verify; the file holds what was written; list -v names the flag", {
  skip: needs(U.UBLK_F_BATCH_IO),
}, () => {
  const img = freshImage(DIR, "b-1.img", "32M");
  const id = addDevice("-t", "loop", "-q", "1", "-b", img);
  assert.match(ublk("list", "-n", String(id), "-v").stdout, /^\tflags .*UBLK_F_BATCH_IO/m);
  const dev = `/dev/ublkb${id}`;
  fioWriteThenVerify(dev, 4, 2001);
  landsInFile(dev, img, 20);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("loop -b -q 2: fio crc32c verify, the file holds what was written; ext4 made, remounted, fsck clean", {
  skip: needs(U.UBLK_F_BATCH_IO),
}, () => {
  const img = freshImage(DIR, "b-2.img", "64M");
  const id = addDevice("-t", "loop", "-q", "2", "-b", img);
  assert.ok(listed(id).flags & U.UBLK_F_BATCH_IO, "UBLK_F_BATCH_IO not granted");
  const dev = `/dev/ublkb${id}`;
  fioWriteThenVerify(dev, 4, 2002);
  landsInFile(dev, img, 40);
  sh(`modprobe ext4; mkfs.ext4 -q ${dev} && mkdir -p ${DIR}/mnt && mount ${dev} ${DIR}/mnt`);
  sh(`head -c 4M /dev/urandom >${DIR}/src && cp ${DIR}/src ${DIR}/mnt/f && sync`);
  sh(`umount ${DIR}/mnt && mount ${dev} ${DIR}/mnt && cmp ${DIR}/src ${DIR}/mnt/f && umount ${DIR}/mnt`);
  sh(`fsck.ext4 -fn ${dev}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

for (const zc of [
  { args: ["-z"], flags: U.UBLK_F_SUPPORT_ZERO_COPY },
  { args: ["--auto_zc"], flags: U.UBLK_F_AUTO_BUF_REG },
]) {
  test(`loop -b ${zc.args.join(" ")} -q 2: zero copy in batches, fio crc32c verify; the file holds what was written`, {
    skip: needs(U.UBLK_F_BATCH_IO, zc.flags),
  }, () => {
    const img = freshImage(DIR, "b-zc.img", "32M");
    const id = addDevice("-t", "loop", "-q", "2", "-b", ...zc.args, img);
    assert.equal(listed(id).flags & (U.UBLK_F_BATCH_IO | zc.flags), U.UBLK_F_BATCH_IO | zc.flags);
    const dev = `/dev/ublkb${id}`;
    fioWriteThenVerify(dev, 2, 2200);
    landsInFile(dev, img, 20);
    assert.equal(ublk("del", "-n", String(id)).code, 0);
  });
}

test("ram -b -q 2: fio verify (it copies through the tag buffer); del while fio runs: device and daemon gone", {
  skip: needs(U.UBLK_F_BATCH_IO),
}, async () => {
  const id = addDevice("-t", "ram", "--size", "64M", "-q", "2", "-b");
  fioWriteThenVerify(`/dev/ublkb${id}`, 2, 2100);
  const fio = spawn(
    "fio",
    [
      "--name=busy",
      `--filename=/dev/ublkb${id}`,
      "--rw=randrw",
      "--bs=4k",
      "--direct=1",
      "--ioengine=io_uring",
      "--iodepth=32",
      "--numjobs=2",
      "--thread",
      "--time_based",
      "--runtime=120",
    ],
    { stdio: "ignore" },
  );
  const fioDone = new Promise<void>((r) => fio.on("exit", () => r()));
  try {
    const ios = () => {
      try {
        const f = readFileSync(`/sys/block/ublkb${id}/stat`, "utf8").trim().split(/\s+/).map(Number);
        return f[0] + f[4];
      } catch {
        return 0;
      }
    };
    const before = ios();
    assert.ok(await waitFor(() => ios() > before + 200, 60_000), "fio never got IO going");
    const t0 = Date.now();
    const r = ublk("del", "-n", String(id));
    assert.equal(r.code, 0, r.stderr);
    // Bounded, not fast: under TCG on a loaded host a del under load takes ~25 s either way.
    assert.ok(Date.now() - t0 < 60_000, "del took more than 60 s");
    assert.ok(!existsSync(`/dev/ublkb${id}`) && !listedIds().includes(id), "the device is still there");
    assert.ok(await waitFor(() => daemonPids().length === 0, 10_000), "the daemon did not exit");
    const ended = await Promise.race([fioDone.then(() => true), sleep(60_000).then(() => false)]);
    assert.ok(ended, "fio still running 60 s after its device was deleted");
  } finally {
    if (fio.exitCode === null && fio.signalCode === null) fio.kill("SIGKILL");
  }
});

test("loop -b -r 1 -i 1: SIGKILL mid-fio, recover (the tags prepped again): fio sees no error, data verifies", {
  skip: needs(U.UBLK_F_BATCH_IO),
}, async () => {
  const img = freshImage(DIR, "b-rec.img", "64M");
  const id = addDevice("-t", "loop", "-b", "-r", "1", "-i", "1", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  const job = (extra: string) =>
    `--name=w --filename=${dev} --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 ` +
    `--size=8M --verify=crc32c --verify_state_save=0 --output-format=json ${extra}`;
  const fio = spawn("bash", ["-c", `fio ${job("--do_verify=0")}`], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  await sleep(2000);
  process.kill(listed(id).daemon_pid, "SIGKILL");
  assert.ok(await waitFor(() => listed(id).state === "QUIESCED", 60_000, 500), "not QUIESCED");
  const rec = ublk("recover", "-n", String(id));
  assert.equal(rec.code, 0, rec.stderr);
  assert.ok(listed(id).flags & U.UBLK_F_BATCH_IO);
  assert.equal(await fioDone, 0, `fio failed: ${out}`);
  const v = fioRun(job("--verify_only=1"));
  assert.equal(v.code, 0, v.output);
  assert.equal(v.jobs[0]?.error, 0, v.output);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});
