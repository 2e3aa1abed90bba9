// include/uapi/linux/blkzoned.h: what a zoned ublk server returns for UBLK_IO_OP_REPORT_ZONES.

/** sizeof(struct blk_zone) */
export const BLK_ZONE_BYTES = 64;

/** struct blk_zone field offsets (all little-endian on the architectures ublk runs on). */
export const BLK_ZONE_START = 0; // __u64 start (sector)
export const BLK_ZONE_LEN = 8; // __u64 len (sectors)
export const BLK_ZONE_WP = 16; // __u64 wp (sector)
export const BLK_ZONE_TYPE = 24; // __u8 type
export const BLK_ZONE_COND = 25; // __u8 cond
export const BLK_ZONE_NON_SEQ = 26; // __u8 non_seq
export const BLK_ZONE_RESET = 27; // __u8 reset
export const BLK_ZONE_CAPACITY = 32; // __u64 capacity (sectors), valid with BLK_ZONE_REP_CAPACITY

// enum blk_zone_type
export const BLK_ZONE_TYPE_CONVENTIONAL = 0x1;
export const BLK_ZONE_TYPE_SEQWRITE_REQ = 0x2;
export const BLK_ZONE_TYPE_SEQWRITE_PREF = 0x3;

// enum blk_zone_cond
export const BLK_ZONE_COND_NOT_WP = 0x0;
export const BLK_ZONE_COND_EMPTY = 0x1;
export const BLK_ZONE_COND_IMP_OPEN = 0x2;
export const BLK_ZONE_COND_EXP_OPEN = 0x3;
export const BLK_ZONE_COND_CLOSED = 0x4;
export const BLK_ZONE_COND_READONLY = 0xd;
export const BLK_ZONE_COND_FULL = 0xe;
export const BLK_ZONE_COND_OFFLINE = 0xf;
