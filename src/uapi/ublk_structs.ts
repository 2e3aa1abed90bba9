// Command and device structs of include/uapi/linux/ublk_cmd.h (Linux 7.3) with little-endian
// DataView codecs; ublk_params and its parts are in ublk_params.ts, buffer registration in
// ublk_buf.ts, batch IO in ublk_batch.ts.
// Anonymous unions: every member is in the layout, the interface carries only the first one.
import { f, s32, u16, u32, u64, w16, w32, w64, ws32 } from "./codec.js";

// ---- struct ublksrv_ctrl_cmd: shipped in sqe->cmd of control uring_cmds ----
/** `data` is the header's single-element `data[1]`. */
export interface ublksrv_ctrl_cmd {
  dev_id: number;
  /** -1 (0xffff) when the command is not for a queue. */
  queue_id: number;
  len: number;
  addr: bigint;
  data: bigint;
  dev_path_len: number;
  pad: number;
  reserved: number;
}
export const ublksrv_ctrl_cmd_LAYOUT = {
  size: 32,
  fields: {
    dev_id: f(0, 4),
    queue_id: f(4, 2),
    len: f(6, 2),
    addr: f(8, 8),
    data: f(16, 8),
    dev_path_len: f(24, 2),
    pad: f(26, 2),
    reserved: f(28, 4),
  },
} as const;
export function read_ublksrv_ctrl_cmd(v: DataView, o: number): ublksrv_ctrl_cmd {
  const F = ublksrv_ctrl_cmd_LAYOUT.fields;
  return {
    dev_id: u32(v, o, F.dev_id),
    queue_id: u16(v, o, F.queue_id),
    len: u16(v, o, F.len),
    addr: u64(v, o, F.addr),
    data: u64(v, o, F.data),
    dev_path_len: u16(v, o, F.dev_path_len),
    pad: u16(v, o, F.pad),
    reserved: u32(v, o, F.reserved),
  };
}
export function write_ublksrv_ctrl_cmd(v: DataView, o: number, s: ublksrv_ctrl_cmd): void {
  const F = ublksrv_ctrl_cmd_LAYOUT.fields;
  w32(v, o, F.dev_id, s.dev_id);
  w16(v, o, F.queue_id, s.queue_id & 0xffff);
  w16(v, o, F.len, s.len);
  w64(v, o, F.addr, s.addr);
  w64(v, o, F.data, s.data);
  w16(v, o, F.dev_path_len, s.dev_path_len);
  w16(v, o, F.pad, s.pad);
  w32(v, o, F.reserved, s.reserved);
}

// ---- struct ublksrv_ctrl_dev_info ----
export interface ublksrv_ctrl_dev_info {
  nr_hw_queues: number;
  queue_depth: number;
  state: number;
  /** With UBLK_F_IO_DESC_SIZE: bytes per ublksrv_io_desc. `pad0` in older headers (6.12). */
  io_desc_size: number;
  max_io_buf_bytes: number;
  dev_id: number;
  ublksrv_pid: number;
  pad1: number;
  flags: bigint;
  ublksrv_flags: bigint;
  owner_uid: number;
  owner_gid: number;
  reserved1: bigint;
  reserved2: bigint;
}
export const ublksrv_ctrl_dev_info_LAYOUT = {
  size: 64,
  fields: {
    nr_hw_queues: f(0, 2),
    queue_depth: f(2, 2),
    state: f(4, 2),
    io_desc_size: f(6, 2),
    max_io_buf_bytes: f(8, 4),
    dev_id: f(12, 4),
    ublksrv_pid: f(16, 4),
    pad1: f(20, 4),
    flags: f(24, 8),
    ublksrv_flags: f(32, 8),
    owner_uid: f(40, 4),
    owner_gid: f(44, 4),
    reserved1: f(48, 8),
    reserved2: f(56, 8),
  },
} as const;
export function read_ublksrv_ctrl_dev_info(v: DataView, o: number): ublksrv_ctrl_dev_info {
  const F = ublksrv_ctrl_dev_info_LAYOUT.fields;
  return {
    nr_hw_queues: u16(v, o, F.nr_hw_queues),
    queue_depth: u16(v, o, F.queue_depth),
    state: u16(v, o, F.state),
    io_desc_size: u16(v, o, F.io_desc_size),
    max_io_buf_bytes: u32(v, o, F.max_io_buf_bytes),
    dev_id: u32(v, o, F.dev_id),
    ublksrv_pid: s32(v, o, F.ublksrv_pid),
    pad1: u32(v, o, F.pad1),
    flags: u64(v, o, F.flags),
    ublksrv_flags: u64(v, o, F.ublksrv_flags),
    owner_uid: u32(v, o, F.owner_uid),
    owner_gid: u32(v, o, F.owner_gid),
    reserved1: u64(v, o, F.reserved1),
    reserved2: u64(v, o, F.reserved2),
  };
}
export function write_ublksrv_ctrl_dev_info(v: DataView, o: number, s: ublksrv_ctrl_dev_info): void {
  const F = ublksrv_ctrl_dev_info_LAYOUT.fields;
  w16(v, o, F.nr_hw_queues, s.nr_hw_queues);
  w16(v, o, F.queue_depth, s.queue_depth);
  w16(v, o, F.state, s.state);
  w16(v, o, F.io_desc_size, s.io_desc_size);
  w32(v, o, F.max_io_buf_bytes, s.max_io_buf_bytes);
  w32(v, o, F.dev_id, s.dev_id);
  ws32(v, o, F.ublksrv_pid, s.ublksrv_pid);
  w32(v, o, F.pad1, s.pad1);
  w64(v, o, F.flags, s.flags);
  w64(v, o, F.ublksrv_flags, s.ublksrv_flags);
  w32(v, o, F.owner_uid, s.owner_uid);
  w32(v, o, F.owner_gid, s.owner_gid);
  w64(v, o, F.reserved1, s.reserved1);
  w64(v, o, F.reserved2, s.reserved2);
}

// ---- struct ublksrv_io_desc: per-tag descriptor in the mmapped cmd buffer ----
// Hot-path readers that allocate nothing are in ublk_cmd.ts (iodOp, iodStartSector, ...).
/** `nr_sectors` is a union with `nr_zones` (UBLK_IO_OP_REPORT_ZONES). */
export interface ublksrv_io_desc {
  op_flags: number;
  nr_sectors: number;
  start_sector: bigint;
  addr: bigint;
}
export const ublksrv_io_desc_LAYOUT = {
  size: 24,
  fields: {
    op_flags: f(0, 4),
    nr_sectors: f(4, 4),
    nr_zones: f(4, 4),
    start_sector: f(8, 8),
    addr: f(16, 8),
  },
} as const;
export function read_ublksrv_io_desc(v: DataView, o: number): ublksrv_io_desc {
  const F = ublksrv_io_desc_LAYOUT.fields;
  return {
    op_flags: u32(v, o, F.op_flags),
    nr_sectors: u32(v, o, F.nr_sectors),
    start_sector: u64(v, o, F.start_sector),
    addr: u64(v, o, F.addr),
  };
}
export function write_ublksrv_io_desc(v: DataView, o: number, s: ublksrv_io_desc): void {
  const F = ublksrv_io_desc_LAYOUT.fields;
  w32(v, o, F.op_flags, s.op_flags);
  w32(v, o, F.nr_sectors, s.nr_sectors);
  w64(v, o, F.start_sector, s.start_sector);
  w64(v, o, F.addr, s.addr);
}

// ---- struct ublksrv_io_cmd: sqe->cmd of FETCH / COMMIT_AND_FETCH / NEED_GET_DATA ----
/** `addr` is a union with `zone_append_lba` (returned LBA of a zone append). */
export interface ublksrv_io_cmd {
  q_id: number;
  tag: number;
  result: number;
  addr: bigint;
}
export const ublksrv_io_cmd_LAYOUT = {
  size: 16,
  fields: { q_id: f(0, 2), tag: f(2, 2), result: f(4, 4), addr: f(8, 8), zone_append_lba: f(8, 8) },
} as const;
export function read_ublksrv_io_cmd(v: DataView, o: number): ublksrv_io_cmd {
  const F = ublksrv_io_cmd_LAYOUT.fields;
  return {
    q_id: u16(v, o, F.q_id),
    tag: u16(v, o, F.tag),
    result: s32(v, o, F.result),
    addr: u64(v, o, F.addr),
  };
}
export function write_ublksrv_io_cmd(v: DataView, o: number, s: ublksrv_io_cmd): void {
  const F = ublksrv_io_cmd_LAYOUT.fields;
  w16(v, o, F.q_id, s.q_id);
  w16(v, o, F.tag, s.tag);
  ws32(v, o, F.result, s.result);
  w64(v, o, F.addr, s.addr);
}
