// The newer driver's control plane: online resize, quiesce (daemon upgrade under a mounted
// filesystem), safe and async delete, recovery that fails IO at once, and no automatic partition
// scan. Each test gates on GET_FEATURES; on a driver without the feature the refusal is tested.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { after, test } from "node:test";
import * as U from "../../src/uapi/ublk_cmd.js";
import { addDevice, deleteAll, hasAny, needs, sh, skipReason, sleep, ublk, waitFor } from "./helpers.js";

after(() => {
  if (!skipReason) {
    sh("umount /tmp/cp-mnt 2>/dev/null; true", { allowFail: true });
    deleteAll();
  }
});

function info(id: number): { state: string; daemon_pid: number; flags: number } {
  const r = ublk("list", "-n", String(id), "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout)[0];
}

/** The process has exited (a zombie waiting for its reaper counts as gone). */
const gone = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
};

const size64 = (dev: string) => Number(sh(`blockdev --getsize64 ${dev}`).stdout.trim());

test("on a driver without them, -e 1 and --no_auto_part_scan are refused in one line, no device made", {
  skip: hasAny(U.UBLK_F_USER_RECOVERY_FAIL_IO),
}, () => {
  for (const flag of ["-e", "--no_auto_part_scan"]) {
    const r = ublk("add", "-t", "null", flag);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^ublk: the ublk driver lacks UBLK_F_\w+/);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.equal(JSON.parse(ublk("list", "--json").stdout).length, 0);
  }
});

test("update_size: null and loop devices grow and shrink online; loop refuses to drop data", {
  skip: needs(U.UBLK_F_UPDATE_SIZE),
}, () => {
  const n = addDevice("-t", "null", "--size", "64M", "-q", "1");
  assert.equal(size64(`/dev/ublkb${n}`), 64 << 20);
  const r = ublk("update_size", "-n", String(n), "-s", "128M");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(size64(`/dev/ublkb${n}`), 128 << 20);

  sh("rm -f /tmp/cp-grow; truncate -s 32M /tmp/cp-grow");
  const l = addDevice("-t", "loop", "-q", "1", "/tmp/cp-grow");
  const dev = `/dev/ublkb${l}`;
  assert.equal(ublk("update_size", "-n", String(l), "-s", "48M").code, 0);
  assert.equal(size64(dev), 48 << 20);
  assert.equal(Number(sh("stat -c %s /tmp/cp-grow").stdout.trim()), 48 << 20, "file did not grow");
  // Data in the new space reaches the file and reads back.
  sh("head -c 1M /dev/urandom >/tmp/cp-chunk");
  sh(`dd if=/tmp/cp-chunk of=${dev} bs=1M seek=40 oflag=direct status=none`);
  sh(`cmp /tmp/cp-chunk <(dd if=${dev} bs=1M skip=40 count=1 iflag=direct status=none)`);
  const shrink = ublk("update_size", "-n", String(l), "-s", "36M");
  assert.notEqual(shrink.code, 0);
  assert.match(shrink.stderr, /refusing to shrink .* holds data at byte/);
  assert.equal(size64(dev), 48 << 20, "a refused shrink changed the size");
  // Above the data only zeros go: allowed.
  const ok = ublk("update_size", "-n", String(l), "-s", "44M");
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(size64(dev), 44 << 20);
  sh(`cmp /tmp/cp-chunk <(dd if=${dev} bs=1M skip=40 count=1 iflag=direct status=none)`);
  assert.equal(ublk("update_size", "-n", String(l), "-s", "1000").code, 1, "a size off the block size");
  assert.equal(ublk("del", "-n", String(n)).code, 0);
  assert.equal(ublk("del", "-n", String(l)).code, 0);
});

test("quiesce + recover under a mounted ext4 with fio verify running: no IO error (daemon upgrade)", {
  skip: needs(U.UBLK_F_QUIESCE),
}, async () => {
  sh("rm -f /tmp/cp-up; truncate -s 96M /tmp/cp-up");
  const id = addDevice("-t", "loop", "-r", "1", "-q", "2", "/tmp/cp-up");
  const dev = `/dev/ublkb${id}`;
  assert.ok(info(id).flags & U.UBLK_F_QUIESCE, "QUIESCE was not asked for with -r 1");
  sh(`modprobe ext4; mkfs.ext4 -q ${dev} && mkdir -p /tmp/cp-mnt && mount ${dev} /tmp/cp-mnt`);
  const job =
    "--name=up --directory=/tmp/cp-mnt --rw=randwrite --bs=4k --size=24M --ioengine=io_uring --direct=1 " +
    "--iodepth=8 --verify=crc32c --verify_state_save=0 --time_based --runtime=12 --output-format=json";
  const fio = spawn("bash", ["-c", `fio ${job}`], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  fio.stderr.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  await sleep(4000);
  const oldPid = info(id).daemon_pid;
  const q = ublk("quiesce", "-n", String(id));
  assert.equal(q.code, 0, q.stderr);
  assert.match(q.stdout, /state QUIESCED/);
  assert.ok(await waitFor(() => gone(oldPid), 10_000), "the old daemon did not leave");
  await sleep(1000); // IO waits meanwhile, queued in the block layer
  const rec = ublk("recover", "-n", String(id));
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, /state LIVE/);
  assert.notEqual(info(id).daemon_pid, oldPid);
  // A request lost in the hand-over would leave fio (and ext4) waiting for ever: bound the wait and
  // say what the device held instead of stalling the suite.
  const code = await Promise.race([fioDone, sleep(180_000).then(() => null)]);
  if (code === null) {
    const held = readFileSync(`/sys/block/ublkb${id}/inflight`, "utf8").trim();
    fio.kill("SIGKILL");
    assert.fail(`fio still waiting 180 s after recover (reads, writes in flight: ${held})`);
  }
  assert.equal(code, 0, `fio failed across the upgrade:\n${out}`);
  const jobRes = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
  assert.equal(jobRes.error, 0);
  sh("umount /tmp/cp-mnt");
  sh(`fsck.ext4 -fn ${dev}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

/** `sync` with no pipe of ours held, so a sync stuck in the kernel fails the test instead of hanging it. */
function boundedSync(seconds: number): void {
  sh(
    `sync </dev/null >/dev/null 2>&1 & p=$!; for i in $(seq ${seconds * 10}); do ` +
      `kill -0 $p 2>/dev/null || exit 0; sleep 0.1; done; echo "sync still blocked after ${seconds} s" >&2; ` +
      "cat /sys/block/ublkb*/inflight >&2; exit 1",
  );
}

test("del --safe refuses a device held open and leaves it LIVE and serving; works once closed; del --async returns", {
  skip: needs(U.UBLK_F_SAFE_STOP_DEV),
}, async () => {
  sh("rm -f /tmp/cp-safe; head -c 16M /dev/urandom >/tmp/cp-safe");
  const id = addDevice("-t", "loop", "-q", "1", "/tmp/cp-safe");
  const dev = `/dev/ublkb${id}`;
  // Opened read-only and held by a process that does no IO: the disk has an opener.
  const holder = spawn("bash", ["-c", `exec 3<${dev}; exec sleep 600`], { stdio: "ignore" });
  const exited = new Promise((r) => holder.on("exit", r));
  try {
    const held = () => {
      try {
        return readlinkSync(`/proc/${holder.pid}/fd/3`) === dev;
      } catch {
        return false;
      }
    };
    assert.ok(await waitFor(held, 20_000), "not held open");
    const r = ublk("del", "-n", String(id), "--safe");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^ublk: device \d+ is in use \(mounted or open\): not stopped/);
    assert.equal(info(id).state, "LIVE");
    sh(`cmp -n 1048576 /tmp/cp-safe ${dev}`, { timeoutMs: 60_000 }); // still serving
  } finally {
    holder.kill("SIGKILL");
  }
  await exited;
  assert.equal(ublk("del", "-n", String(id), "--safe").code, 0);
  assert.ok(await waitFor(() => !existsSync(dev), 10_000));

  const a = addDevice("-t", "null", "-q", "1");
  const t0 = Date.now();
  assert.equal(ublk("del", "-n", String(a), "--async").code, 0);
  assert.ok(Date.now() - t0 < 60_000);
  assert.ok(await waitFor(() => !existsSync(`/dev/ublkb${a}`), 20_000), "async-deleted device stayed");
});

// Seen once on 7.3 under a loaded host (2026-12-02, CI-like run): after the refused TRY_STOP_DEV the
// mounted ext4's next sync never returned (jbd2 blocked on ublkb0). Not reproduced in three further
// runs; kept running as a todo, bounded, until its cause is known (notes of that day).
test("del --safe refuses a mounted device and leaves it LIVE; writes and sync still work; works once unmounted", {
  skip: needs(U.UBLK_F_SAFE_STOP_DEV),
  todo: "intermittent: a sync after the refusal hung once on 7.3 under load",
}, () => {
  sh("rm -f /tmp/cp-safe; truncate -s 64M /tmp/cp-safe");
  const id = addDevice("-t", "loop", "-q", "1", "/tmp/cp-safe");
  const dev = `/dev/ublkb${id}`;
  sh(`modprobe ext4; mkfs.ext4 -q ${dev} && mkdir -p /tmp/cp-mnt && mount ${dev} /tmp/cp-mnt`);
  const r = ublk("del", "-n", String(id), "--safe");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^ublk: device \d+ is in use \(mounted or open\): not stopped/);
  assert.equal(info(id).state, "LIVE");
  sh("echo still-here >/tmp/cp-mnt/f");
  boundedSync(60);
  sh("umount /tmp/cp-mnt");
  assert.equal(ublk("del", "-n", String(id), "--safe").code, 0);
});

test("-e 1: while the daemon is dead IO fails at once; recover brings it back", {
  skip: needs(U.UBLK_F_USER_RECOVERY_FAIL_IO),
}, async () => {
  sh("rm -f /tmp/cp-failio; head -c 16M /dev/urandom >/tmp/cp-failio");
  const id = addDevice("-t", "loop", "-e", "1", "-q", "1", "/tmp/cp-failio");
  const dev = `/dev/ublkb${id}`;
  assert.ok(info(id).flags & U.UBLK_F_USER_RECOVERY_FAIL_IO);
  process.kill(info(id).daemon_pid, "SIGKILL");
  assert.ok(await waitFor(() => info(id).state !== "LIVE", 60_000, 500), "device stayed LIVE");
  const t0 = Date.now();
  const rd = sh(`timeout 20 dd if=${dev} of=/dev/null bs=4k count=1 iflag=direct`, { allowFail: true });
  assert.notEqual(rd.code, 0, "a read succeeded with no daemon");
  assert.notEqual(rd.code, 124, "the read waited instead of failing");
  assert.match(rd.stderr, /I\/O error/); // the 7.3 driver reports EREMOTEIO
  assert.ok(Date.now() - t0 < 15_000);
  const rec = ublk("recover", "-n", String(id));
  assert.equal(rec.code, 0, rec.stderr);
  sh(`cmp <(dd if=${dev} bs=1M iflag=direct status=none) /tmp/cp-failio`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("--no_auto_part_scan: no partition node until asked; without it the partition appears", {
  skip: needs(U.UBLK_F_NO_AUTO_PART_SCAN),
}, async () => {
  sh("rm -f /tmp/cp-part; truncate -s 32M /tmp/cp-part; echo 'start=2048, type=83' | sfdisk -q /tmp/cp-part");
  const quiet = addDevice("-t", "loop", "-q", "1", "--no_auto_part_scan", "/tmp/cp-part");
  await sleep(2000);
  assert.ok(!existsSync(`/dev/ublkb${quiet}p1`), "a partition was scanned despite --no_auto_part_scan");
  sh(`blockdev --rereadpt /dev/ublkb${quiet}`);
  assert.ok(await waitFor(() => existsSync(`/dev/ublkb${quiet}p1`), 10_000), "rereadpt found no partition");
  assert.equal(ublk("del", "-n", String(quiet)).code, 0);
  const scanned = addDevice("-t", "loop", "-q", "1", "/tmp/cp-part");
  assert.ok(await waitFor(() => existsSync(`/dev/ublkb${scanned}p1`), 10_000), "no automatic partition scan");
  assert.equal(ublk("del", "-n", String(scanned)).code, 0);
});
