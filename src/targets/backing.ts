// Backing files for targets that do their IO on the queue's io_uring (loop, stripe, fault_inject):
// opening a file or block device the way ring IO wants it (O_DIRECT when it works, inline IO for
// files in memory) and learning its size and block sizes.
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  statfsSync,
  statSync,
} from "node:fs";
import { native } from "../native.js";

export interface BackingFile {
  fd: number;
  path: string;
  /** Bytes usable, a multiple of `logical`. */
  size: number;
  logical: number;
  physical: number;
  direct: boolean;
  /** Opened O_NONBLOCK so io_uring serves it inline (see inlineIoFlags). */
  inline: boolean;
  /** A regular file on tmpfs or ramfs. */
  inMemory: boolean;
  /** Every byte of `size` has blocks allocated (no holes). */
  fullyAllocated: boolean;
}

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

// statfs f_type of filesystems whose file IO is a memory copy that never waits for a device.
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** Is this a regular file on tmpfs or ramfs, where file IO is a memory copy that never waits? */
function inMemoryFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false; // a block device node sits on devtmpfs, itself a tmpfs
    const type = Number(statfsSync(path).type);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Open flags that let io_uring read and write this file inline, in the queue thread's own
 * io_uring_enter. tmpfs does not advertise FMODE_NOWAIT, so without this io_uring hands every
 * request to an io-wq worker thread: a thread hop per IO for what is a memcpy. io_uring treats an
 * O_NONBLOCK file as NOWAIT-capable, and on a regular file O_NONBLOCK changes nothing else.
 * Not for filesystems that really wait (NFS, 9p): there an inline read would stall the whole queue.
 */
function inlineIoFlags(inMemory: boolean): number {
  const force = process.env.UBLK_TS_LOOP_INLINE; // benchmark lever (bench/NOTES.md)
  if (force === "0" || force === "1") return force === "1" ? constants.O_NONBLOCK : 0;
  return inMemory ? constants.O_NONBLOCK : 0;
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

/**
 * Opens `path` read-write for ring IO, O_DIRECT unless `buffered` (or the filesystem refuses it).
 * Throws a one-line error naming the file; closes what it opened when it throws.
 */
export function openBacking(path: string, buffered = false): BackingFile {
  let fd: number;
  let direct = false;
  const inMemory = inMemoryFile(path);
  const inline = inlineIoFlags(inMemory);
  const flags = constants.O_RDWR | inline;
  try {
    fd = openSync(path, flags | (buffered ? 0 : constants.O_DIRECT));
    direct = !buffered;
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
  const fullyAllocated = Number(st.blocks) * 512 >= size;
  return { fd, path, size, logical, physical, direct, inline: inline !== 0, inMemory, fullyAllocated };
}
