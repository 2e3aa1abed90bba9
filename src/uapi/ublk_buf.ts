// Buffer registration of include/uapi/linux/ublk_cmd.h (Linux 7.3): UBLK_F_AUTO_BUF_REG's
// ublk_auto_buf_reg (carried in the uring_cmd's sqe->addr) and UBLK_F_SHMEM_ZC's shared-memory
// buffers (UBLK_U_CMD_REG_BUF payload and the io_desc addr encoding). Pure values, no I/O.
import { f, u32, u64, w32, w64 } from "./codec.js";

// ---- UBLK_F_AUTO_BUF_REG ----
/** Complete the command with UBLK_IO_F_NEED_REG_BUF instead of failing the request when auto-registration fails. */
export const UBLK_AUTO_BUF_REG_FALLBACK = 1 << 0;
export const UBLK_AUTO_BUF_REG_F_MASK = UBLK_AUTO_BUF_REG_FALLBACK;

/** Never sent as a struct: it is packed into sqe->addr (see ublk_auto_buf_reg_to_sqe_addr). */
export interface ublk_auto_buf_reg {
  /** Slot of the sparse io_uring buffer table to register the request buffer in. */
  index: number;
  /** UBLK_AUTO_BUF_REG_* */
  flags: number;
  /** Must be zero. */
  reserved0: number;
  /** Must be zero. */
  reserved1: number;
}
export const ublk_auto_buf_reg_LAYOUT = {
  size: 8,
  fields: { index: f(0, 2), flags: f(2, 1), reserved0: f(3, 1), reserved1: f(4, 4) },
} as const;

/** sqe->addr bits 0-15 index, 16-23 flags, 24-31 reserved0, 32-63 reserved1 (as the header's inline function). */
export function ublk_sqe_addr_to_auto_buf_reg(sqe_addr: bigint): ublk_auto_buf_reg {
  const a = BigInt.asUintN(64, sqe_addr);
  return {
    index: Number(a & 0xffffn),
    flags: Number((a >> 16n) & 0xffn),
    reserved0: Number((a >> 24n) & 0xffn),
    reserved1: Number((a >> 32n) & 0xffffffffn),
  };
}
/** Inverse of ublk_sqe_addr_to_auto_buf_reg; each field is truncated to its C width first. */
export function ublk_auto_buf_reg_to_sqe_addr(buf: ublk_auto_buf_reg): bigint {
  return (
    BigInt(buf.index & 0xffff) |
    (BigInt(buf.flags & 0xff) << 16n) |
    (BigInt(buf.reserved0 & 0xff) << 24n) |
    (BigInt(buf.reserved1 >>> 0) << 32n)
  );
}
/**
 * The same sqe->addr as a plain number, for the IO hot path (no bigint per request): with the
 * reserved fields zero, as the driver requires, the value is below 2^24.
 */
export const autoBufRegSqeAddr = (index: number, flags = 0): number =>
  (index & 0xffff) | ((flags & 0xff) << 16);

// ---- UBLK_F_SHMEM_ZC: UBLK_U_CMD_REG_BUF ----
/** Pin the pages without FOLL_WRITE, so a write-sealed memfd can be registered. */
export const UBLK_SHMEM_BUF_READ_ONLY = 1 << 0;

/** UBLK_U_CMD_REG_BUF payload, pointed to by ctrl_cmd.addr; the cqe result is the buffer index. */
export interface ublk_shmem_buf_reg {
  /** Start of the shared mapping in this process. */
  addr: bigint;
  /** Bytes, page-aligned. */
  len: bigint;
  /** UBLK_SHMEM_BUF_* */
  flags: number;
  reserved: number;
}
export const ublk_shmem_buf_reg_LAYOUT = {
  size: 24,
  fields: { addr: f(0, 8), len: f(8, 8), flags: f(16, 4), reserved: f(20, 4) },
} as const;
export function read_ublk_shmem_buf_reg(v: DataView, o: number): ublk_shmem_buf_reg {
  const F = ublk_shmem_buf_reg_LAYOUT.fields;
  return {
    addr: u64(v, o, F.addr),
    len: u64(v, o, F.len),
    flags: u32(v, o, F.flags),
    reserved: u32(v, o, F.reserved),
  };
}
export function write_ublk_shmem_buf_reg(v: DataView, o: number, s: ublk_shmem_buf_reg): void {
  const F = ublk_shmem_buf_reg_LAYOUT.fields;
  w64(v, o, F.addr, s.addr);
  w64(v, o, F.len, s.len);
  w32(v, o, F.flags, s.flags);
  w32(v, o, F.reserved, s.reserved);
}

// ---- UBLK_IO_F_SHMEM_ZC: ublksrv_io_desc.addr = buffer index << 32 | byte offset ----
export const UBLK_SHMEM_ZC_OFF_MASK = 0xffffffff;
export const UBLK_SHMEM_ZC_IDX_OFF = 32;
export const UBLK_SHMEM_ZC_IDX_MASK = 0xffff;

const IDX_SCALE = 2 ** UBLK_SHMEM_ZC_IDX_OFF;
// Numbers rather than bigint (the header's __u64): bits 48-63 are reserved zero, so every encoded
// addr is below 2^48, and iodAddr() hands the hot path a number.
/** Encodes buffer `index` and byte `offset` as an io_desc addr. */
export function ublk_shmem_zc_addr(index: number, offset: number): number {
  return (index & UBLK_SHMEM_ZC_IDX_MASK) * IDX_SCALE + (offset >>> 0);
}
export function ublk_shmem_zc_index(addr: number | bigint): number {
  if (typeof addr === "bigint") return Number((addr >> 32n) & 0xffffn);
  return Math.floor(addr / IDX_SCALE) & UBLK_SHMEM_ZC_IDX_MASK;
}
export function ublk_shmem_zc_offset(addr: number | bigint): number {
  if (typeof addr === "bigint") return Number(addr & 0xffffffffn);
  return addr % IDX_SCALE;
}
