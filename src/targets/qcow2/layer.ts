// One image of a backing chain as a queue thread sees it: the L1 table, L2 tables and refcount
// blocks it has read (a per-thread cache), and the lookup of a guest cluster. Metadata is read with
// synchronous preads: a miss costs one read of one cluster, after which lookups are memory reads.
// Writes to metadata (only on the top image, only under the shared lock) go through here too, so
// the cache stays the image as it is on disk.
import { readSync, writeSync } from "node:fs";
import type { Qcow2Header } from "./header.js";
import type { SharedMeta } from "./shared.js";

/** What open() found about one image; cloned into every queue thread. */
export interface LayerInfo {
  path: string;
  fd: number;
  /** A raw backing file: guest offset = file offset. */
  raw: boolean;
  /** Virtual size in bytes. */
  size: number;
  header: Qcow2Header | null;
}

export const UNALLOCATED = 0;
export const ZERO = 1;
export const DATA = 2;
export const COMPRESSED = 3;

// Bits of the high word of an L1/L2 entry.
export const COPIED_HI = 0x80000000; // refcount is exactly one: written in place
const COMPRESSED_HI = 0x40000000;
const OFFSET_HI_MASK = 0x00ffffff; // bits 32-55 of a host offset
const OFFSET_LO_MASK = 0xfffffe00; // bits 9-31

/** Decoded L2 entry; one object per thread, reused (no allocation per lookup). */
export class Entry {
  kind = UNALLOCATED;
  /** Host cluster offset (DATA, or a preallocated ZERO cluster; 0 if none). */
  host = 0;
  copied = false;
  /** Raw entry words, for compressed descriptors. */
  hi = 0;
  lo = 0;
}

/** Cached metadata clusters per thread and image, before the cache is emptied. */
const CACHE_BYTES = 32 * 1024 * 1024;

export class Layer {
  readonly clusterBits: number;
  readonly clusterSize: number;
  /** L2 entries per table (log2). */
  readonly l2Bits: number;
  private l1: DataView | null = null;
  private reftable: DataView | null = null;
  private readonly tables = new Map<number, DataView>();
  private readonly maxTables: number;
  private seenGeneration = 0;

  constructor(
    readonly info: LayerInfo,
    readonly backing: Layer | null,
    /** Only for the writable top image; backing images never change. */
    readonly shared: SharedMeta | null,
  ) {
    this.clusterBits = info.header?.clusterBits ?? 16;
    this.clusterSize = 2 ** this.clusterBits;
    this.l2Bits = this.clusterBits - 3;
    this.maxTables = Math.max(16, CACHE_BYTES / this.clusterSize);
    if (shared) this.seenGeneration = shared.generation;
  }

  get fd(): number {
    return this.info.fd;
  }

  get header(): Qcow2Header {
    const h = this.info.header;
    if (!h) throw new Error(`${this.info.path} is raw and has no qcow2 metadata`);
    return h;
  }

  /** Drops the cache when another thread changed the metadata since this one last looked. */
  revalidate(): void {
    const shared = this.shared;
    if (shared === null) return;
    const gen = shared.generation;
    if (gen === this.seenGeneration) return;
    this.seenGeneration = gen;
    this.l1 = null;
    this.reftable = null;
    this.tables.clear();
  }

  /** After this thread changed metadata under the lock: its cache is current, the others' are not. */
  published(): void {
    if (this.shared) this.seenGeneration = this.shared.bump();
  }

  readBytes(len: number, pos: number): Buffer {
    const buf = Buffer.alloc(len);
    let done = 0;
    while (done < len) {
      const n = readSync(this.fd, buf, done, len - done, pos + done);
      if (n === 0) break; // past the end of the file: zeros
      done += n;
    }
    return buf;
  }

  writeBytes(data: Uint8Array, pos: number): void {
    let done = 0;
    while (done < data.length) done += writeSync(this.fd, data, done, data.length - done, pos + done);
  }

  private view(buf: Buffer): DataView {
    return new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  /** A metadata cluster (L2 table or refcount block) at `offset`, cached. */
  table(offset: number): DataView {
    let t = this.tables.get(offset);
    if (t === undefined) {
      if (this.tables.size >= this.maxTables) this.tables.clear();
      t = this.view(this.readBytes(this.clusterSize, offset));
      this.tables.set(offset, t);
    }
    return t;
  }

  /** Puts a freshly written metadata cluster in the cache. */
  cacheTable(offset: number, bytes: Buffer): void {
    if (this.tables.size >= this.maxTables) this.tables.clear();
    this.tables.set(offset, this.view(bytes));
  }

  private l1Table(): DataView {
    if (this.l1 === null) {
      const h = this.header;
      this.l1 = this.view(this.readBytes(h.l1Size * 8, h.l1Offset));
    }
    return this.l1;
  }

  refcountTable(): DataView {
    if (this.reftable === null) {
      const h = this.header;
      this.reftable = this.view(
        this.readBytes(h.refcountTableClusters * this.clusterSize, h.refcountTableOffset),
      );
    }
    return this.reftable;
  }

  /** Offset of the L2 table for guest cluster `gc` (0: none); sets `copied` on `out`. */
  l2TableOffset(gc: number, out: Entry): number {
    const idx = Math.floor(gc / 2 ** this.l2Bits);
    const l1 = this.l1Table();
    if (idx * 8 >= l1.byteLength) {
      out.copied = false;
      return 0;
    }
    const hi = l1.getUint32(idx * 8);
    out.copied = (hi & COPIED_HI) !== 0;
    return (hi & OFFSET_HI_MASK) * 0x100000000 + (l1.getUint32(idx * 8 + 4) & OFFSET_LO_MASK);
  }

  /** Decodes the L2 entry of guest cluster `gc` into `out`. */
  lookup(gc: number, out: Entry): void {
    const l2 = this.l2TableOffset(gc, out);
    if (l2 === 0) {
      out.kind = UNALLOCATED;
      out.host = 0;
      out.copied = false;
      return;
    }
    const t = this.table(l2);
    const i = (gc % 2 ** this.l2Bits) * 8;
    this.decode(t.getUint32(i), t.getUint32(i + 4), out);
  }

  decode(hi: number, lo: number, out: Entry): void {
    out.hi = hi;
    out.lo = lo;
    out.copied = (hi & COPIED_HI) !== 0;
    if (hi & COMPRESSED_HI) {
      out.kind = COMPRESSED;
      out.host = 0;
      out.copied = false;
      return;
    }
    out.host = (hi & OFFSET_HI_MASK) * 0x100000000 + ((lo & OFFSET_LO_MASK) >>> 0);
    if (lo & 1 && this.header.version === 3) out.kind = ZERO;
    else out.kind = out.host === 0 ? UNALLOCATED : DATA;
  }

  /** Writes one 8-byte entry of a cached table (L2 or L1) through to disk. */
  private writeEntry(view: DataView, base: number, index: number, hi: number, lo: number): void {
    view.setUint32(index * 8, hi);
    view.setUint32(index * 8 + 4, lo);
    const b = Buffer.alloc(8);
    b.writeUInt32BE(hi >>> 0, 0);
    b.writeUInt32BE(lo >>> 0, 4);
    this.writeBytes(b, base + index * 8);
  }

  /** Sets the L2 entry of guest cluster `gc` (its table must exist). */
  setL2(gc: number, l2Offset: number, hi: number, lo: number): void {
    this.writeEntry(this.table(l2Offset), l2Offset, gc % 2 ** this.l2Bits, hi, lo);
  }

  /** Points the L1 entry covering guest cluster `gc` at a new L2 table (refcount one). */
  setL1(gc: number, l2Offset: number): void {
    const idx = Math.floor(gc / 2 ** this.l2Bits);
    const { hi, lo } = splitOffset(l2Offset);
    this.writeEntry(this.l1Table(), this.header.l1Offset, idx, (hi | COPIED_HI) >>> 0, lo);
  }

  /** Sets refcount table entry `index` to a new refcount block. */
  setRefcountTableEntry(index: number, blockOffset: number): void {
    const { hi, lo } = splitOffset(blockOffset);
    this.writeEntry(this.refcountTable(), this.header.refcountTableOffset, index, hi, lo);
  }
}

export function splitOffset(offset: number): { hi: number; lo: number } {
  return { hi: Math.floor(offset / 0x100000000), lo: offset % 0x100000000 };
}
