// The qcow2 target: a QEMU qcow2 image (version 2 or 3, with its backing chain) as a ublk disk.
//
// Reads and writes of allocated clusters are io_uring operations on the queue's ring, straight into
// and out of the tag's buffer, one per run of contiguous host clusters. Zeros and compressed clusters
// are filled in memory. A write that needs a new cluster (first write, copy-on-write from a backing
// file or compressed cluster) and discard change metadata: they run synchronously (pread/pwrite)
// under a lock that all queue threads share, so every metadata change is serialised and ordered on
// disk (see update.ts). Metadata reads on a cache miss are synchronous too: one cluster each.
import * as U from "../../uapi/ublk_cmd.js";
import { IORING_FSYNC_DATASYNC, RWF_DSYNC, SQE_OP_FLAGS } from "../../uring/constants.js";
import { defineTarget, type IoRequest, QUEUED, type QueueContext } from "../target.js";
import { DATA, Entry, Layer, type LayerInfo } from "./layer.js";
import { Extents, Mapper } from "./map.js";
import { closeChain, openChain } from "./open.js";
import { createShared, SharedMeta } from "./shared.js";
import { Updater } from "./update.js";

interface Qcow2State {
  layers: LayerInfo[];
  readOnly: boolean;
  shared: SharedArrayBuffer;
}

const EROFS = 30;
const EIO = 5;
/** Ring operations per request (sub ids 0..MAX_EXTENTS-1); more extents are read with pread. */
const MAX_EXTENTS = 64;
const SUB_FLUSH = 127;

/** A queue thread's view of the image. */
class QueueImage {
  readonly top: Layer;
  readonly mapper = new Mapper();
  readonly updater: Updater | null;
  readonly extents = new Extents(MAX_EXTENTS);
  private readonly entry = new Entry();
  // Per tag: ring operations still in flight, the result so far, and each operation's extent.
  readonly inflight: Int32Array;
  readonly result: Int32Array;
  readonly opBufOff: Float64Array;
  readonly opLen: Float64Array;
  // Clusters of the current write that need an update: guest cluster, offset in it, buffer offset, length.
  private readonly pending: Float64Array;

  constructor(state: Qcow2State, depth: number) {
    let backing: Layer | null = null;
    for (let i = state.layers.length - 1; i >= 1; i--) backing = new Layer(state.layers[i], backing, null);
    const shared = state.readOnly ? null : new SharedMeta(state.shared);
    this.top = new Layer(state.layers[0], backing, shared);
    this.updater = shared ? new Updater(this.top, this.mapper) : null;
    this.inflight = new Int32Array(depth);
    this.result = new Int32Array(depth);
    this.opBufOff = new Float64Array(depth * MAX_EXTENTS);
    this.opLen = new Float64Array(depth * MAX_EXTENTS);
    this.pending = new Float64Array(4 * 1024);
  }

  /** Submits the extents as ring operations for `req`; returns the request's result or QUEUED. */
  submit(req: IoRequest, ctx: QueueContext<Qcow2State>, write: boolean): number | typeof QUEUED {
    const ex = this.extents;
    const n = ex.count;
    if (n === 0) return req.length;
    const ring = ctx.ring;
    const fua = write && (req.flags & U.UBLK_IO_F_FUA) !== 0;
    const base = req.tag * MAX_EXTENTS;
    for (let i = 0; i < n; i++) {
      const off = ring.sqeOrSubmit();
      const bufOff = ex.bufOff[i];
      const ud = ctx.userData(req.tag, i);
      if (write) ring.prepWrite(off, ex.fd[i], req.address + bufOff, ex.len[i], ex.pos[i], ud);
      else ring.prepRead(off, ex.fd[i], req.address + bufOff, ex.len[i], ex.pos[i], ud);
      if (fua) ring.sqeView.setUint32(off + SQE_OP_FLAGS, RWF_DSYNC, true);
      this.opBufOff[base + i] = bufOff;
      this.opLen[base + i] = ex.len[i];
    }
    ex.count = 0;
    this.inflight[req.tag] = n;
    this.result[req.tag] = req.length;
    return QUEUED;
  }

  read(req: IoRequest, ctx: QueueContext<Qcow2State>): number | typeof QUEUED {
    this.top.revalidate();
    this.mapper.map(this.top, req.offset, req.length, req.buffer, 0, this.extents);
    return this.submit(req, ctx, false);
  }

  write(req: IoRequest, ctx: QueueContext<Qcow2State>): number | typeof QUEUED {
    const updater = this.updater;
    if (updater === null) return -EROFS;
    const top = this.top;
    top.revalidate();
    const cs = top.clusterSize;
    const e = this.entry;
    const ex = this.extents;
    let nPending = 0;
    let offset = req.offset;
    let bufOff = 0;
    let left = req.length;
    while (left > 0) {
      const gc = Math.floor(offset / cs);
      const inCluster = offset - gc * cs;
      const n = Math.min(left, cs - inCluster);
      top.lookup(gc, e);
      if (e.kind === DATA && e.copied) {
        if (!ex.add(top.fd, e.host + inCluster, bufOff, n)) return this.writeAllSync(req);
      } else {
        const p = nPending * 4;
        if (p + 4 > this.pending.length) return this.writeAllSync(req);
        this.pending[p] = gc;
        this.pending[p + 1] = inCluster;
        this.pending[p + 2] = bufOff;
        this.pending[p + 3] = n;
        nPending++;
      }
      offset += n;
      bufOff += n;
      left -= n;
    }
    if (nPending > 0) {
      const pend = this.pending;
      updater.locked(() => {
        for (let i = 0; i < nPending * 4; i += 4)
          updater.writeCluster(pend[i], pend[i + 1], req.buffer, pend[i + 2], pend[i + 3]);
      });
      if (req.flags & U.UBLK_IO_F_FUA) updater.sync();
    }
    return this.submit(req, ctx, true);
  }

  /** A request with more pieces than fit the lists: every cluster written under the lock. */
  private writeAllSync(req: IoRequest): number {
    this.extents.count = 0;
    const updater = this.updater as Updater;
    const cs = this.top.clusterSize;
    updater.locked(() => {
      let offset = req.offset;
      let bufOff = 0;
      let left = req.length;
      while (left > 0) {
        const gc = Math.floor(offset / cs);
        const inCluster = offset - gc * cs;
        const n = Math.min(left, cs - inCluster);
        updater.writeCluster(gc, inCluster, req.buffer, bufOff, n);
        offset += n;
        bufOff += n;
        left -= n;
      }
    });
    if (req.flags & U.UBLK_IO_F_FUA) updater.sync();
    return req.length;
  }
}

/** Queue threads' images, by queue (ctx is the queue itself). */
const images = new WeakMap<object, QueueImage>();

function imageOf(ctx: QueueContext<Qcow2State>): QueueImage {
  let img = images.get(ctx);
  if (img === undefined) {
    img = new QueueImage(ctx.state, ctx.depth);
    images.set(ctx, img);
  }
  return img;
}

export default defineTarget<Qcow2State>({
  name: "qcow2",

  open(options) {
    const path = options.file;
    if (typeof path !== "string" || path === "")
      throw new Error("qcow2 needs an image: ublk add -t qcow2 FILE.qcow2 (or -f FILE)");
    const chain = openChain(path);
    const top = chain.layers[0];
    const header = top.header;
    if (header === null) throw new Error(`${path} is not a qcow2 image`);
    const size = header.size - (header.size % 512);
    if (size <= 0) {
      closeChain(chain.layers);
      throw new Error(`${path}: the image's disk size is smaller than one 512-byte block`);
    }
    const clusterSize = 2 ** header.clusterBits;
    const backingChain = chain.layers
      .slice(1)
      .map((l) => `${l.path} (${l.raw ? "raw" : "qcow2"})`)
      .join(" <- ");
    return {
      size,
      state: { layers: chain.layers, readOnly: chain.readOnly, shared: createShared() },
      params: {
        logicalBlockSize: 512,
        physicalBlockSize: Math.min(4096, clusterSize),
        readOnly: chain.readOnly,
        // Discard frees whole clusters. No write-zeroes: the kernel then writes zeros itself.
        discard: chain.readOnly
          ? null
          : {
              granularity: clusterSize,
              alignment: 0,
              maxSectors: 0xffffffff >>> 9,
              maxWriteZeroesSectors: 0,
              maxSegments: 1,
            },
      },
      description: {
        file: path,
        version: header.version,
        cluster_size: clusterSize,
        refcount_bits: 2 ** header.refcountOrder,
        ...(chain.layers.length > 1 ? { backing: backingChain } : {}),
        read_only: chain.readOnly,
      },
    };
  },

  close(setup) {
    closeChain(setup.state.layers);
  },

  initQueue(ctx) {
    imageOf(ctx);
  },

  read(req, ctx) {
    return imageOf(ctx).read(req, ctx);
  },

  write(req, ctx) {
    return imageOf(ctx).write(req, ctx);
  },

  flush(req, ctx) {
    const ring = ctx.ring;
    const fd = ctx.state.layers[0].fd;
    ring.prepFsync(ring.sqeOrSubmit(), fd, IORING_FSYNC_DATASYNC, ctx.userData(req.tag, SUB_FLUSH));
    return QUEUED;
  },

  discard(req, ctx) {
    const img = imageOf(ctx);
    if (img.updater === null) return -EROFS;
    const updater = img.updater;
    updater.locked(() => updater.discard(req.offset, req.length));
    return 0;
  },

  complete(req, res, sub, ctx) {
    if (sub === SUB_FLUSH) return res;
    const img = imageOf(ctx);
    const tag = req.tag;
    const i = tag * MAX_EXTENTS + sub;
    const len = img.opLen[i];
    if (res < 0) {
      if (img.result[tag] >= 0) img.result[tag] = res;
    } else if (res < len) {
      // A read past the end of a file (a short last cluster) reads zeros; a short write is an error.
      if (req.op === U.UBLK_IO_OP_READ) req.buffer.fill(0, img.opBufOff[i] + res, img.opBufOff[i] + len);
      else if (img.result[tag] >= 0) img.result[tag] = -EIO;
    }
    if (--img.inflight[tag] > 0) return QUEUED;
    return img.result[tag];
  },
});
