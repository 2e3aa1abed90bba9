// `ublk features` names every UBLK_F_* bit of the newest header, in kublk's line format.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatFeatures } from "../../src/cli/commands/features.js";
import { featureNames } from "../../src/uapi/ublk_cmd.js";
import { headerText } from "../support/uapi-header.js";

/** name -> bit of every `#define UBLK_F_NAME (1ULL << n)` in the header. */
async function headerFeatures(): Promise<Map<string, number>> {
  const text = await headerText("7.3");
  return new Map(
    [...text.matchAll(/^#define\s+(UBLK_F_\w+)\s+\(1U?L?L?\s*<<\s*(\d+)\)/gm)].map((m) => [
      m[1]!,
      Number(m[2]),
    ]),
  );
}

test("featureNames knows every UBLK_F_* bit of the 7.3 header", async () => {
  const bits = await headerFeatures();
  assert.equal(bits.size, 21, `parsed ${bits.size} UBLK_F_* bits`);
  let all = 0n;
  for (const [name, bit] of bits) {
    assert.deepEqual(featureNames(1n << BigInt(bit)), [name], `bit ${bit}`);
    all |= 1n << BigInt(bit);
  }
  assert.equal(all, 0x1fffffn);
  const names = featureNames(all);
  assert.equal(names.length, 21);
  assert.ok(!names.some((n) => n.startsWith("UNKNOWN")), names.join(" "));
});

test("formatFeatures: kublk's format, every 7.3 bit named", async () => {
  const bits = await headerFeatures();
  const lines = formatFeatures(0x1fffffn).trimEnd().split("\n");
  assert.equal(lines[0], "ublk_drv features: 0x1fffff");
  assert.equal(lines.length, 22);
  for (const [name, bit] of bits) {
    const hex = (1n << BigInt(bit)).toString(16);
    assert.equal(lines[bit + 1], `0x${hex.padEnd(16)}: ${name}`);
  }
  // kublk prints "0x%-16llx: %s".
  assert.equal(lines[12], "0x800             : UBLK_F_AUTO_BUF_REG");
  assert.equal(lines[21], "0x100000          : UBLK_F_IO_DESC_SIZE");
});

test("formatFeatures: the 6.12 driver's mask, and bits no header names yet", () => {
  assert.equal(
    formatFeatures(0x1fen),
    [
      "ublk_drv features: 0x1fe",
      "0x2               : UBLK_F_URING_CMD_COMP_IN_TASK",
      "0x4               : UBLK_F_NEED_GET_DATA",
      "0x8               : UBLK_F_USER_RECOVERY",
      "0x10              : UBLK_F_USER_RECOVERY_REISSUE",
      "0x20              : UBLK_F_UNPRIVILEGED_DEV",
      "0x40              : UBLK_F_CMD_IOCTL_ENCODE",
      "0x80              : UBLK_F_USER_COPY",
      "0x100             : UBLK_F_ZONED",
      "",
    ].join("\n"),
  );
  const lines = formatFeatures((1n << 63n) | (1n << 21n) | 1n).split("\n");
  assert.deepEqual(lines.slice(1, 4), [
    "0x1               : UBLK_F_SUPPORT_ZERO_COPY",
    "0x200000          : UNKNOWN(1<<21)",
    "0x8000000000000000: UNKNOWN(1<<63)",
  ]);
});
