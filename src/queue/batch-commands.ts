// UBLK_F_BATCH_IO: the queue talks to the driver in batches instead of one uring_cmd per tag.
//
// - UBLK_U_IO_PREP_IO_CMDS, once at start (and by a recovering daemon): one command hands the driver
//   every tag of the queue with its buffer. The driver takes it synchronously; its CQE says 0 or why not.
// - UBLK_U_IO_FETCH_IO_CMDS, multishot: armed once, it posts a CQE (IORING_CQE_F_MORE) whenever
//   requests arrive, carrying their tags in a provided buffer (batch-fetch.ts). A CQE without F_MORE
//   ends it: -ENOBUFS (out of buffers) is re-armed, UBLK_IO_RES_ABORT means the device is stopping or
//   quiescing, anything else is an error; after those the queue ends once it has committed all it holds.
// - UBLK_U_IO_COMMIT_IO_CMDS: the results of one wake-up in one command (batch-commit.ts), its CQE the
//   bytes of elements committed; a partial commit is handled by sending the rest again.
//
// Serving a request (decode, target, settle) stays the queue loop's; this module only moves tags and
// results. The driver ties no command to a thread here (io->task is NULL in batch mode).
//
// Data paths: copying (each element carries the tag's buffer address), -z (the queue registers the
// request's pages itself, elements carry nothing more) and --auto_zc (each element names the buffer
// table slot, = tag, the driver registers the next request into). User copy is not served in batches.
import * as U from "../uapi/ublk_cmd.js";
import {
  IORING_CQE_BUFFER_SHIFT,
  IORING_CQE_F_BUFFER,
  IORING_CQE_F_MORE,
  IORING_URING_CMD_MULTISHOT,
  IOSQE_BUFFER_SELECT,
  SQE_ADDR,
  SQE_BUF_INDEX,
  SQE_CMD,
  SQE_FLAGS,
  SQE_LEN,
  SQE_OP_FLAGS,
} from "../uring/constants.js";
import type { Ring } from "../uring/ring.js";
import { type ElementBatch, ElementBuffers } from "./batch-commit.js";
import { TagBufferRing } from "./batch-fetch.js";

/** The user_data kind (bits 16-23) of every batch command; the queue loop routes these CQEs here. */
export const KIND_BATCH = 8;
// bits 24-30: which command; bits 0-15: the element buffer (PREP, COMMIT).
const OP_PREP = 0;
const OP_FETCH = 1;
const OP_COMMIT = 2;

const ENOBUFS = 105;
/** The fetch's buffer group on the queue's ring (one ring per queue, so any fixed id). */
const FETCH_GROUP = 0;

/** What the queue loop provides. */
export interface BatchQueue {
  /** Serve the request the driver just handed over for `tag`. */
  dispatch(tag: number): void;
  /** The tag's IO buffer (the copying data path). */
  bufferAddress(tag: number): number;
  /** UBLK_BATCH_F_* of every PREP and COMMIT: HAS_BUF_ADDR on the copying path, else 0 or (--auto_zc) AUTO_BUF_REG_FALLBACK. */
  readonly elementFlags: number;
  /** --auto_zc: elements carry the buffer table slot (the tag). */
  readonly autoBufReg: boolean;
  /** The fetch is gone for good and every request taken was committed: the queue is done. */
  ended(): void;
  log(message: string): void;
}

export class BatchCommands {
  private readonly tags: TagBufferRing;
  private readonly elements: ElementBuffers;
  private fetchDead = false;
  /** Requests handed over and not yet committed. */
  private serving = 0;
  /** PREP/COMMIT commands whose CQE has not been reaped. */
  private owed = 0;
  private refusals = 0;

  constructor(
    private readonly ring: Ring,
    private readonly charFd: number,
    private readonly qid: number,
    private readonly depth: number,
    private readonly queue: BatchQueue,
  ) {
    this.tags = new TagBufferRing(ring, FETCH_GROUP, depth);
    this.elements = new ElementBuffers(U.ublkBatchElemBytes(queue.elementFlags), depth);
  }

  /**
   * CQEs that commands already prepared or submitted will post no matter what: a wait for new
   * requests must ask for this many more.
   */
  get cqesOwed(): number {
    return this.owed;
  }

  /**
   * PREP_IO_CMDS for every tag, waited for (throws with the driver's errno), then the fetch armed
   * (submitted with the caller's next submit). `other` gets any unrelated CQE reaped meanwhile.
   */
  start(other: (userData: number, res: number, flags: number) => void): void {
    for (let tag = 0; tag < this.depth; tag++) this.add(tag, 0);
    const prep = this.elements.take() as ElementBatch;
    this.prepCommand(U.UBLK_U_IO_PREP_IO_CMDS, OP_PREP, prep);
    let result = Number.NaN;
    while (Number.isNaN(result)) {
      this.ring.submitAndWait(1);
      this.ring.reap((userData, res, flags) => {
        if (userData === this.userData(OP_PREP, prep.index)) result = res;
        else other(userData, res, flags);
      });
    }
    this.owed--;
    this.elements.release(prep.index);
    if (result < 0) throw new Error(`UBLK_U_IO_PREP_IO_CMDS failed: errno ${-result}`);
    this.tags.register();
    this.armFetch();
  }

  /** A request's result: it goes to the driver with the others of this wake-up (flush()). */
  commit(tag: number, result: number): void {
    this.serving--;
    this.add(tag, result);
  }

  private add(tag: number, result: number): void {
    const slot = this.queue.autoBufReg ? tag : 0;
    this.elements.add(tag, result, this.queue.bufferAddress(tag), slot);
  }

  /** Prepares the COMMIT_IO_CMDS of everything committed since the last flush, if anything was. */
  flush(): void {
    const batch = this.elements.take();
    if (batch !== null) this.prepCommand(U.UBLK_U_IO_COMMIT_IO_CMDS, OP_COMMIT, batch);
  }

  onCqe(userData: number, res: number, flags: number): void {
    const op = (userData >>> 24) & 0x7f;
    if (op === OP_FETCH) this.fetched(res, flags);
    else if (op === OP_COMMIT) this.committed(userData & 0xffff, res);
  }

  private fetched(res: number, flags: number): void {
    if (flags & IORING_CQE_F_BUFFER) {
      const bid = flags >>> IORING_CQE_BUFFER_SHIFT;
      const n = res > 0 ? res >>> 1 : 0;
      for (let i = 0; i < n; i++) {
        const tag = this.tags.tag(bid, i);
        if (tag >= this.depth) {
          this.queue.log(`ublk queue ${this.qid}: the driver fetched tag ${tag} (depth ${this.depth})`);
          continue;
        }
        this.serving++;
        this.queue.dispatch(tag);
      }
      this.tags.give(bid);
    }
    if (flags & IORING_CQE_F_MORE) return;
    if (res === -ENOBUFS || res >= 0) {
      // Out of buffers (or a final CQE that still carried tags): start the ring over and re-arm.
      this.tags.reset();
      this.armFetch();
      return;
    }
    if (res !== U.UBLK_IO_RES_ABORT)
      this.queue.log(`ublk queue ${this.qid}: UBLK_U_IO_FETCH_IO_CMDS failed: errno ${-res}`);
    this.fetchDead = true;
    this.checkEnded();
  }

  private committed(index: number, res: number): void {
    this.owed--;
    const out = this.elements.completed(index, res);
    if (out.refusedTag >= 0 && this.refusals++ < 5)
      this.queue.log(
        `ublk queue ${this.qid}: the driver refused the commit of tag ${out.refusedTag}` +
          `${out.error ? `: errno ${-out.error}` : ""}; the rest of the batch is sent again`,
      );
    if (out.resend !== null) this.prepCommand(U.UBLK_U_IO_COMMIT_IO_CMDS, OP_COMMIT, out.resend);
    this.checkEnded();
  }

  private checkEnded(): void {
    if (this.fetchDead && this.serving === 0 && this.owed === 0 && this.elements.pending === 0)
      this.queue.ended();
  }

  private userData(op: number, index: number): number {
    return (op << 24) | (KIND_BATCH << 16) | index;
  }

  /** The struct ublk_batch_io of a command in the SQE at `off`. */
  private setBatchHeader(off: number, flags: number, nrElem: number, elemBytes: number): void {
    const v = this.ring.sqeView;
    const c = off + SQE_CMD;
    v.setUint16(c, this.qid, true);
    v.setUint16(c + 2, flags, true);
    v.setUint16(c + 4, nrElem, true);
    v.setUint8(c + 6, elemBytes);
  }

  /** PREP_IO_CMDS or COMMIT_IO_CMDS of `batch`'s elements. */
  private prepCommand(cmdOp: number, op: number, batch: ElementBatch): void {
    const ring = this.ring;
    const off = ring.sqeOrSubmit();
    ring.prepUringCmd(off, this.charFd, cmdOp, this.userData(op, batch.index));
    const bytes = batch.count * this.elements.elemBytes;
    ring.setU64(off + SQE_ADDR, batch.address);
    ring.sqeView.setUint32(off + SQE_LEN, bytes, true);
    this.setBatchHeader(off, this.queue.elementFlags, batch.count, this.elements.elemBytes);
    this.owed++;
  }

  private armFetch(): void {
    const ring = this.ring;
    const off = ring.sqeOrSubmit();
    ring.prepUringCmd(off, this.charFd, U.UBLK_U_IO_FETCH_IO_CMDS, this.userData(OP_FETCH, 0));
    const v = ring.sqeView;
    v.setUint8(off + SQE_FLAGS, IOSQE_BUFFER_SELECT);
    v.setUint32(off + SQE_OP_FLAGS, IORING_URING_CMD_MULTISHOT, true);
    v.setUint16(off + SQE_BUF_INDEX, FETCH_GROUP, true);
    this.setBatchHeader(off, 0, this.depth, 2);
  }
}
