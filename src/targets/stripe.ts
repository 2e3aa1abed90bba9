// stripe: RAID-0 over 1 to 4 backing files or block devices, compatible with the kernel selftest
// server's stripe target (same option, same layout). The device is cut into chunks; chunk k lives in
// file k mod N, at chunk index floor(k / N) of that file.
//
// Any contiguous range of the device touches each file in one contiguous range (the chunks of one
// file in consecutive stripe rows sit back to back), so a request becomes at most one backing IO
// per file: a plain READ/WRITE when its part is one piece of the tag's buffer, READV/WRITEV over
// the pieces otherwise. All parts go on the queue's own ring; the request completes when all have.
import { closeSync } from "node:fs";
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { IORING_FSYNC_DATASYNC, RWF_DSYNC, SQE_OP_FLAGS } from "../uring/constants.js";
import { type BackingFile, openBacking } from "./backing.js";
import { parseSize } from "./size.js";
import { defineTarget, type IoRequest, QUEUED, type QueueContext, type TargetOptions } from "./target.js";

/** As the selftest server: at most four files. */
export const MAX_STRIPE_FILES = 4;
const DEFAULT_CHUNK = 64 * 1024;
const MIN_CHUNK = 4096;
const MAX_CHUNK = 512 * 1024;
const EIO = 5;
const IOV_BYTES = 16; // struct iovec: base, length

interface StripeState {
  fds: number[];
  chunk: number;
}

/** Per queue thread: where each tag's parts stand. Never cloned. */
class QueueParts {
  /** Backing IOs of the tag still in flight. */
  readonly pending: Uint8Array;
  /** First error of the tag's parts (0: none so far). */
  readonly result: Int32Array;
  /** Bytes each part must transfer: [tag * MAX_STRIPE_FILES + file]. */
  readonly expect: Float64Array;
  /** iovec arrays, `perFile` entries per file per tag; allocated at the first request. */
  iov: DataView | null = null;
  iovBase = 0;
  perFile = 0;
  maxBytes = 0;
  // Scratch for the split of one request, per file.
  readonly count = new Uint32Array(MAX_STRIPE_FILES);
  readonly fileOffset = new Float64Array(MAX_STRIPE_FILES);
  readonly firstAddr = new Float64Array(MAX_STRIPE_FILES);

  constructor(
    readonly depth: number,
    readonly files: number,
    readonly chunk: number,
  ) {
    this.pending = new Uint8Array(depth);
    this.result = new Int32Array(depth);
    this.expect = new Float64Array(depth * MAX_STRIPE_FILES);
  }

  /** Room for the largest request: every tag buffer has the same size (max_io_buf_bytes). */
  allocIov(maxBytes: number): void {
    this.maxBytes = maxBytes;
    const pieces = Math.ceil(maxBytes / this.chunk) + 1;
    this.perFile = Math.ceil(pieces / this.files) + 1;
    const mem = native.allocBuffer(this.depth * this.files * this.perFile * IOV_BYTES);
    this.iov = new DataView(mem);
    this.iovBase = native.bufferAddress(mem);
  }
}

const queues = new WeakMap<QueueContext<StripeState>, QueueParts>();

function parseChunk(value: TargetOptions[string]): number {
  if (value === undefined) return DEFAULT_CHUNK;
  const chunk = parseSize(value as string, "--chunk_size");
  if (chunk < MIN_CHUNK || chunk > MAX_CHUNK || (chunk & (chunk - 1)) !== 0)
    throw new Error(`stripe --chunk_size ${value} must be a power of two from 4K to 512K (default 64K)`);
  return chunk;
}
function fileList(options: TargetOptions): string[] {
  const files = options.files ?? options.file;
  const list = Array.isArray(files) ? [...files] : typeof files === "string" && files !== "" ? [files] : [];
  if (list.length === 0)
    throw new Error(
      "stripe needs 1 to 4 backing files: ublk add -t stripe [--chunk_size N] FILE1 [FILE2 ...]",
    );
  if (list.length > MAX_STRIPE_FILES)
    throw new Error(`stripe takes at most ${MAX_STRIPE_FILES} backing files, not ${list.length}`);
  return list;
}

/** Splits a READ or WRITE into one backing IO per file and submits them. */
function submitParts(req: IoRequest, ctx: QueueContext<StripeState>, write: boolean): typeof QUEUED | number {
  const q = queues.get(ctx) as QueueParts;
  if (q.iov === null) q.allocIov(Math.max(req.buffer.length, req.length));
  const iov = q.iov as DataView;
  const { chunk, files } = q;
  const tag = req.tag;
  const end = req.offset + req.length;
  if (req.length > q.maxBytes) return -EIO; // larger than any tag buffer: cannot happen
  q.count.fill(0);
  let off = req.offset;
  let addr = req.address;
  while (off < end) {
    const index = Math.floor(off / chunk);
    const within = off - index * chunk;
    const len = Math.min(chunk - within, end - off);
    const file = index % files;
    const n = q.count[file]++;
    if (n === 0) {
      q.fileOffset[file] = ((index - file) / files) * chunk + within;
      q.firstAddr[file] = addr;
      q.expect[tag * MAX_STRIPE_FILES + file] = 0;
    }
    q.expect[tag * MAX_STRIPE_FILES + file] += len;
    const slot = ((tag * files + file) * q.perFile + n) * IOV_BYTES;
    iov.setUint32(slot, addr >>> 0, true);
    iov.setUint32(slot + 4, Math.floor(addr / 0x100000000), true);
    iov.setUint32(slot + 8, len, true);
    iov.setUint32(slot + 12, 0, true);
    off += len;
    addr += len;
  }
  const ring = ctx.ring;
  const fds = ctx.state.fds;
  const fua = write && (req.flags & U.UBLK_IO_F_FUA) !== 0;
  let parts = 0;
  for (let file = 0; file < files; file++) {
    const n = q.count[file];
    if (n === 0) continue;
    const sqe = ring.sqeOrSubmit();
    const ud = ctx.userData(tag, file);
    const at = q.fileOffset[file];
    const bytes = q.expect[tag * MAX_STRIPE_FILES + file];
    const vec = q.iovBase + (tag * files + file) * q.perFile * IOV_BYTES;
    if (n === 1) {
      if (write) ring.prepWrite(sqe, fds[file], q.firstAddr[file], bytes, at, ud);
      else ring.prepRead(sqe, fds[file], q.firstAddr[file], bytes, at, ud);
    } else if (write) ring.prepWritev(sqe, fds[file], vec, n, at, ud);
    else ring.prepReadv(sqe, fds[file], vec, n, at, ud);
    // FUA: each part must be durable before the request completes.
    if (fua) ring.sqeView.setUint32(sqe + SQE_OP_FLAGS, RWF_DSYNC, true);
    parts++;
  }
  q.pending[tag] = parts;
  q.result[tag] = 0;
  return QUEUED;
}

const closeAll = (files: BackingFile[]) => {
  for (const f of files) closeSync(f.fd);
};

export default defineTarget<StripeState>({
  name: "stripe",

  open(options) {
    const paths = fileList(options);
    const chunk = parseChunk(options.chunk_size);
    const files: BackingFile[] = [];
    try {
      for (const path of paths) files.push(openBacking(path, Boolean(options.buffered_io)));
    } catch (err) {
      closeAll(files);
      throw err;
    }
    // Each file holds whole chunks only; RAID-0 needs them all the same size (as kublk refuses).
    const usable = files.map((f) => f.size - (f.size % chunk));
    const problem =
      usable[0] === 0
        ? `backing file ${paths[0]} is smaller than one ${chunk}-byte chunk`
        : usable.findIndex((u) => u !== usable[0]) >= 0
          ? `stripe backing files must be the same size in whole ${chunk}-byte chunks: ${paths
              .map((p, i) => `${p} has ${usable[i]}`)
              .join(", ")}`
          : null;
    if (problem !== null) {
      closeAll(files);
      throw new Error(problem);
    }
    const logical = Math.max(...files.map((f) => f.logical));
    const physical = Math.max(4096, ...files.map((f) => f.physical));
    return {
      size: usable[0] * files.length,
      state: { fds: files.map((f) => f.fd), chunk },
      params: {
        logicalBlockSize: logical,
        physicalBlockSize: physical,
        // As md RAID-0 advertises: a chunk is the least worth sending, a full stripe row the best.
        // (ublk carries these as powers of two: with three files there is no optimal size to give.)
        ioMin: chunk,
        ioOpt: files.length === 3 ? 0 : chunk * files.length,
        // A write cache in front of the files: flushes reach the target and go to every file.
        volatileCache: true,
        discard: null,
      },
      description: {
        files: paths.join(","),
        chunk_size: chunk,
        direct: files.every((f) => f.direct),
        inline: files.every((f) => f.inline),
      },
    };
  },

  close(setup) {
    for (const fd of setup.state.fds) closeSync(fd);
  },

  initQueue(ctx) {
    queues.set(ctx, new QueueParts(ctx.depth, ctx.state.fds.length, ctx.state.chunk));
  },

  read: (req, ctx) => submitParts(req, ctx, false),
  write: (req, ctx) => submitParts(req, ctx, true),

  flush(req, ctx) {
    const q = queues.get(ctx) as QueueParts;
    const ring = ctx.ring;
    const fds = ctx.state.fds;
    for (let file = 0; file < fds.length; file++)
      ring.prepFsync(ring.sqeOrSubmit(), fds[file], IORING_FSYNC_DATASYNC, ctx.userData(req.tag, file));
    q.pending[req.tag] = fds.length;
    q.result[req.tag] = 0;
    return QUEUED;
  },

  complete(req, res, file, ctx) {
    const q = queues.get(ctx) as QueueParts;
    const tag = req.tag;
    // A part that failed, or moved fewer bytes than asked (as kublk: no retry of a short part).
    const bad =
      res < 0
        ? res
        : req.op !== U.UBLK_IO_OP_FLUSH && res !== q.expect[tag * MAX_STRIPE_FILES + file]
          ? -EIO
          : 0;
    if (bad !== 0 && q.result[tag] === 0) q.result[tag] = bad;
    if (--q.pending[tag] > 0) return QUEUED;
    if (q.result[tag] !== 0) return q.result[tag];
    return req.op === U.UBLK_IO_OP_FLUSH ? 0 : req.length;
  },
});
