// Metadata changes of the top image: the first write to a cluster (allocation, copy-on-write) and
// discard. Each runs with the shared lock held, synchronously, in this order: the new cluster's
// refcount, its whole data (old contents merged around the new bytes), the L2 entry (and before it
// a new L2 table and its L1 entry when needed), then the old cluster's refcount. A daemon killed at
// any point leaves an image whose every reference is valid; at worst a cluster leaks.
import { fdatasyncSync } from "node:fs";
import { COMPRESSED, COPIED_HI, DATA, Entry, type Layer, splitOffset, UNALLOCATED, ZERO } from "./layer.js";
import { compressedExtent, Extents, type Mapper } from "./map.js";
import { Allocator, QcowError } from "./refcount.js";

export class Updater {
  private readonly entry = new Entry();
  private readonly alloc: Allocator;
  private readonly cluster: Buffer;
  private readonly cowExtents = new Extents(64);
  private changed = false;

  constructor(
    private readonly image: Layer,
    private readonly mapper: Mapper,
  ) {
    this.alloc = new Allocator(image);
    this.cluster = Buffer.alloc(image.clusterSize);
  }

  /** Runs `fn` holding the image's lock; other threads see the changes once it returns. */
  locked<T>(fn: () => T): T {
    const shared = this.image.shared;
    if (shared === null) throw new QcowError("image is read-only", 30);
    shared.acquire();
    try {
      this.image.revalidate();
      this.changed = false;
      return fn();
    } finally {
      if (this.changed) this.image.published();
      shared.release();
    }
  }

  /**
   * Writes `src[srcOff, srcOff + len)` at byte `inCluster` of guest cluster `gc`, which was not
   * writable in place when the request looked (unallocated, zero, compressed or shared).
   */
  writeCluster(gc: number, inCluster: number, src: Uint8Array, srcOff: number, len: number): void {
    const img = this.image;
    const cs = img.clusterSize;
    const e = this.entry;
    const l2 = img.l2TableOffset(gc, e);
    if (l2 !== 0 && !e.copied) throw new QcowError("L2 table is shared with a snapshot (not supported)", 30);
    if (l2 !== 0) img.lookup(gc, e);
    else {
      e.kind = UNALLOCATED;
      e.host = 0;
    }
    const data = src.subarray(srcOff, srcOff + len);
    if (e.kind === DATA && e.copied) {
      // Another queue allocated it meanwhile.
      img.writeBytes(data, e.host + inCluster);
      return;
    }
    let whole: Uint8Array;
    if (len === cs) whole = data;
    else {
      // Copy-on-write: what the cluster reads as now, with the new bytes over it.
      if (e.kind === ZERO) this.cluster.fill(0);
      else {
        this.mapper.map(img, gc * cs, cs, this.cluster, 0, this.cowExtents);
        this.cowExtents.readSync(this.cluster);
      }
      this.cluster.set(data, inCluster);
      whole = this.cluster;
    }
    const oldKind = e.kind;
    const oldHost = e.host;
    const oldCopied = e.copied;
    const compressed = oldKind === COMPRESSED ? compressedExtent(img, e) : null;
    this.changed = true;
    if (oldKind === ZERO && oldHost !== 0 && oldCopied) {
      // A preallocated zero cluster: fill it, then clear the zero flag.
      img.writeBytes(whole, oldHost);
      this.setEntry(gc, l2, oldHost);
      return;
    }
    const table = l2 !== 0 ? l2 : this.newL2Table(gc);
    const host = this.alloc.alloc();
    img.writeBytes(whole, host);
    this.setEntry(gc, table, host);
    if (compressed) this.alloc.release(compressed.sectorStart, compressed.sectorBytes);
    else if ((oldKind === DATA || oldKind === ZERO) && oldHost !== 0) this.alloc.release(oldHost, cs);
  }

  private setEntry(gc: number, l2: number, host: number): void {
    const { hi, lo } = splitOffset(host);
    this.image.setL2(gc, l2, (hi | COPIED_HI) >>> 0, lo);
  }

  private newL2Table(gc: number): number {
    const offset = this.alloc.alloc();
    const bytes = this.alloc.writeZeroCluster(offset);
    this.image.cacheTable(offset, bytes);
    this.image.setL1(gc, offset);
    return offset;
  }

  /**
   * Discards whole clusters of [offset, offset + length): their L2 entries become unallocated (or
   * read-as-zero on a version 3 image with a backing file, so the backing data does not show
   * through), then their clusters' refcounts drop, freeing them for the next allocation.
   */
  discard(offset: number, length: number): void {
    const img = this.image;
    const cs = img.clusterSize;
    const first = Math.ceil(offset / cs);
    const end = Math.floor((offset + length) / cs);
    const zeroFlag = img.backing !== null && img.header.version === 3 ? 1 : 0;
    const e = this.entry;
    for (let gc = first; gc < end; gc++) {
      const l2 = img.l2TableOffset(gc, e);
      if (l2 === 0 || !e.copied) continue; // nothing allocated here, or shared with a snapshot
      img.lookup(gc, e);
      if (e.kind === UNALLOCATED && zeroFlag === 0) continue;
      if (e.kind === ZERO && e.host === 0) continue;
      if ((e.kind === DATA || e.kind === ZERO) && e.host !== 0 && !e.copied) continue; // shared
      const compressed = e.kind === COMPRESSED ? compressedExtent(img, e) : null;
      const oldHost = e.kind === COMPRESSED ? 0 : e.host;
      this.changed = true;
      img.setL2(gc, l2, 0, zeroFlag);
      if (compressed) this.alloc.release(compressed.sectorStart, compressed.sectorBytes);
      else if (oldHost !== 0) this.alloc.release(oldHost, cs);
    }
  }

  sync(): void {
    fdatasyncSync(this.image.fd);
  }
}
