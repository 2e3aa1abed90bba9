// Where the bytes of a guest range live: through the backing chain, down to file extents (read
// later with io_uring or at once with pread), zeros, or compressed clusters (inflated here).
import { readSync } from "node:fs";
import { inflateRawSync } from "node:zlib";
import { COMPRESSED, DATA, Entry, type Layer, UNALLOCATED, ZERO } from "./layer.js";
import { QcowError } from "./refcount.js";

const EIO = 5;

/** File extents to transfer, merged when they continue each other; one list per use, reused. */
export class Extents {
  count = 0;
  readonly fd: Int32Array;
  readonly pos: Float64Array;
  readonly bufOff: Float64Array;
  readonly len: Float64Array;

  constructor(readonly capacity: number) {
    this.fd = new Int32Array(capacity);
    this.pos = new Float64Array(capacity);
    this.bufOff = new Float64Array(capacity);
    this.len = new Float64Array(capacity);
  }

  /** Adds an extent; false when the list is full (the caller drains it first). */
  add(fd: number, pos: number, bufOff: number, len: number): boolean {
    const n = this.count;
    if (n > 0) {
      const p = n - 1;
      if (this.fd[p] === fd && this.pos[p] + this.len[p] === pos && this.bufOff[p] + this.len[p] === bufOff) {
        this.len[p] += len;
        return true;
      }
    }
    if (n === this.capacity) return false;
    this.fd[n] = fd;
    this.pos[n] = pos;
    this.bufOff[n] = bufOff;
    this.len[n] = len;
    this.count = n + 1;
    return true;
  }

  /** Reads every extent into `dest` with pread (past the end of a file reads as zeros). */
  readSync(dest: Uint8Array): void {
    for (let i = 0; i < this.count; i++) {
      const off = this.bufOff[i];
      const len = this.len[i];
      let done = 0;
      while (done < len) {
        const n = readSync(this.fd[i], dest, off + done, len - done, this.pos[i] + done);
        if (n === 0) break;
        done += n;
      }
      if (done < len) dest.fill(0, off + done, off + len);
    }
    this.count = 0;
  }
}

/** Resolves guest ranges to extents; one per queue thread. */
export class Mapper {
  private readonly entry = new Entry();
  /** The last compressed cluster inflated, per image (sequential reads hit it again). */
  private inflated: { layer: Layer; hi: number; lo: number; data: Buffer } | null = null;

  /**
   * Maps [offset, offset + length) of `layer` into `dest` at `destOff`: file extents go to `out`
   * (drained with pread into `dest` when it fills up), zeros and compressed data are written now.
   */
  map(
    layer: Layer | null,
    offset: number,
    length: number,
    dest: Uint8Array,
    destOff: number,
    out: Extents,
  ): void {
    if (layer === null) {
      dest.fill(0, destOff, destOff + length);
      return;
    }
    const size = layer.info.size;
    if (offset + length > size) {
      // Beyond a (smaller) backing image: zeros.
      const inside = Math.max(0, size - offset);
      dest.fill(0, destOff + inside, destOff + length);
      length = inside;
      if (length === 0) return;
    }
    if (layer.info.raw) {
      this.addExtent(out, layer.fd, offset, destOff, length, dest);
      return;
    }
    const cs = layer.clusterSize;
    const e = this.entry;
    while (length > 0) {
      const gc = Math.floor(offset / cs);
      const inCluster = offset - gc * cs;
      const n = Math.min(length, cs - inCluster);
      layer.lookup(gc, e);
      if (e.kind === DATA) {
        this.addExtent(out, layer.fd, e.host + inCluster, destOff, n, dest);
      } else if (e.kind === ZERO) {
        dest.fill(0, destOff, destOff + n);
      } else if (e.kind === COMPRESSED) {
        const data = this.inflate(layer, e);
        dest.set(data.subarray(inCluster, inCluster + n), destOff);
      } else if (e.kind === UNALLOCATED) {
        // The backing image may have another cluster size: recurse on the byte range.
        this.map(layer.backing, offset, n, dest, destOff, out);
      }
      offset += n;
      destOff += n;
      length -= n;
    }
  }

  private addExtent(
    out: Extents,
    fd: number,
    pos: number,
    destOff: number,
    len: number,
    dest: Uint8Array,
  ): void {
    if (!out.add(fd, pos, destOff, len)) {
      out.readSync(dest);
      out.add(fd, pos, destOff, len);
    }
  }

  /** Inflates the compressed cluster `e` describes (zlib deflate, no header). */
  inflate(layer: Layer, e: Entry): Buffer {
    const cached = this.inflated;
    if (cached && cached.layer === layer && cached.hi === e.hi && cached.lo === e.lo) return cached.data;
    const { offset, length } = compressedExtent(layer, e);
    const input = Buffer.alloc(length);
    const got = readSync(layer.fd, input, 0, length, offset);
    let data: Buffer;
    try {
      data = inflateRawSync(input.subarray(0, got), { finishFlush: 2 /* Z_SYNC_FLUSH */ });
    } catch (err) {
      throw new QcowError(`compressed cluster at ${offset} does not inflate: ${(err as Error).message}`, EIO);
    }
    if (data.length < layer.clusterSize) {
      const full = Buffer.alloc(layer.clusterSize);
      data.copy(full);
      data = full;
    }
    this.inflated = { layer, hi: e.hi, lo: e.lo, data };
    return data;
  }
}

/**
 * The file range a compressed descriptor names: bits 0..x-1 the byte offset, bits x..61 the number
 * of 512-byte sectors after the first (x = 62 - (cluster_bits - 8)). Refcounts cover the sectors
 * from the one holding the offset, so release() drops [sectorStart, sectorStart + sectorBytes).
 */
export function compressedExtent(
  layer: Layer,
  e: Entry,
): { offset: number; length: number; sectorStart: number; sectorBytes: number } {
  const x = BigInt(62 - (layer.clusterBits - 8));
  const raw = (BigInt(e.hi & 0x3fffffff) << 32n) | BigInt(e.lo >>> 0);
  const offset = Number(raw & ((1n << x) - 1n));
  const sectors = Number(raw >> x) + 1;
  const sectorStart = offset - (offset % 512);
  return { offset, length: sectors * 512 - (offset - sectorStart), sectorStart, sectorBytes: sectors * 512 };
}
