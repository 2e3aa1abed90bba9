// The qcow2 target through the real driver, with QEMU's tools as the oracle: after fio writes with a
// fixed seed, `qemu-img check` finds the image clean and `qemu-img compare` finds it equal to a raw
// file that got the same fio job; images written by qemu-io (plain, compressed, with a backing file)
// read back as `qemu-img convert` reads them; and a daemon killed with `kill -9` in the middle of
// allocating writes leaves an image that qemu-img check finds free of corruption.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, fioRun, sh, skipReason, sleep, ublk, waitFor } from "./helpers.js";

const DIR = "/tmp/ublk-qcow2-test"; // the guest's tmpfs
const MiB = 1024 * 1024;
const haveQemuImg = spawnSync("qemu-img", ["--version"]).status === 0;
const skip = skipReason || (haveQemuImg ? false : "needs qemu-img and qemu-io (Debian package qemu-utils)");

after(() => {
  if (skip) return;
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

function path(name: string): string {
  mkdirSync(DIR, { recursive: true });
  const p = `${DIR}/${name}`;
  rmSync(p, { force: true });
  return p;
}

function del(id: number): void {
  const r = ublk("del", "-n", String(id));
  assert.equal(r.code, 0, `ublk del -n ${id}: ${r.stderr}`);
}

/** Random writes of 512 B..128 KiB by two jobs on disjoint halves: the same bytes for the same seed. */
function fioJob(perJobMiB: number, seed: number): string {
  return (
    `--name=w --rw=randwrite --bsrange=512-128k --blockalign=512 --numjobs=2 --size=${perJobMiB}M ` +
    `--offset_increment=${perJobMiB}M --io_size=${perJobMiB / 2}M --randseed=${seed} --refill_buffers ` +
    "--iodepth=16 --ioengine=io_uring"
  );
}

function runFio(args: string): void {
  const r = fioRun(args);
  assert.equal(r.code, 0, `fio ${args}:\n${r.output}`);
  assert.ok(r.jobs.length > 0 && r.jobs.every((j) => j.error === 0), `fio errors:\n${r.output}`);
}

function checkClean(img: string): string {
  const r = sh(`qemu-img check ${img}`, { allowFail: true });
  assert.equal(r.code, 0, `qemu-img check ${img} (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

function targetInfo(id: number): Record<string, unknown> {
  const listed = JSON.parse(ublk("list", "-n", String(id), "--json").stdout) as {
    target_info: Record<string, unknown>;
  }[];
  return listed[0].target_info;
}

// Version 2 images get the same checks on the host (test/host/qcow2.test.ts); the device path
// does not differ between versions.
test("qcow2 v3, 2 queues: fio writes with a fixed seed; qemu-img check is clean and compare equals a raw file with the same job; discard frees the clusters", {
  skip,
}, () => {
  const img = path(`fio-v3.qcow2`);
  const raw = path(`fio-v3.raw`);
  sh(`qemu-img create -q -f qcow2 -o compat=1.1 ${img} 16M && truncate -s 16M ${raw}`);
  const id = addDevice("-t", "qcow2", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  const info = targetInfo(id);
  assert.equal(info.version, 3);
  assert.equal(info.cluster_size, 65536);
  const job = fioJob(8, 1237);
  runFio(`${job} --filename=${dev} --direct=1`);
  runFio(`${job} --filename=${raw}`);
  del(id);
  const report = checkClean(img);
  sh(`qemu-img compare -f qcow2 -F raw ${img} ${raw}`);
  assert.match(report, /[1-9]\d*\/256 = [\d.]+% allocated/, `no cluster allocated?\n${report}`);

  // Discard everything: it reads as zeros, and the same writes again (the same clusters, in
  // another order) reuse the freed clusters instead of growing the file; check stays clean.
  const size = statSync(img).size;
  const id2 = addDevice("-t", "qcow2", "-q", "1", img);
  sh(`blkdiscard /dev/ublkb${id2} && cmp -n ${16 * MiB} /dev/ublkb${id2} /dev/zero`);
  runFio(`${job} --filename=/dev/ublkb${id2} --direct=1`);
  del(id2);
  checkClean(img);
  assert.equal(statSync(img).size, size, "the image grew although discarded clusters were free");
});

test("images written by qemu-io read back as qemu-img convert reads them: plain, compressed, and with a backing file", {
  skip,
}, () => {
  const base = path("base.qcow2");
  sh(
    `qemu-img create -q -f qcow2 ${base} 16M && qemu-io -f qcow2 -c 'write -P 0xab 0 3M' ` +
      `-c 'write -P 0xcd 5M 4k' -c 'write -P 0x11 7000k 300k' -c 'write -z 1M 64k' ${base}`,
  );
  const comp = path("comp.qcow2");
  sh(`qemu-img convert -c -O qcow2 ${base} ${comp}`);
  const top = path("top.qcow2");
  sh(
    `qemu-img create -q -f qcow2 -b ${base} -F qcow2 ${top} && qemu-io -f qcow2 -c 'write -P 0x77 2M 96k' ${top}`,
  );
  for (const img of [base, comp, top]) {
    const raw = path("expect.raw");
    sh(`qemu-img convert -O raw ${img} ${raw}`);
    const id = addDevice("-t", "qcow2", "-q", "1", img);
    sh(`cmp /dev/ublkb${id} ${raw}`);
    if (img === top) assert.match(String(targetInfo(id).backing), /base\.qcow2 \(qcow2\)/);
    del(id);
  }

  // Copy-on-write into the overlay: the same bytes written through the device and into a raw copy
  // of what it reads as, at two places that straddle cluster boundaries.
  const raw = path("top.raw");
  const blob = path("blob");
  sh(`qemu-img convert -O raw ${top} ${raw} && qemu-img convert -O raw ${base} ${DIR}/base.raw`);
  sh(`head -c 200k /dev/urandom > ${blob}`);
  const id = addDevice("-t", "qcow2", "-q", "1", top);
  for (const sector of [4001, 16300]) {
    sh(`dd if=${blob} of=/dev/ublkb${id} bs=512 seek=${sector} oflag=direct status=none`);
    sh(`dd if=${blob} of=${raw} bs=512 seek=${sector} conv=notrunc status=none`);
  }
  del(id);
  checkClean(top);
  sh(`qemu-img compare -F raw ${top} ${raw} && qemu-img compare -F raw ${base} ${DIR}/base.raw`);
});

test("kill -9 of the daemon during allocating writes leaves no corruption (qemu-img check: clean or leaks only)", {
  skip,
}, async () => {
  const img = path("crash.qcow2");
  sh(`qemu-img create -q -f qcow2 -o cluster_size=16k ${img} 64M`);
  const id = addDevice("-t", "qcow2", "-q", "2", img);
  const pid = (JSON.parse(ublk("list", "-n", String(id), "--json").stdout) as { daemon_pid: number }[])[0]
    .daemon_pid;
  // Through bash, as sh() runs fio: it finds fio whatever PATH the guest's init left us (a bare
  // spawn("fio") failed with ENOENT on the 7.3 guest); exec keeps the pid fio's.
  const fio = spawn(
    "bash",
    [
      "-c",
      `exec fio --name=crash --filename=/dev/ublkb${id} --rw=randwrite --bsrange=4k-64k --direct=1 ` +
        "--ioengine=io_uring --iodepth=32 --numjobs=2 --thread --time_based --runtime=120",
    ],
    { stdio: "ignore" },
  );
  const ended = new Promise<void>((r) => fio.once("exit", () => r()));
  try {
    // Kill in the thick of it: once the image has grown by 4 MiB of new clusters.
    const growing = await waitFor(() => statSync(img).size > 4 * MiB, 90_000, 50);
    assert.ok(growing, "fio never got writes going");
    process.kill(pid, "SIGKILL");
    del(id);
    const done = await Promise.race([ended.then(() => true), sleep(60_000).then(() => false)]);
    assert.ok(done, "fio still running 60 s after the device was deleted");
  } finally {
    if (fio.exitCode === null && fio.signalCode === null) fio.kill("SIGKILL");
  }
  const r = sh(`qemu-img check ${img}`, { allowFail: true });
  // 0: clean; 3: leaked clusters only (counted but unused: space, not data); 2: corruption.
  assert.ok(
    r.code === 0 || r.code === 3,
    `qemu-img check after kill -9 (exit ${r.code}):\n${r.stdout}${r.stderr}`,
  );
  assert.doesNotMatch(r.stdout, /ERROR/);
  // Still a usable image: served and written again, it stays consistent.
  const id2 = addDevice("-t", "qcow2", "-q", "1", img);
  runFio(`${fioJob(8, 5)} --filename=/dev/ublkb${id2} --direct=1`);
  del(id2);
  const again = sh(`qemu-img check ${img}`, { allowFail: true });
  assert.ok(again.code === 0 || again.code === 3, `qemu-img check after reuse:\n${again.stdout}`);
});

test("bad input: no image, a file that is not qcow2, a missing backing file: one line, no device left", {
  skip,
}, () => {
  const notQcow = path("plain.raw");
  sh(`truncate -s 1M ${notQcow}`);
  const orphan = path("orphan.qcow2");
  const gone = path("gone.qcow2");
  sh(`qemu-img create -q -f qcow2 ${gone} 1M && qemu-img create -q -f qcow2 -b ${gone} -F qcow2 ${orphan}`);
  rmSync(gone);
  const before = ublk("list", "--json").stdout;
  for (const [args, why] of [
    [[], /qcow2 needs an image/],
    [[notQcow], /is not a qcow2 image/],
    [[orphan], /backing file .*gone\.qcow2 does not exist/],
  ] as const) {
    const r = ublk("add", "-t", "qcow2", ...args);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^ublk: /);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, why);
  }
  assert.equal(ublk("list", "--json").stdout, before, "a failed add left a device behind");
});
