// ublk features: what the loaded driver supports, in the kernel selftest's (kublk's) format.
import { ControlDevice } from "../../ctrl/control.js";
import { featureNames } from "../../uapi/ublk_cmd.js";

/**
 * The mask line, then one `0x<bit, left-aligned in 16> : <name>` line per set bit, low bit first.
 * Names are the header's UBLK_F_*; a bit this build does not know prints as UNKNOWN(1<<n).
 */
export function formatFeatures(flags: bigint): string {
  let out = `ublk_drv features: 0x${flags.toString(16)}\n`;
  for (let bit = 0n; bit < 64n; bit++) {
    const mask = 1n << bit;
    if (flags & mask) out += `0x${mask.toString(16).padEnd(16)}: ${featureNames(mask)[0]}\n`;
  }
  return out;
}

export async function features(): Promise<number> {
  const ctrl = await ControlDevice.open();
  try {
    process.stdout.write(formatFeatures(BigInt(await ctrl.getFeatures())));
  } finally {
    ctrl.close();
  }
  return 0;
}
