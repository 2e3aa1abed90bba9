// Device policy for integrity metadata (UBLK_F_INTEGRITY): which devices may have it, and what the
// target and the queues are told of its format.
import type { DeviceParams } from "./ctrl/params.js";
import type { IntegrityLayout } from "./queue/integrity.js";
import type { IntegrityFormat, Target } from "./targets/target.js";
import * as U from "./uapi/ublk_cmd.js";

/** Why a device with these parameters and UBLK_F_* cannot have its integrity metadata; null if it can. */
export function integrityRefusal(target: Target, params: DeviceParams, flags: number): string | null {
  if (!params.integrity) return null;
  if (!target.openIntegrity)
    return `the ${target.name} target cannot keep integrity metadata (--metadata_size); loop can (null and fault_inject drop it)`;
  if (!(flags & U.UBLK_F_USER_COPY))
    return "integrity metadata reaches the daemon only by user copy (UBLK_F_USER_COPY): add -u";
  return null;
}

/** What the target learns of the format: metadata bytes per interval of one logical block, as kublk. */
export function integrityFormat(params: DeviceParams): IntegrityFormat | null {
  if (!params.integrity) return null;
  return { metadataSize: params.integrity.metadataSize, intervalBytes: params.logicalBlockSize };
}

/** The format of a device the driver already has (recovery), from GET_PARAMS. */
export function integrityFormatOf(kernel: U.ublk_params): IntegrityFormat | null {
  const i = kernel.integrity;
  if (!(kernel.types & U.UBLK_PARAM_TYPE_INTEGRITY) || !i || i.metadata_size === 0) return null;
  return { metadataSize: i.metadata_size, intervalBytes: 2 ** i.interval_exp };
}

/** The queues' view of a format. */
export function integrityLayout(format: IntegrityFormat | null): IntegrityLayout | undefined {
  if (!format) return undefined;
  return { metadataSize: format.metadataSize, intervalShift: Math.log2(format.intervalBytes) };
}
