// ublk-ts stripe against the kernel's own striping over the same files: dm-stripe (dmsetup) over
// kernel loop devices (direct IO) of the two tmpfs files the stripe target serves directly. Same
// chunk (64K, kublk's default and a common md/dm choice), same two files, written in full first.
import { existsSync } from "node:fs";
import type { DeviceConfig } from "../../common.js";
import type { GuestKind, LiveDevice } from "../device.js";
import { must, onTeardown, say, WORK_DIR, waitForNode } from "../exec.js";

export const STRIPE_FILE_MIB = 256;
const STRIPE_FILES = [`${WORK_DIR}/stripe0.img`, `${WORK_DIR}/stripe1.img`];
const CHUNK_SECTORS = 128; // 64K
const DM_NAME = "ublkbench-stripe";

function makeStripeFiles(): void {
  const t0 = Date.now();
  for (const f of STRIPE_FILES) {
    must("dd", ["if=/dev/zero", `of=${f}`, "bs=1M", `count=${STRIPE_FILE_MIB}`, "status=none"], 600_000);
  }
  say(`stripe files: 2 x ${STRIPE_FILE_MIB} MiB written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

async function setUpDmStripe(_c: DeviceConfig): Promise<LiveDevice> {
  // dm_mod is packed in the VM's initramfs for on-demand loading; dm-stripe is built into it.
  if (!existsSync("/sys/module/dm_mod")) must("modprobe", ["dm_mod"]);
  const loops = STRIPE_FILES.map((f) => {
    const dev = must("losetup", ["--direct-io=on", "--find", "--show", f]).trim();
    onTeardown(dev, () => must("losetup", ["-d", dev]));
    return dev;
  });
  const sectors = (2 * STRIPE_FILE_MIB * 2 ** 20) / 512;
  const table = `0 ${sectors} striped 2 ${CHUNK_SECTORS} ${loops[0]} 0 ${loops[1]} 0`;
  must("dmsetup", ["create", DM_NAME, "--noudevsync", "--table", table]); // no udev in the VM
  onTeardown(DM_NAME, () => must("dmsetup", ["remove", "--noudevsync", DM_NAME]));
  // No udev to make /dev/mapper/NAME: devtmpfs has the dm-MINOR node.
  const minor = must("dmsetup", ["info", "-c", "--noheadings", "-o", "minor", DM_NAME]).trim();
  const dev = `/dev/dm-${minor}`;
  await waitForNode(dev);
  return { dev, note: `dmsetup create ${DM_NAME} --table '${table}' (losetup --direct-io=on)` };
}

export const stripeKind: GuestKind = {
  prepare: makeStripeFiles,
  setUpReference: setUpDmStripe,
  ublkTarget: () => ["-t", "stripe", "--chunk_size", "64K", ...STRIPE_FILES],
};
