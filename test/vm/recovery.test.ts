// User recovery against the 6.12 driver: a daemon SIGKILLed mid-IO, a new one takes over.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, oneGuest, sh, skipReason, sleep, ublk } from "./helpers.js";

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

// A sparse image goes through io_uring; a fully written one is served through its mapping (the driver
// copies into and out of the file's pages), and must lose nothing either.
for (const mapped of [false, true]) {
  test(`loop -r 1 -i 1 (${mapped ? "mapped file" : "sparse file"}): SIGKILL mid-fio, recover: fio sees no error and the data verifies`, {
    skip: mapped ? oneGuest("6.12") : skipReason,
  }, async () => {
    sh(mapped ? "head -c 64M /dev/zero >/tmp/rec-img" : "rm -f /tmp/rec-img; truncate -s 64M /tmp/rec-img");
    // --no_auto_zc: the mapped path is the copying one, whatever add would take by default.
    const id = addDevice(
      "-t",
      "loop",
      "-r",
      "1",
      "-i",
      "1",
      "-q",
      "2",
      ...(mapped ? ["--no_auto_zc"] : []),
      "/tmp/rec-img",
    );
    const dev = `/dev/ublkb${id}`;
    assert.ok(info(id).flags & (1 << 3), "USER_RECOVERY was not granted");
    const listed = JSON.parse(ublk("list", "-n", String(id), "--json").stdout)[0];
    assert.equal(listed.target_info?.mapped_reads, mapped, "not in the mode this test is about");
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
}

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

test("recover refuses a device made without -r, with one clear line", { skip: oneGuest("6.12") }, () => {
  const id = addDevice("-t", "null", "-q", "1");
  const r = ublk("recover", "-n", String(id));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ublk: .*without user recovery/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.equal(info(id).state, "LIVE");
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

/** The process exists and has not finished (an unreaped zombie counts as finished). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

test("--supervise: a SIGKILLed daemon is replaced without a person and the data is intact", {
  skip: oneGuest("6.12"),
}, async () => {
  sh("truncate -s 32M /tmp/sup-img && dd if=/dev/urandom of=/tmp/sup-src bs=1M count=8 status=none");
  const id = addDevice("-t", "loop", "-r", "1", "-i", "1", "-q", "1", "--supervise", "/tmp/sup-img");
  const dev = `/dev/ublkb${id}`;
  sh(`dd if=/tmp/sup-src of=${dev} bs=1M oflag=direct status=none`);
  const first = info(id).daemon_pid;
  process.kill(first, "SIGKILL");
  const deadline = Date.now() + 60_000;
  for (;;) {
    const now = info(id);
    if (now.state === "LIVE" && now.daemon_pid !== first) break;
    assert.ok(Date.now() < deadline, "the supervisor did not bring the device back within 60 s");
    await sleep(500);
  }
  sh(`cmp -n 8388608 /tmp/sup-src ${dev}`);
  const supervisor = parentOf(info(id).daemon_pid);
  assert.ok(
    readFileSync(`/proc/${supervisor}/cmdline`, "utf8").includes("__supervise"),
    "daemon has no supervisor",
  );
  assert.equal(ublk("del", "-n", String(id)).code, 0);
  for (let i = 0; i < 50 && running(supervisor); i++) await sleep(200);
  assert.ok(!running(supervisor), "the supervisor outlived its device");
});

test("a daemon killed while recovering can be recovered again", { skip: skipReason }, async () => {
  sh("truncate -s 32M /tmp/rr-img && dd if=/dev/urandom of=/tmp/rr-src bs=1M count=4 status=none");
  const id = addDevice("-t", "loop", "-r", "1", "-q", "2", "/tmp/rr-img");
  sh(`dd if=/tmp/rr-src of=/dev/ublkb${id} bs=1M oflag=direct status=none`);
  process.kill(info(id).daemon_pid, "SIGKILL");
  await waitState(id, "QUIESCED");
  // A foreground recovery is the daemon itself: kill it part-way through taking over. (6.12 cannot
  // take over again after a daemon died between START_USER_RECOVERY and its first ready queue; the
  // recovering daemon does its slow start-up before START, so that window is a few milliseconds.)
  const { spawn: spawnChild } = await import("node:child_process");
  const { CLI } = await import("./helpers.js");
  const rec = spawnChild(process.execPath, [CLI, "recover", "-n", String(id), "--foreground"], {
    stdio: "ignore",
  });
  await sleep(1500);
  rec.kill("SIGKILL");
  await new Promise((r) => rec.on("exit", r));
  await waitState(id, "QUIESCED");
  const again = ublk("recover", "-n", String(id));
  assert.equal(again.code, 0, again.stderr);
  sh(`cmp -n 4194304 /tmp/rr-src /dev/ublkb${id}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

// Two cycles: the second kills a daemon that itself took over by recovery (~45 s a cycle under TCG).
test("ext4 survives two kill/recover cycles during writes; fsck is clean", {
  skip: skipReason,
}, async () => {
  sh(
    "modprobe ext4; truncate -s 128M /tmp/ext-img && dd if=/dev/urandom of=/tmp/ext-src bs=1M count=2 status=none",
  );
  const id = addDevice("-t", "loop", "-r", "1", "-i", "1", "-q", "2", "/tmp/ext-img");
  const dev = `/dev/ublkb${id}`;
  sh(`mkfs.ext4 -q -F ${dev} && mkdir -p /tmp/ext-mnt && mount ${dev} /tmp/ext-mnt`);
  try {
    for (let cycle = 0; cycle < 2; cycle++) {
      const writer = spawn(
        "bash",
        ["-c", `for i in $(seq 1 12); do cp /tmp/ext-src /tmp/ext-mnt/c${cycle}-$i && sync || exit 1; done`],
        { stdio: "ignore" },
      );
      const done = new Promise<number>((r) => writer.on("exit", (c) => r(c ?? -1)));
      await sleep(1500);
      process.kill(info(id).daemon_pid, "SIGKILL");
      await waitState(id, "QUIESCED");
      assert.equal(ublk("recover", "-n", String(id)).code, 0);
      assert.equal(await done, 0, `writer of cycle ${cycle} failed`);
    }
    sh("for f in /tmp/ext-mnt/c*; do cmp /tmp/ext-src $f; done");
  } finally {
    sh("umount /tmp/ext-mnt", { allowFail: true });
  }
  sh(`fsck.ext4 -fn ${dev}`);
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

// A target that holds every write while /tmp/stall-on exists: the write is then certainly in the
// dead daemon's hands when it is killed, so what the application sees is deterministic.
const STALL_TARGET = `
import { existsSync } from "node:fs";
export default {
  name: "stall",
  open: () => ({ size: 16 * 1024 * 1024, state: null }),
  read(req) { req.buffer.fill(0, 0, req.length); return req.length; },
  write(req) { return existsSync("/tmp/stall-on") ? new Promise(() => {}) : req.length; },
};`;

for (const reissue of [false, true]) {
  const what = reissue
    ? "-r 1 -i 1: a write held by the killed daemon is reissued to the new one and succeeds"
    : "-r 1 -i 0: a write held by the killed daemon fails with EIO; new IO works after recovery";
  test(what, { skip: skipReason }, async () => {
    sh(`cat > /tmp/stall-target.mjs <<'JS'\n${STALL_TARGET}\nJS`);
    const id = addDevice("-t", "/tmp/stall-target.mjs", "-r", "1", "-i", reissue ? "1" : "0", "-q", "1");
    const dev = `/dev/ublkb${id}`;
    sh("touch /tmp/stall-on");
    const dd = spawn("dd", ["if=/dev/zero", `of=${dev}`, "bs=4k", "count=1", "oflag=direct"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let ddErr = "";
    dd.stderr.on("data", (d) => {
      ddErr += d;
    });
    const ddExit = new Promise<number>((r) => dd.on("exit", (c) => r(c ?? -1)));
    await sleep(2000);
    assert.equal(dd.exitCode, null, "the write should be held by the target");
    process.kill(info(id).daemon_pid, "SIGKILL");
    await waitState(id, "QUIESCED");
    sh("rm -f /tmp/stall-on");
    const rec = ublk("recover", "-n", String(id));
    assert.equal(rec.code, 0, rec.stderr);
    const code = await Promise.race([ddExit, sleep(60_000).then(() => "hung" as const)]);
    assert.notEqual(code, "hung", "the held write neither completed nor failed after recovery");
    if (reissue) assert.equal(code, 0, `dd failed: ${ddErr}`);
    else {
      assert.notEqual(code, 0, "without reissue the held write must fail");
      assert.match(ddErr, /Input\/output error/);
    }
    sh(`dd if=/dev/zero of=${dev} bs=4k count=4 seek=8 oflag=direct status=none`);
    assert.equal(ublk("del", "-n", String(id)).code, 0);
  });
}
