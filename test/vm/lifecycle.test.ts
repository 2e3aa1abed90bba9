// Device lifecycle from a user's side: deleting under load, deleting everything, refusing bad input
// without leaving anything behind, and a daemon killed outright.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import {
  addDevice,
  daemonPids,
  deleteAll,
  listedIds,
  oneGuest,
  sh,
  skipReason,
  ublk,
  ublkNodes,
  waitFor,
} from "./helpers.js";

const DIR = "/tmp/ublk-lifecycle-test"; // the guest's tmpfs

after(() => {
  if (skipReason) return;
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

function image(name: string, size: string): string {
  mkdirSync(DIR, { recursive: true });
  const path = `${DIR}/${name}`;
  sh(`truncate -s ${size} ${path}`);
  return path;
}

const nodesOf = (id: number) => [`/dev/ublkb${id}`, `/dev/ublkc${id}`];
const noNodes = (id: number) => nodesOf(id).every((p) => !existsSync(p));

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/** Starts a process and gives back a promise for its end (output collected). */
function start(cmd: string, args: string[]): { child: ChildProcess; done: Promise<Exit> } {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d;
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d;
  });
  const done = new Promise<Exit>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, output }));
    child.on("error", (err) => resolve({ code: -1, signal: null, output: `${output}${err.message}` }));
  });
  return { child, done };
}

/** Resolves to the process's end, or null if it has not ended within `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<null>((r) => {
    timer = setTimeout(() => r(null), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads and writes completed on a block device so far (/sys/block/X/stat fields 1 and 5). */
function iosDone(id: number): number {
  try {
    const f = readFileSync(`/sys/block/ublkb${id}/stat`, "utf8").trim().split(/\s+/).map(Number);
    return f[0] + f[4];
  } catch {
    return 0;
  }
}

test("del -n removes a device within 30 s while fio is running on it, and fio ends", {
  skip: skipReason,
}, async () => {
  const img = image("busy.img", "64M");
  const id = addDevice("-t", "loop", "-q", "2", img);
  const dev = `/dev/ublkb${id}`;
  const fio = start("fio", [
    "--name=busy",
    `--filename=${dev}`,
    "--rw=randrw",
    "--bs=4k",
    "--direct=1",
    "--ioengine=io_uring",
    "--iodepth=32",
    "--numjobs=2",
    "--thread", // one process: killing it ends every job
    "--time_based",
    "--runtime=300",
  ]);
  try {
    // Delete only once IO is really flowing.
    assert.ok(await waitFor(() => iosDone(id) > 200, 60_000), "fio never got IO going on the device");
    const t0 = Date.now();
    const r = ublk("del", "-n", String(id));
    const took = Date.now() - t0;
    assert.equal(r.code, 0, `del under load failed: ${r.stderr}`);
    assert.ok(took < 30_000, `del took ${took} ms`);
    assert.ok(noNodes(id), `${nodesOf(id).filter(existsSync).join(" ")} still present after del`);
    assert.ok(!listedIds().includes(id), "the device is still listed");
    // fio may report IO errors, but it must not be left hanging on a deleted device.
    const end = await within(fio.done, 60_000);
    assert.ok(end !== null, "fio still running 60 s after its device was deleted");
  } finally {
    if (fio.child.exitCode === null && fio.child.signalCode === null) fio.child.kill("SIGKILL");
  }
});

test("del -a removes every device; list prints nothing afterwards", { skip: skipReason }, async () => {
  const img = image("all.img", "32M");
  const ids = [
    addDevice("-t", "null", "-q", "1", "--size", "64M"),
    addDevice("-t", "null", "-q", "2", "--size", "1G"),
    addDevice("-t", "loop", "-q", "1", img),
  ];
  assert.deepEqual(
    [...listedIds()].sort((a, b) => a - b),
    [...ids].sort((a, b) => a - b),
  );
  for (const id of ids) assert.ok(existsSync(`/dev/ublkb${id}`));

  const r = ublk("del", "-a");
  assert.equal(r.code, 0, `del -a failed: ${r.stderr}`);
  assert.equal(r.stdout, "");
  assert.deepEqual(listedIds(), []);
  const list = ublk("list");
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout, "", "ublk list printed something with no devices");
  assert.deepEqual(ublkNodes(), [], "device nodes left behind");
  assert.ok(await waitFor(() => daemonPids().length === 0, 10_000), `daemons left: ${daemonPids()}`);
});

// Each refused `add` must fail cleanly: one "ublk: ..." line on stderr, nothing on stdout, a non-zero
// exit, no new device and no daemon left behind.
const badInputs: { name: string; args: () => string[] }[] = [
  { name: "unknown target", args: () => ["add", "-t", "no-such-target"] },
  { name: "missing backing file", args: () => ["add", "-t", "loop", `${DIR}/does-not-exist.img`] },
  { name: "backing file is a directory", args: () => ["add", "-t", "loop", "/tmp"] },
  { name: "depth 0", args: () => ["add", "-t", "null", "-d", "0"] },
  { name: "depth 4097", args: () => ["add", "-t", "null", "-d", "4097"] },
  { name: "queues 0", args: () => ["add", "-t", "null", "-q", "0"] },
];

/** `before`: the device ids listed before the command (taken now unless given). */
function assertRefused(args: string[], before = listedIds()): void {
  const daemonsBefore = daemonPids();
  const r = ublk(...args);
  const what = `ublk ${args.join(" ")}`;
  assert.notEqual(r.code, 0, `${what} succeeded:\n${r.stdout}`);
  assert.equal(r.stdout, "", `${what} printed on stdout`);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `${what}: expected one line on stderr, got:\n${r.stderr}`);
  assert.ok(r.stderr.endsWith("\n"));
  assert.match(lines[0], /^ublk: \S/, `${what}: stderr line does not start with 'ublk: '`);
  assert.deepEqual(listedIds(), before, `${what} changed the device list`);
  assert.deepEqual(
    ublkNodes().filter((n) => !before.some((id) => nodesOf(id).includes(n))),
    [],
  );
  const leftover = () => daemonPids().filter((p) => !daemonsBefore.includes(p));
  // A daemon that failed exits right after reporting; give it a moment.
  assert.ok(
    waitForSync(() => leftover().length === 0, 10_000),
    `${what} left daemon(s) running: ${leftover()}`,
  );
}

function waitForSync(check: () => boolean, ms: number): boolean {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    sh("sleep 0.2");
  }
  return true;
}

// Nothing else runs between these, so one listing before the first serves as the baseline for all.
let baseline: number[] | undefined;
for (const bad of badInputs) {
  test(`add refuses bad input (${bad.name}) with one 'ublk: ' line and no device`, {
    skip: oneGuest("6.12"),
  }, () => {
    baseline ??= listedIds();
    assertRefused(bad.args(), baseline);
  });
}

test("add refuses an id already in use with one 'ublk: ' line; the first device keeps working", {
  skip: skipReason,
}, () => {
  assert.ok(!listedIds().includes(3), "device 3 exists before the test");
  const id = addDevice("-t", "null", "-n", "3", "--size", "16M");
  assert.equal(id, 3);
  assertRefused(["add", "-t", "null", "-n", "3", "--size", "32M"]);
  // The refused add must not have touched the existing device 3.
  const info = JSON.parse(ublk("list", "-n", "3", "--json").stdout) as {
    state: string;
    dev_capacity: number;
  }[];
  assert.equal(info[0].state, "LIVE");
  assert.equal(info[0].dev_capacity, (16 * 1024 * 1024) / 512);
  sh("dd if=/dev/ublkb3 of=/dev/null bs=4k count=16 iflag=direct status=none");
  assert.equal(ublk("del", "-n", "3").code, 0);
  assert.ok(noNodes(3));
});

test("SIGKILL of a daemon without recovery: IO does not hang, the device turns DEAD and del removes it", {
  skip: skipReason,
}, async () => {
  const id = addDevice("-t", "null", "-q", "2", "--size", "256M");
  const listed = JSON.parse(ublk("list", "-n", String(id), "--json").stdout) as {
    daemon_pid: number;
    state: string;
  }[];
  const pid = listed[0].daemon_pid;
  assert.equal(listed[0].state, "LIVE");
  assert.ok(daemonPids().includes(pid), `daemon_pid ${pid} is not a running ublk-ts daemon`);
  process.kill(pid, "SIGKILL");

  // Whatever the read returns, it must return.
  const dd = start("dd", [`if=/dev/ublkb${id}`, "of=/dev/null", "bs=4k", "count=1", "iflag=direct"]);
  const end = await within(dd.done, 60_000);
  if (end === null) dd.child.kill("SIGKILL");
  assert.ok(end !== null, "a read from the device of a killed daemon hung for 60 s");

  const state = () =>
    (JSON.parse(ublk("list", "-n", String(id), "--json").stdout) as { state: string }[])[0]?.state;
  assert.ok(await waitFor(() => state() === "DEAD", 45_000, 1000), `state is still ${state()} after 45 s`);

  const r = ublk("del", "-n", String(id));
  assert.equal(r.code, 0, `del of a dead device failed: ${r.stderr}`);
  assert.ok(await waitFor(() => noNodes(id), 10_000), `${nodesOf(id).filter(existsSync)} still present`);
  assert.ok(!listedIds().includes(id));
});
