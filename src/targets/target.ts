// The Target API: what a user implements to serve a ublk device from TypeScript.
//
// A target is an ops table. `open` runs once in the daemon's main thread: it checks the options,
// declares the geometry and returns `state`, which each queue thread receives as a structured clone
// (share memory between queues with a SharedArrayBuffer inside it). The IO ops run in the queue
// threads, one thread per hardware queue. An op returns the result for the request:
//   - a number: bytes done for READ/WRITE (a short count makes the kernel retry the rest), 0 for
//     FLUSH/DISCARD/WRITE_ZEROES, or a negative errno to fail that request only;
//   - a Promise of such a number (async targets);
//   - QUEUED, after submitting its own io_uring operations on ctx.ring with ctx.userData(req.tag):
//     the queue calls `complete` (or commits the CQE result as is) when that operation finishes.
// A thrown error or rejected Promise fails the request with -EIO (or the error's `errno`).
import type { Ring } from "../uring/ring.js";

export const QUEUED: unique symbol = Symbol.for("ublk-ts.queued") as never;
export type IoResult = number | Promise<number> | typeof QUEUED;

/** One request, owned by its tag; the object is reused, so do not keep it past completion. */
export interface IoRequest {
  readonly qid: number;
  readonly tag: number;
  /** UBLK_IO_OP_* */
  readonly op: number;
  /**
   * UBLK_IO_F_* bits (already shifted, compare with the constants directly). With UBLK_IO_F_SHMEM_ZC
   * (--shmem_zc) the data lies in memory the application shares with the daemon: `buffer`, `data`
   * and `address` point there, and serveFrom() is refused (the driver copies nothing back).
   */
  readonly flags: number;
  /** Byte offset on the device. */
  readonly offset: number;
  /** Bytes to transfer (or to discard / zero). */
  readonly length: number;
  /** The tag's whole IO buffer; the request's data is its first `length` bytes. */
  readonly buffer: Uint8Array;
  /** `buffer.subarray(0, length)`, created on first use. */
  readonly data: Uint8Array;
  /** Address of `buffer`, for target IO submitted on ctx.ring. */
  readonly address: number;
  /**
   * Zero copy (-z, --auto_zc): the request's own pages are fixed buffer `bufIndex` of ctx.ring; move
   * the data with READ_FIXED/WRITE_FIXED (ring.prepRwFixed, addr 0 = the buffer's first byte).
   * `buffer` and `data` are empty then. -1 when the request has no such buffer.
   */
  readonly bufIndex: number;
  /**
   * READ only, and only when ctx.flags has UBLK_F_NEED_GET_DATA or UBLK_F_USER_COPY: the read's data
   * is taken from `address` (any memory of this process, e.g. a mapped file) instead of `buffer`, by
   * the driver when the request is committed (or by the queue's copy to /dev/ublkcN). Saves the copy into `buffer`. The memory must stay mapped until
   * then, and reading it must not fault with an error (the 6.12 driver would retry the read forever).
   */
  serveFrom(address: number): void;
  /** REPORT_ZONES: zones asked for; `buffer` has room for that many struct blk_zone (64 bytes each). */
  readonly nrZones: number;
  /** ZONE_APPEND: the sector where the data was written, which the driver returns to the writer. */
  setAppendSector(sector: number): void;
  /** ZONE_APPEND: what setAppendSector() set for this request, or -1. */
  readonly appendSector: number;
  /**
   * UBLK_F_INTEGRITY (see Target.openIntegrity): the request's metadata, `metadataSize` bytes per
   * interval of its data, or null when it carries none (not a READ/WRITE, or the block layer
   * attached none). A WRITE's is filled before write(). A READ's holds 0xFF bytes (no PI: the
   * block layer checks nothing) until the target overwrites it; it goes to the driver with the data.
   */
  readonly integrity: Uint8Array | null;
  /** Address of `integrity`, for target IO submitted on ctx.ring. */
  readonly integrityAddress: number;
}

/** How much metadata a device with integrity (UBLK_F_INTEGRITY) carries. */
export interface IntegrityFormat {
  /** Bytes of metadata per interval. */
  metadataSize: number;
  /** Bytes of data each metadata interval describes (the logical block size). */
  intervalBytes: number;
}

export interface QueueContext<S = unknown> {
  readonly devId: number;
  readonly qid: number;
  readonly depth: number;
  /** UBLK_F_* the driver granted this device. */
  readonly flags: number;
  /** The state returned by open(), cloned into this thread. */
  readonly state: S;
  /** The queue's own io_uring, for targets that do their IO through it (no thread pool, no copy). */
  readonly ring: Ring;
  /** Writes a line to the daemon's log (connection trouble, say); not for every request. */
  readonly log: (message: string) => void;
  /** user_data for a target operation on `tag` (sub distinguishes several in flight, 0..127). */
  userData(tag: number, sub?: number): number;
}

/** What a target declares about the device it serves. */
export interface TargetSetup<S = unknown> {
  /** Device size in bytes (a multiple of the logical block size). */
  size: number;
  /** Parameter defaults for this target; `ublk add` options override them. */
  params?: import("../ctrl/params.js").DeviceParamOverrides;
  state: S;
  /**
   * UBLK_F_* this target asks the driver for, on top of what the user chose; the driver may refuse
   * them (see ctx.flags). E.g. UBLK_F_NEED_GET_DATA to serve reads with req.serveFrom().
   */
  flags?: number;
  /** Shown by `ublk list` (e.g. the backing file). */
  description?: Record<string, string | number | boolean>;
}

/** Option values: a list for options given several times (stripe's backing files). */
export type TargetOptions = Record<string, string | number | boolean | readonly string[] | undefined>;

export interface Target<S = unknown> {
  readonly name: string;
  /**
   * The target can serve READ/WRITE through req.bufIndex (ring IO with fixed buffers) without
   * touching req.buffer: it may run with zero copy (-z, --auto_zc). Others are refused there.
   */
  readonly zeroCopy?: boolean;
  /**
   * The target moves READ/WRITE data only through req.address, req.buffer/req.data (or bufIndex),
   * and never through serveFrom() or writeDestination's memory for a request flagged
   * UBLK_IO_F_SHMEM_ZC: it may run with shared-memory zero copy (--shmem_zc). Others are refused there.
   */
  readonly shmemZeroCopy?: boolean;
  /** Main thread, once per device. */
  open(options: TargetOptions): TargetSetup<S> | Promise<TargetSetup<S>>;
  /**
   * Main thread, before the device is created, when the user asked for integrity metadata
   * (--metadata_size): get ready to keep it (req.integrity), e.g. open a file for it, recording
   * what the queues need in `setup.state`. Targets without this op are refused such a device.
   * Throw to refuse.
   */
  openIntegrity?(setup: TargetSetup<S>, format: IntegrityFormat): void | Promise<void>;
  /** Main thread, after the device is gone. */
  close?(setup: TargetSetup<S>): void | Promise<void>;
  /**
   * Main thread, for `ublk update_size`: make room for `newSize` bytes (grow a backing file, say) or
   * throw to refuse (e.g. shrinking below data). Without it the device cannot change size.
   */
  resize?(setup: TargetSetup<S>, newSize: number): void | Promise<void>;
  /** Queue thread, before its first request. */
  initQueue?(ctx: QueueContext<S>): void | Promise<void>;
  /** Queue thread, after its last request. */
  closeQueue?(ctx: QueueContext<S>): void | Promise<void>;
  read(req: IoRequest, ctx: QueueContext<S>): IoResult;
  write(req: IoRequest, ctx: QueueContext<S>): IoResult;
  /** Default: succeed (nothing is cached). */
  flush?(req: IoRequest, ctx: QueueContext<S>): IoResult;
  /** Default: -EOPNOTSUPP. Offer discard in params only when implemented. */
  discard?(req: IoRequest, ctx: QueueContext<S>): IoResult;
  writeZeroes?(req: IoRequest, ctx: QueueContext<S>): IoResult;
  /**
   * Only with UBLK_F_NEED_GET_DATA or UBLK_F_USER_COPY, before write() (and with user copy before
   * zoneAppend()): the address of `req.length`
   * bytes of this process's memory where the WRITE's data should be copied (write() then finds req.address
   * equal to it), or 0 for a buffer from the queue's pool. Same rule as serveFrom: the memory must
   * not fault with an error.
   */
  writeDestination?(req: IoRequest, ctx: QueueContext<S>): number;
  /**
   * Zoned devices (UBLK_F_ZONED, which needs UBLK_F_USER_COPY): ZONE_APPEND gets its data like a
   * WRITE and calls req.setAppendSector(); REPORT_ZONES fills req.buffer with struct blk_zone entries
   * from req.offset on and returns their bytes; zoneManage handles ZONE_OPEN, ZONE_CLOSE,
   * ZONE_FINISH, ZONE_RESET and ZONE_RESET_ALL (req.op says which). Default: -EOPNOTSUPP.
   */
  zoneAppend?(req: IoRequest, ctx: QueueContext<S>): IoResult;
  reportZones?(req: IoRequest, ctx: QueueContext<S>): IoResult;
  zoneManage?(req: IoRequest, ctx: QueueContext<S>): IoResult;
  /** A target operation submitted with ctx.userData(req.tag, sub) finished with `res`. */
  complete?(req: IoRequest, res: number, sub: number, ctx: QueueContext<S>): IoResult;
}

/** Identity helper that gives a target literal its types. */
export function defineTarget<S>(target: Target<S>): Target<S> {
  return target;
}
