// Zero copy (UBLK_F_SUPPORT_ZERO_COPY) and automatic buffer registration (UBLK_F_AUTO_BUF_REG): a
// request's own pages become a fixed buffer in the queue ring's buffer table, slot = tag, and the
// target moves the data with READ_FIXED/WRITE_FIXED between that buffer and its backing file. The
// server never maps the data: nothing is copied in userspace.
//
// With -z the queue registers the buffer itself (REGISTER_IO_BUF) before the target runs and
// unregisters it (UNREGISTER_IO_BUF) right before the commit; the driver completes the request once
// both happened. With --auto_zc the driver registers it before delivering the request and
// unregisters it at the commit, so no extra command is needed; --auto_zc_fallback asks the driver to
// deliver the request flagged UBLK_IO_F_NEED_REG_BUF instead of failing it when that registration
// fails, and the queue then registers it as with -z.
import * as U from "../uapi/ublk_cmd.js";
import { IOSQE_CQE_SKIP_SUCCESS, SQE_CMD, SQE_FLAGS } from "../uring/constants.js";
import type { Ring } from "../uring/ring.js";

export const ZERO_COPY_FLAGS = U.UBLK_F_SUPPORT_ZERO_COPY | U.UBLK_F_AUTO_BUF_REG;

/** Requests whose data a fixed buffer can carry (the driver registers no other). */
export function hasData(op: number): boolean {
  return op === U.UBLK_IO_OP_READ || op === U.UBLK_IO_OP_WRITE;
}

/** The FETCH/COMMIT sqe->addr that asks the driver to register the request's buffer at slot `tag`. */
export function autoRegAddr(tag: number, fallback: boolean): number {
  return Number(
    U.ublk_auto_buf_reg_to_sqe_addr({
      index: tag,
      flags: fallback ? U.UBLK_AUTO_BUF_REG_FALLBACK : 0,
      reserved0: 0,
      reserved1: 0,
    }),
  );
}

/**
 * REGISTER_IO_BUF or UNREGISTER_IO_BUF of tag's request at slot `tag`. No CQE when it succeeds;
 * a failure posts one with `userData` (and a failed register makes the target's *_FIXED IO fail).
 */
export function prepBufferCmd(
  ring: Ring,
  charFd: number,
  register: boolean,
  qid: number,
  tag: number,
  userData: number,
): void {
  const off = ring.sqeOrSubmit();
  const op = register ? U.UBLK_U_IO_REGISTER_IO_BUF : U.UBLK_U_IO_UNREGISTER_IO_BUF;
  ring.prepUringCmd(off, charFd, op, userData);
  const v = ring.sqeView;
  v.setUint8(off + SQE_FLAGS, IOSQE_CQE_SKIP_SUCCESS);
  v.setUint16(off + SQE_CMD, qid, true);
  v.setUint16(off + SQE_CMD + 2, tag, true);
  v.setUint32(off + SQE_CMD + 8, tag, true); // addr: the buffer table slot
}
