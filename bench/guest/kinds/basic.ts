// The first three kinds: ublk-ts null vs null_blk, loop vs the kernel loop driver over the same tmpfs
// file, ram vs brd.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { type DeviceConfig, LOOP_FILE_MIB, NULL_SIZE_MIB, QUEUE_DEPTH, RAM_DISK_MIB } from "../../common.js";
import type { GuestKind, LiveDevice } from "../device.js";
import { must, onTeardown, say, WORK_DIR, waitForNode } from "../exec.js";

const NULLB_DIR = "/sys/kernel/config/nullb/nullb-bench";
export const NULL_BLK_SETTINGS =
  "configfs queue_mode=2 irqmode=0 size=1024 (MiB) blocksize=512 hw_queue_depth=128 poll_queues=0 memory_backed=0 power=1";

async function setUpNullBlk(c: DeviceConfig): Promise<LiveDevice> {
  if (!existsSync("/sys/kernel/config/nullb")) {
    throw new Error("no /sys/kernel/config/nullb: null_blk not loaded or configfs not mounted");
  }
  mkdirSync(NULLB_DIR);
  onTeardown(NULLB_DIR, () => {
    try {
      writeFileSync(`${NULLB_DIR}/power`, "0");
    } finally {
      rmdirSync(NULLB_DIR);
    }
  });
  const attrs: [string, string][] = [
    ["queue_mode", "2"], // blk-mq
    ["irqmode", "0"], // complete in the submitter's context
    ["size", String(NULL_SIZE_MIB)], // MiB
    ["blocksize", "512"],
    ["submit_queues", String(c.queues)],
    ["hw_queue_depth", String(QUEUE_DEPTH)],
    ["poll_queues", "0"], // default 1: an extra hw queue only polled IO uses; ublk has none
    ["memory_backed", "0"],
    ["power", "1"],
  ];
  for (const [k, v] of attrs) {
    try {
      writeFileSync(`${NULLB_DIR}/${k}`, v);
    } catch (e) {
      throw new Error(`null_blk configfs ${k}=${v}: ${(e as Error).message}`);
    }
  }
  // Since 5.19 the disk takes the configfs directory's name; before, nullb<index>.
  const index = readFileSync(`${NULLB_DIR}/index`, "utf8").trim();
  const names = [basename(NULLB_DIR), `nullb${index}`];
  const end = Date.now() + 10_000;
  const found = () => names.find((n) => existsSync(`/sys/block/${n}`));
  for (; !found(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > end) throw new Error(`null_blk index ${index}: none of /sys/block/{${names}} appeared`);
  }
  const name = found()!;
  const dev = `/dev/${name}`;
  await waitForNode(dev);
  const hwq = readdirSync(`/sys/block/${name}/mq`).length;
  if (hwq !== c.queues) throw new Error(`${dev} has ${hwq} hardware queue(s), asked for ${c.queues}`);
  return { dev, note: `${attrs.map(([k, v]) => `${k}=${v}`).join(" ")}; ${hwq} hw queue(s)` };
}

export const LOOP_FILE = `${WORK_DIR}/disk.img`;

/** Written in full once, before any loop device (so it outlives each device's teardown). */
function makeLoopFile(): void {
  const t0 = Date.now();
  must(
    "dd",
    ["if=/dev/zero", `of=${LOOP_FILE}`, "bs=1M", `count=${LOOP_FILE_MIB}`, "conv=fsync", "status=none"],
    600_000,
  );
  say(`${LOOP_FILE}: ${LOOP_FILE_MIB} MiB written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

async function setUpKernelLoop(): Promise<LiveDevice> {
  const dev = must("losetup", ["--direct-io=on", "--find", "--show", LOOP_FILE]).trim();
  onTeardown(dev, () => must("losetup", ["-d", dev]));
  await waitForNode(dev);
  const dio = readFileSync(`/sys/block/${basename(dev)}/loop/dio`, "utf8").trim();
  if (dio !== "1") throw new Error(`${dev}: the loop driver did not take direct IO (loop/dio = ${dio})`);
  return { dev, note: `losetup --direct-io=on ${LOOP_FILE} (dio=1)` };
}

/** brd reloaded with one disk of RAM_DISK_MIB (the boot loaded it with its defaults: 16 small disks). */
async function setUpBrd(): Promise<LiveDevice> {
  if (existsSync("/sys/module/brd")) must("modprobe", ["-r", "brd"]);
  must("modprobe", ["brd", "rd_nr=1", `rd_size=${RAM_DISK_MIB * 1024}`]);
  onTeardown("brd", () => must("modprobe", ["-r", "brd"]));
  const dev = "/dev/ram0";
  await waitForNode(dev);
  const bytes = Number(readFileSync("/sys/block/ram0/size", "utf8").trim()) * 512;
  if (bytes !== RAM_DISK_MIB * 2 ** 20)
    throw new Error(`${dev} has ${bytes} bytes, asked for ${RAM_DISK_MIB} MiB`);
  return { dev, note: `modprobe brd rd_nr=1 rd_size=${RAM_DISK_MIB * 1024}` };
}

export const nullKind: GuestKind = {
  setUpReference: setUpNullBlk,
  ublkTarget: () => ["-t", "null", "--size", `${NULL_SIZE_MIB}M`],
};

export const loopKind: GuestKind = {
  prepare: makeLoopFile,
  setUpReference: setUpKernelLoop,
  ublkTarget: () => ["-t", "loop", LOOP_FILE],
};

export const ramKind: GuestKind = {
  setUpReference: setUpBrd,
  ublkTarget: () => ["-t", "ram", "--size", `${RAM_DISK_MIB}M`],
};
