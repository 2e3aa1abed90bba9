// The loop target's integrity metadata (UBLK_F_INTEGRITY, --metadata_size): kept in a file of its
// own, kublk's layout for its loop target's second file: `metadataSize` bytes per interval of data,
// interval i's at byte i * metadataSize, stored as the block layer hands them over (the PI tuples
// included), so a hex dump of the file shows them.
//
// Each READ and WRITE that carries metadata becomes two IOs on the queue's ring, one per file, and
// completes when both have; FLUSH syncs both files. Metadata nobody has written reads as 0xFF bytes,
// T10 PI's escape ("not protected"), as on a freshly formatted PI disk: a new file is filled with
// them, a short one is extended with them, and a WRITE without metadata writes them.
import { closeSync, constants, existsSync, fstatSync, openSync, statSync, writeSync } from "node:fs";
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { RWF_DSYNC, SQE_OP_FLAGS } from "../uring/constants.js";
import { openBacking } from "./backing.js";
import { type IntegrityFormat, type IoRequest, QUEUED, type QueueContext } from "./target.js";

const EIO = 5;
const FILL_CHUNK = 1 << 20;

/** The metadata file, as the queue threads receive it (cloned). */
export interface MetadataFile {
  fd: number;
  path: string;
  metadataSize: number;
  intervalBytes: number;
}

/** Bytes of metadata for `dataBytes` of data (whole intervals, rounded up). */
function metadataBytes(format: IntegrityFormat, dataBytes: number): number {
  return Math.ceil(dataBytes / format.intervalBytes) * format.metadataSize;
}

/** Appends 0xFF bytes to the file at `fd` from `from` up to `to`. */
function fillUnwritten(fd: number, from: number, to: number): void {
  const ones = Buffer.alloc(Math.min(FILL_CHUNK, Math.max(0, to - from)), 0xff);
  for (let off = from; off < to; ) off += writeSync(fd, ones, 0, Math.min(ones.length, to - off), off);
}

/**
 * The metadata file's path: the one given, or for a regular data file IMAGE.meta beside it. A block
 * device has no obvious place for one, so it must be given.
 */
export function metadataPath(dataPath: string, given: unknown): string {
  if (typeof given === "string" && given !== "") return given;
  if (!statSync(dataPath).isFile())
    throw new Error(
      `${dataPath} is not a regular file: give the metadata's file too (ublk add -t loop ... ${dataPath} METAFILE)`,
    );
  return `${dataPath}.meta`;
}

/**
 * Opens (creating it when missing) the metadata file for `dataBytes` of data, with room for all of
 * it: a regular file is extended with 0xFF bytes, a block device must be large enough.
 */
export function openMetadataFile(path: string, dataBytes: number, format: IntegrityFormat): MetadataFile {
  const needed = metadataBytes(format, dataBytes);
  if (!existsSync(path) || statSync(path).isFile()) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      const size = fstatSync(fd).size;
      if (size < needed) fillUnwritten(fd, size, needed);
    } finally {
      closeSync(fd);
    }
  }
  // Buffered: a request's metadata is a few bytes at any offset, which O_DIRECT cannot do.
  const file = openBacking(path, true);
  if (file.size < needed) {
    closeSync(file.fd);
    throw new Error(`metadata file ${path} has ${file.size} bytes; ${needed} are needed`);
  }
  return { fd: file.fd, path, ...format };
}

/** Update_size: room for the metadata of `dataBytes` of data (a block device is left as it is). */
export function growMetadataFile(meta: MetadataFile, dataBytes: number): void {
  const st = fstatSync(meta.fd);
  const needed = metadataBytes(meta, dataBytes);
  if (st.isFile() && st.size < needed) fillUnwritten(meta.fd, st.size, needed);
}

/**
 * Per queue thread: a request's IO on the metadata file, and the join with its data's IO. Results
 * come back through the target's complete(): `settle` returns QUEUED until both are in, then the
 * data's result, or the first error.
 */
export class MetadataIo {
  /** IOs of the tag still in flight (0: the tag has no metadata IO). */
  private readonly pending: Uint8Array;
  private readonly dataResult: Int32Array;
  private readonly error: Int32Array;
  /** 0xFF bytes written for WRITEs that carry no metadata; earlier, shorter ones are kept alive. */
  private unwritten = new Uint8Array(0);
  private unwrittenAddr = 0;
  private readonly keep: ArrayBuffer[] = [];

  constructor(
    private readonly meta: MetadataFile,
    depth: number,
    /** `sub` of the metadata IOs in ctx.userData(). */
    private readonly sub: number,
  ) {
    this.pending = new Uint8Array(depth);
    this.dataResult = new Int32Array(depth);
    this.error = new Int32Array(depth);
  }

  private offsetOf(req: IoRequest): number {
    return Math.floor(req.offset / this.meta.intervalBytes) * this.meta.metadataSize;
  }

  private begin(tag: number): void {
    this.pending[tag] = 2;
    this.dataResult[tag] = 0;
    this.error[tag] = 0;
  }

  /** READ: the request's metadata from the file (after its data's IO was prepared). */
  read(ctx: QueueContext, req: IoRequest): void {
    const meta = req.integrity;
    if (meta === null || meta.length === 0) return;
    this.begin(req.tag);
    const ring = ctx.ring;
    ring.prepRead(
      ring.sqeOrSubmit(),
      this.meta.fd,
      req.integrityAddress,
      meta.length,
      this.offsetOf(req),
      ctx.userData(req.tag, this.sub),
    );
  }

  /** WRITE: the request's metadata (0xFF bytes if it carries none) to the file; FUA: durably. */
  write(ctx: QueueContext, req: IoRequest, fua: boolean): void {
    const meta = req.integrity;
    let addr = req.integrityAddress;
    let bytes = meta?.length ?? 0;
    if (meta === null) {
      bytes = Math.floor(req.length / this.meta.intervalBytes) * this.meta.metadataSize;
      addr = this.unwrittenBytes(bytes);
    }
    if (bytes === 0) return;
    this.begin(req.tag);
    const ring = ctx.ring;
    const off = ring.sqeOrSubmit();
    ring.prepWrite(off, this.meta.fd, addr, bytes, this.offsetOf(req), ctx.userData(req.tag, this.sub));
    if (fua) ring.sqeView.setUint32(off + SQE_OP_FLAGS, RWF_DSYNC, true);
  }

  /** FLUSH: syncs the metadata file too. */
  flush(ctx: QueueContext, req: IoRequest, fsyncFlags: number): void {
    this.begin(req.tag);
    const ring = ctx.ring;
    ring.prepFsync(ring.sqeOrSubmit(), this.meta.fd, fsyncFlags, ctx.userData(req.tag, this.sub));
  }

  /** One of the tag's IOs finished: QUEUED while the other is in flight, then the request's result. */
  settle(req: IoRequest, res: number, isMetadata: boolean): number | typeof QUEUED {
    const tag = req.tag;
    if (this.pending[tag] === 0) return res; // no metadata IO for this request
    let result = res;
    const meta = req.integrity;
    if (isMetadata && result >= 0 && meta !== null && result < meta.length) {
      // A READ past the file's end (the device grew) finds unwritten metadata; a short WRITE failed.
      if (req.op === U.UBLK_IO_OP_READ) meta.fill(0xff, result);
      else if (req.op === U.UBLK_IO_OP_WRITE) result = -EIO;
    }
    if (result < 0) {
      if (this.error[tag] === 0) this.error[tag] = result;
    } else if (!isMetadata) this.dataResult[tag] = result;
    if (--this.pending[tag] > 0) return QUEUED;
    return this.error[tag] !== 0 ? this.error[tag] : this.dataResult[tag];
  }

  private unwrittenBytes(bytes: number): number {
    if (this.unwritten.length < bytes) {
      const ab = native.allocBuffer(bytes);
      this.keep.push(ab); // a write still in flight may read the previous one
      this.unwritten = new Uint8Array(ab).fill(0xff);
      this.unwrittenAddr = native.bufferAddress(ab);
    }
    return this.unwrittenAddr;
  }
}
