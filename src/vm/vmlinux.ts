import { spawnSync } from "node:child_process";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { which } from "./exec.js";

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** True for a complete ELF kernel with the PVH entry note qemu needs to boot it directly. */
function isPvhElf(b: Buffer): boolean {
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  let pvh = false;
  for (let i = 0; i < b.readUInt16LE(0x38); i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > b.length) return false;
    const type = b.readUInt32LE(ph);
    const off = Number(b.readBigUInt64LE(ph + 8));
    const size = Number(b.readBigUInt64LE(ph + 32));
    if (off + size > b.length) return false; // truncated
    if (type !== PT_NOTE) continue;
    // Notes: namesz, descsz, type, then name and desc, each padded to 4 bytes.
    for (let n = off; n + 12 <= off + size; ) {
      const namesz = b.readUInt32LE(n);
      const descsz = b.readUInt32LE(n + 4);
      const name = b.toString("latin1", n + 12, n + 12 + namesz).replace(/\0+$/, "");
      if (name === "Xen" && b.readUInt32LE(n + 8) === XEN_ELFNOTE_PHYS32_ENTRY) pvh = true;
      n += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return pvh;
}

/**
 * Unpacks the ELF vmlinux from a zstd bzImage. qemu boots it via PVH, skipping the firmware's
 * real-mode path and the in-guest decompression, which together take ~2 s under TCG.
 * Returns false (the caller keeps the bzImage) when that is not possible.
 */
export function extractVmlinux(vmlinuz: string, out: string): boolean {
  const zstd = which("zstd");
  if (!zstd) return false;
  const img = readFileSync(vmlinuz);
  for (let at = img.indexOf(ZSTD_MAGIC); at >= 0; at = img.indexOf(ZSTD_MAGIC, at + 1)) {
    // zstd complains about the bytes after the frame; the ELF check decides.
    const r = spawnSync(zstd, ["-dcq"], { input: img.subarray(at), maxBuffer: 1 << 30 });
    if (r.stdout && isPvhElf(r.stdout)) {
      writeFileSync(`${out}.tmp`, r.stdout);
      renameSync(`${out}.tmp`, out);
      return true;
    }
  }
  return false;
}
