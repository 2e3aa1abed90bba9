// ublk-ts qcow2 vs QEMU's own qcow2 driver: the same image served by qemu-nbd through the kernel's
// nbd driver (`qemu-nbd -c /dev/nbd0`), in the same boot. The image is preallocated (every cluster
// mapped, its pages allocated on tmpfs), so reads and writes measure the steady state of a used
// image: L2 lookup and data IO, not first-write allocation.
import { existsSync, readFileSync } from "node:fs";
import { QCOW2_IMAGE_MIB } from "../../common.js";
import type { GuestKind, LiveDevice } from "../device.js";
import { must, onTeardown, say, WORK_DIR, waitForNode } from "../exec.js";

export const QCOW2_IMAGE = `${WORK_DIR}/disk.qcow2`;
const NBD_DEV = "/dev/nbd0";
const NBD_SOCKET = `${WORK_DIR}/qemu-nbd.sock`;

function makeImage(): void {
  const t0 = Date.now();
  must("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-o",
    "preallocation=falloc",
    QCOW2_IMAGE,
    `${QCOW2_IMAGE_MIB}M`,
  ]);
  say(
    `${QCOW2_IMAGE}: ${QCOW2_IMAGE_MIB} MiB qcow2, preallocated, in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}

async function setUpQemuNbd(): Promise<LiveDevice> {
  if (!existsSync("/sys/module/nbd")) must("modprobe", ["nbd", "nbds_max=1"]);
  // --cache=writeback and the default thread pool: tmpfs has no O_DIRECT. -c attaches the export
  // to the kernel's nbd driver and leaves a qemu-nbd process serving it.
  // Its control socket defaults to /var/lock, which the guest does not have.
  must("qemu-nbd", ["-c", NBD_DEV, "-k", NBD_SOCKET, "-f", "qcow2", "--cache=writeback", QCOW2_IMAGE]);
  onTeardown(NBD_DEV, () => must("qemu-nbd", ["-d", NBD_DEV]));
  await waitForNode(NBD_DEV);
  const end = Date.now() + 20_000;
  const size = () => Number(readFileSync("/sys/block/nbd0/size", "utf8").trim()) * 512;
  while (size() !== QCOW2_IMAGE_MIB * 2 ** 20) {
    if (Date.now() > end) throw new Error(`${NBD_DEV} has ${size()} bytes, expected ${QCOW2_IMAGE_MIB} MiB`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    dev: NBD_DEV,
    note: `qemu-nbd -c ${NBD_DEV} -k ${NBD_SOCKET} -f qcow2 --cache=writeback ${QCOW2_IMAGE}`,
  };
}

export const qcow2Kind: GuestKind = {
  prepare: makeImage,
  setUpReference: setUpQemuNbd,
  ublkTarget: () => ["-t", "qcow2", QCOW2_IMAGE],
};
