// Constants of include/uapi/linux/ublk_cmd.h as of Linux 6.12, named as in the header.
// Every UBLK* export here is compiled against the real header by test/unit/uapi-layout.
// Pure values and helpers: no I/O.
import { _IOR, _IOWR } from "./ioctl.js";
import { ublksrv_ctrl_cmd_LAYOUT, ublksrv_io_cmd_LAYOUT, ublksrv_io_desc_LAYOUT } from "./ublk_structs.js";

export * from "./ublk_structs.js";

const CTRL_SZ = ublksrv_ctrl_cmd_LAYOUT.size;
const IO_SZ = ublksrv_io_cmd_LAYOUT.size;

// ---- control commands: legacy numbers (used without UBLK_F_CMD_IOCTL_ENCODE) ----
export const UBLK_CMD_GET_QUEUE_AFFINITY = 0x01;
export const UBLK_CMD_GET_DEV_INFO = 0x02;
export const UBLK_CMD_ADD_DEV = 0x04;
export const UBLK_CMD_DEL_DEV = 0x05;
export const UBLK_CMD_START_DEV = 0x06;
export const UBLK_CMD_STOP_DEV = 0x07;
export const UBLK_CMD_SET_PARAMS = 0x08;
export const UBLK_CMD_GET_PARAMS = 0x09;
export const UBLK_CMD_START_USER_RECOVERY = 0x10;
export const UBLK_CMD_END_USER_RECOVERY = 0x11;
export const UBLK_CMD_GET_DEV_INFO2 = 0x12;

// ---- control commands: ioctl-encoded ----
export const UBLK_U_CMD_GET_QUEUE_AFFINITY = _IOR("u", UBLK_CMD_GET_QUEUE_AFFINITY, CTRL_SZ);
export const UBLK_U_CMD_GET_DEV_INFO = _IOR("u", UBLK_CMD_GET_DEV_INFO, CTRL_SZ);
export const UBLK_U_CMD_ADD_DEV = _IOWR("u", UBLK_CMD_ADD_DEV, CTRL_SZ);
export const UBLK_U_CMD_DEL_DEV = _IOWR("u", UBLK_CMD_DEL_DEV, CTRL_SZ);
export const UBLK_U_CMD_START_DEV = _IOWR("u", UBLK_CMD_START_DEV, CTRL_SZ);
export const UBLK_U_CMD_STOP_DEV = _IOWR("u", UBLK_CMD_STOP_DEV, CTRL_SZ);
export const UBLK_U_CMD_SET_PARAMS = _IOWR("u", UBLK_CMD_SET_PARAMS, CTRL_SZ);
export const UBLK_U_CMD_GET_PARAMS = _IOR("u", UBLK_CMD_GET_PARAMS, CTRL_SZ);
export const UBLK_U_CMD_START_USER_RECOVERY = _IOWR("u", UBLK_CMD_START_USER_RECOVERY, CTRL_SZ);
export const UBLK_U_CMD_END_USER_RECOVERY = _IOWR("u", UBLK_CMD_END_USER_RECOVERY, CTRL_SZ);
export const UBLK_U_CMD_GET_DEV_INFO2 = _IOR("u", UBLK_CMD_GET_DEV_INFO2, CTRL_SZ);
// The header gives these two no legacy UBLK_CMD_* name, only the raw numbers.
export const UBLK_U_CMD_GET_FEATURES = _IOR("u", 0x13, CTRL_SZ);
export const UBLK_U_CMD_DEL_DEV_ASYNC = _IOR("u", 0x14, CTRL_SZ);
export const UBLK_U_CMD_UPDATE_SIZE = _IOWR("u", 0x15, CTRL_SZ);
export const UBLK_U_CMD_QUIESCE_DEV = _IOWR("u", 0x16, CTRL_SZ);
export const UBLK_U_CMD_TRY_STOP_DEV = _IOWR("u", 0x17, CTRL_SZ);

/** Bytes of the u64 feature mask returned by UBLK_U_CMD_GET_FEATURES. */
export const UBLK_FEATURES_LEN = 8;

// ---- IO commands (on /dev/ublkcN) ----
export const UBLK_IO_FETCH_REQ = 0x20;
export const UBLK_IO_COMMIT_AND_FETCH_REQ = 0x21;
export const UBLK_IO_NEED_GET_DATA = 0x22;
export const UBLK_U_IO_FETCH_REQ = _IOWR("u", UBLK_IO_FETCH_REQ, IO_SZ);
export const UBLK_U_IO_COMMIT_AND_FETCH_REQ = _IOWR("u", UBLK_IO_COMMIT_AND_FETCH_REQ, IO_SZ);
export const UBLK_U_IO_NEED_GET_DATA = _IOWR("u", UBLK_IO_NEED_GET_DATA, IO_SZ);

// ---- IO command cqe results; only ABORT means "do not re-fetch" ----
export const UBLK_IO_RES_OK = 0;
export const UBLK_IO_RES_NEED_GET_DATA = 1;
/** `-ENODEV` in the header (ENODEV is 19 on every Linux arch). */
export const UBLK_IO_RES_ABORT = -19;

// ---- mmap / pread-pwrite offsets on /dev/ublkcN ----
export const UBLKSRV_CMD_BUF_OFFSET = 0;
export const UBLKSRV_IO_BUF_OFFSET = 0x80000000;
export const UBLK_MAX_QUEUE_DEPTH = 4096;

// UBLK_F_USER_COPY position: IO_BUF_OFFSET + (qid << QID_OFF | tag << TAG_OFF | byte offset).
export const UBLK_IO_BUF_OFF = 0;
export const UBLK_IO_BUF_BITS = 25;
export const UBLK_IO_BUF_BITS_MASK = 2 ** UBLK_IO_BUF_BITS - 1;
export const UBLK_TAG_OFF = UBLK_IO_BUF_BITS;
export const UBLK_TAG_BITS = 16;
export const UBLK_TAG_BITS_MASK = 2 ** UBLK_TAG_BITS - 1;
export const UBLK_QID_OFF = UBLK_TAG_OFF + UBLK_TAG_BITS;
export const UBLK_QID_BITS = 12;
export const UBLK_QID_BITS_MASK = 2 ** UBLK_QID_BITS - 1;
export const UBLK_MAX_NR_QUEUES = 2 ** UBLK_QID_BITS;
export const UBLKSRV_IO_BUF_TOTAL_BITS = UBLK_QID_OFF + UBLK_QID_BITS;
/** 2^53: bigint because it is a ULL above 32 bits (and not a safe integer). */
export const UBLKSRV_IO_BUF_TOTAL_SIZE = 1n << BigInt(UBLKSRV_IO_BUF_TOTAL_BITS);

// ---- UBLK_F_* device flags (ublksrv_ctrl_dev_info.flags, GET_FEATURES mask) ----
export const UBLK_F_SUPPORT_ZERO_COPY = 1 << 0;
export const UBLK_F_URING_CMD_COMP_IN_TASK = 1 << 1;
export const UBLK_F_NEED_GET_DATA = 1 << 2;
export const UBLK_F_USER_RECOVERY = 1 << 3;
export const UBLK_F_USER_RECOVERY_REISSUE = 1 << 4;
export const UBLK_F_UNPRIVILEGED_DEV = 1 << 5;
export const UBLK_F_CMD_IOCTL_ENCODE = 1 << 6;
export const UBLK_F_USER_COPY = 1 << 7;
export const UBLK_F_ZONED = 1 << 8;
export const UBLK_F_USER_RECOVERY_FAIL_IO = 1 << 9;
export const UBLK_F_UPDATE_SIZE = 1 << 10;
export const UBLK_F_QUIESCE = 1 << 12;
export const UBLK_F_SAFE_STOP_DEV = 1 << 17;
export const UBLK_F_NO_AUTO_PART_SCAN = 1 << 18;

// ---- device state (ublksrv_ctrl_dev_info.state) ----
export const UBLK_S_DEV_DEAD = 0;
export const UBLK_S_DEV_LIVE = 1;
export const UBLK_S_DEV_QUIESCED = 2;
export const UBLK_S_DEV_FAIL_IO = 3;

// ---- ublksrv_io_desc op (op_flags bits 0-7) ----
export const UBLK_IO_OP_READ = 0;
export const UBLK_IO_OP_WRITE = 1;
export const UBLK_IO_OP_FLUSH = 2;
export const UBLK_IO_OP_DISCARD = 3;
export const UBLK_IO_OP_WRITE_SAME = 4;
export const UBLK_IO_OP_WRITE_ZEROES = 5;
export const UBLK_IO_OP_ZONE_OPEN = 10;
export const UBLK_IO_OP_ZONE_CLOSE = 11;
export const UBLK_IO_OP_ZONE_FINISH = 12;
export const UBLK_IO_OP_ZONE_APPEND = 13;
export const UBLK_IO_OP_ZONE_RESET_ALL = 14;
export const UBLK_IO_OP_ZONE_RESET = 15;
/** Reply is a `struct blk_zone` array (linux/blkzoned.h); nr_sectors holds nr_zones. */
export const UBLK_IO_OP_REPORT_ZONES = 18;

// ---- ublksrv_io_desc flags: values as they sit in op_flags (already shifted by 8) ----
export const UBLK_IO_F_FAILFAST_DEV = 1 << 8;
export const UBLK_IO_F_FAILFAST_TRANSPORT = 1 << 9;
export const UBLK_IO_F_FAILFAST_DRIVER = 1 << 10;
export const UBLK_IO_F_META = 1 << 11;
export const UBLK_IO_F_FUA = 1 << 13;
export const UBLK_IO_F_NOUNMAP = 1 << 15;
export const UBLK_IO_F_SWAP = 1 << 16;

// ---- ublk_param_basic.attrs ----
export const UBLK_ATTR_READ_ONLY = 1 << 0;
export const UBLK_ATTR_ROTATIONAL = 1 << 1;
export const UBLK_ATTR_VOLATILE_CACHE = 1 << 2;
export const UBLK_ATTR_FUA = 1 << 3;

// ---- ublk_params.types ----
export const UBLK_PARAM_TYPE_BASIC = 1 << 0;
export const UBLK_PARAM_TYPE_DISCARD = 1 << 1;
export const UBLK_PARAM_TYPE_DEVT = 1 << 2;
export const UBLK_PARAM_TYPE_ZONED = 1 << 3;

// ---- helpers ----
const roundUp = (n: number, align: number): number => Math.ceil(n / align) * align;
const IOD_SZ = ublksrv_io_desc_LAYOUT.size;

/** mmap offset of queue q's io_desc array: the kernel strides queues by the max-depth size. */
export function ublkQueueCmdBufOffset(q: number, pageSize = 4096): number {
  return UBLKSRV_CMD_BUF_OFFSET + q * roundUp(UBLK_MAX_QUEUE_DEPTH * IOD_SZ, pageSize);
}
/** mmap length of a queue's io_desc array for the given depth. */
export function ublkQueueCmdBufSize(depth: number, pageSize = 4096): number {
  return roundUp(depth * IOD_SZ, pageSize);
}
/**
 * pread/pwrite position on /dev/ublkcN for UBLK_F_USER_COPY. Plain arithmetic (no bigint):
 * with tag < UBLK_MAX_QUEUE_DEPTH the result stays below 2^53.
 */
export function ublkUserCopyPos(q: number, tag: number, byteOff = 0): number {
  return UBLKSRV_IO_BUF_OFFSET + q * 2 ** UBLK_QID_OFF + tag * 2 ** UBLK_TAG_OFF + byteOff;
}

// Zero-allocation io_desc readers for the IO hot path; `off` is the descriptor's byte
// offset in the mmapped view (tag * 24 within the queue's buffer).
/** Same as the header's `ublksrv_get_op()`. */
export const iodOp = (v: DataView, off: number): number => v.getUint32(off, true) & 0xff;
/** Same as the header's `ublksrv_get_flags()`: note the result is shifted, unlike UBLK_IO_F_*. */
export const iodFlags = (v: DataView, off: number): number => v.getUint32(off, true) >>> 8;
/** Raw op_flags, to test against UBLK_IO_F_* directly. */
export const iodOpFlags = (v: DataView, off: number): number => v.getUint32(off, true);
/** nr_sectors, or nr_zones for UBLK_IO_OP_REPORT_ZONES. */
export const iodNrSectors = (v: DataView, off: number): number => v.getUint32(off + 4, true);
export const iodStartSector = (v: DataView, off: number): number =>
  v.getUint32(off + 8, true) + v.getUint32(off + 12, true) * 4294967296;
export const iodAddr = (v: DataView, off: number): number =>
  v.getUint32(off + 16, true) + v.getUint32(off + 20, true) * 4294967296;

const FEATURES: readonly (readonly [string, number])[] = [
  ["UBLK_F_SUPPORT_ZERO_COPY", UBLK_F_SUPPORT_ZERO_COPY],
  ["UBLK_F_URING_CMD_COMP_IN_TASK", UBLK_F_URING_CMD_COMP_IN_TASK],
  ["UBLK_F_NEED_GET_DATA", UBLK_F_NEED_GET_DATA],
  ["UBLK_F_USER_RECOVERY", UBLK_F_USER_RECOVERY],
  ["UBLK_F_USER_RECOVERY_REISSUE", UBLK_F_USER_RECOVERY_REISSUE],
  ["UBLK_F_UNPRIVILEGED_DEV", UBLK_F_UNPRIVILEGED_DEV],
  ["UBLK_F_CMD_IOCTL_ENCODE", UBLK_F_CMD_IOCTL_ENCODE],
  ["UBLK_F_USER_COPY", UBLK_F_USER_COPY],
  ["UBLK_F_ZONED", UBLK_F_ZONED],
];

/**
 * Names of the UBLK_F_* bits set in `flags` (low bit first). Bits newer kernels may report
 * (GET_FEATURES is a u64) come back as `UNKNOWN(1<<n)`.
 */
export function featureNames(flags: number | bigint): string[] {
  let rest = BigInt(flags);
  const out: string[] = [];
  for (const [name, bit] of FEATURES) {
    if (rest & BigInt(bit)) out.push(name);
    rest &= ~BigInt(bit);
  }
  for (let n = 0n; rest > 0n; n++, rest >>= 1n) if (rest & 1n) out.push(`UNKNOWN(1<<${n})`);
  return out;
}

/** UBLK_S_DEV_* name of a device state, or `UNKNOWN(n)`. */
export function devStateName(state: number): string {
  switch (state) {
    case UBLK_S_DEV_DEAD:
      return "UBLK_S_DEV_DEAD";
    case UBLK_S_DEV_LIVE:
      return "UBLK_S_DEV_LIVE";
    case UBLK_S_DEV_QUIESCED:
      return "UBLK_S_DEV_QUIESCED";
    default:
      return `UNKNOWN(${state})`;
  }
}
