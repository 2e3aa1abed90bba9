// Logical block metadata constants of <linux/fs.h> (FS_IOC_GETLBMD_CAP), which struct
// ublk_param_integrity's `flags` and `csum_type` use.

/** lbmd_flags / ublk_param_integrity.flags: the device stores the metadata (sysfs device_is_integrity_capable). */
export const LBMD_PI_CAP_INTEGRITY = 1 << 0;
/** The PI carries a reference tag checked against the LBA (T10 DIF type 1 instead of type 3). */
export const LBMD_PI_CAP_REFTAG = 1 << 1;

/** Checksum of the protection information tuple (ublk_param_integrity.csum_type). */
export const LBMD_PI_CSUM_NONE = 0;
export const LBMD_PI_CSUM_IP = 1;
export const LBMD_PI_CSUM_CRC16_T10DIF = 2;
export const LBMD_PI_CSUM_CRC64_NVME = 4;

/** Bytes of the PI tuple a checksum type puts in each interval's metadata (the driver's table); -1: unknown. */
export function piTupleSize(csumType: number): number {
  switch (csumType) {
    case LBMD_PI_CSUM_NONE:
      return 0;
    case LBMD_PI_CSUM_IP:
    case LBMD_PI_CSUM_CRC16_T10DIF:
      return 8;
    case LBMD_PI_CSUM_CRC64_NVME:
      return 16;
    default:
      return -1;
  }
}
