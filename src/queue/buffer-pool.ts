// IO buffers handed out only while a request needs one (NEED_GET_DATA and user copy modes).
//
// With UBLK_F_NEED_GET_DATA the driver asks for a WRITE's buffer when the data is about to be copied,
// and a READ's buffer is only read at commit. So a queue needs as many buffers as requests really in
// flight, not one per tag: a mostly idle deep queue holds a few buffers instead of depth x max IO size.
// Buffers are page-aligned, allocated on first need and kept for reuse.
import { native } from "../native.js";

export interface PooledBuffer {
  readonly index: number;
  readonly bytes: Uint8Array;
  readonly address: number;
}

export class BufferPool {
  private readonly all: PooledBuffer[] = [];
  private readonly free: number[] = [];
  /** Released by their owners but maybe still read by the kernel until the next submit returns. */
  private readonly retiring: number[] = [];

  constructor(readonly bufferSize: number) {}

  /** Buffers allocated so far (the pool's high-water mark). */
  get allocated(): number {
    return this.all.length;
  }

  acquire(): PooledBuffer {
    const index = this.free.pop();
    if (index !== undefined) return this.all[index];
    const ab = native.allocBuffer(this.bufferSize);
    const buf = { index: this.all.length, bytes: new Uint8Array(ab), address: native.bufferAddress(ab) };
    this.all.push(buf);
    return buf;
  }

  /** Returns a buffer whose commit was queued: it becomes reusable after the next submit. */
  retire(buf: PooledBuffer): void {
    this.retiring.push(buf.index);
  }

  /** Returns a buffer the kernel is known to be done with (its copy's CQE arrived): reusable now. */
  release(buf: PooledBuffer): void {
    this.free.push(buf.index);
  }

  /** Call once the SQEs queued so far were consumed: the kernel copied what it needed from them. */
  recycle(): void {
    while (this.retiring.length > 0) this.free.push(this.retiring.pop() as number);
  }
}
