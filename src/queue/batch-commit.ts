// The element buffers of UBLK_U_IO_PREP_IO_CMDS and UBLK_U_IO_COMMIT_IO_CMDS: one struct
// ublk_elem_header per request (tag, buffer index for --auto_zc, result), followed by the request's
// buffer address on the copying data path (UBLK_BATCH_F_HAS_BUF_ADDR). The commits of one wake-up fill one buffer,
// which stays the kernel's until the command's CQE says how much of it the driver took.
//
// A COMMIT_IO_CMDS CQE carries the bytes of elements the driver committed, in order. It stops at the
// first element it refuses (a tag it does not consider ours, say): that one is reported and dropped,
// and the elements after it, which it never looked at, are sent again from the same buffer. A
// negative result means it refused the first element.
import { native } from "../native.js";

/** A run of elements to hand to the kernel in one command. */
export interface ElementBatch {
  /** The buffer: goes into the command's user_data and comes back with its CQE. */
  index: number;
  address: number;
  count: number;
}

export interface CommitOutcome {
  /** The elements the driver did not get to, to send again; null when the buffer is free again. */
  resend: ElementBatch | null;
  /** The tag of the element the driver refused, or -1. */
  refusedTag: number;
  /** Why, when the CQE says (a negative errno), else 0. */
  error: number;
}

interface ElementBuffer {
  view: DataView;
  address: number;
  /** Elements written. */
  count: number;
  /** The first element of the command in flight (later ones after a partial commit). */
  first: number;
}

export class ElementBuffers {
  private readonly buffers: ElementBuffer[] = [];
  private readonly free: number[] = [];
  private current = -1;

  /**
   * `elemBytes`: 8, or 16 with a buffer address; `capacity`: elements per buffer (the queue depth,
   * the most one command may carry). `alloc` gives page-aligned memory (tests pass their own).
   */
  constructor(
    readonly elemBytes: number,
    readonly capacity: number,
    private readonly alloc: (bytes: number) => ArrayBuffer = native.allocBuffer,
    private readonly addressOf: (buffer: ArrayBuffer) => number = native.bufferAddress,
  ) {}

  /** Elements added since the last take(). */
  get pending(): number {
    return this.current < 0 ? 0 : this.buffers[this.current].count;
  }

  /** Buffers allocated so far (how many commands were in flight at once, at most). */
  get allocated(): number {
    return this.buffers.length;
  }

  /** Appends one request's element; `bufAddr` is written only when elements carry an address. */
  add(tag: number, result: number, bufAddr = 0, bufIndex = 0): void {
    if (this.current < 0) this.current = this.acquire();
    const b = this.buffers[this.current];
    if (b.count >= this.capacity) throw new Error(`more than ${this.capacity} elements in one batch`);
    const off = b.count * this.elemBytes;
    const v = b.view;
    v.setUint16(off, tag, true);
    v.setUint16(off + 2, bufIndex, true);
    v.setInt32(off + 4, result, true);
    if (this.elemBytes >= 16) {
      v.setUint32(off + 8, bufAddr >>> 0, true);
      v.setUint32(off + 12, Math.floor(bufAddr / 0x100000000), true);
    }
    b.count++;
  }

  /** The elements added so far, as one command's worth; the next add() starts a new buffer. */
  take(): ElementBatch | null {
    if (this.current < 0) return null;
    const index = this.current;
    const b = this.buffers[index];
    this.current = -1;
    if (b.count === 0) {
      this.release(index);
      return null;
    }
    b.first = 0;
    return { index, address: b.address, count: b.count };
  }

  /** The CQE of a COMMIT_IO_CMDS that carried buffer `index`: `res` bytes taken, or -errno. */
  completed(index: number, res: number): CommitOutcome {
    const b = this.buffers[index];
    const sent = b.count - b.first;
    if (res >= sent * this.elemBytes) {
      this.release(index);
      return { resend: null, refusedTag: -1, error: 0 };
    }
    const refused = b.first + (res < 0 ? 0 : Math.floor(res / this.elemBytes));
    const refusedTag = b.view.getUint16(refused * this.elemBytes, true);
    b.first = refused + 1;
    const outcome = { resend: null as ElementBatch | null, refusedTag, error: Math.min(res, 0) };
    if (b.first >= b.count) this.release(index);
    else outcome.resend = { index, address: b.address + b.first * this.elemBytes, count: b.count - b.first };
    return outcome;
  }

  /** Makes buffer `index` reusable (its command's CQE arrived). */
  release(index: number): void {
    const b = this.buffers[index];
    b.count = 0;
    b.first = 0;
    this.free.push(index);
  }

  /** The tag of element `i` of buffer `index`. */
  tagAt(index: number, i: number): number {
    return this.buffers[index].view.getUint16(i * this.elemBytes, true);
  }

  private acquire(): number {
    const index = this.free.pop();
    if (index !== undefined) return index;
    const memory = this.alloc(this.capacity * this.elemBytes);
    this.buffers.push({ view: new DataView(memory), address: this.addressOf(memory), count: 0, first: 0 });
    return this.buffers.length - 1;
  }
}
