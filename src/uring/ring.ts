// A ublk-agnostic io_uring: SQEs are filled and CQEs read in place through typed-array views of the
// kernel's mapped rings; the only native call per batch is enter(). User data is a 32-bit number
// (the high half of the 64-bit field is written as zero and ignored on completion).
import { native } from "../native.js";
import * as C from "./constants.js";

// Control block words (native/ublk_native.c): JS owns SQ_TAIL and CQ_HEAD.
const CTL_SQ_TAIL = 0;
const CTL_SQ_HEAD = 1;
const CTL_CQ_HEAD = 2;
const CTL_CQ_TAIL = 3;

export interface RingOptions {
  /** SQ entries (rounded up to a power of two by the kernel). */
  entries: number;
  /** IORING_SETUP_* flags. */
  flags?: number;
  /** CQ entries; default twice the SQ entries (the kernel's default). */
  cqEntries?: number;
}

/** Called once per CQE while reaping; must not allocate in hot paths. */
export type CqeHandler = (userData: number, res: number, flags: number) => void;

export class RingError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = "RingError";
  }
}

export class Ring {
  readonly fd: number;
  readonly sqEntries: number;
  readonly cqEntries: number;
  readonly sqeSize: number;
  /** The SQE array; an SQE is addressed by the byte offset sqe() returns. */
  readonly sqeView: DataView;
  readonly sqeBytes: Uint8Array;
  /** The SQE array as 32-bit words: word index = byte offset / 4. */
  readonly sqeWords: Uint32Array;
  private readonly handle: object;
  private readonly ctl: Uint32Array;
  private readonly cqeU32: Uint32Array;
  private readonly cqeI32: Int32Array;
  private readonly cqeWords: number;
  private readonly sqMask: number;
  private readonly cqMask: number;
  private closed = false;

  constructor(options: RingOptions) {
    const r = native.ringSetup(options.entries, options.flags ?? 0, options.cqEntries ?? 0);
    this.handle = r.handle;
    this.fd = r.fd;
    this.sqEntries = r.sqEntries;
    this.cqEntries = r.cqEntries;
    this.sqeSize = r.sqeSize;
    this.sqeView = new DataView(r.sqes);
    this.sqeBytes = new Uint8Array(r.sqes);
    this.sqeWords = new Uint32Array(r.sqes);
    this.ctl = new Uint32Array(r.ctl);
    this.cqeU32 = new Uint32Array(r.cqes);
    this.cqeI32 = new Int32Array(r.cqes);
    this.cqeWords = r.cqeSize >>> 2;
    this.sqMask = r.sqEntries - 1;
    this.cqMask = r.cqEntries - 1;
  }

  /** SQEs prepared but not yet consumed by the kernel. */
  get pending(): number {
    return (this.ctl[CTL_SQ_TAIL] - this.ctl[CTL_SQ_HEAD]) >>> 0;
  }

  /** Free SQ slots. */
  get space(): number {
    return this.sqEntries - this.pending;
  }

  /** CQEs ready to reap, as of the last enter() or wake-up. */
  get ready(): number {
    return (this.ctl[CTL_CQ_TAIL] - this.ctl[CTL_CQ_HEAD]) >>> 0;
  }

  /**
   * Claims the next SQE, zeroed, and returns its byte offset in sqeView; -1 when the SQ is full
   * (submit() first). The SQE becomes visible to the kernel at the next enter().
   */
  sqe(): number {
    const off = this.claimSqe();
    if (off >= 0) {
      // Word stores stay in JIT code; TypedArray.fill is a runtime call per SQE (bench/NOTES.md).
      const w = this.sqeWords;
      for (let i = off >>> 2, end = i + (this.sqeSize >>> 2); i < end; i++) w[i] = 0;
    }
    return off;
  }

  /**
   * Like sqe() but the SQE keeps whatever the slot held before: for callers that write every word of
   * it (sqeWords), such as the ublk queue's command SQEs.
   */
  claimSqe(): number {
    const tail = this.ctl[CTL_SQ_TAIL];
    if ((tail - this.ctl[CTL_SQ_HEAD]) >>> 0 >= this.sqEntries) return -1;
    this.ctl[CTL_SQ_TAIL] = tail + 1;
    return (tail & this.sqMask) * this.sqeSize;
  }

  /** Like sqe(), but submits what is pending when the SQ is full. Throws if still full. */
  sqeOrSubmit(): number {
    let off = this.sqe();
    if (off < 0) {
      this.submit();
      off = this.sqe();
      if (off < 0) throw new RingError(16, "io_uring submission queue is full");
    }
    return off;
  }

  /**
   * Submits pending SQEs and optionally waits for minComplete CQEs. Returns the kernel's result
   * (SQEs consumed), or a negative errno for EINTR/EAGAIN/EBUSY, which are transient; throws on others.
   */
  submit(minComplete = 0): number {
    const ret = native.ringEnter(this.handle, this.pending, minComplete, 0);
    if (ret < 0 && ret !== -4 && ret !== -11 && ret !== -16) {
      throw new RingError(-ret, `io_uring_enter failed: errno ${-ret}`);
    }
    return ret;
  }

  /**
   * Submits pending SQEs and blocks this thread until a CQE is ready or `timeoutNs` passes: the one
   * system call of a synchronous serving loop. Returns false when the wait timed out or was interrupted.
   * `minComplete` > 1 when some CQEs are already owed by what is submitted (and must not end the wait).
   */
  submitAndWaitFor(timeoutNs: number, flags = 0, minComplete = 1): boolean {
    const ret = native.ringEnter(
      this.handle,
      this.pending,
      minComplete,
      flags | C.IORING_ENTER_GETEVENTS,
      timeoutNs,
    );
    if (ret >= 0) return true;
    if (ret === -62 || ret === -4 || ret === -11 || ret === -16) return false; // ETIME, EINTR, EAGAIN, EBUSY
    throw new RingError(-ret, `io_uring_enter failed: errno ${-ret}`);
  }

  /** Submits and blocks this thread until at least `count` CQEs are ready (EINTR is retried). */
  submitAndWait(count: number): void {
    while (this.ready < count) {
      this.submit(count - this.ready);
    }
  }

  /** Reaps every ready CQE through `handler`, then releases the slots. Returns how many were reaped. */
  reap(handler: CqeHandler): number {
    const mask = this.cqMask;
    const words = this.cqeWords;
    const u32 = this.cqeU32;
    const i32 = this.cqeI32;
    let head = this.ctl[CTL_CQ_HEAD];
    const tail = this.ctl[CTL_CQ_TAIL];
    let n = 0;
    while (head !== tail) {
      const w = (head & mask) * words;
      head = (head + 1) >>> 0;
      // Release the slot before the handler runs, so a throwing handler cannot leave it re-reaped.
      this.ctl[CTL_CQ_HEAD] = head;
      handler(u32[w], i32[w + 2], u32[w + 3]);
      n++;
    }
    return n;
  }

  /** Calls `onWake` on this thread's event loop whenever completions may be ready. */
  poll(onWake: () => void): void {
    native.ringPoll(this.handle, onWake);
  }

  unpoll(): void {
    if (!this.closed) native.ringUnpoll(this.handle);
  }

  /** Closes the ring; the kernel cancels whatever is still in flight. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.ringClose(this.handle);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- SQE preparation (fields not set stay zero) ----

  setU64(off: number, value: number): void {
    this.sqeView.setUint32(off, value >>> 0, true);
    this.sqeView.setUint32(off + 4, Math.floor(value / 0x100000000), true);
  }

  prepRw(
    off: number,
    opcode: number,
    fd: number,
    addr: number,
    len: number,
    offset: number,
    userData: number,
  ): void {
    const v = this.sqeView;
    v.setUint8(off + C.SQE_OPCODE, opcode);
    v.setInt32(off + C.SQE_FD, fd, true);
    this.setU64(off + C.SQE_OFF, offset);
    this.setU64(off + C.SQE_ADDR, addr);
    v.setUint32(off + C.SQE_LEN, len, true);
    v.setUint32(off + C.SQE_USER_DATA, userData, true);
  }

  prepNop(off: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_NOP, -1, 0, 0, 0, userData);
  }

  prepRead(off: number, fd: number, addr: number, len: number, offset: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_READ, fd, addr, len, offset, userData);
  }

  prepWrite(off: number, fd: number, addr: number, len: number, offset: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_WRITE, fd, addr, len, offset, userData);
  }

  /** readv/writev: `iov` is the address of `count` struct iovec (16 bytes each: base, length). */
  prepReadv(off: number, fd: number, iov: number, count: number, offset: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_READV, fd, iov, count, offset, userData);
  }

  prepWritev(off: number, fd: number, iov: number, count: number, offset: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_WRITEV, fd, iov, count, offset, userData);
  }

  /**
   * A relative timer: completes with -ETIME once the struct __kernel_timespec at `ts` (16 bytes:
   * seconds, nanoseconds) has elapsed. The kernel reads `ts` when it takes the SQE, so the memory
   * only has to hold still until the next submit.
   */
  prepTimeout(off: number, ts: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_TIMEOUT, -1, ts, 1, 0, userData);
  }

  /** READ_FIXED/WRITE_FIXED: `addr` is a position inside registered buffer `bufIndex`. */
  prepRwFixed(
    off: number,
    write: boolean,
    fd: number,
    addr: number,
    len: number,
    offset: number,
    bufIndex: number,
    userData: number,
  ): void {
    this.prepRw(
      off,
      write ? C.IORING_OP_WRITE_FIXED : C.IORING_OP_READ_FIXED,
      fd,
      addr,
      len,
      offset,
      userData,
    );
    this.sqeView.setUint16(off + C.SQE_BUF_INDEX, bufIndex, true);
  }

  /**
   * Registers a table of `count` empty buffer slots (IORING_REGISTER_BUFFERS2, sparse), for kernel
   * buffers installed later (ublk zero copy). Setup-time; throws with the errno on failure.
   */
  registerSparseBuffers(count: number): void {
    const arg = new ArrayBuffer(32); // struct io_uring_rsrc_register { nr, flags, resv2, data, tags }
    const v = new DataView(arg);
    v.setUint32(0, count, true);
    v.setUint32(4, C.IORING_RSRC_REGISTER_SPARSE, true);
    const rc = native.ringRegister(this.handle, C.IORING_REGISTER_BUFFERS2, arg, 32);
    if (rc < 0) throw new RingError(-rc, `IORING_REGISTER_BUFFERS2 (sparse, ${count}) failed: errno ${-rc}`);
  }

  /**
   * Registers `fds` as the ring's fixed file table (IORING_REGISTER_FILES): an SQE flagged
   * IOSQE_FIXED_FILE names a file by its index there, and the kernel skips the fd lookup and its
   * reference count per operation. Setup-time; throws with the errno on failure.
   */
  registerFiles(fds: readonly number[]): void {
    const arg = new Int32Array(fds);
    const rc = native.ringRegister(this.handle, C.IORING_REGISTER_FILES, arg.buffer, fds.length);
    if (rc < 0) throw new RingError(-rc, `IORING_REGISTER_FILES (${fds.length}) failed: errno ${-rc}`);
  }

  /**
   * Registers `entries` (a power of two) provided buffers at `ringAddr` (page-aligned memory of
   * entries x 16 bytes, struct io_uring_buf; the ring's tail is the u16 at byte 14) as buffer group
   * `bgid`. Setup-time; throws with the errno on failure.
   */
  registerBufRing(bgid: number, ringAddr: number, entries: number, flags = 0): void {
    const arg = new ArrayBuffer(40); // struct io_uring_buf_reg { ring_addr, ring_entries, bgid, flags, resv[3] }
    const v = new DataView(arg);
    v.setUint32(0, ringAddr >>> 0, true);
    v.setUint32(4, Math.floor(ringAddr / 0x100000000), true);
    v.setUint32(8, entries, true);
    v.setUint16(12, bgid, true);
    v.setUint16(14, flags, true);
    const rc = native.ringRegister(this.handle, C.IORING_REGISTER_PBUF_RING, arg, 1);
    if (rc < 0) throw new RingError(-rc, `IORING_REGISTER_PBUF_RING (group ${bgid}) failed: errno ${-rc}`);
  }

  /** Drops buffer group `bgid` (its memory stays the caller's). Throws with the errno on failure. */
  unregisterBufRing(bgid: number): void {
    const arg = new ArrayBuffer(40);
    new DataView(arg).setUint16(12, bgid, true);
    const rc = native.ringRegister(this.handle, C.IORING_UNREGISTER_PBUF_RING, arg, 1);
    if (rc < 0) throw new RingError(-rc, `IORING_UNREGISTER_PBUF_RING (group ${bgid}) failed: errno ${-rc}`);
  }

  prepFsync(off: number, fd: number, fsyncFlags: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_FSYNC, fd, 0, 0, 0, userData);
    this.sqeView.setUint32(off + C.SQE_OP_FLAGS, fsyncFlags, true);
  }

  /** fallocate(fd, mode, offset, length): the SQE carries the length in addr and the mode in len. */
  prepFallocate(
    off: number,
    fd: number,
    mode: number,
    offset: number,
    length: number,
    userData: number,
  ): void {
    this.prepRw(off, C.IORING_OP_FALLOCATE, fd, length, mode, offset, userData);
  }

  /** IORING_OP_URING_CMD: the command payload goes at SQE_CMD, written by the caller. */
  prepUringCmd(off: number, fd: number, cmdOp: number, userData: number): void {
    const v = this.sqeView;
    v.setUint8(off + C.SQE_OPCODE, C.IORING_OP_URING_CMD);
    v.setInt32(off + C.SQE_FD, fd, true);
    v.setUint32(off + C.SQE_OFF, cmdOp, true);
    v.setUint32(off + C.SQE_USER_DATA, userData, true);
  }

  prepCancel(off: number, targetUserData: number, userData: number): void {
    this.prepRw(off, C.IORING_OP_ASYNC_CANCEL, -1, targetUserData, 0, 0, userData);
  }
}
