// loop: a file or block device as a ublk disk, like the kernel's loop driver. Every request becomes
// one io_uring operation on the queue's own ring, reading and writing straight into the tag's buffer
// (no thread pool, no extra copy). O_DIRECT when the backing file allows it.
//
// A backing file in memory (tmpfs, ramfs) is served without waiting on anything, so two shortcuts
// apply there: io_uring runs its IO inline (see inlineIoFlags in backing.ts), and while the file has no holes,
// reads and writes need no IO at all: the file is mapped, and the driver copies a READ's data straight
// from the mapping and a WRITE's data straight into it (NEED_GET_DATA, serveFrom, writeDestination):
// one copy instead of two, as the kernel loop driver does.
import { closeSync, fstatSync, ftruncateSync, openSync, readSync } from "node:fs";
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  IORING_FSYNC_DATASYNC,
  RWF_DSYNC,
  SQE_OP_FLAGS,
} from "../uring/constants.js";
import { openBacking } from "./backing.js";
import {
  growMetadataFile,
  type MetadataFile,
  MetadataIo,
  metadataPath,
  openMetadataFile,
} from "./loop-metadata.js";
import { defineTarget, type IoRequest, QUEUED, type QueueContext } from "./target.js";

interface LoopState {
  fd: number;
  path: string;
  direct: boolean;
  /** Address of the whole file mapped shared, or 0 when all IO goes through io_uring. */
  mapAddr: number;
  /**
   * Set once any queue punches a hole. Touching a hole through the mapping allocates a page, which
   * can fail when the filesystem is full (and the 6.12 driver retries such a copy forever); from
   * then on all IO goes through io_uring, which reads holes as zeros and reports ENOSPC. Shared by
   * all queue threads.
   */
  holes: Int32Array;
  /** --metadata_file, or the kublk-style second FILE (integrity metadata). */
  metadataPath?: string;
  /** Integrity (openIntegrity): the metadata's file; null without integrity. */
  meta: MetadataFile | null;
}

/** Main thread: the mappings to release in close() (never cloned into the queue threads). */
const mappings = new WeakMap<LoopState, ArrayBuffer>();

const EOPNOTSUPP = 95;
const SUB_ZERO_RANGE = 1;
const SUB_PUNCH = 2;
/** The metadata file's half of a READ, WRITE or FLUSH (integrity). */
const SUB_METADATA = 3;

/** Per queue thread, with integrity: joins each request's data and metadata IO. */
const metadataIo = new WeakMap<QueueContext<LoopState>, MetadataIo>();

/**
 * Where the request's bytes sit in the mapped file, or 0 when its IO must go through io_uring (no
 * mapping, or a hole may exist). Callers run only in NEED_GET_DATA mode, which the mapping asks for,
 * or user copy mode, where the queue copies between the char device and this address.
 */
function mappedAddress(req: IoRequest, ctx: QueueContext<LoopState>): number {
  const st = ctx.state;
  return st.mapAddr !== 0 && Atomics.load(st.holes, 0) === 0 ? st.mapAddr + req.offset : 0;
}

function fallocate(ctx: QueueContext<LoopState>, req: IoRequest, mode: number, sub: number): typeof QUEUED {
  if (mode & FALLOC_FL_PUNCH_HOLE) Atomics.store(ctx.state.holes, 0, 1);
  const ring = ctx.ring;
  ring.prepFallocate(
    ring.sqeOrSubmit(),
    ctx.state.fd,
    mode,
    req.offset,
    req.length,
    ctx.userData(req.tag, sub),
  );
  return QUEUED;
}

/** Shrinking may only drop zeros: throws naming the first byte of data in [from, to). */
function refuseShrinkOverData(path: string, from: number, to: number): void {
  const fd = openSync(path, "r");
  const buf = Buffer.alloc(1 << 20);
  try {
    for (let off = from; off < to; ) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, to - off), off);
      if (n <= 0) break;
      const at = buf.subarray(0, n).findIndex((b) => b !== 0);
      if (at >= 0)
        throw new Error(`refusing to shrink ${path} to ${from} bytes: it holds data at byte ${off + at}`);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
}

export default defineTarget<LoopState>({
  name: "loop",
  zeroCopy: true,
  // A request in shared memory is read and written through io_uring, never through the mapping.
  shmemZeroCopy: true,

  open(options) {
    const path = options.file;
    if (typeof path !== "string" || path === "") {
      throw new Error("loop needs a backing file: ublk add -t loop FILE (or -f FILE)");
    }
    const backing = openBacking(path, Boolean(options.buffered_io));
    const { fd, size, logical, physical, direct, inline } = backing;
    // Serve IO through a mapping only for an in-memory file without holes (every page allocated):
    // then touching the mapping allocates nothing, waits for nothing and cannot fail.
    let mapping: ArrayBuffer | null = null;
    if (backing.inMemory && backing.fullyAllocated && process.env.UBLK_TS_LOOP_MMAP !== "0") {
      try {
        mapping = native.mmapFile(fd, 0, size, true, false);
      } catch {
        mapping = null; // no address space for it: IO through io_uring
      }
    }
    const state: LoopState = {
      fd,
      path,
      direct,
      mapAddr: mapping ? native.bufferAddress(mapping) : 0,
      holes: new Int32Array(new SharedArrayBuffer(4)),
      metadataPath: typeof options.metadata_file === "string" ? options.metadata_file : undefined,
      meta: null,
    };
    if (mapping) mappings.set(state, mapping);
    return {
      size,
      state,
      flags: mapping ? U.UBLK_F_NEED_GET_DATA : 0,
      params: {
        logicalBlockSize: logical,
        physicalBlockSize: physical,
        discard: {
          granularity: Math.max(4096, logical),
          alignment: 0,
          maxSectors: 0xffffffff >>> 9,
          maxWriteZeroesSectors: 0xffffffff >>> 9,
          maxSegments: 1,
        },
      },
      description: { file: path, direct, inline, mapped_reads: mapping !== null },
    };
  },

  openIntegrity(setup, format) {
    const st = setup.state;
    st.meta = openMetadataFile(metadataPath(st.path, st.metadataPath), setup.size, format);
    // Every READ and WRITE now also moves metadata through the ring: no mapped shortcut. Discard
    // and write-zeroes are not offered: they would leave metadata that no longer fits the data.
    const mapping = mappings.get(st);
    if (mapping) native.munmapBuffer(mapping);
    mappings.delete(st);
    st.mapAddr = 0;
    setup.params = { ...setup.params, discard: null };
    setup.description = { ...setup.description, mapped_reads: false, metadata_file: st.meta.path };
  },

  initQueue(ctx) {
    if (ctx.state.meta) metadataIo.set(ctx, new MetadataIo(ctx.state.meta, ctx.depth, SUB_METADATA));
  },

  resize(setup, newSize) {
    const st = setup.state;
    const stat = fstatSync(st.fd);
    if (!stat.isFile()) throw new Error(`${st.path} is not a regular file: its size is not ours to change`);
    if (newSize < stat.size) refuseShrinkOverData(st.path, newSize, stat.size);
    // The mapping covers the old size only: from now on all IO goes through io_uring.
    Atomics.store(st.holes, 0, 1);
    ftruncateSync(st.fd, newSize);
    if (st.meta) growMetadataFile(st.meta, newSize);
  },

  close(setup) {
    const mapping = mappings.get(setup.state);
    if (mapping) native.munmapBuffer(mapping);
    closeSync(setup.state.fd);
    if (setup.state.meta) closeSync(setup.state.meta.fd);
  },

  read(req, ctx) {
    // NEED_GET_DATA (or user copy, which replaces it) lets the data come from the mapping directly;
    // not for a request in shared memory, which the driver does not copy back.
    const viaDriver = U.UBLK_F_NEED_GET_DATA | U.UBLK_F_USER_COPY;
    const mapped = ctx.flags & viaDriver && !(req.flags & U.UBLK_IO_F_SHMEM_ZC) ? mappedAddress(req, ctx) : 0;
    if (mapped !== 0) {
      req.serveFrom(mapped);
      return req.length;
    }
    const ring = ctx.ring;
    if (req.bufIndex >= 0) {
      // Zero copy: the file's data goes straight into the request's own pages.
      const off = ring.sqeOrSubmit();
      ring.prepRwFixed(
        off,
        false,
        ctx.state.fd,
        0,
        req.length,
        req.offset,
        req.bufIndex,
        ctx.userData(req.tag),
      );
      return QUEUED;
    }
    ring.prepRead(
      ring.sqeOrSubmit(),
      ctx.state.fd,
      req.address,
      req.length,
      req.offset,
      ctx.userData(req.tag),
    );
    if (ctx.state.meta) metadataIo.get(ctx)?.read(ctx, req);
    return QUEUED;
  },

  writeDestination: mappedAddress,

  write(req, ctx) {
    // The driver already copied the data into the file's pages (writeDestination): nothing to do.
    // A file in memory has no cache to write through, so FUA holds as well.
    if (ctx.state.mapAddr !== 0 && req.address === ctx.state.mapAddr + req.offset) return req.length;
    const ring = ctx.ring;
    const off = ring.sqeOrSubmit();
    if (req.bufIndex >= 0)
      ring.prepRwFixed(
        off,
        true,
        ctx.state.fd,
        0,
        req.length,
        req.offset,
        req.bufIndex,
        ctx.userData(req.tag),
      );
    else ring.prepWrite(off, ctx.state.fd, req.address, req.length, req.offset, ctx.userData(req.tag));
    // FUA: this write alone must be durable before it completes.
    if (req.flags & U.UBLK_IO_F_FUA) ring.sqeView.setUint32(off + SQE_OP_FLAGS, RWF_DSYNC, true);
    if (ctx.state.meta) metadataIo.get(ctx)?.write(ctx, req, (req.flags & U.UBLK_IO_F_FUA) !== 0);
    return QUEUED;
  },

  flush(req, ctx) {
    const ring = ctx.ring;
    ring.prepFsync(ring.sqeOrSubmit(), ctx.state.fd, IORING_FSYNC_DATASYNC, ctx.userData(req.tag));
    if (ctx.state.meta) metadataIo.get(ctx)?.flush(ctx, req, IORING_FSYNC_DATASYNC);
    return QUEUED;
  },

  discard(req, ctx) {
    if (ctx.state.meta) return -EOPNOTSUPP; // (not offered) the metadata would not fit the data
    return fallocate(ctx, req, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SUB_PUNCH);
  },

  writeZeroes(req, ctx) {
    if (ctx.state.meta) return -EOPNOTSUPP;
    // As the kernel loop driver: keep the blocks allocated only when the request says NOUNMAP.
    if (req.flags & U.UBLK_IO_F_NOUNMAP)
      return fallocate(ctx, req, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, SUB_ZERO_RANGE);
    return fallocate(ctx, req, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SUB_PUNCH);
  },

  complete(req, res, sub, ctx) {
    const joined = ctx.state.meta && (sub === 0 || sub === SUB_METADATA) ? metadataIo.get(ctx) : undefined;
    if (joined) return joined.settle(req, res, sub === SUB_METADATA);
    // Some filesystems (tmpfs) cannot ZERO_RANGE; a punched hole reads back as zeros too.
    if (sub === SUB_ZERO_RANGE && res === -EOPNOTSUPP) {
      return fallocate(ctx, req, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SUB_PUNCH);
    }
    return res;
  },
});
