// UBLK_F_USER_COPY: the driver keeps a request's data in its own pages and the server moves it with
// read() and write() on /dev/ublkcN at a position that encodes queue, tag and byte offset. Here those
// reads and writes are SQEs on the queue's own ring, never a blocking system call on the queue thread.
import * as U from "../uapi/ublk_cmd.js";
import { IORING_OP_READ, IORING_OP_WRITE, IOSQE_IO_LINK, SQE_FLAGS } from "../uring/constants.js";
import type { Ring } from "../uring/ring.js";
import type { Request } from "./request.js";

/** Ops whose data the server reads from the driver before serving them. */
export function dataFromDriver(op: number): boolean {
  return op === U.UBLK_IO_OP_WRITE || op === U.UBLK_IO_OP_ZONE_APPEND;
}

/** Ops whose data the server writes to the driver before committing them. */
export function dataToDriver(op: number): boolean {
  return op === U.UBLK_IO_OP_READ || op === U.UBLK_IO_OP_REPORT_ZONES;
}

/** Reads the rest of the request's data (from byte `req.copied`) into `req.address`. */
export function prepCopyIn(ring: Ring, charFd: number, req: Request, userData: number): void {
  ring.prepRw(
    ring.sqeOrSubmit(),
    IORING_OP_READ,
    charFd,
    req.address + req.copied,
    req.length - req.copied,
    U.ublkUserCopyPos(req.qid, req.tag, req.copied),
    userData,
  );
}

/**
 * Writes `bytes` of the request's data from `req.address` to the driver, linked to the SQE prepared
 * right after it (the commit): the kernel starts the commit only once the copy completed in full, and
 * cancels it (-ECANCELED) if the copy failed or came up short. The caller must have two SQ slots free,
 * or a submit between the two would cut the link.
 */
export function prepCopyOut(
  ring: Ring,
  charFd: number,
  req: Request,
  bytes: number,
  userData: number,
  link = true,
): void {
  const off = ring.sqeOrSubmit();
  ring.prepRw(
    off,
    IORING_OP_WRITE,
    charFd,
    req.address,
    bytes,
    U.ublkUserCopyPos(req.qid, req.tag),
    userData,
  );
  if (link) ring.sqeView.setUint8(off + SQE_FLAGS, IOSQE_IO_LINK);
}
