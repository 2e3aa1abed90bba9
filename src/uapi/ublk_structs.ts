// Structs of include/uapi/linux/ublk_cmd.h (Linux 6.12) with little-endian DataView codecs.
// Offsets live only in the *_LAYOUT consts (checked against the C header by a unit test);
// the codecs read them so a layout fix cannot drift from the codec.
// Anonymous unions: every member is in the layout, the interface carries only the first one.

type Field = { readonly offset: number; readonly size: number };
const f = (offset: number, size: number): Field => ({ offset, size });

const u8 = (v: DataView, o: number, x: Field) => v.getUint8(o + x.offset);
const u16 = (v: DataView, o: number, x: Field) => v.getUint16(o + x.offset, true);
const u32 = (v: DataView, o: number, x: Field) => v.getUint32(o + x.offset, true);
const s32 = (v: DataView, o: number, x: Field) => v.getInt32(o + x.offset, true);
const u64 = (v: DataView, o: number, x: Field) => v.getBigUint64(o + x.offset, true);
const w8 = (v: DataView, o: number, x: Field, n: number) => v.setUint8(o + x.offset, n);
const w16 = (v: DataView, o: number, x: Field, n: number) => v.setUint16(o + x.offset, n, true);
const w32 = (v: DataView, o: number, x: Field, n: number) => v.setUint32(o + x.offset, n, true);
const ws32 = (v: DataView, o: number, x: Field, n: number) => v.setInt32(o + x.offset, n, true);
const w64 = (v: DataView, o: number, x: Field, n: bigint) => v.setBigUint64(o + x.offset, n, true);

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
  pad0: number;
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
    pad0: f(6, 2),
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
    pad0: u16(v, o, F.pad0),
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
  w16(v, o, F.pad0, s.pad0);
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

// ---- struct ublk_param_basic ----
export interface ublk_param_basic {
  attrs: number;
  logical_bs_shift: number;
  physical_bs_shift: number;
  io_opt_shift: number;
  io_min_shift: number;
  max_sectors: number;
  chunk_sectors: number;
  dev_sectors: bigint;
  virt_boundary_mask: bigint;
}
export const ublk_param_basic_LAYOUT = {
  size: 32,
  fields: {
    attrs: f(0, 4),
    logical_bs_shift: f(4, 1),
    physical_bs_shift: f(5, 1),
    io_opt_shift: f(6, 1),
    io_min_shift: f(7, 1),
    max_sectors: f(8, 4),
    chunk_sectors: f(12, 4),
    dev_sectors: f(16, 8),
    virt_boundary_mask: f(24, 8),
  },
} as const;
export function read_ublk_param_basic(v: DataView, o: number): ublk_param_basic {
  const F = ublk_param_basic_LAYOUT.fields;
  return {
    attrs: u32(v, o, F.attrs),
    logical_bs_shift: u8(v, o, F.logical_bs_shift),
    physical_bs_shift: u8(v, o, F.physical_bs_shift),
    io_opt_shift: u8(v, o, F.io_opt_shift),
    io_min_shift: u8(v, o, F.io_min_shift),
    max_sectors: u32(v, o, F.max_sectors),
    chunk_sectors: u32(v, o, F.chunk_sectors),
    dev_sectors: u64(v, o, F.dev_sectors),
    virt_boundary_mask: u64(v, o, F.virt_boundary_mask),
  };
}
export function write_ublk_param_basic(v: DataView, o: number, s: ublk_param_basic): void {
  const F = ublk_param_basic_LAYOUT.fields;
  w32(v, o, F.attrs, s.attrs);
  w8(v, o, F.logical_bs_shift, s.logical_bs_shift);
  w8(v, o, F.physical_bs_shift, s.physical_bs_shift);
  w8(v, o, F.io_opt_shift, s.io_opt_shift);
  w8(v, o, F.io_min_shift, s.io_min_shift);
  w32(v, o, F.max_sectors, s.max_sectors);
  w32(v, o, F.chunk_sectors, s.chunk_sectors);
  w64(v, o, F.dev_sectors, s.dev_sectors);
  w64(v, o, F.virt_boundary_mask, s.virt_boundary_mask);
}

// ---- struct ublk_param_discard ----
export interface ublk_param_discard {
  discard_alignment: number;
  discard_granularity: number;
  max_discard_sectors: number;
  max_write_zeroes_sectors: number;
  max_discard_segments: number;
  reserved0: number;
}
export const ublk_param_discard_LAYOUT = {
  size: 20,
  fields: {
    discard_alignment: f(0, 4),
    discard_granularity: f(4, 4),
    max_discard_sectors: f(8, 4),
    max_write_zeroes_sectors: f(12, 4),
    max_discard_segments: f(16, 2),
    reserved0: f(18, 2),
  },
} as const;
export function read_ublk_param_discard(v: DataView, o: number): ublk_param_discard {
  const F = ublk_param_discard_LAYOUT.fields;
  return {
    discard_alignment: u32(v, o, F.discard_alignment),
    discard_granularity: u32(v, o, F.discard_granularity),
    max_discard_sectors: u32(v, o, F.max_discard_sectors),
    max_write_zeroes_sectors: u32(v, o, F.max_write_zeroes_sectors),
    max_discard_segments: u16(v, o, F.max_discard_segments),
    reserved0: u16(v, o, F.reserved0),
  };
}
export function write_ublk_param_discard(v: DataView, o: number, s: ublk_param_discard): void {
  const F = ublk_param_discard_LAYOUT.fields;
  w32(v, o, F.discard_alignment, s.discard_alignment);
  w32(v, o, F.discard_granularity, s.discard_granularity);
  w32(v, o, F.max_discard_sectors, s.max_discard_sectors);
  w32(v, o, F.max_write_zeroes_sectors, s.max_write_zeroes_sectors);
  w16(v, o, F.max_discard_segments, s.max_discard_segments);
  w16(v, o, F.reserved0, s.reserved0);
}

// ---- struct ublk_param_devt: read-only, filled by GET_PARAMS ----
export interface ublk_param_devt {
  char_major: number;
  char_minor: number;
  disk_major: number;
  disk_minor: number;
}
export const ublk_param_devt_LAYOUT = {
  size: 16,
  fields: { char_major: f(0, 4), char_minor: f(4, 4), disk_major: f(8, 4), disk_minor: f(12, 4) },
} as const;
export function read_ublk_param_devt(v: DataView, o: number): ublk_param_devt {
  const F = ublk_param_devt_LAYOUT.fields;
  return {
    char_major: u32(v, o, F.char_major),
    char_minor: u32(v, o, F.char_minor),
    disk_major: u32(v, o, F.disk_major),
    disk_minor: u32(v, o, F.disk_minor),
  };
}
export function write_ublk_param_devt(v: DataView, o: number, s: ublk_param_devt): void {
  const F = ublk_param_devt_LAYOUT.fields;
  w32(v, o, F.char_major, s.char_major);
  w32(v, o, F.char_minor, s.char_minor);
  w32(v, o, F.disk_major, s.disk_major);
  w32(v, o, F.disk_minor, s.disk_minor);
}

// ---- struct ublk_param_zoned ----
export interface ublk_param_zoned {
  max_open_zones: number;
  max_active_zones: number;
  max_zone_append_sectors: number;
  /** 20 bytes. */
  reserved: Uint8Array;
}
export const ublk_param_zoned_LAYOUT = {
  size: 32,
  fields: {
    max_open_zones: f(0, 4),
    max_active_zones: f(4, 4),
    max_zone_append_sectors: f(8, 4),
    reserved: f(12, 20),
  },
} as const;
export function read_ublk_param_zoned(v: DataView, o: number): ublk_param_zoned {
  const F = ublk_param_zoned_LAYOUT.fields;
  const at = v.byteOffset + o + F.reserved.offset;
  return {
    max_open_zones: u32(v, o, F.max_open_zones),
    max_active_zones: u32(v, o, F.max_active_zones),
    max_zone_append_sectors: u32(v, o, F.max_zone_append_sectors),
    reserved: new Uint8Array(v.buffer.slice(at, at + F.reserved.size)),
  };
}
export function write_ublk_param_zoned(v: DataView, o: number, s: ublk_param_zoned): void {
  const F = ublk_param_zoned_LAYOUT.fields;
  w32(v, o, F.max_open_zones, s.max_open_zones);
  w32(v, o, F.max_active_zones, s.max_active_zones);
  w32(v, o, F.max_zone_append_sectors, s.max_zone_append_sectors);
  for (let i = 0; i < F.reserved.size; i++) v.setUint8(o + F.reserved.offset + i, s.reserved[i] ?? 0);
}

// ---- struct ublk_params: SET_PARAMS / GET_PARAMS payload ----
/** `len` is normally ublk_params_LAYOUT.size (112: 108 bytes of fields + tail padding to 8). */
export interface ublk_params {
  len: number;
  /** UBLK_PARAM_TYPE_* bits saying which sub-structs are meaningful. */
  types: number;
  basic: ublk_param_basic;
  discard: ublk_param_discard;
  devt: ublk_param_devt;
  zoned: ublk_param_zoned;
}
export const ublk_params_LAYOUT = {
  size: 112,
  fields: {
    len: f(0, 4),
    types: f(4, 4),
    basic: f(8, 32),
    discard: f(40, 20),
    devt: f(60, 16),
    zoned: f(76, 32),
  },
} as const;
export function read_ublk_params(v: DataView, o: number): ublk_params {
  const F = ublk_params_LAYOUT.fields;
  return {
    len: u32(v, o, F.len),
    types: u32(v, o, F.types),
    basic: read_ublk_param_basic(v, o + F.basic.offset),
    discard: read_ublk_param_discard(v, o + F.discard.offset),
    devt: read_ublk_param_devt(v, o + F.devt.offset),
    zoned: read_ublk_param_zoned(v, o + F.zoned.offset),
  };
}
export function write_ublk_params(v: DataView, o: number, s: ublk_params): void {
  const F = ublk_params_LAYOUT.fields;
  w32(v, o, F.len, s.len);
  w32(v, o, F.types, s.types);
  write_ublk_param_basic(v, o + F.basic.offset, s.basic);
  write_ublk_param_discard(v, o + F.discard.offset, s.discard);
  write_ublk_param_devt(v, o + F.devt.offset, s.devt);
  write_ublk_param_zoned(v, o + F.zoned.offset, s.zoned);
}
