// The provided buffer ring that UBLK_U_IO_FETCH_IO_CMDS fills with tags. The multishot fetch takes one
// buffer per CQE, writes the tags of the requests it hands over into it (u16 each, at most 128 per
// CQE) and names the buffer in the CQE's flags; the queue reads the tags and gives the buffer back.
//
// One buffer per possible CQE between two reaps: each CQE carries at least one tag and a tag is
// handed over at most once between two reaps (its next request needs the commit that follows the
// reap), so `depth` buffers never run out while the queue gives each back as it reads it.
import { native } from "../native.js";
import type { Ring } from "../uring/ring.js";

/** sizeof(struct io_uring_buf): addr u64, len u32, bid u16, resv u16 (entry 0's resv is the tail). */
const BUF_ENTRY = 16;
/** The driver copies at most this many tags into one buffer (MAX_NR_TAG in ublk_drv.c). */
const MAX_TAGS_PER_CQE = 128;

export class TagBufferRing {
  readonly entries: number;
  /** Bytes of each buffer. */
  readonly bufBytes: number;
  private readonly memory: ArrayBuffer;
  private readonly ringView: DataView;
  private readonly tailWord: Uint16Array;
  private readonly tagWords: Uint16Array;
  private readonly tagsAddress: number;
  private readonly ringAddress: number;
  private tail = 0;
  private registered = false;

  constructor(
    private readonly ring: Ring,
    readonly bgid: number,
    depth: number,
  ) {
    let entries = 1;
    while (entries < depth) entries *= 2;
    this.entries = entries;
    this.bufBytes = 2 * Math.min(depth, MAX_TAGS_PER_CQE);
    const page = native.pageSize;
    const ringBytes = Math.ceil((entries * BUF_ENTRY) / page) * page; // the ring must be page-aligned
    this.memory = native.allocBuffer(ringBytes + entries * this.bufBytes);
    this.ringAddress = native.bufferAddress(this.memory);
    this.tagsAddress = this.ringAddress + ringBytes;
    this.ringView = new DataView(this.memory, 0, ringBytes);
    this.tailWord = new Uint16Array(this.memory, 0, 8);
    this.tagWords = new Uint16Array(this.memory, ringBytes);
  }

  /** Registers the ring with every buffer in it. */
  register(): void {
    this.tail = 0;
    Atomics.store(this.tailWord, 7, 0);
    this.ring.registerBufRing(this.bgid, this.ringAddress, this.entries);
    this.registered = true;
    for (let bid = 0; bid < this.entries; bid++) this.give(bid);
  }

  /**
   * Starts over with every buffer in the ring: after a fetch ended, the kernel may have taken a
   * buffer whose CQE it never posted (it failed to post, and handed the tags back to its queue).
   */
  reset(): void {
    if (this.registered) this.ring.unregisterBufRing(this.bgid);
    this.registered = false;
    this.register();
  }

  /** Hands buffer `bid` back to the kernel. */
  give(bid: number): void {
    const off = (this.tail & (this.entries - 1)) * BUF_ENTRY;
    const v = this.ringView;
    const addr = this.tagsAddress + bid * this.bufBytes;
    v.setUint32(off, addr >>> 0, true);
    v.setUint32(off + 4, Math.floor(addr / 0x100000000), true);
    v.setUint32(off + 8, this.bufBytes, true);
    v.setUint16(off + 12, bid, true);
    this.tail = (this.tail + 1) & 0xffff;
    Atomics.store(this.tailWord, 7, this.tail); // seq-cst: the entry is visible before the tail
  }

  /** Tag `i` of buffer `bid`. */
  tag(bid: number, i: number): number {
    return this.tagWords[(bid * this.bufBytes) / 2 + i];
  }
}
