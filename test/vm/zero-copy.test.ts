// Zero copy (-z: the queue registers each request's pages as a fixed buffer; --auto_zc: the driver
// does; --auto_zc_fallback: the queue registers what the driver could not). The loop target then
// reads and writes its file with READ_FIXED/WRITE_FIXED: no byte passes through the daemon. Same data
// checks as the copying path; on a driver without the features, the refusal.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { after, test } from "node:test";
import * as U from "../../src/uapi/ublk_cmd.js";
import {
  addDevice,
  deleteAll,
  driverFeatures,
  fioRun,
  fioWriteThenVerify,
  freshImage,
  hasAny,
  needs,
  sh,
  skipReason,
  sleep,
  ublk,
} from "./helpers.js";

const DIR = "/tmp/ublk-zc-test"; // the guest's tmpfs

after(() => {
  if (skipReason) return;
  sh(`umount -q ${DIR}/mnt`, { allowFail: true });
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

function image(name: string, size: string): string {
  return freshImage(DIR, name, size);
}

function listed(id: number): { flags: number; state: string; daemon_pid: number } {
  const r = ublk("list", "-n", String(id), "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout)[0];
}

const MODES: { args: string[]; flags: number }[] = [
  { args: ["-z"], flags: U.UBLK_F_SUPPORT_ZERO_COPY },
  { args: ["--auto_zc"], flags: U.UBLK_F_AUTO_BUF_REG },
  { args: ["--auto_zc", "--auto_zc_fallback"], flags: U.UBLK_F_AUTO_BUF_REG | U.UBLK_F_SUPPORT_ZERO_COPY },
];

test("a driver without zero copy refuses -z and --auto_zc in one line, and no device is left", {
  skip: hasAny(U.UBLK_F_SUPPORT_ZERO_COPY, U.UBLK_F_AUTO_BUF_REG),
}, () => {
  for (const m of MODES) {
    const r = ublk("add", "-t", "null", ...m.args);
    assert.notEqual(r.code, 0, `${m.args} was accepted`);
    assert.match(r.stderr, /^ublk: .*(UBLK_F_SUPPORT_ZERO_COPY|UBLK_F_AUTO_BUF_REG)/);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  assert.equal(JSON.parse(ublk("list", "--json").stdout).length, 0);
});

test("a target that needs the bytes (ram) is refused with zero copy; -z with -u is refused", {
  skip: needs(U.UBLK_F_SUPPORT_ZERO_COPY),
}, () => {
  const r = ublk("add", "-t", "ram", "--size", "16M", "-z");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ublk: the ram target needs the requests' bytes/);
  const u = ublk("add", "-t", "null", "-z", "-u");
  assert.notEqual(u.code, 0);
  assert.match(u.stderr, /^ublk: zero copy .* drop -u/);
  assert.equal(JSON.parse(ublk("list", "--json").stdout).length, 0);
});

for (const m of MODES) {
  test(`loop ${m.args.join(" ")}: fio crc32c verify with 1 and 2 queues; the file holds what was written`, {
    skip: needs(m.flags),
  }, () => {
    for (const q of [1, 2]) {
      const img = image(`zc-${q}.img`, "32M");
      const id = addDevice("-t", "loop", "-q", String(q), ...m.args, img);
      assert.equal(listed(id).flags & m.flags, m.flags, "zero copy flags not granted");
      const dev = `/dev/ublkb${id}`;
      fioWriteThenVerify(dev, 8, 1000 + q);
      // Bytes go both ways: a pattern written through the file reads back through the device.
      sh(
        `head -c 1M /dev/urandom >${DIR}/chunk && dd if=${DIR}/chunk of=${dev} bs=1M seek=20 oflag=direct status=none`,
      );
      assert.equal(ublk("del", "-n", String(id)).code, 0);
      sh(`cmp ${DIR}/chunk <(dd if=${img} bs=1M skip=20 count=1 status=none)`);
    }
  });
}

test("loop -z: ext4 made, written, fsck clean; null -z and --auto_zc serve fio without errors", {
  skip: needs(U.UBLK_F_SUPPORT_ZERO_COPY, U.UBLK_F_AUTO_BUF_REG),
}, () => {
  const img = image("zc-ext4.img", "64M");
  const id = addDevice("-t", "loop", "-q", "2", "-z", img);
  const dev = `/dev/ublkb${id}`;
  sh(`modprobe ext4; mkfs.ext4 -q ${dev} && mkdir -p ${DIR}/mnt && mount ${dev} ${DIR}/mnt`);
  sh(`head -c 8M /dev/urandom >${DIR}/src && cp ${DIR}/src ${DIR}/mnt/f && sync`);
  sh(`umount ${DIR}/mnt && mount ${dev} ${DIR}/mnt && cmp ${DIR}/src ${DIR}/mnt/f && umount ${DIR}/mnt`);
  sh(`fsck.ext4 -fn ${dev}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
  for (const args of [["-z"], ["--auto_zc"]]) {
    const n = addDevice("-t", "null", "--size", "64M", "-q", "1", ...args);
    const r = fioRun(
      `--name=n --filename=/dev/ublkb${n} --rw=randrw --bs=64k --direct=1 --ioengine=io_uring --iodepth=16 --size=32M`,
    );
    assert.equal(r.code, 0, r.output);
    assert.ok(r.jobs[0] && r.jobs[0].error === 0 && r.jobs[0].read.io_bytes > 0, r.output);
    assert.equal(ublk("del", "-n", String(n)).code, 0);
  }
});

test("loop --auto_zc -r 1 -i 1: SIGKILL mid-fio, recover: fio sees no error and the data verifies", {
  skip: needs(U.UBLK_F_AUTO_BUF_REG),
}, async () => {
  const img = image("zc-rec.img", "64M");
  const id = addDevice("-t", "loop", "--auto_zc", "-r", "1", "-i", "1", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  const job = (extra: string) =>
    `--name=w --filename=${dev} --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 ` +
    `--size=24M --verify=crc32c --verify_state_save=0 --output-format=json ${extra}`;
  const fio = spawn("bash", ["-c", `fio ${job("--do_verify=0")}`], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  await sleep(3000);
  process.kill(listed(id).daemon_pid, "SIGKILL");
  for (let i = 0; listed(id).state !== "QUIESCED"; i++) {
    assert.ok(i < 120, "device did not become QUIESCED");
    await sleep(500);
  }
  const rec = ublk("recover", "-n", String(id));
  assert.equal(rec.code, 0, rec.stderr);
  assert.equal(await fioDone, 0, `fio failed: ${out}`);
  const v = fioRun(job("--verify_only=1"));
  assert.equal(v.code, 0, v.output);
  assert.equal(v.jobs[0]?.error, 0, v.output);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("no data-path flag: null and loop take --auto_zc by themselves where the driver has it; -g, -u and --no_auto_zc keep copying; loop data verifies", {
  skip: skipReason,
}, () => {
  const has = (driverFeatures & BigInt(U.UBLK_F_AUTO_BUF_REG)) !== 0n;
  const img = image("default.img", "32M");
  const id = addDevice("-t", "loop", "-q", "2", img);
  assert.equal(
    (listed(id).flags & U.UBLK_F_AUTO_BUF_REG) !== 0,
    has,
    `flags 0x${listed(id).flags.toString(16)}`,
  );
  fioWriteThenVerify(`/dev/ublkb${id}`, 2, 4101);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
  const nul = addDevice("-t", "null", "--size", "64M", "-q", "1");
  assert.equal((listed(nul).flags & U.UBLK_F_AUTO_BUF_REG) !== 0, has);
  assert.equal(ublk("del", "-n", String(nul)).code, 0);
  for (const args of [["--no_auto_zc"], ["-g", "1"], ["-u"]]) {
    if (args[0] === "-u" && !(driverFeatures & BigInt(U.UBLK_F_USER_COPY))) continue;
    const n = addDevice("-t", "null", "--size", "64M", "-q", "1", ...args);
    const flags = listed(n).flags;
    assert.equal(
      flags & (U.UBLK_F_AUTO_BUF_REG | U.UBLK_F_SUPPORT_ZERO_COPY),
      0,
      `${args}: 0x${flags.toString(16)}`,
    );
    assert.equal(ublk("del", "-n", String(n)).code, 0);
  }
  const r = ublk("add", "-t", "null", "--no_auto_zc", "--auto_zc");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr.trim(), /^ublk: --no_auto_zc/);
});
