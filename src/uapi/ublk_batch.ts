// Batch IO commands of include/uapi/linux/ublk_cmd.h (Linux 7.3, UBLK_F_BATCH_IO):
// UBLK_U_IO_PREP_IO_CMDS / COMMIT_IO_CMDS / FETCH_IO_CMDS carry a struct ublk_batch_io in
// sqe->cmd and point at a buffer of nr_elem elements of elem_bytes each. Pure values, no I/O.
import { f, s32, u8, u16, u64, w8, w16, w64, ws32 } from "./codec.js";

// ---- ublk_batch_io.flags: which optional u64 fields follow each element's header ----
export const UBLK_BATCH_F_HAS_ZONE_LBA = 1 << 0;
export const UBLK_BATCH_F_HAS_BUF_ADDR = 1 << 1;
export const UBLK_BATCH_F_AUTO_BUF_REG_FALLBACK = 1 << 2;

// ---- struct ublk_elem_header: the mandatory first 8 bytes of every element ----
export interface ublk_elem_header {
  tag: number;
  /** Buffer table slot for the request; only with UBLK_F_AUTO_BUF_REG. */
  buf_index: number;
  /** Completion result (commit only). */
  result: number;
}
export const ublk_elem_header_LAYOUT = {
  size: 8,
  fields: { tag: f(0, 2), buf_index: f(2, 2), result: f(4, 4) },
} as const;
export function read_ublk_elem_header(v: DataView, o: number): ublk_elem_header {
  const F = ublk_elem_header_LAYOUT.fields;
  return { tag: u16(v, o, F.tag), buf_index: u16(v, o, F.buf_index), result: s32(v, o, F.result) };
}
export function write_ublk_elem_header(v: DataView, o: number, s: ublk_elem_header): void {
  const F = ublk_elem_header_LAYOUT.fields;
  w16(v, o, F.tag, s.tag);
  w16(v, o, F.buf_index, s.buf_index);
  ws32(v, o, F.result, s.result);
}

/**
 * Bytes of one element for these UBLK_BATCH_F_* flags: the header, then buf_addr (with
 * HAS_BUF_ADDR), then zone_lba (with HAS_ZONE_LBA), 8 bytes each, in that order.
 */
export function ublkBatchElemBytes(flags: number): number {
  let n = ublk_elem_header_LAYOUT.size;
  if (flags & UBLK_BATCH_F_HAS_BUF_ADDR) n += 8;
  if (flags & UBLK_BATCH_F_HAS_ZONE_LBA) n += 8;
  return n;
}

// ---- struct ublk_batch_io: sqe->cmd of the batch commands ----
export interface ublk_batch_io {
  q_id: number;
  /** UBLK_BATCH_F_* */
  flags: number;
  nr_elem: number;
  /** ublkBatchElemBytes(flags) */
  elem_bytes: number;
  reserved: number;
  reserved2: bigint;
}
export const ublk_batch_io_LAYOUT = {
  size: 16,
  fields: {
    q_id: f(0, 2),
    flags: f(2, 2),
    nr_elem: f(4, 2),
    elem_bytes: f(6, 1),
    reserved: f(7, 1),
    reserved2: f(8, 8),
  },
} as const;
export function read_ublk_batch_io(v: DataView, o: number): ublk_batch_io {
  const F = ublk_batch_io_LAYOUT.fields;
  return {
    q_id: u16(v, o, F.q_id),
    flags: u16(v, o, F.flags),
    nr_elem: u16(v, o, F.nr_elem),
    elem_bytes: u8(v, o, F.elem_bytes),
    reserved: u8(v, o, F.reserved),
    reserved2: u64(v, o, F.reserved2),
  };
}
export function write_ublk_batch_io(v: DataView, o: number, s: ublk_batch_io): void {
  const F = ublk_batch_io_LAYOUT.fields;
  w16(v, o, F.q_id, s.q_id);
  w16(v, o, F.flags, s.flags);
  w16(v, o, F.nr_elem, s.nr_elem);
  w8(v, o, F.elem_bytes, s.elem_bytes);
  w8(v, o, F.reserved, s.reserved);
  w64(v, o, F.reserved2, s.reserved2);
}
