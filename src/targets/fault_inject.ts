// fault_inject: a disk that misbehaves on purpose, for testing software against bad hardware.
// Compatible with the kernel selftest server's fault_inject (a null device that delays every IO by
// --delay_us), and more: IO errors at a rate or on a sector range, a tail of slow IOs, a daemon that
// dies after N requests (recovery tests), optionally over a backing file, all from a seeded generator
// so a run repeats.
//
// Nothing blocks the queue thread: a delay is an io_uring TIMEOUT on the queue's ring, and the
// request is failed or served when it fires. Backing IO, when there is a file, goes on the ring too.
import { closeSync } from "node:fs";
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { IORING_FSYNC_DATASYNC, RWF_DSYNC, SQE_OP_FLAGS } from "../uring/constants.js";
import { openBacking } from "./backing.js";
import { parseSize } from "./size.js";
import {
  defineTarget,
  type IoRequest,
  type IoResult,
  QUEUED,
  type QueueContext,
  type TargetOptions,
} from "./target.js";

const EIO = 5;
const SUB_IO = 0;
const SUB_DELAY = 1;

interface FaultState {
  /** Backing file, or -1 for a null device (reads return whatever the buffer holds). */
  fd: number;
  delayNs: number;
  slowNs: number;
  errorRate: number;
  slowRate: number;
  /** Failing sector range [errorFirst, errorLast], or errorFirst -1 for none. */
  errorFirst: number;
  errorLast: number;
  /** The daemon kills itself when request dieAfter + 1 arrives (0: never). */
  dieAfter: number;
  seed: number;
  /** Requests seen by all queues of this daemon. */
  seen: Int32Array;
}

/** Per queue thread: its random sequence, each tag's verdict and its timer's timespec. */
class QueueFaults {
  private x: number;
  readonly fail: Uint8Array;
  readonly ts: DataView;
  readonly tsBase: number;
  constructor(seed: number, qid: number, depth: number) {
    // xorshift32 needs a non-zero state; mix the queue in so queues draw different sequences.
    this.x = (Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(qid + 1, 0x85ebca6b)) >>> 0 || 1;
    this.fail = new Uint8Array(depth);
    const mem = native.allocBuffer(depth * 16);
    this.ts = new DataView(mem);
    this.tsBase = native.bufferAddress(mem);
  }
  /** Uniform in [0, 1). */
  random(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x / 4294967296;
  }
}

const queues = new WeakMap<QueueContext<FaultState>, QueueFaults>();

function num(options: TargetOptions, key: string, min: number, max: number, integer: boolean): number {
  const raw = options[key];
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (
    typeof raw === "boolean" ||
    Array.isArray(raw) ||
    !Number.isFinite(n) ||
    n < min ||
    n > max ||
    (integer && !Number.isInteger(n))
  )
    throw new Error(
      `fault_inject --${key} ${raw}: expected ${integer ? "an integer" : "a number"} from ${min} to ${max}`,
    );
  return n;
}

function sectorRange(value: TargetOptions[string]): [number, number] {
  if (value === undefined) return [-1, -1];
  const m = /^(\d+)-(\d+)$/.exec(String(value));
  if (!m || Number(m[1]) > Number(m[2]))
    throw new Error(
      `fault_inject --error_sectors ${value}: expected FIRST-LAST in 512-byte sectors (e.g. 2048-2055)`,
    );
  return [Number(m[1]), Number(m[2])];
}

/** The backing IO for a request (or its null answer). */
function serve(req: IoRequest, ctx: QueueContext<FaultState>): IoResult {
  const fd = ctx.state.fd;
  const op = req.op;
  if (fd < 0) return op === U.UBLK_IO_OP_READ || op === U.UBLK_IO_OP_WRITE ? req.length : 0;
  const ring = ctx.ring;
  const sqe = ring.sqeOrSubmit();
  const ud = ctx.userData(req.tag, SUB_IO);
  if (op === U.UBLK_IO_OP_READ) ring.prepRead(sqe, fd, req.address, req.length, req.offset, ud);
  else if (op === U.UBLK_IO_OP_WRITE) {
    ring.prepWrite(sqe, fd, req.address, req.length, req.offset, ud);
    if (req.flags & U.UBLK_IO_F_FUA) ring.sqeView.setUint32(sqe + SQE_OP_FLAGS, RWF_DSYNC, true);
  } else ring.prepFsync(sqe, fd, IORING_FSYNC_DATASYNC, ud);
  return QUEUED;
}

/** Every request comes through here: maybe die, decide its fate, maybe wait, then fail or serve. */
function handle(req: IoRequest, ctx: QueueContext<FaultState>): IoResult {
  const st = ctx.state;
  if (st.dieAfter > 0 && Atomics.add(st.seen, 0, 1) >= st.dieAfter) {
    // A crash, not an exit: no cleanup, requests in flight stay with the driver (reissued with -i 1).
    process.kill(process.pid, "SIGKILL");
    return QUEUED;
  }
  const q = queues.get(ctx) as QueueFaults;
  const data = req.op === U.UBLK_IO_OP_READ || req.op === U.UBLK_IO_OP_WRITE;
  let fail = false;
  if (data && st.errorFirst >= 0) {
    const first = req.offset / 512;
    const last = first + req.length / 512 - 1;
    fail = first <= st.errorLast && last >= st.errorFirst;
  }
  if (data && st.errorRate > 0 && q.random() < st.errorRate) fail = true;
  let delay = st.delayNs;
  if (st.slowRate > 0 && q.random() < st.slowRate) delay += st.slowNs;
  if (delay === 0) return fail ? -EIO : serve(req, ctx);
  q.fail[req.tag] = fail ? 1 : 0;
  const slot = req.tag * 16;
  q.ts.setUint32(slot, Math.floor(delay / 1e9), true);
  q.ts.setUint32(slot + 4, 0, true);
  q.ts.setUint32(slot + 8, delay % 1e9, true);
  q.ts.setUint32(slot + 12, 0, true);
  ctx.ring.prepTimeout(ctx.ring.sqeOrSubmit(), q.tsBase + slot, ctx.userData(req.tag, SUB_DELAY));
  return QUEUED;
}

export default defineTarget<FaultState>({
  name: "fault_inject",

  open(options) {
    const delayUs = num(options, "delay_us", 0, 60_000_000, true);
    const slowUs = num(options, "slow_us", 0, 60_000_000, true);
    const errorRate = num(options, "error_rate", 0, 1, false);
    const slowRate = num(options, "slow_rate", 0, 1, false);
    const dieAfter = num(options, "die_after", 0, 2 ** 31 - 1, true);
    const [errorFirst, errorLast] = sectorRange(options.error_sectors);
    if (slowRate > 0 && slowUs === 0)
      throw new Error("fault_inject --slow_rate needs --slow_us (the extra latency)");
    const seed =
      options.seed === undefined
        ? (Math.random() * 2 ** 32) >>> 0
        : num(options, "seed", 0, 2 ** 32 - 1, true);
    const path = typeof options.file === "string" && options.file !== "" ? options.file : null;
    if (path !== null && options.size !== undefined)
      throw new Error("fault_inject takes --size or a backing file, not both");
    const backing = path === null ? null : openBacking(path, Boolean(options.buffered_io));
    const size =
      backing?.size ?? (options.size === undefined ? 250 * 2 ** 30 : parseSize(options.size, "size"));
    if (errorFirst >= 0 && errorFirst * 512 >= size) {
      if (backing) closeSync(backing.fd);
      throw new Error(
        `fault_inject --error_sectors ${options.error_sectors} lies past the end of the ${size}-byte device`,
      );
    }
    const state: FaultState = {
      fd: backing?.fd ?? -1,
      delayNs: delayUs * 1000,
      slowNs: slowUs * 1000,
      errorRate,
      slowRate,
      errorFirst,
      errorLast,
      dieAfter,
      seed,
      seen: new Int32Array(new SharedArrayBuffer(4)),
    };
    const description: Record<string, string | number | boolean> = {
      file: path ?? "none (null)",
      size,
      seed,
    };
    if (delayUs) description.delay_us = delayUs;
    if (errorRate) description.error_rate = errorRate;
    if (errorFirst >= 0) description.error_sectors = `${errorFirst}-${errorLast}`;
    if (slowRate) {
      description.slow_rate = slowRate;
      description.slow_us = slowUs;
    }
    if (dieAfter) description.die_after = dieAfter;
    return {
      size,
      state,
      params: {
        logicalBlockSize: backing?.logical ?? 512,
        physicalBlockSize: backing?.physical ?? 4096,
        discard: null,
      },
      description,
    };
  },

  // As kublk's fault_inject: integrity metadata is accepted and dropped (reads return 0xFF: unchecked).
  openIntegrity: () => {},

  close(setup) {
    if (setup.state.fd >= 0) closeSync(setup.state.fd);
  },

  initQueue(ctx) {
    queues.set(ctx, new QueueFaults(ctx.state.seed, ctx.qid, ctx.depth));
  },

  read: handle,
  write: handle,
  flush: handle,

  complete(req, res, sub, ctx) {
    if (sub === SUB_DELAY) return (queues.get(ctx) as QueueFaults).fail[req.tag] ? -EIO : serve(req, ctx);
    // The backing IO: bytes for READ/WRITE; a short one makes the driver retry the rest.
    return req.op === U.UBLK_IO_OP_FLUSH && res > 0 ? 0 : res;
  },
});
