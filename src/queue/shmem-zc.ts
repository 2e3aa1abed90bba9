// Shared-memory zero copy (UBLK_F_SHMEM_ZC), the queue side. The daemon registers regions of shared
// memory (a hugetlbfs file, a memfd an application sent) with the driver; a request whose pages all
// lie in one of them arrives flagged UBLK_IO_F_SHMEM_ZC, its descriptor's addr naming the region
// (buffer index) and the byte offset of its data there instead of a buffer of ours, and the driver
// copies nothing. The queue serves it from its own mapping of the same region: the target's reads
// and writes go straight between the backing and the application's memory.
//
// Regions are registered by the daemon's main thread at any time (applications hand theirs over
// while the device runs), so the queues learn of them through a table in a SharedArrayBuffer, written
// before the registration is acknowledged: a flagged request can never name an index the table does
// not have yet. Each queue thread maps a region itself (same pages, its own address) the first time a
// request names it.
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import type { Request } from "./request.js";

/** Buffer indexes the table can hold (the driver hands them out from 0, lowest free first). */
export const REGION_SLOTS = 256;
// Per slot, Int32: generation (0: empty; written last), fd, size low and high 32 bits, writable.
const WORDS = 5;
const GEN = 0;
const FD = 1;
const SIZE_LO = 2;
const SIZE_HI = 3;
const WRITABLE = 4;

export function newRegionTable(): SharedArrayBuffer {
  return new SharedArrayBuffer(REGION_SLOTS * WORDS * 4);
}

let generation = 0;

/**
 * Main thread: buffer `index` is `size` bytes of the file `fd` (which stays open while it is
 * registered). Must happen before any request can name the index, i.e. before the registration
 * is reported to whoever will do IO from it.
 */
export function publishRegion(
  table: SharedArrayBuffer,
  index: number,
  fd: number,
  size: number,
  writable: boolean,
): void {
  if (index < 0 || index >= REGION_SLOTS) throw new RangeError(`buffer index ${index} beyond the table`);
  const t = new Int32Array(table, index * WORDS * 4, WORDS);
  t[FD] = fd;
  t[SIZE_LO] = size % 2 ** 32;
  t[SIZE_HI] = Math.floor(size / 2 ** 32);
  t[WRITABLE] = writable ? 1 : 0;
  generation = (generation + 1) % 2 ** 31 || 1;
  Atomics.store(t, GEN, generation);
}

/** Main thread: buffer `index` is gone (unregistered); queues drop their mapping when they next look. */
export function withdrawRegion(table: SharedArrayBuffer, index: number): void {
  if (index >= 0 && index < REGION_SLOTS) Atomics.store(new Int32Array(table, index * WORDS * 4, 1), 0, 0);
}

/** Index of the 32-bit word holding the low half of tag's descriptor addr (iods as words). */
const addrWord = (tag: number) =>
  (tag * U.ublksrv_io_desc_LAYOUT.size + U.ublksrv_io_desc_LAYOUT.fields.addr.offset) >>> 2;

interface Mapping {
  generation: number;
  memory: ArrayBuffer;
  address: number;
}

/** A queue thread's view of the registered regions, and its count of requests served from them. */
export class SharedRegions {
  private readonly slots: Int32Array;
  private readonly mappings: (Mapping | null)[] = [];
  /** Requests this queue served from shared memory. */
  served = 0;

  constructor(table: SharedArrayBuffer) {
    this.slots = new Int32Array(table);
    for (let i = 0; i < REGION_SLOTS; i++) this.mappings.push(null);
  }

  /**
   * For a request flagged UBLK_IO_F_SHMEM_ZC (decoded from `iods`): points it at its data in the
   * region. False when no registered region holds it (the request must fail: its data is nowhere else).
   */
  attach(req: Request, iods: Uint32Array): boolean {
    const at = addrWord(req.tag);
    const offset = iods[at]; // addr bits 0-31
    const index = iods[at + 1] & U.UBLK_SHMEM_ZC_IDX_MASK; // bits 32-47
    const m = this.mapping(index);
    if (m === null || offset + req.length > m.memory.byteLength) return false;
    req.useRegion(m.memory, m.address, offset);
    this.served++;
    return true;
  }

  /** The encoded addr of a flagged request's descriptor, as the driver wrote it. */
  static encodedAddr(req: Request, iods: Uint32Array): number {
    const at = addrWord(req.tag);
    return iods[at] + (iods[at + 1] & U.UBLK_SHMEM_ZC_IDX_MASK) * 2 ** 32;
  }

  private mapping(index: number): Mapping | null {
    if (index >= REGION_SLOTS) return null;
    const base = index * WORDS;
    const gen = Atomics.load(this.slots, base + GEN);
    const cur = this.mappings[index];
    if (cur !== null && cur.generation === gen) return cur;
    if (cur !== null) {
      native.munmapBuffer(cur.memory);
      this.mappings[index] = null;
    }
    if (gen === 0) return null;
    const size = (this.slots[base + SIZE_LO] >>> 0) + (this.slots[base + SIZE_HI] >>> 0) * 2 ** 32;
    let memory: ArrayBuffer;
    try {
      // Not populated: a target that never touches the bytes (io_uring IO) never faults them in here.
      memory = native.mmapFile(this.slots[base + FD], 0, size, this.slots[base + WRITABLE] === 1, false);
    } catch {
      return null;
    }
    const m = { generation: gen, memory, address: native.bufferAddress(memory) };
    this.mappings[index] = m;
    return m;
  }

  private closed = false;
  get isClosed(): boolean {
    return this.closed;
  }

  /** Unmaps every region (the queue is closing). */
  close(): void {
    this.closed = true;
    for (let i = 0; i < this.mappings.length; i++) {
      const m = this.mappings[i];
      if (m !== null) native.munmapBuffer(m.memory);
      this.mappings[i] = null;
    }
  }
}
