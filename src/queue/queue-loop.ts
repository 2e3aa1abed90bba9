// The hot path: one ublk hardware queue served on the calling thread.
//
// Per tag there is one uring_cmd in flight on /dev/ublkcN: FETCH_REQ first, then COMMIT_AND_FETCH_REQ
// carrying the previous result. A wake-up reaps every CQE, decodes the iod of each new request straight
// from the mmapped descriptor array, dispatches it to the target, and the commits of everything finished
// go to the kernel in one io_uring_enter. Nothing here allocates per IO for synchronous targets.
//
// Two ways to wait. While no target Promise is pending the thread blocks in io_uring_enter itself: the
// commits of one batch go in and the thread sleeps until the next CQE, one system call per wake-up (as a
// C server does), yielding to its event loop when idle or every few batches. While a Promise is pending
// the target needs the event loop (sockets, timers), so wake-ups come from the ring's eventfd instead.
import { native } from "../native.js";
import { type IoRequest, type IoResult, QUEUED, type QueueContext, type Target } from "../targets/target.js";
import * as U from "../uapi/ublk_cmd.js";
import {
  IORING_SETUP_COOP_TASKRUN,
  IORING_SETUP_DEFER_TASKRUN,
  IORING_SETUP_SINGLE_ISSUER,
  SQE_CMD,
} from "../uring/constants.js";
import { Ring } from "../uring/ring.js";
import { BufferPool, type PooledBuffer } from "./buffer-pool.js";

const EIO = 5;
const EOPNOTSUPP = 95;

// user_data: bits 0-15 tag, bits 16-23 kind, bits 24-30 target sub-operation.
const KIND_CMD = 0;
const KIND_TARGET = 1;
const TAG_MASK = 0xffff;

// Per-tag state flags.
const TAG_CMD_INFLIGHT = 1; // a uring_cmd for this tag is owned by the kernel
const TAG_SERVING = 2; // the target owns a request for this tag
const TAG_DONE = 4; // aborted: the queue is going away

/** How long the blocking wait sleeps before giving the event loop a turn (messages, timers). */
const IDLE_YIELD_NS = 100_000_000;
/** Busy wake-ups served back to back before the event loop gets a turn. */
const BATCHES_PER_YIELD = 64;
/**
 * Ring setup: completions wait as task work until this thread asks for events (it always does, in
 * its wait or on an eventfd wake-up), so the kernel never interrupts it. DEFER_TASKRUN needs Linux
 * 6.1 and SINGLE_ISSUER (each ring is only used by its queue thread); older kernels get COOP_TASKRUN.
 */
const RING_FLAGS = Number(
  process.env.UBLK_TS_RING_FLAGS ??
    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
);
const RING_FLAGS_FALLBACK = IORING_SETUP_COOP_TASKRUN;
/** Benchmark lever (bench/NOTES.md): UBLK_TS_QUEUE_WAIT=event always waits through the event loop. */
const ALWAYS_EVENT_LOOP = process.env.UBLK_TS_QUEUE_WAIT === "event";

export interface QueueConfig {
  devId: number;
  qid: number;
  depth: number;
  /** Bytes of each tag's buffer (the device's max_io_buf_bytes). */
  bufSize: number;
  /** fd of /dev/ublkcN. */
  charFd: number;
  /** UBLK_F_* the driver granted. */
  flags: number;
}

const NO_BUFFER = new Uint8Array(0);

class Request implements IoRequest {
  op = 0;
  flags = 0;
  offset = 0;
  length = 0;
  /** Set in NEED_GET_DATA mode while the request holds a buffer from the pool. */
  pooled: PooledBuffer | null = null;
  private view: Uint8Array | null = null;
  constructor(
    readonly qid: number,
    readonly tag: number,
    public buffer: Uint8Array,
    public address: number,
    private readonly needGetData: boolean,
  ) {}
  serveFrom(address: number): void {
    // Without NEED_GET_DATA the commit's address is also the next request's buffer, so a WRITE would
    // land in the target's memory: refuse.
    if (!this.needGetData || this.op !== U.UBLK_IO_OP_READ)
      throw new Error("serveFrom() needs a READ on a device with UBLK_F_NEED_GET_DATA");
    this.address = address;
  }
  get data(): Uint8Array {
    if (this.view === null || this.view.length !== this.length || this.view.buffer !== this.buffer.buffer)
      this.view = this.buffer.subarray(0, this.length);
    return this.view;
  }
  attach(buf: PooledBuffer): void {
    this.pooled = buf;
    this.buffer = buf.bytes;
    this.address = buf.address;
  }
  detach(): void {
    this.pooled = null;
    this.buffer = NO_BUFFER;
    this.address = 0;
  }
}

export class QueueLoop<S = unknown> implements QueueContext<S> {
  readonly ring: Ring;
  readonly devId: number;
  readonly qid: number;
  readonly depth: number;
  readonly flags: number;
  private readonly iods: ArrayBuffer;
  private readonly iodView: DataView;
  private readonly requests: Request[] = [];
  private readonly tagState: Uint8Array;
  private readonly onSettled: ((res: number) => void)[] = [];
  private readonly onFailed: ((err: unknown) => void)[] = [];
  /** NEED_GET_DATA mode: buffers come from here when a request needs one, not one per tag. */
  readonly pool: BufferPool | null;
  private live = 0; // tags not yet aborted
  private flushScheduled = false;
  /** Target Promises not yet settled: while any is, the event loop drives wake-ups. */
  private asyncPending = 0;
  private inSyncLoop = false;
  private syncScheduled = false;
  private polling = false;
  private errorsLogged = 0;
  private resolveDone!: () => void;
  /** Resolves once every tag was aborted by the driver (device stopped) or the queue was closed. */
  readonly done: Promise<void>;

  constructor(
    private readonly cfg: QueueConfig,
    private readonly target: Target<S>,
    readonly state: S,
    readonly log: (msg: string) => void = (m) => process.stderr.write(`${m}\n`),
  ) {
    this.devId = cfg.devId;
    this.qid = cfg.qid;
    this.depth = cfg.depth;
    this.flags = cfg.flags;
    this.done = new Promise((r) => {
      this.resolveDone = r;
    });
    // Room for a command and a target operation per tag, plus slack for multi-op targets.
    const ringOptions = { entries: Math.max(8, 2 * cfg.depth), cqEntries: 4 * cfg.depth };
    try {
      this.ring = new Ring({ ...ringOptions, flags: RING_FLAGS });
    } catch (err) {
      if ((err as { code?: string }).code !== "E22") throw err; // EINVAL: flags this kernel lacks
      this.ring = new Ring({ ...ringOptions, flags: RING_FLAGS_FALLBACK });
    }
    const page = native.pageSize;
    this.iods = native.mmapFile(
      cfg.charFd,
      U.ublkQueueCmdBufOffset(cfg.qid, page),
      U.ublkQueueCmdBufSize(cfg.depth, page),
      false,
    );
    this.iodView = new DataView(this.iods);
    this.tagState = new Uint8Array(cfg.depth);
    const needGetData = (cfg.flags & U.UBLK_F_NEED_GET_DATA) !== 0;
    this.pool = needGetData ? new BufferPool(cfg.bufSize) : null;
    const buffers = needGetData ? null : native.allocBuffer(cfg.depth * cfg.bufSize);
    const base = buffers ? native.bufferAddress(buffers) : 0;
    for (let tag = 0; tag < cfg.depth; tag++) {
      const buf = buffers ? new Uint8Array(buffers, tag * cfg.bufSize, cfg.bufSize) : NO_BUFFER;
      this.requests.push(new Request(cfg.qid, tag, buf, buffers ? base + tag * cfg.bufSize : 0, needGetData));
      this.onSettled.push((res) => this.settleAsync(tag, res));
      this.onFailed.push((err) => this.settleAsync(tag, this.errorResult(err)));
    }
  }

  userData(tag: number, sub = 0): number {
    return ((sub & 0x7f) << 24) | (KIND_TARGET << 16) | tag;
  }

  /** Arms every tag with FETCH_REQ and starts serving on this thread's event loop. */
  async start(): Promise<void> {
    await this.target.initQueue?.(this);
    for (let tag = 0; tag < this.depth; tag++) this.sendCmd(tag, U.UBLK_U_IO_FETCH_REQ, 0);
    this.live = this.depth;
    this.ring.submit();
    if (ALWAYS_EVENT_LOOP) this.enterEventMode();
    else this.scheduleSync();
  }

  private scheduleSync(): void {
    if (this.syncScheduled || ALWAYS_EVENT_LOOP) return;
    this.syncScheduled = true;
    setImmediate(this.runSync);
  }

  /** The blocking loop: submit what is ready, sleep in the kernel until the next CQE, serve it. */
  private runSync = (): void => {
    this.syncScheduled = false;
    const ring = this.ring;
    if (ring.isClosed || this.asyncPending > 0 || this.live === 0) return;
    this.inSyncLoop = true;
    try {
      for (let batch = 0; batch < BATCHES_PER_YIELD; batch++) {
        const woke = ring.submitAndWaitFor(IDLE_YIELD_NS);
        this.recycleBuffers();
        if (!woke && ring.ready === 0) break;
        ring.reap(this.onCqe);
        if (this.live === 0 || this.asyncPending > 0 || ring.isClosed) break;
      }
    } finally {
      this.inSyncLoop = false;
    }
    if (ring.isClosed) return;
    if (this.live === 0) this.finish();
    else if (this.asyncPending > 0) this.enterEventMode();
    else this.scheduleSync();
  };

  /** Hands wake-ups to the event loop (the ring's eventfd) while target Promises are pending. */
  private enterEventMode(): void {
    if (!this.polling) {
      this.ring.poll(this.onWake);
      this.polling = true;
    }
    // CQEs posted before the eventfd was watched signal nothing: look once now.
    this.ring.submit();
    if (this.ring.ready > 0) this.scheduleFlush();
  }

  private onWake = (): void => {
    // Reap, dispatch, then one enter for all commits; loop while the kernel has more for us.
    do {
      this.ring.reap(this.onCqe);
      this.ring.submit();
      this.recycleBuffers();
    } while (this.ring.ready > 0);
    if (this.live === 0) this.finish();
  };

  private onCqe = (userData: number, res: number): void => {
    const tag = userData & TAG_MASK;
    const kind = (userData >>> 16) & 0xff;
    if (kind === KIND_CMD) {
      this.tagState[tag] &= ~TAG_CMD_INFLIGHT;
      if (res === U.UBLK_IO_RES_OK) this.dispatch(tag);
      else if (res === U.UBLK_IO_RES_NEED_GET_DATA) {
        // The driver copies the WRITE's data into the memory this command names: the target's own
        // (writeDestination) or a buffer from the pool, taken only now.
        const req = this.requests[tag];
        const dest = this.writeDestination(req);
        if (dest > 0) req.address = dest;
        else if (this.pool !== null && req.pooled === null) req.attach(this.pool.acquire());
        this.sendCmd(tag, U.UBLK_U_IO_NEED_GET_DATA, 0);
      } else this.retire(tag, res);
    } else if (kind === KIND_TARGET) {
      const complete = this.target.complete;
      if (!complete) {
        this.settle(tag, res);
        return;
      }
      let result: IoResult;
      try {
        result = complete(this.requests[tag], res, userData >>> 24, this);
      } catch (err) {
        result = this.errorResult(err);
      }
      this.apply(tag, result);
    }
  };

  /** Fills the request from its descriptor in the mmapped iod array. */
  private decode(req: Request): void {
    const off = req.tag * U.ublksrv_io_desc_LAYOUT.size;
    const v = this.iodView;
    const opFlags = v.getUint32(off, true);
    req.op = opFlags & 0xff;
    req.flags = opFlags & ~0xff;
    req.length = v.getUint32(off + 4, true) * 512;
    req.offset = (v.getUint32(off + 8, true) + v.getUint32(off + 12, true) * 0x100000000) * 512;
  }

  /** The target's own memory for a WRITE's data (NEED_GET_DATA), or 0 for a pool buffer. */
  private writeDestination(req: Request): number {
    const hook = this.target.writeDestination;
    if (!hook) return 0;
    this.decode(req);
    try {
      const addr = hook(req, this);
      return typeof addr === "number" && addr > 0 ? addr : 0;
    } catch (err) {
      this.errorResult(err); // logged; the write still gets a pool buffer
      return 0;
    }
  }

  private dispatch(tag: number): void {
    const req = this.requests[tag];
    this.decode(req);
    if (this.pool !== null && req.op === U.UBLK_IO_OP_READ && req.pooled === null)
      req.attach(this.pool.acquire());
    this.tagState[tag] |= TAG_SERVING;
    let result: IoResult;
    try {
      result = this.route(req);
    } catch (err) {
      result = this.errorResult(err);
    }
    this.apply(tag, result);
  }

  private route(req: Request): IoResult {
    const t = this.target;
    switch (req.op) {
      case U.UBLK_IO_OP_READ:
        return t.read(req, this);
      case U.UBLK_IO_OP_WRITE:
        return t.write(req, this);
      case U.UBLK_IO_OP_FLUSH:
        return t.flush ? t.flush(req, this) : 0;
      case U.UBLK_IO_OP_DISCARD:
        return t.discard ? t.discard(req, this) : -EOPNOTSUPP;
      case U.UBLK_IO_OP_WRITE_ZEROES:
        return t.writeZeroes ? t.writeZeroes(req, this) : -EOPNOTSUPP;
      default:
        return -EOPNOTSUPP;
    }
  }

  private apply(tag: number, result: IoResult): void {
    if (typeof result === "number") this.settle(tag, result);
    else if (result !== QUEUED) {
      this.asyncPending++;
      result.then(this.onSettled[tag], this.onFailed[tag]);
    }
  }

  private settleAsync(tag: number, res: number): void {
    this.asyncPending--;
    this.settle(tag, res);
    if (this.asyncPending === 0) this.scheduleSync();
  }

  private errorResult(err: unknown): number {
    if (this.errorsLogged++ < 5) {
      const msg = err instanceof Error ? err.message : String(err);
      this.log(`ublk${this.devId} queue ${this.qid}: target ${this.target.name} failed a request: ${msg}`);
    }
    const errno = (err as { errno?: unknown })?.errno;
    return typeof errno === "number" && errno !== 0 ? -Math.abs(errno) : -EIO;
  }

  /** Final result for the tag's request: commit it and fetch the next one. */
  private settle(tag: number, res: number): void {
    if (!(this.tagState[tag] & TAG_SERVING)) return;
    this.tagState[tag] &= ~TAG_SERVING;
    // The driver loops forever on a zero-byte WRITE and treats 0 on READ as an error: never send 0.
    const req = this.requests[tag];
    if (res === 0 && (req.op === U.UBLK_IO_OP_READ || req.op === U.UBLK_IO_OP_WRITE)) res = -EIO;
    else if (res > req.length) res = req.length;
    this.sendCmd(tag, U.UBLK_U_IO_COMMIT_AND_FETCH_REQ, res);
    // The kernel copies a READ's data out of the buffer while it handles the commit, so the buffer
    // goes back to the pool once that commit has been submitted.
    const pooled = req.pooled;
    if (pooled !== null) {
      req.detach();
      this.pool?.retire(pooled);
    } else if (this.pool !== null) req.address = 0; // was the target's memory (serveFrom, writeDestination)
    // The blocking loop submits with its next wait; otherwise commit at the end of this tick.
    if (!this.inSyncLoop) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled && !this.ring.isClosed) {
      this.flushScheduled = true;
      queueMicrotask(this.flush);
    }
  }

  // Async results settle outside a wake-up; their commits go out together at the end of the tick.
  private flush = (): void => {
    this.flushScheduled = false;
    if (this.ring.isClosed) return;
    if (this.ring.pending > 0) this.ring.submit();
    this.recycleBuffers();
    if (this.ring.ready > 0) this.onWake();
  };

  private recycleBuffers(): void {
    if (this.pool !== null && this.ring.pending === 0) this.pool.recycle();
  }

  private sendCmd(tag: number, cmdOp: number, result: number): void {
    if (this.tagState[tag] & TAG_DONE || this.ring.isClosed) return;
    const ring = this.ring;
    const off = ring.sqeOrSubmit();
    ring.prepUringCmd(off, this.cfg.charFd, cmdOp, (KIND_CMD << 16) | tag);
    const v = ring.sqeView;
    const c = off + SQE_CMD;
    v.setUint16(c, this.qid, true);
    v.setUint16(c + 2, tag, true);
    v.setInt32(c + 4, result, true);
    const addr = this.requests[tag].address;
    v.setUint32(c + 8, addr >>> 0, true);
    v.setUint32(c + 12, Math.floor(addr / 0x100000000), true);
    this.tagState[tag] |= TAG_CMD_INFLIGHT;
  }

  /** The driver gave the tag back for good (UBLK_IO_RES_ABORT when the device stops). */
  private retire(tag: number, res: number): void {
    if (this.tagState[tag] & TAG_DONE) return;
    if (res !== U.UBLK_IO_RES_ABORT) {
      this.log(`ublk${this.devId} queue ${this.qid}: tag ${tag} command failed with ${res}`);
    }
    this.tagState[tag] |= TAG_DONE;
    this.live--;
  }

  private finished = false;
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.close();
  }

  /** Releases the ring (the kernel cancels what is still armed), the mapping and the buffers. */
  close(): void {
    if (!this.ring.isClosed) {
      this.ring.unpoll();
      this.ring.close();
    }
    if (this.iods.byteLength > 0) native.munmapBuffer(this.iods);
    Promise.resolve(this.target.closeQueue?.(this))
      .catch((err) => this.log(`ublk${this.devId} queue ${this.qid}: closeQueue failed: ${err}`))
      .finally(() => this.resolveDone());
  }
}
