// The hot path: one ublk hardware queue served on the calling thread (with per-IO daemons, the share of
// its tags this thread fetched; per-io.ts).
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
import { type IoResult, QUEUED, type QueueContext, type Target } from "../targets/target.js";
import * as U from "../uapi/ublk_cmd.js";
import {
  IORING_SETUP_COOP_TASKRUN,
  IORING_SETUP_DEFER_TASKRUN,
  IORING_SETUP_SINGLE_ISSUER,
} from "../uring/constants.js";
import { Ring } from "../uring/ring.js";
import { AdaptivePoll } from "./adaptive-poll.js";
import { BatchCommands, KIND_BATCH } from "./batch-commands.js";
import { BufferPool, type PooledBuffer } from "./buffer-pool.js";
import { CmdSqeWriter } from "./cmd-sqe.js";
import { type IntegrityLayout, QueueIntegrity } from "./integrity.js";
import { NO_BUFFER, Request, route } from "./request.js";
import { SharedRegions } from "./shmem-zc.js";
import { dataFromDriver, dataToDriver, prepCopyIn, prepCopyOut } from "./user-copy.js";
import { YieldTick } from "./yield-tick.js";
import { autoRegAddr, hasData, prepBufferCmd, ZERO_COPY_FLAGS } from "./zero-copy.js";

const EIO = 5;
const ECANCELED = 125;

// user_data: bits 0-15 tag, bits 16-23 kind, bits 24-30 target sub-operation.
const KIND_CMD = 0;
const KIND_TARGET = 1;
/** User copy: the request's data read from /dev/ublkcN (WRITE, ZONE_APPEND). */
const KIND_COPY_IN = 2;
/** User copy: the request's data written to /dev/ublkcN, linked before its commit (READ, REPORT_ZONES). */
const KIND_COPY_OUT = 3;
/** Zero copy: a REGISTER_IO_BUF/UNREGISTER_IO_BUF that failed (success posts no CQE). */
const KIND_BUF_CMD = 4;
/** UBLK_F_INTEGRITY: a WRITE's metadata read from /dev/ublkcN. */
const KIND_INTEGRITY_IN = 5;
/** UBLK_F_INTEGRITY: a READ's metadata written to /dev/ublkcN, linked before its data and commit. */
const KIND_INTEGRITY_OUT = 6;
/** The blocking loop's yield timer (YieldTick). */
const KIND_TICK = 7;
// KIND_BATCH (8): batch-commands.ts.
const TAG_MASK = 0xffff;

// Per-tag state flags.
const TAG_CMD_INFLIGHT = 1; // a uring_cmd for this tag is owned by the kernel
const TAG_SERVING = 2; // the target owns a request for this tag
const TAG_DONE = 4; // aborted: the queue is going away
const TAG_LINKED = 8; // the in-flight commit waits behind this tag's copy to the char device
const TAG_REGISTERED = 16; // zero copy: the queue registered this request's buffer; unregister at commit

/** How long the blocking wait sleeps before giving the event loop a turn (messages, timers). */
const IDLE_YIELD_NS = 100_000_000;
/**
 * Busy wake-ups served back to back before the event loop gets a turn. Benchmark lever
 * (bench/NOTES.md): UBLK_TS_BATCHES_PER_YIELD.
 */
const BATCHES_PER_YIELD = Number(process.env.UBLK_TS_BATCHES_PER_YIELD ?? 64) || 64;
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
/** Benchmark lever (bench/NOTES.md): UBLK_TS_COPY_LINK=0 commits a READ on its copy's CQE instead. */
const COPY_LINK = process.env.UBLK_TS_COPY_LINK !== "0";
/** Benchmark lever (bench/NOTES.md): UBLK_TS_QUEUE_WAIT=event always waits through the event loop. */
const ALWAYS_EVENT_LOOP = process.env.UBLK_TS_QUEUE_WAIT === "event";
/** Benchmark lever (bench/NOTES.md): UBLK_TS_WAIT_TIMEOUT=1 bounds every wait by a timeout again. */
const TIMEOUT_PER_WAIT = process.env.UBLK_TS_WAIT_TIMEOUT === "1";
/** Benchmark aid (bench/NOTES.md): UBLK_TS_POLL_STATS=1 logs the poller's counters when the queue ends. */
const POLL_STATS = process.env.UBLK_TS_POLL_STATS === "1";
/** Default for QueueConfig.pollUs; UBLK_TS_POLL_US overrides it (a benchmark lever, bench/NOTES.md). */
const DEFAULT_POLL_US = Math.max(0, Number(process.env.UBLK_TS_POLL_US ?? 500) || 0);

export interface QueueConfig {
  devId: number;
  qid: number;
  depth: number;
  /** Bytes of each tag's buffer (the device's max_io_buf_bytes). */
  bufSize: number;
  /** --auto_zc_fallback: when the driver cannot register a buffer, it hands the request over to register. */
  autoBufRegFallback?: boolean;
  /** fd of /dev/ublkcN. */
  charFd: number;
  /** UBLK_F_* the driver granted. */
  flags: number;
  /** UBLK_F_INTEGRITY: the device's metadata format. */
  integrity?: IntegrityLayout;
  /** UBLK_F_SHMEM_ZC: the daemon's table of registered shared regions (shmem-zc.ts). */
  shmemTable?: SharedArrayBuffer;
  /**
   * UBLK_F_PER_IO_DAEMON: the tags of this queue this thread serves (ascending); the others belong
   * to other threads. Default: all of them.
   */
  tags?: number[];
  /**
   * Wait through the event loop (the ring's eventfd), never inside io_uring_enter: a thread hosting
   * several queues' loops must not block in one of them.
   */
  eventLoop?: boolean;
  /**
   * Adaptive polling (--poll_us): while requests keep arriving soon after each batch, the blocking
   * loop polls the ring for up to this many microseconds before it sleeps; a poll that finds nothing
   * backs off. 0 never polls. Default 500 (UBLK_TS_POLL_US).
   */
  pollUs?: number;
}

export class QueueLoop<S = unknown> implements QueueContext<S> {
  readonly ring: Ring;
  readonly devId: number;
  readonly qid: number;
  readonly depth: number;
  readonly flags: number;
  private readonly iods: ArrayBuffer;
  private readonly iodWords: Uint32Array;
  private readonly cmds: CmdSqeWriter;
  private readonly tick: YieldTick;
  private readonly requests: Request[] = [];
  private readonly tagState: Uint8Array;
  private readonly onSettled: ((res: number) => void)[] = [];
  private readonly onFailed: ((err: unknown) => void)[] = [];
  /** NEED_GET_DATA and user copy modes: buffers come from here when a request needs one, not one per tag. */
  readonly pool: BufferPool | null;
  /** UBLK_F_USER_COPY: data moves by reads and writes on the char device; commits carry no address. */
  private readonly userCopy: boolean;
  /** User copy: the pool buffer a tag's copy to the driver still reads from, until that copy's CQE. */
  private readonly copyOutBuffers: (PooledBuffer | null)[] = [];
  /** User copy without links (UBLK_TS_COPY_LINK=0): the commit result waiting for the copy's CQE. */
  private readonly commitAfterCopy: Int32Array;
  /** Zero copy (-z or --auto_zc): requests' pages are fixed buffers at slot = tag; no memory here. */
  private readonly zeroCopy: boolean;
  /** --auto_zc: the driver registers and unregisters the buffers; FETCH/COMMIT carry the slot. */
  private readonly autoBufReg: boolean;
  /** UBLK_F_INTEGRITY (with user copy): each request's metadata, moved beside its data. */
  private readonly integrity: QueueIntegrity | null;
  /** UBLK_F_BATCH_IO: tags come from one multishot fetch and results go back in batches. */
  private readonly batch: BatchCommands | null = null;
  /** --shmem_zc: requests whose data lies in a registered shared region are served from it. */
  private readonly shared: SharedRegions | null;
  /** The tags this loop serves (all of the queue's, or a per-IO daemon's share). */
  private readonly ownTags: number[];
  /** Waits only through the event loop (UBLK_TS_QUEUE_WAIT=event, or several loops on one thread). */
  private readonly eventOnly: boolean;
  private live = 0; // tags not yet aborted
  private flushScheduled = false;
  /** Target Promises not yet settled: while any is, the event loop drives wake-ups. */
  private asyncPending = 0;
  private inSyncLoop = false;
  private syncScheduled = false;
  private polling = false;
  /** Turns of the blocking loop (each ends in a yield to the event loop); for UBLK_TS_POLL_STATS. */
  private syncRuns = 0;
  /** Polling before the blocking wait (--poll_us). */
  private readonly poller: AdaptivePoll;
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
    this.zeroCopy = (cfg.flags & ZERO_COPY_FLAGS) !== 0;
    this.autoBufReg = (cfg.flags & U.UBLK_F_AUTO_BUF_REG) !== 0;
    this.shared = cfg.shmemTable ? new SharedRegions(cfg.shmemTable) : null;
    this.ownTags = cfg.tags ?? Array.from({ length: cfg.depth }, (_, tag) => tag);
    this.eventOnly = ALWAYS_EVENT_LOOP || cfg.eventLoop === true;
    this.poller = new AdaptivePoll(cfg.pollUs ?? DEFAULT_POLL_US);
    const served = this.ownTags.length;
    // Room for a command and a target operation per tag (zero copy: a buffer register and
    // unregister too), plus slack for multi-op targets.
    const perTag = this.zeroCopy ? 4 : cfg.integrity ? 3 : 2;
    const ringOptions = { entries: Math.max(8, perTag * served), cqEntries: Math.max(16, 4 * served) };
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
    this.iodWords = new Uint32Array(this.iods);
    this.cmds = new CmdSqeWriter(this.ring, cfg.charFd, cfg.qid);
    this.tick = new YieldTick(this.ring, IDLE_YIELD_NS, KIND_TICK << 16);
    this.tagState = new Uint8Array(cfg.depth);
    this.commitAfterCopy = new Int32Array(cfg.depth);
    this.userCopy = (cfg.flags & U.UBLK_F_USER_COPY) !== 0;
    this.integrity =
      this.userCopy && cfg.integrity
        ? new QueueIntegrity(cfg.integrity, cfg.depth, cfg.bufSize, cfg.charFd, cfg.qid)
        : null;
    const pooled = !this.zeroCopy && (this.userCopy || (cfg.flags & U.UBLK_F_NEED_GET_DATA) !== 0);
    this.pool = pooled ? new BufferPool(cfg.bufSize) : null;
    if (this.zeroCopy) this.ring.registerSparseBuffers(cfg.depth);
    // A buffer per tag served here (per-IO daemons: only this thread's share of the queue's tags).
    const buffers = pooled || this.zeroCopy ? null : native.allocBuffer(served * cfg.bufSize);
    const base = buffers ? native.bufferAddress(buffers) : 0;
    const slot = new Int32Array(cfg.depth).fill(-1);
    this.ownTags.forEach((tag, i) => {
      slot[tag] = i;
    });
    for (let tag = 0; tag < cfg.depth; tag++) {
      const at = slot[tag] * cfg.bufSize;
      const buf = buffers && at >= 0 ? new Uint8Array(buffers, at, cfg.bufSize) : NO_BUFFER;
      this.requests.push(new Request(cfg.qid, tag, buf, buffers && at >= 0 ? base + at : 0, pooled));
      this.copyOutBuffers.push(null);
      this.onSettled.push((res) => this.settleAsync(tag, res));
      this.onFailed.push((err) => this.settleAsync(tag, this.errorResult(err)));
    }
    if (cfg.flags & U.UBLK_F_BATCH_IO)
      this.batch = new BatchCommands(this.ring, cfg.charFd, cfg.qid, cfg.depth, {
        dispatch: (tag) => this.dispatch(tag),
        bufferAddress: (tag) => this.requests[tag].address,
        elementFlags: !this.zeroCopy
          ? U.UBLK_BATCH_F_HAS_BUF_ADDR
          : this.autoBufReg && cfg.autoBufRegFallback
            ? U.UBLK_BATCH_F_AUTO_BUF_REG_FALLBACK
            : 0,
        autoBufReg: this.autoBufReg,
        ended: () => this.batchEnded(),
        log: this.log,
      });
  }

  userData(tag: number, sub = 0): number {
    return ((sub & 0x7f) << 24) | (KIND_TARGET << 16) | tag;
  }

  /** Arms every tag with FETCH_REQ and starts serving on this thread's event loop. */
  async start(): Promise<void> {
    await this.target.initQueue?.(this);
    if (this.batch !== null) {
      this.batch.start(this.onCqe);
      this.live = 1; // until the fetch is gone and everything taken is committed
    } else {
      for (const tag of this.ownTags) this.sendCmd(tag, U.UBLK_U_IO_FETCH_REQ, 0, this.bufferAddr(tag));
      this.live = this.ownTags.length;
    }
    this.ring.submit();
    if (this.eventOnly) this.enterEventMode();
    else this.scheduleSync();
  }

  private scheduleSync(): void {
    if (this.syncScheduled || this.eventOnly) return;
    this.syncScheduled = true;
    setImmediate(this.runSync);
  }

  /** The blocking loop: submit what is ready, sleep in the kernel until the next CQE, serve it. */
  private runSync = (): void => {
    this.syncScheduled = false;
    this.syncRuns++;
    const ring = this.ring;
    if (ring.isClosed || this.asyncPending > 0 || this.live === 0) return;
    this.inSyncLoop = true;
    try {
      const tick = this.tick;
      for (let batch = 0; batch < BATCHES_PER_YIELD; batch++) {
        if (!TIMEOUT_PER_WAIT && !tick.armed) tick.arm();
        this.batch?.flush();
        // Batch commits post a CQE each as they are submitted: wait for one more than those.
        const owed = 1 + (this.batch?.cqesOwed ?? 0);
        const woke = this.poller.wait(ring, owed, TIMEOUT_PER_WAIT ? IDLE_YIELD_NS : 0);
        this.recycleBuffers();
        if (!woke && ring.ready === 0) break;
        ring.reap(this.onCqe);
        if (this.live === 0 || this.asyncPending > 0 || ring.isClosed) break;
        if (tick.fired) {
          tick.fired = false;
          break;
        }
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
    this.batch?.flush();
    this.ring.submit();
    if (this.ring.ready > 0) this.scheduleFlush();
  }

  private onWake = (): void => {
    // Reap, dispatch, then one enter for all commits; loop while the kernel has more for us.
    do {
      this.ring.reap(this.onCqe);
      this.batch?.flush();
      this.ring.submit();
      this.recycleBuffers();
    } while (this.ring.ready > 0);
    if (this.live === 0) this.finish();
  };

  private onCqe = (userData: number, res: number, flags: number): void => {
    const tag = userData & TAG_MASK;
    const kind = (userData >>> 16) & 0xff;
    if (kind === KIND_CMD) {
      const st = this.tagState[tag];
      this.tagState[tag] = st & ~(TAG_CMD_INFLIGHT | TAG_LINKED);
      if (st & TAG_LINKED && res === -ECANCELED) {
        // The copy to the driver failed, so the kernel never ran the commit linked to it: fail the IO.
        this.sendCmd(tag, U.UBLK_U_IO_COMMIT_AND_FETCH_REQ, -EIO, 0);
        if (!this.inSyncLoop) this.scheduleFlush();
      } else if (res === U.UBLK_IO_RES_OK) this.dispatch(tag);
      else if (res === U.UBLK_IO_RES_NEED_GET_DATA) {
        // The driver copies the WRITE's data into the memory this command names: the target's own
        // (writeDestination) or a buffer from the pool, taken only now.
        const req = this.requests[tag];
        req.decode(this.iodWords);
        if (req.flags & U.UBLK_IO_F_SHMEM_ZC) {
          // In shared memory the driver copies nothing, but it does put this addr in the descriptor:
          // give it back what names the region, for dispatch to read.
          this.sendCmd(tag, U.UBLK_U_IO_NEED_GET_DATA, 0, SharedRegions.encodedAddr(req, this.iodWords));
          return;
        }
        const dest = this.writeDestination(req);
        if (dest > 0) req.address = dest;
        else if (this.pool !== null && req.pooled === null) req.attach(this.pool.acquire());
        this.sendCmd(tag, U.UBLK_U_IO_NEED_GET_DATA, 0, req.address);
      } else this.retire(tag, res);
    } else if (kind === KIND_COPY_IN) {
      this.copiedIn(tag, res);
    } else if (kind === KIND_INTEGRITY_IN) {
      this.integrityCopiedIn(tag, res);
    } else if (kind === KIND_INTEGRITY_OUT) {
      if (res < 0 && this.errorsLogged++ < 5)
        this.log(`ublk${this.devId} queue ${this.qid}: tag ${tag} metadata copy-out: errno ${-res}`);
    } else if (kind === KIND_COPY_OUT) {
      // The kernel is done with the source; a failure already cancelled the linked commit.
      const buf = this.copyOutBuffers[tag];
      if (buf !== null) {
        this.copyOutBuffers[tag] = null;
        this.pool?.release(buf);
      }
      if (res < 0 && this.errorsLogged++ < 5)
        this.log(`ublk${this.devId} queue ${this.qid}: tag ${tag} copy to the driver failed: errno ${-res}`);
      if (!COPY_LINK) {
        this.sendCmd(tag, U.UBLK_U_IO_COMMIT_AND_FETCH_REQ, res < 0 ? -EIO : this.commitAfterCopy[tag], 0);
        if (!this.inSyncLoop) this.scheduleFlush();
      }
    } else if (kind === KIND_TICK) {
      this.tick.onCqe();
    } else if (kind === KIND_BATCH) {
      this.batch?.onCqe(userData, res, flags);
    } else if (kind === KIND_BUF_CMD) {
      if (this.errorsLogged++ < 5)
        this.log(`ublk${this.devId} queue ${this.qid}: tag ${tag} buffer (un)register failed: errno ${-res}`);
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

  /** The target's own memory for a WRITE's data (NEED_GET_DATA, user copy), or 0 for a pool buffer. */
  private writeDestination(req: Request): number {
    const hook = this.target.writeDestination;
    if (!hook || !dataFromDriver(req.op)) return 0;
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
    req.decode(this.iodWords);
    this.integrity?.attach(req);
    this.tagState[tag] |= TAG_SERVING;
    if (this.shared !== null && req.flags & U.UBLK_IO_F_SHMEM_ZC) {
      // The data is in a region the application shares with us: no copy, buffer or registration.
      req.bufIndex = -1;
      if (this.shared.attach(req, this.iodWords)) this.serve(req);
      else {
        if (this.errorsLogged++ < 5)
          this.log(`ublk${this.devId} queue ${this.qid}: tag ${tag} names no registered shared memory`);
        this.settle(tag, -EIO);
      }
      return;
    }
    if (this.userCopy && dataFromDriver(req.op) && req.length > 0) {
      // Fetch the data first: into the target's own memory, or a pool buffer.
      const dest = this.writeDestination(req);
      if (dest > 0) req.address = dest;
      else if (req.pooled === null) req.attach((this.pool as BufferPool).acquire());
      req.copied = 0;
      prepCopyIn(this.ring, this.cfg.charFd, req, (KIND_COPY_IN << 16) | tag);
      this.integrity?.startCopyIn(this.ring, req, (KIND_INTEGRITY_IN << 16) | tag);
      return;
    }
    if (this.pool !== null && req.pooled === null && (req.op === U.UBLK_IO_OP_READ || req.nrZones > 0))
      req.attach(this.pool.acquire());
    if (this.zeroCopy) {
      const data = hasData(req.op);
      req.bufIndex = data ? tag : -1;
      // -z registers every buffer itself; --auto_zc only those the driver could not (fallback).
      if (data && (!this.autoBufReg || req.flags & U.UBLK_IO_F_NEED_REG_BUF)) {
        prepBufferCmd(this.ring, this.cfg.charFd, true, this.qid, tag, (KIND_BUF_CMD << 16) | tag);
        this.tagState[tag] |= TAG_REGISTERED;
      }
    }
    this.serve(req);
  }

  /** User copy: `res` more bytes of the request's data arrived from the driver (or the copy failed). */
  private copiedIn(tag: number, res: number): void {
    if (!(this.tagState[tag] & TAG_SERVING)) return;
    const req = this.requests[tag];
    if (res <= 0) {
      this.settle(tag, res < 0 ? res : -EIO);
      return;
    }
    req.copied += res;
    if (req.copied < req.length) prepCopyIn(this.ring, this.cfg.charFd, req, (KIND_COPY_IN << 16) | tag);
    else if (!this.integrity?.awaiting(tag)) this.serve(req);
  }

  /** Integrity: `res` more bytes of a WRITE's metadata arrived; it is served once data and metadata are in. */
  private integrityCopiedIn(tag: number, res: number): void {
    if (!(this.tagState[tag] & TAG_SERVING)) return;
    const req = this.requests[tag];
    const integrity = this.integrity as QueueIntegrity;
    const done = integrity.copiedIn(this.ring, req, res, (KIND_INTEGRITY_IN << 16) | tag);
    if (done < 0) this.settle(tag, done);
    else if (done > 0 && req.copied >= req.length) this.serve(req);
  }

  private serve(req: Request): void {
    const tag = req.tag;
    let result: IoResult;
    try {
      result = route(this.target, req, this);
    } catch (err) {
      result = this.errorResult(err);
    }
    this.apply(tag, result);
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
    const shared = req.inRegion;
    // With a buffer per tag the commit names the tag's buffer (the next request's); with the pool
    // (NEED_GET_DATA) a READ's commit must name some memory, which the driver leaves alone for a
    // request in shared memory: the shared address itself.
    const sharedAddr = shared && this.pool !== null ? req.address : 0;
    req.leaveRegion();
    if (this.tagState[tag] & TAG_REGISTERED) {
      // The driver completes the request once the buffer is unregistered and the commit arrived.
      this.tagState[tag] &= ~TAG_REGISTERED;
      prepBufferCmd(this.ring, this.cfg.charFd, false, this.qid, tag, (KIND_BUF_CMD << 16) | tag);
    }
    if (this.batch !== null) this.batch.commit(tag, res);
    else if (this.userCopy) this.commitUserCopy(req, res, shared);
    else
      this.sendCmd(
        tag,
        U.UBLK_U_IO_COMMIT_AND_FETCH_REQ,
        res,
        this.zeroCopy ? this.bufferAddr(tag) : sharedAddr || req.address,
      );
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

  /**
   * User copy: a READ's (or REPORT_ZONES') data goes to the driver by a write on the char device, and
   * the commit is linked behind it, so both go out in the same batch without waiting for the copy.
   */
  private commitUserCopy(req: Request, res: number, shared: boolean): void {
    const tag = req.tag;
    let result = res;
    // The driver completes a REPORT_ZONES request by the bytes committed and requeues any it lacks; its
    // own buffer was zeroed and it trims a larger count to the request's size, so always say "all".
    if (req.nrZones > 0 && res >= 0) result = this.cfg.bufSize;
    if (res > 0 && dataToDriver(req.op) && !shared) {
      if (this.ring.space < 3) this.ring.submit(); // keep the copies and their commit in one submission
      // Metadata first: linked to the data's copy, which is linked to the commit.
      this.integrity?.prepCopyOut(this.ring, req, res, (KIND_INTEGRITY_OUT << 16) | tag);
      prepCopyOut(this.ring, this.cfg.charFd, req, res, (KIND_COPY_OUT << 16) | tag, COPY_LINK);
      const pooled = req.pooled;
      if (pooled !== null && req.address === pooled.address) {
        this.copyOutBuffers[tag] = pooled; // read by the copy until its CQE
        req.detach();
      }
      if (!COPY_LINK) {
        this.commitAfterCopy[tag] = result;
        return;
      }
      this.tagState[tag] |= TAG_LINKED;
    }
    const lba = req.op === U.UBLK_IO_OP_ZONE_APPEND && req.appendSector > 0 ? req.appendSector : 0;
    this.sendCmd(tag, U.UBLK_U_IO_COMMIT_AND_FETCH_REQ, result, lba);
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
    this.batch?.flush();
    if (this.ring.pending > 0) this.ring.submit();
    this.recycleBuffers();
    if (this.ring.ready > 0) this.onWake();
  };

  private recycleBuffers(): void {
    if (this.pool !== null && this.ring.pending === 0) this.pool.recycle();
  }

  /** FETCH/COMMIT addr: the tag's buffer, or with --auto_zc the buffer table slot to register into. */
  private bufferAddr(tag: number): number {
    if (this.autoBufReg) return autoRegAddr(tag, this.cfg.autoBufRegFallback === true);
    return this.requests[tag].address;
  }

  /** `addr`: the IO buffer, or with user copy 0 (or a ZONE_APPEND's sector, zone_append_lba). */
  private sendCmd(tag: number, cmdOp: number, result: number, addr: number): void {
    if (this.tagState[tag] & TAG_DONE || this.ring.isClosed) return;
    // UBLK_F_AUTO_BUF_REG takes its ublk_auto_buf_reg from the SQE's own addr field; the command's
    // addr must stay 0 (no buffer address without a buffer).
    if (this.autoBufReg) this.cmds.write(tag, cmdOp, result, 0, addr, (KIND_CMD << 16) | tag);
    else this.cmds.write(tag, cmdOp, result, addr, 0, (KIND_CMD << 16) | tag);
    this.tagState[tag] |= TAG_CMD_INFLIGHT;
  }

  /** Batch mode: the fetch ended for good and all that was taken is committed. */
  private batchEnded(): void {
    this.live = 0;
    if (!this.inSyncLoop) queueMicrotask(() => this.finish());
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
    if (POLL_STATS) {
      const st = this.poller.stats;
      this.log(
        `ublk${this.devId} queue ${this.qid}: ${st.waits} waits, ${st.polls} polls (${st.found} found), ` +
          `${st.sleeps} sleeps, ${this.syncRuns} turns of the blocking loop`,
      );
    }
    if (!this.ring.isClosed) {
      this.ring.unpoll();
      this.ring.close();
    }
    if (this.iods.byteLength > 0) native.munmapBuffer(this.iods);
    if (this.shared !== null && !this.shared.isClosed) {
      this.log(
        `ublk${this.devId} queue ${this.qid}: ${this.shared.served} requests served from shared memory`,
      );
      this.shared.close();
    }
    Promise.resolve(this.target.closeQueue?.(this))
      .catch((err) => this.log(`ublk${this.devId} queue ${this.qid}: closeQueue failed: ${err}`))
      .finally(() => this.resolveDone());
  }
}
