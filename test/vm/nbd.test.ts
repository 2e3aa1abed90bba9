// The nbd target against real NBD servers (nbdkit, qemu-nbd) over a Unix socket and TCP on
// 127.0.0.1: data verified by fio and by ext4 read back from the server's own image; a server killed
// and restarted under fio; one that stays away; one that refuses the export; injected errors and delays.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { after, before, test } from "node:test";
import {
  addDevice,
  deleteAll,
  fioRun,
  fioWriteThenVerify,
  sh,
  skipReason,
  sleep,
  ublk,
  waitFor,
} from "./helpers.js";

const DIR = "/tmp/ublk-nbd-test";
const SOCK = `${DIR}/nbd.sock`;
const LOG = "/run/ublk-ts/ublk-ts.log";
const MiB = 1024 * 1024;

const missing = ["nbdkit", "qemu-nbd", "fio", "blkdiscard"].find(
  (t) => sh(`command -v ${t}`, { allowFail: true }).code !== 0,
);
const skip = skipReason || (missing ? `needs ${missing} (apt-get install nbdkit qemu-utils)` : false);

before(() => {
  if (skip) return;
  mkdirSync(DIR, { recursive: true });
  // The guest's init leaves the loopback interface down; TCP on 127.0.0.1 needs it.
  sh("ip link set lo up");
});

after(() => {
  if (skip) return;
  deleteAll();
  stopServers();
  sh(`umount -q ${DIR}/mnt`, { allowFail: true });
  rmSync(DIR, { recursive: true, force: true });
});

/** Starts an NBD server that forks once it listens, writing its pid to `${DIR}/NAME.pid`. */
function server(name: string, command: string): number {
  const pidFile = `${DIR}/${name}.pid`;
  rmSync(pidFile, { force: true });
  sh(command.replaceAll("PIDFILE", pidFile));
  // nbdkit's parent can exit before its server child has written the pid file.
  sh(`for i in $(seq 1 100); do [ -s ${pidFile} ] && break; sleep 0.1; done`);
  return Number(readFileSync(pidFile, "utf8").trim());
}

/** nbdkit, forked once it listens; a socket file left by a killed one is removed first. */
const nbdkit = (name: string, args: string) => server(name, `rm -f ${SOCK}; nbdkit -P PIDFILE ${args}`);

function stopServers(): void {
  sh(`for f in ${DIR}/*.pid; do [ -f "$f" ] && kill -9 $(cat "$f") 2>/dev/null; rm -f "$f"; done; true`, {
    allowFail: true,
  });
}

function kill9(pid: number): void {
  process.kill(pid, "SIGKILL");
  sh(`while kill -0 ${pid} 2>/dev/null; do sleep 0.1; done`, { timeoutMs: 10_000 });
}

function del(id: number): void {
  const r = ublk("del", "-n", String(id));
  assert.equal(r.code, 0, `ublk del -n ${id}: ${r.stderr}`);
  assert.ok(!existsSync(`/dev/ublkb${id}`), `/dev/ublkb${id} still exists after del`);
}

function listed(id: number): { state: string; target_info: Record<string, unknown> } {
  const r = ublk("list", "-n", String(id), "--json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout)[0];
}

const logSince = (offset: number) => (existsSync(LOG) ? readFileSync(LOG, "utf8").slice(offset) : "");
const logSize = () => (existsSync(LOG) ? readFileSync(LOG, "utf8").length : 0);

/** Reads 4 KiB at `off` with O_DIRECT; returns the exit code and the bytes read. */
function read4k(dev: string, off: number, timeoutMs = 120_000): { code: number; data: Buffer } {
  const out = `${DIR}/read4k`;
  rmSync(out, { force: true });
  const r = sh(`dd if=${dev} of=${out} bs=4k count=1 skip=${off / 4096} iflag=direct status=none`, {
    allowFail: true,
    timeoutMs,
  });
  return { code: r.code, data: existsSync(out) ? readFileSync(out) : Buffer.alloc(0) };
}

test("nbd over a Unix socket (nbdkit memory, 2 connections): fio verify, flush/FUA/trim/write-zeroes offered, write-zeroes reads back zeros", {
  skip,
}, () => {
  nbdkit("mem", `-U ${SOCK} memory 64M`);
  const id = addDevice("-t", "nbd", "--socket", SOCK, "--connections", "2");
  const dev = `/dev/ublkb${id}`;
  const q = (attr: string) => readFileSync(`/sys/block/ublkb${id}/queue/${attr}`, "utf8").trim();
  assert.equal(Number(readFileSync(`/sys/block/ublkb${id}/size`, "utf8")) * 512, 64 * MiB);
  assert.equal(q("write_cache"), "write back", "the server offers FLUSH: the device must have a write cache");
  assert.equal(q("fua"), "1");
  assert.ok(Number(q("discard_max_bytes")) > 0 && Number(q("write_zeroes_max_bytes")) > 0);
  const verbose = ublk("list", "-n", String(id), "-v").stdout;
  assert.match(verbose, new RegExp(`target nbd server ${SOCK} .*connections 2`));
  assert.match(verbose, /server_flags \S*trim,write_zeroes.* structured_replies true/);

  fioWriteThenVerify(dev, 4, 7171);
  assert.notDeepEqual(read4k(dev, MiB).data, Buffer.alloc(4096), "fio left zeros where it wrote");
  sh(`blkdiscard -z -o 0 -l ${2 * MiB} ${dev}`);
  assert.deepEqual(read4k(dev, MiB).data, Buffer.alloc(4096), "write-zeroes did not zero");
  sh(`blkdiscard -o ${4 * MiB} -l ${MiB} ${dev} && sync ${dev}`);
  del(id);
  stopServers();
});

test("nbd over TCP 127.0.0.1 (qemu-nbd, named export): ext4 made through ublk reads back identically from the server's image", {
  skip,
}, () => {
  sh("modprobe ext4");
  const img = `${DIR}/qemu.img`;
  sh(`rm -f ${img} && truncate -s 64M ${img}`);
  const pid = server(
    "qemu",
    `qemu-nbd --fork --pid-file=PIDFILE -f raw -x disk -b 127.0.0.1 -p 10810 -t ${img}`,
  );
  const id = addDevice("-t", "nbd", "--host", "127.0.0.1", "--port", "10810", "--export", "disk");
  const dev = `/dev/ublkb${id}`;
  const mnt = `${DIR}/mnt`;
  mkdirSync(mnt, { recursive: true });
  sh(`mkfs.ext4 -q -F ${dev} && mount ${dev} ${mnt}`);
  sh(
    `cd ${mnt} && head -c 4095 /dev/urandom >short && dd if=/dev/urandom of=big bs=1M count=3 status=none && ` +
      "mkdir d && for i in $(seq 1 8); do head -c $((i * 1111)) /dev/urandom >d/f$i; done",
  );
  const sums = (root: string) =>
    sh(`cd ${root} && find . -type f ! -path './lost+found*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`)
      .stdout;
  const expected = sums(mnt);
  sh(`umount ${mnt} && fsck.ext4 -fn ${dev}`);
  del(id);
  kill9(pid);
  // The same bytes, straight from the server's image through the kernel's loop driver.
  sh(`mount -o loop,ro ${img} ${mnt}`);
  try {
    assert.equal(sums(mnt), expected);
  } finally {
    sh(`umount ${mnt}`);
  }
});

test("nbd: a refused export, an absent server and --tls each give one clear line and leave no device", {
  skip,
}, () => {
  const img = `${DIR}/refuse.img`;
  sh(`truncate -s 16M ${img}`);
  server("refuse", `qemu-nbd --fork --pid-file=PIDFILE -f raw -x disk -b 127.0.0.1 -p 10811 -t ${img}`);
  const ids = () => (JSON.parse(ublk("list", "--json").stdout) as { dev_id: number }[]).map((d) => d.dev_id);
  const before = ids();
  const cases: [string[], RegExp][] = [
    [["--host", "127.0.0.1", "--port", "10811", "--export", "nope"], /no export 'nope'/],
    [["--host", "127.0.0.1", "--port", "10812"], /127\.0\.0\.1:10812: .*ECONNREFUSED/],
    [["--socket", SOCK, "--tls"], /--tls is not supported/],
  ];
  for (const [args, message] of cases) {
    const r = ublk("add", "-t", "nbd", ...args);
    assert.notEqual(r.code, 0, `add ${args.join(" ")} succeeded`);
    assert.match(r.stderr, /^ublk: /);
    assert.equal(r.stderr.trim().split("\n").length, 1, `more than one line: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.deepEqual(ids(), before, "a refused add left a device");
  stopServers();
});

test("nbd: nbdkit (file plugin, TCP) killed and restarted during fio: IO waits, reconnects, nothing is lost", {
  skip,
}, async () => {
  const img = `${DIR}/file.img`;
  sh(`rm -f ${img} && truncate -s 64M ${img}`);
  const start = () => nbdkit("file", `-i 127.0.0.1 -p 10813 file ${img}`);
  let pid = start();
  const id = addDevice("-t", "nbd", "--host", "127.0.0.1", "--port", "10813", "--timeout", "60");
  const dev = `/dev/ublkb${id}`;
  const from = logSize();
  const job =
    `--name=rc --filename=${dev} --rw=randwrite --bsrange=4k-64k --direct=1 --ioengine=io_uring ` +
    "--iodepth=8 --numjobs=2 --size=4M --offset_increment=4M --randseed=99 --rate=1m " +
    "--verify=crc32c --verify_state_save=0 --output-format=json";
  const fio = spawn("bash", ["-c", `fio ${job} --do_verify=0`], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  fio.stdout.on("data", (d) => {
    out += d;
  });
  fio.stderr.on("data", (d) => {
    out += d;
  });
  const fioDone = new Promise<number>((r) => fio.on("exit", (c) => r(c ?? -1)));
  await sleep(1500);
  kill9(pid);
  await sleep(2000);
  pid = start();
  assert.equal(await fioDone, 0, `fio failed across the server restart:\n${out}`);
  const log = logSince(from);
  assert.match(log, /lost the NBD server at 127\.0\.0\.1:10813/);
  assert.match(log, /reconnected to 127\.0\.0\.1:10813/);
  const v = fioRun(`${job} --verify_only=1`);
  assert.equal(v.code, 0, `verify after the restart failed:\n${v.output}`);
  assert.ok(v.jobs.every((j) => j.error === 0 && j.read.io_bytes > 0));
  del(id);
  stopServers();
});

test("nbd: a server that stays away fails IO after --timeout, the device stays up and serves again once it is back; del does not wait for it", {
  skip,
}, async () => {
  let pid = nbdkit("gone", `-U ${SOCK} memory 16M`);
  const id = addDevice("-t", "nbd", "--socket", SOCK, "--timeout", "3");
  const dev = `/dev/ublkb${id}`;
  kill9(pid);
  const t0 = Date.now();
  assert.notEqual(read4k(dev, 0).code, 0, "a read succeeded with no server");
  const waited = Date.now() - t0;
  assert.ok(
    waited >= 2500 && waited < 30_000,
    `the read failed after ${waited} ms, not after the 3 s timeout`,
  );
  assert.equal(listed(id).state, "LIVE");

  pid = nbdkit("gone", `-U ${SOCK} memory 16M`);
  const back = read4k(dev, 8192);
  assert.equal(back.code, 0, "no read once the server was back");
  assert.equal(back.data.length, 4096);

  // A read waiting for a dead server must not hold up `ublk del` for the timeout.
  kill9(pid);
  const id2 = id;
  const dd = spawn("dd", [`if=${dev}`, "of=/dev/null", "bs=4k", "count=1", "skip=7", "iflag=direct"]);
  const ddDone = new Promise<number>((r) => dd.on("exit", (c) => r(c ?? -1)));
  await sleep(1000);
  const t1 = Date.now();
  del(id2);
  assert.ok(Date.now() - t1 < 20_000, `del took ${Date.now() - t1} ms`);
  assert.notEqual(await ddDone, 0);
});

test("nbd: nbdkit's delay filter shows requests pipelined; its error filter fails IO without taking the device down", {
  skip,
}, async () => {
  const trigger = `${DIR}/fail-now`;
  rmSync(trigger, { force: true });
  nbdkit(
    "filters",
    `-U ${SOCK} --filter=error --filter=delay memory 16M delay-read=1 ` +
      `error=EIO error-rate=100% error-file=${trigger}`,
  );
  const id = addDevice("-t", "nbd", "--socket", SOCK);
  const dev = `/dev/ublkb${id}`;
  // 16 reads of 1 s each on one connection: together, not one after the other. fio's own runtime
  // (its start-up under TCG takes seconds) is ~1 s when they overlap, 16 s when they do not.
  const r = fioRun(
    `--name=p --filename=${dev} --rw=randread --bs=4k --direct=1 --ioengine=io_uring --iodepth=16 ` +
      "--number_ios=16 --size=16M",
  );
  assert.equal(r.code, 0, r.output);
  const job = r.jobs[0] as unknown as { read: { io_bytes: number; runtime: number } };
  assert.equal(job.read.io_bytes, 16 * 4096);
  assert.ok(
    job.read.runtime < 8000,
    `16 one-second reads at depth 16 took ${job.read.runtime} ms: not pipelined`,
  );

  sh(`touch ${trigger}`);
  assert.notEqual(read4k(dev, 4096).code, 0, "the injected EIO did not reach the reader");
  assert.equal(listed(id).state, "LIVE");
  rmSync(trigger);
  assert.equal(read4k(dev, 4096).code, 0, "IO did not work again once errors stopped");
  del(id);
  stopServers();
  assert.ok(await waitFor(() => !existsSync(dev), 5000));
});
