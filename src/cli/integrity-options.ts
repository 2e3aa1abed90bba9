// kublk's integrity options (UBLK_F_INTEGRITY): --metadata_size turns them on, the others shape the
// metadata. As kublk: the others need --metadata_size, and all of them need user copy (-u), the
// only way the driver hands a request's metadata to the server.
import type { IntegrityParams } from "../ctrl/params.js";
import {
  LBMD_PI_CSUM_CRC16_T10DIF,
  LBMD_PI_CSUM_CRC64_NVME,
  LBMD_PI_CSUM_IP,
  LBMD_PI_CSUM_NONE,
} from "../uapi/lbmd.js";
import { intOption, type ParsedArgs, UsageError } from "./args.js";

const CSUM_TYPES: Record<string, number> = {
  ip: LBMD_PI_CSUM_IP,
  t10dif: LBMD_PI_CSUM_CRC16_T10DIF,
  nvme: LBMD_PI_CSUM_CRC64_NVME,
};

/** Value options, as args.ts spells them. */
export const INTEGRITY_VALUE_OPTIONS = [
  "metadata_size",
  "pi_offset",
  "csum_type",
  "tag_size",
  "metadata_file",
];
/** Switches. */
export const INTEGRITY_FLAGS = ["integrity_capable", "integrity_reftag"];

/** The integrity parameters the command line asks for, or undefined; throws UsageError on bad input. */
export function integrityFrom(args: ParsedArgs): IntegrityParams | undefined {
  const { options, flags } = args;
  const given = [
    ...INTEGRITY_VALUE_OPTIONS.filter((k) => options[k] !== undefined),
    ...INTEGRITY_FLAGS.filter((k) => flags.has(k)),
  ];
  if (given.length === 0) return undefined;
  if (options.metadata_size === undefined)
    throw new UsageError(`--${given[0]} needs --metadata_size (the integrity metadata bytes per block)`);
  if (options.user_copy !== "1")
    throw new UsageError(
      "integrity metadata (--metadata_size) reaches the daemon only by user copy: add -u (as kublk)",
    );
  const csum = options.csum_type;
  if (csum !== undefined && !(csum in CSUM_TYPES))
    throw new UsageError(`--csum_type takes ip, t10dif or nvme, not '${csum}'`);
  return {
    metadataSize: intOption(options, "metadata_size", 0, 1, 255),
    piOffset: intOption(options, "pi_offset", 0, 0, 255),
    csumType: csum === undefined ? LBMD_PI_CSUM_NONE : CSUM_TYPES[csum],
    capable: flags.has("integrity_capable"),
    refTag: flags.has("integrity_reftag"),
    tagSize: intOption(options, "tag_size", 0, 0, 255),
  };
}
