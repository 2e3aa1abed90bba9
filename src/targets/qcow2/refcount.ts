// The refcount allocator of the top image. Every call here runs with the shared lock held
// (SharedMeta.acquire), reads through the thread's cache (current, since the generation was checked
// after acquiring) and writes each change through to disk at once.
//
// Clusters are handed out first-fit from a shared hint: the lowest cluster that may be free. A
// discard that frees a cluster moves the hint back, so freed clusters are used again before the
// file grows. A cluster's refcount is raised before anything points at it and lowered only after
// nothing does, so a daemon killed between two steps leaves at worst a leaked cluster (counted but
// unused: `qemu-img check` reports a leak, never corruption).
import type { Layer } from "./layer.js";

export class QcowError extends Error {
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
  }
}

const ENOSPC = 28;
const EIO = 5;

export class Allocator {
  private readonly bits: number;
  /** Refcount entries per refcount block (log2). */
  private readonly blockBits: number;
  private readonly tableEntries: number;
  private readonly zeros: Buffer;

  constructor(private readonly image: Layer) {
    const h = image.header;
    this.bits = 2 ** h.refcountOrder;
    this.blockBits = image.clusterBits + 3 - h.refcountOrder;
    this.tableEntries = (h.refcountTableClusters * image.clusterSize) / 8;
    this.zeros = Buffer.alloc(image.clusterSize);
  }

  /** Offset of the refcount block covering cluster `c`, 0 if none (all its refcounts are 0). */
  private blockOffset(c: number): number {
    const idx = Math.floor(c / 2 ** this.blockBits);
    if (idx >= this.tableEntries) return 0;
    const t = this.image.refcountTable();
    return t.getUint32(idx * 8) * 0x100000000 + ((t.getUint32(idx * 8 + 4) & 0xfffffe00) >>> 0);
  }

  refcount(c: number): number {
    const block = this.blockOffset(c);
    return block === 0 ? 0 : readEntry(this.image.table(block), c % 2 ** this.blockBits, this.bits);
  }

  private setRefcount(c: number, value: number): void {
    const block = this.blockOffset(c);
    if (block === 0) throw new QcowError(`cluster ${c} has no refcount block`, EIO);
    const view = this.image.table(block);
    const idx = c % 2 ** this.blockBits;
    if (value >= 2 ** Math.min(this.bits, 53)) throw new QcowError(`refcount of cluster ${c} overflows`, EIO);
    writeEntry(view, idx, this.bits, value);
    // Write back the bytes holding the entry (a whole byte for sub-byte widths).
    const first = Math.floor((idx * this.bits) / 8);
    const len = Math.max(1, this.bits / 8);
    this.image.writeBytes(new Uint8Array(view.buffer, view.byteOffset + first, len), block + first);
  }

  /** Allocates one cluster (refcount 1, contents unspecified) and returns its offset. */
  alloc(): number {
    const shared = this.image.shared;
    if (shared === null) throw new QcowError("image is read-only", 30);
    const perBlock = 2 ** this.blockBits;
    let c = Math.max(1, shared.freeHint);
    for (;;) {
      const idx = Math.floor(c / perBlock);
      if (idx >= this.tableEntries)
        throw new QcowError("the refcount table is full (growing it is not implemented)", ENOSPC);
      const block = this.blockOffset(c);
      if (block === 0) {
        // No refcount block covers c, so every cluster there is free: the new block goes at c and
        // counts itself. Written before the table points at it.
        const bytes = Buffer.from(this.zeros);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
        writeEntry(view, c % perBlock, this.bits, 1);
        const offset = c * this.image.clusterSize;
        this.image.writeBytes(bytes, offset);
        this.image.cacheTable(offset, bytes);
        this.image.setRefcountTableEntry(idx, offset);
        c++;
        continue;
      }
      const view = this.image.table(block);
      const end = (idx + 1) * perBlock;
      while (c < end && readEntry(view, c % perBlock, this.bits) !== 0) c++;
      if (c < end) break;
    }
    this.setRefcount(c, 1);
    shared.freeHint = c + 1;
    return c * this.image.clusterSize;
  }

  /** Writes a cluster of zeros at `offset` (a new L2 table). */
  writeZeroCluster(offset: number): Buffer {
    const bytes = Buffer.from(this.zeros);
    this.image.writeBytes(bytes, offset);
    return bytes;
  }

  /** Drops one reference to each cluster of [offset, offset + length). */
  release(offset: number, length: number): void {
    const cs = this.image.clusterSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + length - 1) / cs);
    for (let c = first; c <= last; c++) {
      const rc = this.refcount(c);
      if (rc === 0) throw new QcowError(`cluster ${c} is in use but its refcount is 0`, EIO);
      this.setRefcount(c, rc - 1);
      const shared = this.image.shared;
      if (rc === 1 && shared && c < shared.freeHint) shared.freeHint = c;
    }
  }
}

/** Refcount entry `idx` of a block whose entries are `bits` wide (1..64, big-endian). */
export function readEntry(v: DataView, idx: number, bits: number): number {
  switch (bits) {
    case 8:
      return v.getUint8(idx);
    case 16:
      return v.getUint16(idx * 2);
    case 32:
      return v.getUint32(idx * 4);
    case 64:
      return v.getUint32(idx * 8) * 0x100000000 + v.getUint32(idx * 8 + 4);
    default: {
      // 1, 2 or 4 bits: bit 0 is the least significant bit of the byte
      const perByte = 8 / bits;
      const shift = (idx % perByte) * bits;
      return (v.getUint8(Math.floor(idx / perByte)) >>> shift) & ((1 << bits) - 1);
    }
  }
}

export function writeEntry(v: DataView, idx: number, bits: number, value: number): void {
  switch (bits) {
    case 8:
      v.setUint8(idx, value);
      return;
    case 16:
      v.setUint16(idx * 2, value);
      return;
    case 32:
      v.setUint32(idx * 4, value);
      return;
    case 64:
      v.setUint32(idx * 8, Math.floor(value / 0x100000000));
      v.setUint32(idx * 8 + 4, value >>> 0);
      return;
    default: {
      const perByte = 8 / bits;
      const shift = (idx % perByte) * bits;
      const at = Math.floor(idx / perByte);
      const mask = ((1 << bits) - 1) << shift;
      v.setUint8(at, (v.getUint8(at) & ~mask) | ((value << shift) & mask));
    }
  }
}
