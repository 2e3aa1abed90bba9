// ublk features: what the loaded driver supports, in the kernel selftest's format.
import { ControlDevice } from "../../ctrl/control.js";
import { featureNames } from "../../uapi/ublk_cmd.js";

export async function features(): Promise<number> {
  const ctrl = await ControlDevice.open();
  try {
    const flags = await ctrl.getFeatures();
    process.stdout.write(`ublk_drv features: 0x${flags.toString(16)}\n`);
    for (let bit = 0; bit < 64; bit++) {
      const mask = 2 ** bit;
      if (Math.floor(flags / mask) % 2 === 1) {
        const name = featureNames(BigInt(mask))[0] ?? `unknown`;
        process.stdout.write(`0x${mask.toString(16).padEnd(16)}: ${name}\n`);
      }
    }
  } finally {
    ctrl.close();
  }
  return 0;
}
