// Device parameters in a person's units, and their translation to struct ublk_params.
import { LBMD_PI_CAP_INTEGRITY, LBMD_PI_CAP_REFTAG, LBMD_PI_CSUM_NONE, piTupleSize } from "../uapi/lbmd.js";
import * as U from "../uapi/ublk_cmd.js";

export interface DiscardParams {
  /** Bytes; a power of two >= the logical block size. */
  granularity: number;
  /** Bytes. */
  alignment: number;
  maxSectors: number;
  maxWriteZeroesSectors: number;
  maxSegments: number;
}

/** A zoned device (UBLK_F_ZONED): its zone size is chunkSectors. 0 means no limit. */
export interface ZonedParams {
  maxOpenZones: number;
  maxActiveZones: number;
  /** 0: the zone size or the largest request, whichever is smaller. */
  maxZoneAppendSectors: number;
}

/**
 * UBLK_F_INTEGRITY: every interval of data (one logical block, as kublk) carries `metadataSize`
 * bytes of metadata, of which a protection information tuple may sit at `piOffset`.
 */
export interface IntegrityParams {
  /** Bytes of metadata per logical block, 1..255. */
  metadataSize: number;
  /** Offset of the PI tuple in the metadata. */
  piOffset: number;
  /** LBMD_PI_CSUM_*: how the block layer checksums the data into the PI (NONE: no PI, "nop"). */
  csumType: number;
  /** LBMD_PI_CAP_INTEGRITY: the device is integrity capable (sysfs device_is_integrity_capable). */
  capable: boolean;
  /** LBMD_PI_CAP_REFTAG: the PI carries a reference tag (T10 DIF type 1 rather than type 3). */
  refTag: boolean;
  /** Bytes of application tag space (sysfs tag_size). */
  tagSize: number;
}

export interface DeviceParams {
  logicalBlockSize: number;
  physicalBlockSize: number;
  /** Optimal IO size in bytes (0: none). */
  ioOpt: number;
  /** Minimal IO size in bytes (0: the physical block size). */
  ioMin: number;
  /** Largest request, in 512-byte sectors. */
  maxSectors: number;
  chunkSectors: number;
  readOnly: boolean;
  rotational: boolean;
  volatileCache: boolean;
  fua: boolean;
  /** null: no discard / write-zeroes support. */
  discard: DiscardParams | null;
  /** null: not zoned. */
  zoned: ZonedParams | null;
  /** null: no integrity metadata. */
  integrity: IntegrityParams | null;
}

/** What a caller may override: any field, and the discard limits one by one. */
export type DeviceParamOverrides = Partial<Omit<DeviceParams, "discard">> & {
  discard?: Partial<DiscardParams> | null;
};

const DEFAULT_DISCARD: DiscardParams = {
  granularity: 4096,
  alignment: 0,
  maxSectors: 0xffffffff >>> 9,
  maxWriteZeroesSectors: 0xffffffff >>> 9,
  maxSegments: 1,
};

/** Layers overrides on defaults; a discard override on a target without discard enables it. */
export function mergeParams(...layers: (DeviceParamOverrides | undefined)[]): DeviceParams {
  let out: DeviceParams = { ...DEFAULT_PARAMS };
  for (const layer of layers) {
    if (!layer) continue;
    const { discard, ...rest } = layer;
    out = { ...out, ...rest };
    if (discard === null) out.discard = null;
    else if (discard) out.discard = { ...(out.discard ?? DEFAULT_DISCARD), ...discard };
  }
  return out;
}

export const DEFAULT_PARAMS: DeviceParams = {
  logicalBlockSize: 512,
  physicalBlockSize: 4096,
  ioOpt: 0,
  ioMin: 0,
  maxSectors: 0, // derived from the IO buffer size
  chunkSectors: 0,
  readOnly: false,
  rotational: false,
  volatileCache: false,
  fua: false,
  discard: null,
  zoned: null,
  integrity: null,
};

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
const shift = (n: number) => Math.log2(n);

/** Checks a parameter set; returns a one-line problem description, or null when it is valid. */
export function validateParams(p: DeviceParams, sizeBytes: number, maxIoBufBytes: number): string | null {
  if (!isPow2(p.logicalBlockSize) || p.logicalBlockSize < 512 || p.logicalBlockSize > 4096)
    return `logical block size ${p.logicalBlockSize} must be a power of two from 512 to 4096`;
  if (!isPow2(p.physicalBlockSize) || p.physicalBlockSize < p.logicalBlockSize || p.physicalBlockSize > 65536)
    return `physical block size ${p.physicalBlockSize} must be a power of two from the logical block size to 65536`;
  for (const [name, v] of [
    ["io_opt", p.ioOpt],
    ["io_min", p.ioMin],
  ] as const) {
    if (v !== 0 && (!isPow2(v) || v < p.logicalBlockSize || v > 2 ** 31))
      return `${name} ${v} must be 0 or a power of two >= the logical block size`;
  }
  if (sizeBytes <= 0 || sizeBytes % p.logicalBlockSize !== 0)
    return `device size ${sizeBytes} must be a positive multiple of the logical block size ${p.logicalBlockSize}`;
  if (p.maxSectors < 0 || p.maxSectors * 512 > maxIoBufBytes)
    return `max sectors ${p.maxSectors} exceeds the IO buffer size ${maxIoBufBytes} bytes`;
  if (p.maxSectors !== 0 && p.maxSectors * 512 < p.logicalBlockSize)
    return `max sectors ${p.maxSectors} is smaller than one logical block`;
  if (p.chunkSectors !== 0 && !isPow2(p.chunkSectors))
    return `chunk sectors ${p.chunkSectors} must be a power of two`;
  if (p.fua && !p.volatileCache) return "FUA needs a volatile write cache (--wc 1)";
  if (p.zoned && (p.chunkSectors === 0 || sizeBytes % (p.chunkSectors * 512) !== 0))
    return "a zoned device needs a power-of-two zone size (chunk sectors) that divides its size";
  if (p.discard) {
    const d = p.discard;
    if (!isPow2(d.granularity) || d.granularity < p.logicalBlockSize)
      return `discard granularity ${d.granularity} must be a power of two >= the logical block size`;
    if (d.alignment % p.logicalBlockSize !== 0 || d.alignment >= d.granularity)
      return `discard alignment ${d.alignment} must be a multiple of the logical block size below the granularity`;
    if (d.maxSectors <= 0) return "discard max sectors must be positive";
    if (d.maxSegments <= 0 || d.maxSegments > 0xffff) return "discard max segments must be 1..65535";
    if (d.maxWriteZeroesSectors < 0) return "write-zeroes max sectors must not be negative";
  }
  return p.integrity ? integrityProblem(p.integrity) : null;
}

/** The driver's checks on struct ublk_param_integrity, as one line instead of SET_PARAMS' EINVAL. */
function integrityProblem(i: IntegrityParams): string | null {
  const byte = (v: number) => Number.isInteger(v) && v >= 0 && v <= 255;
  if (!byte(i.metadataSize) || i.metadataSize === 0)
    return `metadata size ${i.metadataSize} must be 1..255 bytes per logical block`;
  const tuple = piTupleSize(i.csumType);
  if (tuple < 0) return `unknown integrity checksum type ${i.csumType}`;
  if (!byte(i.piOffset) || i.piOffset + tuple > i.metadataSize)
    return `the ${tuple}-byte PI tuple at offset ${i.piOffset} does not fit in ${i.metadataSize} bytes of metadata`;
  if (i.refTag && i.csumType === LBMD_PI_CSUM_NONE)
    return "a reference tag needs a checksum type (--csum_type)";
  if (!byte(i.tagSize)) return `tag size ${i.tagSize} must be 0..255`;
  return null;
}

export function toUblkParams(p: DeviceParams, sizeBytes: number, maxIoBufBytes: number): U.ublk_params {
  let attrs = 0;
  if (p.readOnly) attrs |= U.UBLK_ATTR_READ_ONLY;
  if (p.rotational) attrs |= U.UBLK_ATTR_ROTATIONAL;
  if (p.volatileCache) attrs |= U.UBLK_ATTR_VOLATILE_CACHE;
  if (p.fua) attrs |= U.UBLK_ATTR_FUA;
  let types = U.UBLK_PARAM_TYPE_BASIC;
  const d = p.discard;
  if (d) types |= U.UBLK_PARAM_TYPE_DISCARD;
  const z = p.zoned;
  const maxSectors = p.maxSectors || Math.floor(maxIoBufBytes / 512);
  if (z) types |= U.UBLK_PARAM_TYPE_ZONED;
  const ip = p.integrity;
  if (ip) types |= U.UBLK_PARAM_TYPE_INTEGRITY;
  return {
    len: U.ublk_params_LAYOUT.size,
    types,
    basic: {
      attrs,
      logical_bs_shift: shift(p.logicalBlockSize),
      physical_bs_shift: shift(p.physicalBlockSize),
      io_opt_shift: p.ioOpt ? shift(p.ioOpt) : 0,
      io_min_shift: shift(p.ioMin || p.physicalBlockSize),
      max_sectors: maxSectors,
      chunk_sectors: p.chunkSectors,
      dev_sectors: BigInt(Math.floor(sizeBytes / 512)),
      virt_boundary_mask: 0n,
    },
    discard: {
      discard_alignment: d?.alignment ?? 0,
      discard_granularity: d?.granularity ?? 0,
      max_discard_sectors: d?.maxSectors ?? 0,
      max_write_zeroes_sectors: d?.maxWriteZeroesSectors ?? 0,
      max_discard_segments: d?.maxSegments ?? 0,
      reserved0: 0,
    },
    devt: { char_major: 0, char_minor: 0, disk_major: 0, disk_minor: 0 },
    zoned: {
      max_open_zones: z?.maxOpenZones ?? 0,
      max_active_zones: z?.maxActiveZones ?? 0,
      max_zone_append_sectors: z ? z.maxZoneAppendSectors || Math.min(p.chunkSectors, maxSectors) : 0,
      reserved: new Uint8Array(20),
    },
    integrity: ip
      ? {
          flags: (ip.capable ? LBMD_PI_CAP_INTEGRITY : 0) | (ip.refTag ? LBMD_PI_CAP_REFTAG : 0),
          max_integrity_segments: 0,
          interval_exp: shift(p.logicalBlockSize),
          metadata_size: ip.metadataSize,
          pi_offset: ip.piOffset,
          csum_type: ip.csumType,
          tag_size: ip.tagSize,
        }
      : undefined,
  };
}
