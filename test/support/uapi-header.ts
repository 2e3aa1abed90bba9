// Provides each harness kernel's <linux/ublk_cmd.h> (from Debian's linux-headers-<abi>-common) so
// tests check src/uapi against the real headers rather than whatever the host ships.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ensureUblkHeader, type KernelId } from "../../src/vm/kernels.js";

/** An include dir in which `<linux/ublk_cmd.h>` is the header of kernel series `id`. */
export async function ensureUapiHeader(id: KernelId): Promise<string> {
  try {
    return await ensureUblkHeader(id);
  } catch (e) {
    throw new Error(
      `cannot obtain the Linux ${id} ublk header via apt (${(e as Error).message}); ` +
        "needs apt-get, apt-cache and dpkg-deb, as root on Debian",
    );
  }
}

export async function headerText(id: KernelId): Promise<string> {
  return readFileSync(join(await ensureUapiHeader(id), "linux", "ublk_cmd.h"), "utf8");
}
