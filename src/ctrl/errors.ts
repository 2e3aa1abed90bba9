// One error type for everything the ublk driver refuses: it knows the errno, the command and the device.
import { constants } from "node:os";

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
// Linux's name for 95, the one its drivers use (node lists the POSIX alias ENOTSUP first).
errnoNames.set(constants.errno.EOPNOTSUPP, "EOPNOTSUPP");

export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/** What a person should know about common refusals, by command and errno. */
function hint(command: string, code: string): string {
  if (code === "EEXIST" && command === "ADD_DEV") return "that device id is already in use";
  if (code === "ENODEV") return "no such ublk device";
  if (code === "EBUSY" && command === "START_USER_RECOVERY")
    return "the device is not quiesced yet (its old daemon may still be running)";
  if (code === "EBUSY") return "the device is busy";
  if (code === "EACCES" && command === "SET_PARAMS")
    return "parameters cannot change after the device started";
  if (code === "EPERM" || code === "EACCES") return "permission denied (run as root)";
  if (code === "EINVAL") return "the driver rejected the arguments";
  if (code === "EOPNOTSUPP") return "the driver does not support this";
  return "";
}

export class UblkError extends Error {
  /** Positive errno value. */
  readonly errno: number;
  /** Errno name, e.g. "EEXIST". */
  readonly code: string;
  constructor(
    readonly command: string,
    errno: number,
    readonly devId?: number,
    /** Replaces the generic hint when the caller knows better (e.g. whose device it is). */
    detail?: string,
  ) {
    const code = errnoName(errno);
    const dev = devId === undefined || devId < 0 || devId === 0xffffffff ? "" : ` for device ${devId}`;
    const why = detail ?? hint(command, code);
    super(`ublk ${command}${dev} failed: ${code}${why ? ` (${why})` : ""}`);
    this.name = "UblkError";
    this.errno = Math.abs(errno);
    this.code = code;
  }
}
