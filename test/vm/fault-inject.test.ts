// The fault_inject target: each knob observed from outside, as a user testing their software would.
// Errors are counted with O_DIRECT reads one block at a time (no page cache, no retries in between);
// latency comes from fio; die_after crashes the daemon mid-fio and recovery must lose nothing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import { after, test } from "node:test";
import { native } from "../../src/native.js";
import { addDevice, daemonPids, deleteAll, sh, skipReason, sleep, ublk } from "./helpers.js";

after(() => {
  if (!skipReason) deleteAll();
});

const BS = 4096;

/** For each of the first `blocks` 4K blocks, whether an O_DIRECT read (or write) of it failed with EIO. */
function probe(dev: string, blocks: number, write = false): boolean[] {
  const fd = openSync(dev, (write ? constants.O_RDWR : constants.O_RDONLY) | constants.O_DIRECT);
  const buf = Buffer.from(native.allocBuffer(BS));
  const failed: boolean[] = [];
  try {
    for (let i = 0; i < blocks; i++) {
      try {
        if (write) writeSync(fd, buf, 0, BS, i * BS);
        else readSync(fd, buf, 0, BS, i * BS);
        failed.push(false);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EIO") throw err;
        failed.push(true);
      }
    }
  } finally {
    closeSync(fd);
  }
  return failed;
}

const count = (bits: boolean[]) => bits.filter(Boolean).length;

function info(id: number): { state: string; daemon_pid: number } {
  const r = ublk("list", "-n", String(id), "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout)[0];
}

test("fault_inject --error_rate 0.1: about 10% of reads fail with EIO; the same --seed fails the same reads, another seed others", {
  skip: skipReason,
}, () => {
  const blocks = 1000;
  const runs: boolean[][] = [];
  for (const seed of ["7", "7", "8"]) {
    const id = addDevice(
      "-t",
      "fault_inject",
      "--error_rate",
      "0.1",
      "--seed",
      seed,
      "-q",
      "1",
      "--size",
      "64M",
    );
    runs.push(probe(`/dev/ublkb${id}`, blocks));
    assert.equal(ublk("del", "-n", String(id)).code, 0);
  }
  for (const run of runs) {
    const n = count(run);
    // 3 standard deviations of a binomial(1000, 0.1) either side of 100.
    assert.ok(n >= 72 && n <= 128, `${n} of ${blocks} reads failed with --error_rate 0.1`);
  }
  assert.deepEqual(runs[1], runs[0], "the same seed failed different reads");
  assert.notDeepEqual(runs[2], runs[0], "another seed failed the very same reads");
});

test("fault_inject --error_sectors: reads and writes touching the range fail, every other block works", {
  skip: skipReason,
}, () => {
  // Sectors 2050-2051 sit inside the 4K block 256 (sectors 2048-2055).
  const id = addDevice("-t", "fault_inject", "--error_sectors", "2050-2051", "-q", "1", "--size", "64M");
  const dev = `/dev/ublkb${id}`;
  for (const write of [false, true]) {
    const failed = probe(dev, 512, write);
    assert.deepEqual(
      failed.flatMap((f, i) => (f ? [i] : [])),
      [256],
      `${write ? "writes" : "reads"} failed on the wrong blocks`,
    );
  }
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("fault_inject --delay_us with --slow_rate/--slow_us: every IO waits the delay, a tail waits the slow time too (fio latency)", {
  skip: skipReason,
}, () => {
  const id = addDevice(
    ...["-t", "fault_inject", "--delay_us", "3000", "--slow_rate", "0.2", "--slow_us", "40000"],
    ...["--seed", "5", "-q", "1", "--size", "64M"],
  );
  const list = ublk("list", "-v", "-n", String(id));
  assert.match(list.stdout, /target fault_inject .*delay_us 3000 .*slow_rate 0.2 slow_us 40000/);
  const r = sh(
    `fio --output-format=json --name=lat --filename=/dev/ublkb${id} --rw=randread --bs=4k --direct=1 ` +
      "--ioengine=io_uring --iodepth=1 --number_ios=150 --size=64M --randseed=1 --clocksource=clock_gettime --lat_percentiles=1",
  );
  const job = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))).jobs[0];
  // Total latency (fio's lat: from before the submit to the completion), on the kernel's monotonic
  // clock, which the io_uring timer runs on. Not clat: fio starts that clock when its submit call
  // returns, and under a loaded TCG host the fio thread can lose the CPU for milliseconds in
  // between (clat min 1.5 ms with a 3 ms delay, once on Linux 7.3).
  const lat = job.read.lat_ns;
  const us = (ns: number) => ns / 1000;
  assert.equal(job.error, 0);
  assert.equal(job.read.total_ios, 150);
  assert.ok(us(lat.min) >= 3000, `the fastest IO took ${us(lat.min)} us, under the 3000 us delay`);
  assert.ok(
    us(lat.percentile["50.000000"]) < 40000,
    `the median IO took ${us(lat.percentile["50.000000"])} us`,
  );
  assert.ok(
    us(lat.percentile["95.000000"]) >= 43000,
    `p95 ${us(lat.percentile["95.000000"])} us: the 20% slow tail did not show`,
  );
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("fault_inject -f FILE --die_after with -r 1 -i 1: the daemon crashes mid-fio, recover, fio sees no error and the data verifies", {
  skip: skipReason,
}, async () => {
  sh("rm -f /tmp/fi-img; truncate -s 16M /tmp/fi-img");
  const id = addDevice(
    "-t",
    "fault_inject",
    "-f",
    "/tmp/fi-img",
    "--die_after",
    "600",
    "-r",
    "1",
    "-i",
    "1",
    "-q",
    "2",
  );
  const dev = `/dev/ublkb${id}`;
  const pid = info(id).daemon_pid;
  const job =
    `--name=w --filename=${dev} --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 ` +
    "--size=8M --randseed=11 --verify=crc32c --verify_state_save=0 --output-format=json";
  const fio = spawn("bash", ["-c", `fio ${job} --do_verify=0`], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  // 2048 writes: the daemon dies at the 601st request, on its own.
  const deadline = Date.now() + 60_000;
  while (daemonPids().includes(pid)) {
    assert.ok(Date.now() < deadline, "the daemon did not die after --die_after 600");
    await sleep(200);
  }
  while (info(id).state !== "QUIESCED") {
    assert.ok(Date.now() < deadline + 45_000, "the device did not become QUIESCED");
    await sleep(500);
  }
  // Options given again without --die_after, or the new daemon would die the same way.
  const rec = ublk("recover", "-n", String(id), "-t", "fault_inject", "-f", "/tmp/fi-img");
  assert.equal(rec.code, 0, rec.stderr);
  assert.match(rec.stdout, /state LIVE/);
  assert.equal(await fioDone, 0, `fio failed: ${out}`);
  const w = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
  assert.equal(w.error, 0);
  assert.equal(w.write.io_bytes, 8 * 1024 * 1024, "fio did not write its whole region");
  const v = sh(`fio ${job} --verify_only=1`, { allowFail: true });
  assert.equal(v.code, 0, `verify pass failed:\n${v.stdout}\n${v.stderr}`);
  assert.equal(JSON.parse(v.stdout.slice(v.stdout.indexOf("{"))).jobs[0].error, 0, "verify pass failed");
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});
