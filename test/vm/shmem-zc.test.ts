// Shared-memory zero copy (--shmem_zc, UBLK_F_SHMEM_ZC): an application's O_DIRECT IO from memory it
// shares with the daemon reaches the target without a copy. fio, its buffers in the --htlb hugetlbfs
// file, is one such application; this test is another: it sends an unnamed tmpfs file (what
// memfd_create makes) over the device's socket and checks that what it writes reads back, through
// the shared memory and through ordinary memory (the copy path, still served on the same device).
// The daemon's per-queue count of requests served from shared memory proves which path each took
// (fio runs at queue depth 1 so that no two requests merge). On a driver without the feature, the
// one-line refusal.
import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { closeSync, constants, existsSync, ftruncateSync, openSync, readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import { native } from "../../src/native.js";
import { shareMemory, shmemSocketPath } from "../../src/shmem-socket.js";
import * as U from "../../src/uapi/ublk_cmd.js";
import { Ring } from "../../src/uring/ring.js";
import {
  daemonPids,
  deleteAll,
  fioRun,
  freshImage,
  hasAny,
  needs,
  sh,
  skipReason,
  ublk,
  ublkNodes,
} from "./helpers.js";

const DIR = "/tmp/ublk-shmem-test"; // the guest's tmpfs
const HTLB = `${DIR}/htlb`;
const LOG = "/run/ublk-ts/ublk-ts.log";
const O_TMPFILE = 0o20200000;
const KiB = 1024;
const MiB = 1024 * KiB;

after(() => {
  if (skipReason) return;
  deleteAll();
  sh(`umount -q ${HTLB}`, { allowFail: true });
  rmSync(DIR, { recursive: true, force: true });
});

/** `ublk add ARGS` that must succeed: the device id and its daemon's pid, from what it printed. */
function add(...args: string[]): { id: number; pid: number } {
  const r = ublk("add", ...args);
  assert.equal(r.code, 0, `ublk add ${args.join(" ")}: ${r.stderr}`);
  const id = /^dev id (\d+): /m.exec(r.stdout);
  const pid = / daemon pid (\d+) /.exec(r.stdout);
  assert.ok(id && pid, r.stdout);
  return { id: Number(id[1]), pid: Number(pid[1]) };
}

/** Requests daemon `pid` reported serving from shared memory (each queue logs its count as it ends). */
function servedFromShared(pid: number): number {
  const re = new RegExp(`ublk-ts\\[${pid}\\] .*: (\\d+) requests served from shared memory`);
  return readFileSync(LOG, "utf8")
    .split("\n")
    .map((l) => re.exec(l))
    .reduce((n, m) => n + (m ? Number(m[1]) : 0), 0);
}

/** Deletes device `id` and returns its daemon's count; its socket and daemon must be gone. */
function deleteAndCount(id: number, pid: number): number {
  assert.equal(ublk("del", "-n", String(id)).code, 0);
  assert.ok(!daemonPids().includes(pid), "the daemon outlived its device");
  assert.ok(!existsSync(shmemSocketPath(id)), "the shared memory socket was left behind");
  assert.doesNotMatch(readFileSync(LOG, "utf8"), new RegExp(`ublk-ts\\[${pid}\\] .*UNREG_BUF`));
  return servedFromShared(pid);
}

/** Synchronous O_DIRECT IO on `fd` through a ring of this process. */
class DirectIo {
  private readonly ring = new Ring({ entries: 8 });
  constructor(private readonly fd: number) {}
  rw(write: boolean, addr: number, len: number, offset: number): void {
    const off = this.ring.sqeOrSubmit();
    if (write) this.ring.prepWrite(off, this.fd, addr, len, offset, 1);
    else this.ring.prepRead(off, this.fd, addr, len, offset, 1);
    this.ring.submitAndWait(1);
    let res = 0;
    this.ring.reap((_ud, r) => {
      res = r;
    });
    assert.equal(res, len, `${write ? "write" : "read"} of ${len} at ${offset}: ${res}`);
  }
  close(): void {
    this.ring.close();
  }
}

/**
 * Writes patterns from `shared` (mapped at `base`) to the device and reads them back into another
 * part of it, then crosses over with ordinary memory both ways. Returns how many IOs used `shared`.
 */
function patternsThrough(dev: string, shared: Uint8Array, base: number): number {
  const fd = openSync(dev, constants.O_RDWR | constants.O_DIRECT);
  const io = new DirectIo(fd);
  const plain = native.allocBuffer(MiB);
  const plainBytes = new Uint8Array(plain);
  const plainAddr = native.bufferAddress(plain);
  const half = shared.length / 2;
  let sharedIos = 0;
  try {
    const sizes = [4 * KiB, 8 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 12 * KiB];
    let src = 0;
    for (const [i, len] of sizes.entries()) {
      const at = (i * 3 + 1) * MiB; // device offset
      randomFillSync(shared, src, len);
      io.rw(true, base + src, len, at); // zero copy: the target writes straight from shared memory
      io.rw(false, base + half + src, len, at); // and reads straight into it
      sharedIos += 2;
      assert.ok(
        Buffer.from(shared.subarray(half + src, half + src + len)).equals(shared.subarray(src, src + len)),
        `${len} bytes at ${at} read back through shared memory differ`,
      );
      io.rw(false, plainAddr, len, at); // the copy path reads what the zero-copy path wrote
      assert.ok(Buffer.from(plainBytes.subarray(0, len)).equals(shared.subarray(src, src + len)));
      randomFillSync(plainBytes, 0, len);
      io.rw(true, plainAddr, len, at + len); // and writes what the zero-copy path reads
      io.rw(false, base + half + src, len, at + len);
      sharedIos++;
      assert.ok(
        Buffer.from(shared.subarray(half + src, half + src + len)).equals(plainBytes.subarray(0, len)),
      );
      src += len;
    }
  } finally {
    io.close();
    closeSync(fd);
  }
  return sharedIos;
}

test("a driver without UBLK_F_SHMEM_ZC refuses --shmem_zc in one line, and no device is left", {
  skip: hasAny(U.UBLK_F_SHMEM_ZC),
}, () => {
  const r = ublk("add", "-t", "null", "--shmem_zc");
  assert.notEqual(r.code, 0, "--shmem_zc was accepted");
  assert.match(r.stderr, /^ublk: .*UBLK_F_SHMEM_ZC/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.deepEqual(ublkNodes(), []);
});

test("--shmem_zc refuses a target that needs the driver's copy, and a missing --htlb file", {
  skip: needs(U.UBLK_F_SHMEM_ZC),
}, () => {
  for (const [args, why] of [
    [["-t", "ram", "--size", "16M", "--shmem_zc"], /^ublk: the ram target cannot serve requests from shared/],
    [["-t", "null", "--shmem_zc", "--htlb", `${DIR}/none`], /^ublk: --htlb .*none: .*ENOENT/],
  ] as const) {
    const r = ublk("add", ...args);
    assert.notEqual(r.code, 0, `${args.join(" ")} was accepted`);
    assert.match(r.stderr, why);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  assert.deepEqual(ublkNodes(), []);
});

const HUGE =
  needs(U.UBLK_F_SHMEM_ZC) ||
  (!readFileSync("/proc/filesystems", "utf8").includes("hugetlbfs") && "no hugetlbfs in this kernel");

/** Runs `body` with hugepages reserved and hugetlbfs mounted at HTLB, both undone after. */
async function withHugepages(body: () => void | Promise<void>): Promise<void> {
  const old = readFileSync("/proc/sys/vm/nr_hugepages", "utf8").trim();
  try {
    sh(`echo 4 >/proc/sys/vm/nr_hugepages && mkdir -p ${HTLB} && mount -t hugetlbfs none ${HTLB}`);
    assert.ok(hugepages().total >= 2, "cannot reserve hugepages");
    await body();
  } finally {
    sh(`umount -q ${HTLB}`, { allowFail: true });
    sh(`echo ${old} >/proc/sys/vm/nr_hugepages`);
  }
}

function hugepages(): { total: number; free: number } {
  const m = readFileSync("/proc/meminfo", "utf8");
  const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(m)?.[1]);
  return { total: get("HugePages_Total"), free: get("HugePages_Free") };
}

/** fio at queue depth 1 (no two requests merge), its buffers in `file` (MAP_SHARED) as kublk runs it. */
function fioFrom(file: string, dev: string, job: string): { writes: number; reads: number } {
  const r = fioRun(
    `--name=h --filename=${dev} --bsrange=4k-128k --direct=1 --ioengine=io_uring --iodepth=1 ` +
      `--size=4M --mem=mmaphuge:${file} ${job}`,
  );
  const j = r.jobs[0] as unknown as {
    error: number;
    write: { total_ios: number };
    read: { total_ios: number };
  };
  assert.ok(r.code === 0 && j && j.error === 0 && j.write.total_ios > 0, r.output);
  return { writes: j.write.total_ios, reads: j.read.total_ios };
}

test(
  "loop --shmem_zc --htlb: IO from the hugetlbfs file and from memory sent over the socket takes no copy",
  {
    skip: HUGE,
  },
  () =>
    withHugepages(async () => {
      const file = `${HTLB}/buf`;
      sh(`fallocate -l 2M ${file}`); // one hugepage, fio's whole buffer
      // Written in full, so loop maps it and runs with NEED_GET_DATA: the mode whose commits and
      // driver copies a request in shared memory must bypass.
      const img = freshImage(DIR, "shm.img", "48M", true);
      const { id, pid } = add("-t", "loop", "-q", "2", "--shmem_zc", "--htlb", file, img);
      const dev = `/dev/ublkb${id}`;
      // fio as kublk's tests run it: writes from the file, its verify reads into it.
      const f = fioFrom(file, dev, "--rw=randwrite --verify=crc32c --verify_state_save=0");
      // This test as the application: shared memory of its own (an unnamed tmpfs file, as
      // memfd_create makes), handed to the daemon over the socket, then O_DIRECT IO from it.
      const memFd = openSync("/dev/shm", O_TMPFILE | constants.O_RDWR, 0o600);
      ftruncateSync(memFd, 4 * MiB);
      const mem = native.mmapFile(memFd, 0, 4 * MiB, true, true);
      let sharedIos = 0;
      try {
        assert.equal(await shareMemory(shmemSocketPath(id), memFd), 1, "the buffer after the file's");
        sharedIos = patternsThrough(dev, new Uint8Array(mem), native.bufferAddress(mem));
        // Ordinary memory on the same device: the copy path, verified.
        const r = fioRun(
          `--name=p --filename=${dev} --rw=randwrite --bsrange=4k-128k --direct=1 --ioengine=io_uring ` +
            "--iodepth=8 --size=8M --offset=32M --verify=crc32c --verify_state_save=0",
        );
        assert.equal(r.code, 0, r.output);
        assert.ok(r.jobs[0] && r.jobs[0].error === 0 && r.jobs[0].write.io_bytes > 0, r.output);
      } finally {
        native.munmapBuffer(mem);
        closeSync(memFd);
      }
      assert.equal(
        deleteAndCount(id, pid),
        f.writes + f.reads + sharedIos,
        "every IO from shared memory, and only those, took the zero-copy path",
      );
      rmSync(file);
      const h = hugepages();
      assert.equal(h.free, h.total, "hugepages still pinned after delete");
    }),
);

test(
  "--rdonly_shmem_buf: only writes from the file take the zero-copy path (null)",
  {
    skip: HUGE,
  },
  () =>
    withHugepages(() => {
      const file = `${HTLB}/buf`;
      sh(`fallocate -l 2M ${file}`);
      const { id, pid } = add(
        "-t",
        "null",
        "--size",
        "64M",
        "-q",
        "1",
        "--shmem_zc",
        "--htlb",
        file,
        "--rdonly_shmem_buf",
      );
      // The pages are pinned without write access: the driver cannot put a READ's data there.
      const f = fioFrom(file, `/dev/ublkb${id}`, "--rw=randrw");
      assert.ok(f.reads > 0);
      assert.equal(deleteAndCount(id, pid), f.writes, "exactly the writes took the zero-copy path");
      rmSync(file);
      const h = hugepages();
      assert.equal(h.free, h.total, "hugepages still pinned after delete");
    }),
);
