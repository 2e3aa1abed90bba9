// Many devices: eight at once with mixed targets, each serving its own data, and a long run of
// add/del that must leave nothing behind (device nodes, daemons, file descriptors).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import {
  addDevice,
  CLI,
  daemonPids,
  deleteAll,
  listedIds,
  sh,
  skipReason,
  sleep,
  ublk,
  ublkNodes,
  waitFor,
} from "./helpers.js";

const DIR = "/tmp/ublk-many-test"; // the guest's tmpfs
const MiB = 1024 * 1024;
/**
 * add/del cycles through the CLI. Each costs ~11-20 s under TCG (three node start-ups: the CLI twice,
 * the daemon once); a leak shows after a few, so 4 keeps CI within budget. The API cycles cost ~8 s
 * each (queue threads start and load their modules), so 10 of them. UBLK_TS_TEST_CYCLES=50 runs more
 * of both (the VM harness passes UBLK_*).
 */
const CYCLES = Number(process.env.UBLK_TS_TEST_CYCLES ?? 4);
const API_CYCLES = Number(process.env.UBLK_TS_TEST_CYCLES ?? 10);

after(() => {
  if (skipReason) return;
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

/** `ublk add` without blocking this process, so that several can run at once. */
function addDeviceAsync(...args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, "add", ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const m = /^dev id (\d+): /m.exec(stdout);
      if (err || !m)
        reject(new Error(`ublk add ${args.join(" ")} failed: ${err?.message ?? ""}\n${stdout}${stderr}`));
      else resolve(Number(m[1]));
    });
  });
}

const sectors = (id: number) => Number(readFileSync(`/sys/block/ublkb${id}/size`, "utf8").trim());

test("eight devices at once (4 null, 4 loop): each loop device keeps its own data; del -a leaves none", {
  skip: skipReason,
}, async () => {
  mkdirSync(DIR, { recursive: true });
  const files = [0, 1, 2, 3].map((i) => ({ img: `${DIR}/loop${i}.img`, data: `${DIR}/data${i}` }));
  for (const f of files) sh(`truncate -s 32M ${f.img} && head -c ${32 * MiB} /dev/urandom >${f.data}`);
  // Started four at a time, as a boot script might: each `add` must still get its own device.
  const nulls: number[] = [];
  const loops: { id: number; img: string; data: string }[] = [];
  for (const wave of [
    [0, 1],
    [2, 3],
  ]) {
    const added = await Promise.all(
      wave.flatMap((i) => [
        addDeviceAsync("-t", "null", "-q", String(1 + (i % 2)), "--size", `${64 * (i + 1)}M`),
        addDeviceAsync("-t", "loop", "-q", String(2 - (i % 2)), files[i].img),
      ]),
    );
    wave.forEach((i, k) => {
      nulls[i] = added[2 * k];
      loops[i] = { id: added[2 * k + 1], ...files[i] };
    });
  }
  const ids = [...nulls, ...loops.map((l) => l.id)];
  assert.equal(new Set(ids).size, 8, `device ids are not distinct: ${ids}`);
  assert.deepEqual(
    [...listedIds()].sort((a, b) => a - b),
    [...ids].sort((a, b) => a - b),
  );
  for (const [i, id] of nulls.entries())
    assert.equal(sectors(id), (64 * (i + 1) * MiB) / 512, `null device ${id} size`);
  for (const l of loops) assert.equal(sectors(l.id), (32 * MiB) / 512, `loop device ${l.id} size`);

  // Write every loop device first, then read them all back: data must not cross devices.
  for (const l of loops) sh(`dd if=${l.data} of=/dev/ublkb${l.id} bs=1M oflag=direct status=none`);
  for (const l of loops) {
    const out = `${DIR}/readback`;
    sh(`dd if=/dev/ublkb${l.id} of=${out} bs=1M iflag=direct status=none`);
    assert.ok(readFileSync(out).equals(readFileSync(l.data)), `ublkb${l.id} read back other data`);
    assert.ok(readFileSync(l.img).equals(readFileSync(l.data)), `${l.img} does not hold what was written`);
    rmSync(out);
  }
  for (const id of nulls) {
    const r = sh(`dd if=/dev/ublkb${id} of=/dev/null bs=1M count=16 iflag=direct`);
    assert.match(r.stderr, /^16777216 bytes/m, `reading 16 MiB from null device ${id}: ${r.stderr}`);
  }

  const r = ublk("del", "-a");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(listedIds(), []);
  assert.deepEqual(ublkNodes(), []);
  assert.ok(await waitFor(() => daemonPids().length === 0, 10_000), `daemons left: ${daemonPids()}`);
});

test(`add/del ${CYCLES} times in a row leaves no device node, no daemon and no extra fd`, {
  skip: skipReason,
}, async (t) => {
  ublk("list"); // let this process open whatever it keeps for spawning children before counting
  const fdsBefore = readdirSync("/proc/self/fd").length;
  const t0 = Date.now();
  for (let i = 0; i < CYCLES; i++) {
    const id = addDevice("-t", "null", "-q", "1", "-d", "16", "--size", "16M");
    assert.ok(existsSync(`/dev/ublkb${id}`), `cycle ${i}: /dev/ublkb${id} missing after add`);
    const r = ublk("del", "-n", String(id));
    assert.equal(r.code, 0, `cycle ${i}: del failed: ${r.stderr}`);
    assert.ok(!existsSync(`/dev/ublkb${id}`) && !existsSync(`/dev/ublkc${id}`), `cycle ${i}: nodes left`);
  }
  t.diagnostic(`${CYCLES} add/del cycles took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.deepEqual(listedIds(), []);
  assert.deepEqual(ublkNodes(), [], "device nodes left behind");
  assert.ok(await waitFor(() => daemonPids().length === 0, 10_000), `daemons left: ${daemonPids()}`);
  assert.equal(readdirSync("/proc/self/fd").length, fdsBefore, "the test process gained or lost fds");
});

test(`the API: ${API_CYCLES} create/stop cycles in one process leave no device, fd or thread behind`, {
  skip: skipReason,
}, async () => {
  const { UblkDevice } = await import("../../src/device.js");
  // Worker threads end asynchronously after stop(); count once they are gone.
  const threads = () => readdirSync("/proc/self/task").length;
  let fdsBefore = 0;
  let threadsBefore = 0;
  // Cycle 0 warms up what a process keeps for good (libuv's threads, module loading); count after it.
  for (let i = 0; i <= API_CYCLES; i++) {
    if (i === 1) {
      await sleep(500);
      fdsBefore = readdirSync("/proc/self/fd").length;
      threadsBefore = threads();
    }
    const dev = await UblkDevice.create({
      target: "null",
      targetOptions: { size: "16M" },
      queues: 2,
      depth: 16,
      log: () => {},
    });
    assert.ok(existsSync(dev.blockDevice), `cycle ${i}: ${dev.blockDevice} missing`);
    const id = dev.info.devId;
    await dev.stop();
    assert.ok(!existsSync(`/dev/ublkb${id}`) && !existsSync(`/dev/ublkc${id}`), `cycle ${i}: nodes left`);
  }
  assert.deepEqual(ublkNodes(), [], "device nodes left behind");
  assert.ok(
    await waitFor(() => threads() <= threadsBefore, 10_000),
    `threads: ${threadsBefore} -> ${threads()}`,
  );
  assert.equal(readdirSync("/proc/self/fd").length, fdsBefore, "the process gained or lost fds");
});
