// struct ublk_params of include/uapi/linux/ublk_cmd.h (Linux 7.3) and its parts, with DataView
// codecs. Byte arrays named `pad` are in the layouts (so the layout test checks them) but not in
// the interfaces: the codecs write them as zero.
import { bytes, f, u8, u16, u32, u64, w8, w16, w32, w64, wbytes } from "./codec.js";

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
  return {
    max_open_zones: u32(v, o, F.max_open_zones),
    max_active_zones: u32(v, o, F.max_active_zones),
    max_zone_append_sectors: u32(v, o, F.max_zone_append_sectors),
    reserved: bytes(v, o, F.reserved),
  };
}
export function write_ublk_param_zoned(v: DataView, o: number, s: ublk_param_zoned): void {
  const F = ublk_param_zoned_LAYOUT.fields;
  w32(v, o, F.max_open_zones, s.max_open_zones);
  w32(v, o, F.max_active_zones, s.max_active_zones);
  w32(v, o, F.max_zone_append_sectors, s.max_zone_append_sectors);
  wbytes(v, o, F.reserved, s.reserved);
}

// ---- struct ublk_param_dma_align (UBLK_PARAM_TYPE_DMA_ALIGN) ----
export interface ublk_param_dma_align {
  /** A mask (bytes - 1): alignment + 1 is a power of two below the page size. */
  alignment: number;
}
export const ublk_param_dma_align_LAYOUT = {
  size: 8,
  fields: { alignment: f(0, 4), pad: f(4, 4) },
} as const;
export function read_ublk_param_dma_align(v: DataView, o: number): ublk_param_dma_align {
  return { alignment: u32(v, o, ublk_param_dma_align_LAYOUT.fields.alignment) };
}
export function write_ublk_param_dma_align(v: DataView, o: number, s: ublk_param_dma_align): void {
  const F = ublk_param_dma_align_LAYOUT.fields;
  w32(v, o, F.alignment, s.alignment);
  wbytes(v, o, F.pad);
}

// ---- struct ublk_param_segment (UBLK_PARAM_TYPE_SEGMENT); all three must be non-zero ----
export interface ublk_param_segment {
  /** seg_boundary_mask + 1 is a power of two >= UBLK_MIN_SEGMENT_SIZE. */
  seg_boundary_mask: bigint;
  /** >= UBLK_MIN_SEGMENT_SIZE; virt_boundary_mask may override it. */
  max_segment_size: number;
  max_segments: number;
}
export const ublk_param_segment_LAYOUT = {
  size: 16,
  fields: { seg_boundary_mask: f(0, 8), max_segment_size: f(8, 4), max_segments: f(12, 2), pad: f(14, 2) },
} as const;
export function read_ublk_param_segment(v: DataView, o: number): ublk_param_segment {
  const F = ublk_param_segment_LAYOUT.fields;
  return {
    seg_boundary_mask: u64(v, o, F.seg_boundary_mask),
    max_segment_size: u32(v, o, F.max_segment_size),
    max_segments: u16(v, o, F.max_segments),
  };
}
export function write_ublk_param_segment(v: DataView, o: number, s: ublk_param_segment): void {
  const F = ublk_param_segment_LAYOUT.fields;
  w64(v, o, F.seg_boundary_mask, s.seg_boundary_mask);
  w32(v, o, F.max_segment_size, s.max_segment_size);
  w16(v, o, F.max_segments, s.max_segments);
  wbytes(v, o, F.pad);
}

// ---- struct ublk_param_integrity (UBLK_PARAM_TYPE_INTEGRITY, needs UBLK_F_INTEGRITY) ----
export interface ublk_param_integrity {
  /** LBMD_PI_CAP_* of <linux/fs.h>. */
  flags: number;
  /** 0: no limit. */
  max_integrity_segments: number;
  interval_exp: number;
  /** Must be non-zero when UBLK_PARAM_TYPE_INTEGRITY is set. */
  metadata_size: number;
  pi_offset: number;
  /** LBMD_PI_CSUM_* of <linux/fs.h>. */
  csum_type: number;
  tag_size: number;
}
export const ublk_param_integrity_LAYOUT = {
  size: 16,
  fields: {
    flags: f(0, 4),
    max_integrity_segments: f(4, 2),
    interval_exp: f(6, 1),
    metadata_size: f(7, 1),
    pi_offset: f(8, 1),
    csum_type: f(9, 1),
    tag_size: f(10, 1),
    pad: f(11, 5),
  },
} as const;
export function read_ublk_param_integrity(v: DataView, o: number): ublk_param_integrity {
  const F = ublk_param_integrity_LAYOUT.fields;
  return {
    flags: u32(v, o, F.flags),
    max_integrity_segments: u16(v, o, F.max_integrity_segments),
    interval_exp: u8(v, o, F.interval_exp),
    metadata_size: u8(v, o, F.metadata_size),
    pi_offset: u8(v, o, F.pi_offset),
    csum_type: u8(v, o, F.csum_type),
    tag_size: u8(v, o, F.tag_size),
  };
}
export function write_ublk_param_integrity(v: DataView, o: number, s: ublk_param_integrity): void {
  const F = ublk_param_integrity_LAYOUT.fields;
  w32(v, o, F.flags, s.flags);
  w16(v, o, F.max_integrity_segments, s.max_integrity_segments);
  w8(v, o, F.interval_exp, s.interval_exp);
  w8(v, o, F.metadata_size, s.metadata_size);
  w8(v, o, F.pi_offset, s.pi_offset);
  w8(v, o, F.csum_type, s.csum_type);
  w8(v, o, F.tag_size, s.tag_size);
  wbytes(v, o, F.pad);
}

// ---- struct ublk_params: SET_PARAMS / GET_PARAMS payload ----
// Older drivers accept this (7.3-sized) struct: SET_PARAMS and GET_PARAMS clamp `len` to the
// driver's own sizeof(struct ublk_params) (112 on 6.12) and SET_PARAMS clears the `types` bits the
// driver does not know. So a 6.12 driver takes len 152 but silently ignores dma/seg/integrity:
// set their UBLK_PARAM_TYPE_* bits only where the driver is known to handle them.
/**
 * `len` is normally ublk_params_LAYOUT.size (152). `dma`, `seg` and `integrity` (absent from the
 * 6.12 header) may be left out: they are written as zeros.
 */
export interface ublk_params {
  len: number;
  /** UBLK_PARAM_TYPE_* bits saying which sub-structs are meaningful. */
  types: number;
  basic: ublk_param_basic;
  discard: ublk_param_discard;
  devt: ublk_param_devt;
  zoned: ublk_param_zoned;
  dma?: ublk_param_dma_align;
  seg?: ublk_param_segment;
  integrity?: ublk_param_integrity;
}
export const ublk_params_LAYOUT = {
  size: 152,
  fields: {
    len: f(0, 4),
    types: f(4, 4),
    basic: f(8, 32),
    discard: f(40, 20),
    devt: f(60, 16),
    zoned: f(76, 32),
    dma: f(108, 8),
    seg: f(120, 16),
    integrity: f(136, 16),
  },
} as const;
/** Every part is read; a driver older than the header leaves the newer ones as the caller zeroed them. */
export function read_ublk_params(v: DataView, o: number): Required<ublk_params> {
  const F = ublk_params_LAYOUT.fields;
  return {
    len: u32(v, o, F.len),
    types: u32(v, o, F.types),
    basic: read_ublk_param_basic(v, o + F.basic.offset),
    discard: read_ublk_param_discard(v, o + F.discard.offset),
    devt: read_ublk_param_devt(v, o + F.devt.offset),
    zoned: read_ublk_param_zoned(v, o + F.zoned.offset),
    dma: read_ublk_param_dma_align(v, o + F.dma.offset),
    seg: read_ublk_param_segment(v, o + F.seg.offset),
    integrity: read_ublk_param_integrity(v, o + F.integrity.offset),
  };
}
const NO_DMA: ublk_param_dma_align = { alignment: 0 };
const NO_SEG: ublk_param_segment = { seg_boundary_mask: 0n, max_segment_size: 0, max_segments: 0 };
const NO_INTEGRITY: ublk_param_integrity = {
  flags: 0,
  max_integrity_segments: 0,
  interval_exp: 0,
  metadata_size: 0,
  pi_offset: 0,
  csum_type: 0,
  tag_size: 0,
};
/** Writes all ublk_params_LAYOUT.size bytes, the padding between parts as zeros. */
export function write_ublk_params(v: DataView, o: number, s: ublk_params): void {
  const F = ublk_params_LAYOUT.fields;
  for (let i = 0; i < ublk_params_LAYOUT.size; i++) v.setUint8(o + i, 0);
  w32(v, o, F.len, s.len);
  w32(v, o, F.types, s.types);
  write_ublk_param_basic(v, o + F.basic.offset, s.basic);
  write_ublk_param_discard(v, o + F.discard.offset, s.discard);
  write_ublk_param_devt(v, o + F.devt.offset, s.devt);
  write_ublk_param_zoned(v, o + F.zoned.offset, s.zoned);
  write_ublk_param_dma_align(v, o + F.dma.offset, s.dma ?? NO_DMA);
  write_ublk_param_segment(v, o + F.seg.offset, s.seg ?? NO_SEG);
  write_ublk_param_integrity(v, o + F.integrity.offset, s.integrity ?? NO_INTEGRITY);
}
