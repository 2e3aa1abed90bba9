// UBLK_F_INTEGRITY in a queue: a request's metadata (the block layer's protection information, or
// whatever an application attached) travels beside its data. The driver hands it over only by user
// copy: read() and write() on /dev/ublkcN at the request's data position with
// UBLKSRV_IO_INTEGRITY_FLAG set, the byte offset counting metadata bytes. Each tag has its own
// metadata buffer (small: metadata_size bytes per logical block), so nothing is pooled or copied
// twice; a WRITE's metadata is read while its data is, a READ's written just before its data.
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { IORING_OP_READ, IORING_OP_WRITE, IOSQE_IO_LINK, SQE_FLAGS, SQE_OFF } from "../uring/constants.js";
import type { Ring } from "../uring/ring.js";
import type { Request } from "./request.js";

const EIO = 5;
/**
 * UBLKSRV_IO_INTEGRITY_FLAG is bit 62: a double cannot hold it exactly beside a byte offset, so it
 * is set in the upper 32-bit half of the SQE's offset after the rest was written.
 */
const FLAG_IN_HIGH_WORD = 1 << (U.UBLK_INTEGRITY_FLAG_OFF - 32);

/** What the queue needs to know of the device's integrity format. */
export interface IntegrityLayout {
  /** Bytes of metadata per interval. */
  metadataSize: number;
  /** log2 of the bytes of data per interval. */
  intervalShift: number;
}

export class QueueIntegrity {
  private readonly mem: Uint8Array;
  private readonly base: number;
  /** Bytes of metadata the largest request carries. */
  private readonly perTag: number;
  /** Each tag's last view of its buffer, reused while requests keep the same size. */
  private readonly views: Uint8Array[] = [];
  /** WRITE: metadata bytes still to come from the driver (0: nothing awaited). */
  private readonly awaited: Int32Array;

  constructor(
    private readonly layout: IntegrityLayout,
    depth: number,
    bufSize: number,
    private readonly charFd: number,
    private readonly qid: number,
  ) {
    this.perTag = this.bytesFor(bufSize);
    const ab = native.allocBuffer(Math.max(1, depth * this.perTag));
    this.mem = new Uint8Array(ab);
    this.base = native.bufferAddress(ab);
    for (let tag = 0; tag < depth; tag++) this.views.push(this.mem.subarray(0, 0));
    this.awaited = new Int32Array(depth);
  }

  /** Metadata bytes that go with `dataBytes` of data (whole intervals). */
  bytesFor(dataBytes: number): number {
    return Math.floor(dataBytes / 2 ** this.layout.intervalShift) * this.layout.metadataSize;
  }

  /** After decode(): gives a READ or WRITE that carries metadata its buffer; a READ's starts as 0xFF. */
  attach(req: Request): void {
    const tag = req.tag;
    this.awaited[tag] = 0;
    const carries =
      (req.flags & U.UBLK_IO_F_INTEGRITY) !== 0 &&
      (req.op === U.UBLK_IO_OP_READ || req.op === U.UBLK_IO_OP_WRITE);
    if (!carries) {
      req.integrity = null;
      req.integrityAddress = 0;
      return;
    }
    const bytes = Math.min(this.bytesFor(req.length), this.perTag);
    let view = this.views[tag];
    if (view.length !== bytes) {
      view = this.mem.subarray(tag * this.perTag, tag * this.perTag + bytes);
      this.views[tag] = view;
    }
    req.integrity = view;
    req.integrityAddress = this.base + tag * this.perTag;
    // 0xFF is T10 PI's escape (app tag 0xFFFF, ref tag 0xFFFFFFFF): a target that stores no
    // metadata returns blocks the block layer does not check, as a freshly formatted PI disk does.
    if (req.op === U.UBLK_IO_OP_READ) view.fill(0xff);
  }

  /** WRITE: reads the request's metadata from the driver; false when it carries none. */
  startCopyIn(ring: Ring, req: Request, userData: number): boolean {
    const meta = req.integrity;
    if (meta === null || meta.length === 0) return false;
    this.awaited[req.tag] = meta.length;
    this.prep(ring, IORING_OP_READ, req, 0, meta.length, userData);
    return true;
  }

  /** A copy-in finished with `res`: a negative errno, 0 while more is coming (resubmitted), 1 when done. */
  copiedIn(ring: Ring, req: Request, res: number, userData: number): number {
    const left = this.awaited[req.tag] - res;
    if (res <= 0 || left < 0) {
      this.awaited[req.tag] = 0;
      return res < 0 ? res : -EIO;
    }
    this.awaited[req.tag] = left;
    if (left === 0) return 1;
    const total = (req.integrity as Uint8Array).length;
    this.prep(ring, IORING_OP_READ, req, total - left, left, userData);
    return 0;
  }

  /** True while the tag's WRITE still waits for its metadata. */
  awaiting(tag: number): boolean {
    return this.awaited[tag] > 0;
  }

  /**
   * READ: writes the metadata of `dataBytes` of data to the driver, linked to the SQE prepared next
   * (the data's copy, or the commit), so a failed copy cancels the commit. False when there is none.
   */
  prepCopyOut(ring: Ring, req: Request, dataBytes: number, userData: number): boolean {
    const meta = req.integrity;
    const bytes = meta === null ? 0 : Math.min(meta.length, this.bytesFor(dataBytes));
    if (bytes <= 0) return false;
    const off = this.prep(ring, IORING_OP_WRITE, req, 0, bytes, userData);
    ring.sqeView.setUint8(off + SQE_FLAGS, IOSQE_IO_LINK);
    return true;
  }

  private prep(ring: Ring, op: number, req: Request, from: number, len: number, userData: number): number {
    const off = ring.sqeOrSubmit();
    const pos = U.ublkUserCopyPos(this.qid, req.tag, from);
    ring.prepRw(off, op, this.charFd, req.integrityAddress + from, len, pos, userData);
    const high = off + SQE_OFF + 4;
    ring.sqeView.setUint32(high, (ring.sqeView.getUint32(high, true) | FLAG_IN_HIGH_WORD) >>> 0, true);
    return off;
  }
}
