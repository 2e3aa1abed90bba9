// The queue's ublk commands (FETCH_REQ, COMMIT_AND_FETCH_REQ, NEED_GET_DATA) as SQEs, written whole
// in 32-bit words: every field of the SQE is stored, so the slot needs no zeroing first, and nothing
// leaves JIT-compiled code (no TypedArray.fill, no DataView calls). At queue depth 1 under TCG the
// user-space part of a request is a visible share of its latency (bench/NOTES.md).
//
// /dev/ublkcN is registered as the ring's fixed file 0 when the kernel allows it: each command then
// names it by index (IOSQE_FIXED_FILE) and the kernel skips the fd table lookup and the file's
// reference count per command.
import {
  IORING_OP_URING_CMD,
  IOSQE_FIXED_FILE,
  SQE_ADDR,
  SQE_CMD,
  SQE_FD,
  SQE_OFF,
  SQE_USER_DATA,
} from "../uring/constants.js";
import type { Ring } from "../uring/ring.js";

/** Benchmark lever (bench/NOTES.md): UBLK_TS_FIXED_FILE=0 names the char device by its fd. */
const FIXED_FILE = process.env.UBLK_TS_FIXED_FILE !== "0";

const W_OPCODE = 0; // opcode, flags, ioprio
const W_FD = SQE_FD >>> 2;
const W_CMD_OP = SQE_OFF >>> 2;
const W_ADDR = SQE_ADDR >>> 2;
const W_USER_DATA = SQE_USER_DATA >>> 2;
const W_CMD = SQE_CMD >>> 2; // struct ublksrv_io_cmd: q_id u16, tag u16, result s32, addr u64
const SQE64_WORDS = 16;

export class CmdSqeWriter {
  private readonly fd: number;
  private readonly head: number;
  private readonly extraWords: number;

  constructor(
    private readonly ring: Ring,
    charFd: number,
    private readonly qid: number,
  ) {
    let fixed = false;
    if (FIXED_FILE) {
      try {
        ring.registerFiles([charFd]);
        fixed = true;
      } catch {
        // Without a file table the commands carry the fd; nothing else changes.
      }
    }
    this.fd = fixed ? 0 : charFd;
    this.head = IORING_OP_URING_CMD | ((fixed ? IOSQE_FIXED_FILE : 0) << 8);
    this.extraWords = (ring.sqeSize >>> 2) - SQE64_WORDS; // SQE128: the rest of the command area
  }

  /**
   * Queues one command. `sqeAddr` goes in the SQE's own addr field (UBLK_F_AUTO_BUF_REG's
   * ublk_auto_buf_reg), `cmdAddr` in the command's (the IO buffer, or zone_append_lba).
   */
  write(
    tag: number,
    cmdOp: number,
    result: number,
    cmdAddr: number,
    sqeAddr: number,
    userData: number,
  ): void {
    const ring = this.ring;
    let off = ring.claimSqe();
    if (off < 0) {
      ring.submit();
      off = ring.claimSqe();
      if (off < 0) throw new Error("io_uring submission queue is full");
    }
    const w = ring.sqeWords;
    const i = off >>> 2;
    w[i + W_OPCODE] = this.head;
    w[i + W_FD] = this.fd;
    w[i + W_CMD_OP] = cmdOp;
    w[i + W_CMD_OP + 1] = 0;
    w[i + W_ADDR] = sqeAddr >>> 0;
    w[i + W_ADDR + 1] = (sqeAddr / 0x100000000) >>> 0;
    w[i + 6] = 0; // len
    w[i + 7] = 0; // uring_cmd_flags
    w[i + W_USER_DATA] = userData;
    w[i + W_USER_DATA + 1] = 0;
    w[i + 10] = 0; // buf_index, personality
    w[i + 11] = 0; // file_index
    w[i + W_CMD] = this.qid | (tag << 16);
    w[i + W_CMD + 1] = result;
    w[i + W_CMD + 2] = cmdAddr >>> 0;
    w[i + W_CMD + 3] = (cmdAddr / 0x100000000) >>> 0;
    for (let k = i + SQE64_WORDS, end = k + this.extraWords; k < end; k++) w[k] = 0;
  }
}
