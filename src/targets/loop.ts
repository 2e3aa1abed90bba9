// loop: a file or block device as a ublk disk, like the kernel's loop driver. Every request becomes
// one io_uring operation on the queue's own ring, reading and writing straight into the tag's buffer
// (no thread pool, no extra copy). O_DIRECT when the backing file allows it.
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync } from "node:fs";
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
import { defineTarget, type IoRequest, QUEUED, type QueueContext } from "./target.js";

interface LoopState {
  fd: number;
  path: string;
  direct: boolean;
}

const EOPNOTSUPP = 95;
const SUB_ZERO_RANGE = 1;
const SUB_PUNCH = 2;

/** Block device geometry from sysfs (st_rdev -> /sys/dev/block/MAJ:MIN). */
function blockDeviceInfo(rdev: number): { size: number; logical: number; physical: number } {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  const base = `/sys/dev/block/${major}:${minor}`;
  const num = (p: string) => Number(readFileSync(`${base}/${p}`, "utf8").trim());
  let logical = 512;
  let physical = 512;
  try {
    logical = num("queue/logical_block_size");
    physical = num("queue/physical_block_size");
  } catch {
    // a partition: its queue attributes live on the parent disk, 512 is a safe answer
  }
  return { size: num("size") * 512, logical, physical };
}

/** Can this fd do O_DIRECT reads with `align`-byte alignment? */
function directReadWorks(fd: number, align: number, size: number): boolean {
  if (size < align) return true;
  const buf = Buffer.from(native.allocBuffer(align));
  try {
    readSync(fd, buf, 0, align, 0);
    return true;
  } catch {
    return false;
  }
}

function fallocate(ctx: QueueContext<LoopState>, req: IoRequest, mode: number, sub: number): typeof QUEUED {
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

export default defineTarget<LoopState>({
  name: "loop",

  open(options) {
    const path = options.file;
    if (typeof path !== "string" || path === "") {
      throw new Error("loop needs a backing file: ublk add -t loop FILE (or -f FILE)");
    }
    const wantDirect = !options.buffered_io;
    let fd: number;
    let direct = false;
    const flags = constants.O_RDWR;
    try {
      fd = openSync(path, flags | (wantDirect ? constants.O_DIRECT : 0));
      direct = wantDirect;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new Error(`backing file ${path} does not exist`);
      if (code === "EACCES" || code === "EPERM" || code === "EROFS")
        throw new Error(`backing file ${path} cannot be opened read-write (${code})`);
      if (code !== "EINVAL") throw new Error(`cannot open backing file ${path}: ${code}`);
      fd = openSync(path, flags); // this filesystem has no O_DIRECT
    }
    const st = fstatSync(fd);
    let size: number;
    let logical = 512;
    let physical = 4096;
    if (st.isBlockDevice()) {
      ({ size, logical, physical } = blockDeviceInfo(Number(st.rdev)));
    } else if (st.isFile()) {
      size = st.size;
    } else {
      closeSync(fd);
      throw new Error(`backing file ${path} is neither a regular file nor a block device`);
    }
    if (direct && !directReadWorks(fd, logical, size)) {
      // st_blksize is not a usable hint (9p reports huge values): probe, then fall back to buffered IO.
      if (logical < 4096 && directReadWorks(fd, 4096, size)) logical = 4096;
      else {
        closeSync(fd);
        fd = openSync(path, flags);
        direct = false;
      }
    }
    physical = Math.max(physical, logical);
    size -= size % logical;
    if (size <= 0) {
      closeSync(fd);
      throw new Error(`backing file ${path} is smaller than one ${logical}-byte block`);
    }
    return {
      size,
      state: { fd, path, direct },
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
      description: { file: path, direct },
    };
  },

  close(setup) {
    closeSync(setup.state.fd);
  },

  read(req, ctx) {
    const ring = ctx.ring;
    ring.prepRead(
      ring.sqeOrSubmit(),
      ctx.state.fd,
      req.address,
      req.length,
      req.offset,
      ctx.userData(req.tag),
    );
    return QUEUED;
  },

  write(req, ctx) {
    const ring = ctx.ring;
    const off = ring.sqeOrSubmit();
    ring.prepWrite(off, ctx.state.fd, req.address, req.length, req.offset, ctx.userData(req.tag));
    // FUA: this write alone must be durable before it completes.
    if (req.flags & U.UBLK_IO_F_FUA) ring.sqeView.setUint32(off + SQE_OP_FLAGS, RWF_DSYNC, true);
    return QUEUED;
  },

  flush(req, ctx) {
    const ring = ctx.ring;
    ring.prepFsync(ring.sqeOrSubmit(), ctx.state.fd, IORING_FSYNC_DATASYNC, ctx.userData(req.tag));
    return QUEUED;
  },

  discard(req, ctx) {
    return fallocate(ctx, req, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SUB_PUNCH);
  },

  writeZeroes(req, ctx) {
    // As the kernel loop driver: keep the blocks allocated only when the request says NOUNMAP.
    if (req.flags & U.UBLK_IO_F_NOUNMAP)
      return fallocate(ctx, req, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, SUB_ZERO_RANGE);
    return fallocate(ctx, req, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SUB_PUNCH);
  },

  complete(req, res, sub, ctx) {
    // Some filesystems (tmpfs) cannot ZERO_RANGE; a punched hole reads back as zeros too.
    if (sub === SUB_ZERO_RANGE && res === -EOPNOTSUPP) {
      return fallocate(ctx, req, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, SUB_PUNCH);
    }
    return res;
  },
});
