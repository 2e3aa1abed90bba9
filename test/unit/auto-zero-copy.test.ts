// Zero copy by default (src/device.ts autoZeroCopyFits): a device takes automatic buffer registration
// by itself only where the driver has it, the target never touches the bytes and the user chose no
// data path; --no_auto_zc keeps the copying path.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { specFromArgs } from "../../src/cli/spec.js";
import { autoZeroCopyFits } from "../../src/device.js";
import * as U from "../../src/uapi/ublk_cmd.js";

const LINUX_6_12 = 0x1fe; // no zero copy of any kind
const LINUX_7_3 = 0x1fffff;
const nullLike = { zeroCopy: true };
const ramLike = { zeroCopy: false };

test("taken where the driver has UBLK_F_AUTO_BUF_REG and the target never touches the bytes", () => {
  assert.equal(autoZeroCopyFits(0, nullLike, LINUX_7_3, false), true);
  assert.equal(autoZeroCopyFits(U.UBLK_F_NO_AUTO_PART_SCAN, nullLike, LINUX_7_3, false), true);
  assert.equal(autoZeroCopyFits(0, nullLike, LINUX_6_12, false), false);
  assert.equal(autoZeroCopyFits(0, ramLike, LINUX_7_3, false), false);
  assert.equal(autoZeroCopyFits(0, {}, LINUX_7_3, false), false);
});

test("not taken when the user chose a data path, recovery, integrity metadata or an unprivileged device", () => {
  for (const chosen of [
    U.UBLK_F_USER_COPY,
    U.UBLK_F_NEED_GET_DATA,
    U.UBLK_F_SUPPORT_ZERO_COPY,
    U.UBLK_F_BATCH_IO,
    U.UBLK_F_SHMEM_ZC,
    U.UBLK_F_PER_IO_DAEMON,
    U.UBLK_F_UNPRIVILEGED_DEV,
    U.UBLK_F_USER_RECOVERY,
  ])
    assert.equal(autoZeroCopyFits(chosen, nullLike, LINUX_7_3, false), false, U.featureNames(chosen)[0]);
  assert.equal(autoZeroCopyFits(0, nullLike, LINUX_7_3, true), false);
});

test("--no_auto_zc reaches the device spec and is refused with -z or --auto_zc", () => {
  const spec = (...argv: string[]) => specFromArgs(parseArgs(["-t", "null", ...argv]));
  assert.equal(spec().autoZeroCopy, undefined);
  assert.equal(spec("--no_auto_zc").autoZeroCopy, false);
  assert.throws(() => spec("--no_auto_zc", "-z"), UsageError);
  assert.throws(() => spec("--no_auto_zc", "--auto_zc"), /--no_auto_zc/);
});
