// The qcow2 image header (QEMU's docs/interop/qcow2.txt): parsed once in the daemon's main thread
// into a plain object that queue threads receive as a structured clone. Everything on disk is
// big-endian. Features this implementation does not understand make open() refuse the image.
import { readSync } from "node:fs";

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

// incompatible_features bits
const INCOMPAT_DIRTY = 1;
const INCOMPAT_CORRUPT = 2;
const INCOMPAT_EXTERNAL_DATA = 4;
const INCOMPAT_COMPRESSION_TYPE = 8;
const INCOMPAT_EXTENDED_L2 = 16;

// header extension types
const EXT_END = 0;
const EXT_BACKING_FORMAT = 0xe2792aca;

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  /** Virtual disk size in bytes. */
  size: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  refcountOrder: number;
  nbSnapshots: number;
  autoclearFeatures: number;
  /** Backing file name as stored (relative names are relative to the image's directory). */
  backingFile: string | null;
  /** From the backing format extension: "qcow2", "raw", ... or null when absent. */
  backingFormat: string | null;
}

export class ImageError extends Error {}

/** Reads a big-endian u64 that must fit a JS number (offsets and sizes). */
export function u64(v: DataView, off: number): number {
  return v.getUint32(off) * 0x100000000 + v.getUint32(off + 4);
}

function readAt(fd: number, len: number, pos: number): Buffer {
  const buf = Buffer.alloc(len);
  const n = readSync(fd, buf, 0, len, pos);
  return n === len ? buf : buf.subarray(0, n);
}

/** Does this file start with the qcow2 magic? */
export function isQcow2(fd: number): boolean {
  const b = readAt(fd, 4, 0);
  return b.length === 4 && b.readUInt32BE(0) === QCOW2_MAGIC;
}

export function parseHeader(fd: number, path: string): Qcow2Header {
  const raw = readAt(fd, 4096, 0);
  if (raw.length < 72 || raw.readUInt32BE(0) !== QCOW2_MAGIC)
    throw new ImageError(`${path} is not a qcow2 image`);
  const v = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const version = v.getUint32(4);
  if (version !== 2 && version !== 3)
    throw new ImageError(`${path}: qcow2 version ${version} is not supported (2 or 3)`);
  const clusterBits = v.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21)
    throw new ImageError(`${path}: cluster_bits ${clusterBits} is outside 9..21`);
  const cryptMethod = v.getUint32(32);
  if (cryptMethod !== 0) throw new ImageError(`${path}: encrypted qcow2 images are not supported`);

  let refcountOrder = 4;
  let headerLength = 72;
  let autoclearFeatures = 0;
  if (version === 3) {
    if (raw.length < 104) throw new ImageError(`${path}: truncated version 3 header`);
    const incompatHi = v.getUint32(72);
    const incompat = v.getUint32(76);
    const known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_EXTERNAL_DATA | INCOMPAT_COMPRESSION_TYPE;
    if (incompatHi !== 0 || incompat & ~(known | INCOMPAT_EXTENDED_L2))
      throw new ImageError(
        `${path}: unknown incompatible qcow2 features (0x${incompatHi.toString(16)}${incompat.toString(16).padStart(8, "0")})`,
      );
    if (incompat & INCOMPAT_CORRUPT)
      throw new ImageError(`${path} is marked corrupt: repair it with 'qemu-img check -r all ${path}'`);
    if (incompat & INCOMPAT_DIRTY)
      throw new ImageError(
        `${path} is marked dirty (lazy refcounts): repair it with 'qemu-img check -r all ${path}'`,
      );
    if (incompat & INCOMPAT_EXTERNAL_DATA)
      throw new ImageError(`${path} uses an external data file, which is not supported`);
    if (incompat & INCOMPAT_EXTENDED_L2)
      throw new ImageError(`${path} uses extended L2 entries (subclusters), which are not supported`);
    headerLength = v.getUint32(100);
    if (incompat & INCOMPAT_COMPRESSION_TYPE && headerLength > 104 && raw[104] !== 0)
      throw new ImageError(`${path} uses zstd compression; only zlib is supported`);
    autoclearFeatures = v.getUint32(92) + v.getUint32(88) * 0x100000000;
    refcountOrder = v.getUint32(96);
    if (refcountOrder > 6) throw new ImageError(`${path}: refcount_order ${refcountOrder} is above 6`);
  }

  let backingFormat: string | null = null;
  for (let off = headerLength; off + 8 <= raw.length; ) {
    const type = v.getUint32(off);
    const len = v.getUint32(off + 4);
    if (type === EXT_END || off + 8 + len > raw.length) break;
    if (type === EXT_BACKING_FORMAT) backingFormat = raw.toString("latin1", off + 8, off + 8 + len);
    off += 8 + Math.ceil(len / 8) * 8;
  }

  const backingOffset = u64(v, 8);
  const backingSize = v.getUint32(16);
  let backingFile: string | null = null;
  if (backingOffset !== 0 && backingSize > 0) {
    if (backingSize > 1023) throw new ImageError(`${path}: backing file name longer than 1023 bytes`);
    backingFile = readAt(fd, backingSize, backingOffset).toString("utf8");
  }

  const h: Qcow2Header = {
    version,
    clusterBits,
    size: u64(v, 24),
    l1Size: v.getUint32(36),
    l1Offset: u64(v, 40),
    refcountTableOffset: u64(v, 48),
    refcountTableClusters: v.getUint32(56),
    refcountOrder,
    nbSnapshots: v.getUint32(60),
    autoclearFeatures,
    backingFile,
    backingFormat,
  };
  const clusterSize = 2 ** clusterBits;
  const l2Entries = clusterSize / 8;
  const needL1 = Math.ceil(h.size / clusterSize / l2Entries);
  if (h.l1Size < needL1)
    throw new ImageError(`${path}: L1 table has ${h.l1Size} entries, the disk size needs ${needL1}`);
  if (h.l1Offset % clusterSize !== 0 || h.refcountTableOffset % clusterSize !== 0)
    throw new ImageError(`${path}: L1 or refcount table is not cluster aligned`);
  return h;
}

/** Byte offset of autoclear_features: a writer that does not know those bits must zero them. */
export const AUTOCLEAR_OFFSET = 88;
