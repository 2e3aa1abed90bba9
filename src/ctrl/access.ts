// Who may do what with a ublk device, and why the driver said no. A device created with
// UBLK_F_UNPRIVILEGED_DEV belongs to the user who created it: every control command on it (ADD_DEV
// aside) carries the path of its char device, and the driver checks the caller's access to that node
// (read for queries, read and write for the rest). Privileged devices are root's (CAP_SYS_ADMIN).
import { accessSync, constants, statSync } from "node:fs";

export const charDevPath = (devId: number) => `/dev/ublkc${devId}`;
export const blockDevPath = (devId: number) => `/dev/ublkb${devId}`;

/** What the install step is called, for the hints below. */
export const INSTALL_HINT = "as root: ublk udev-install (README: Unprivileged devices)";

/**
 * The command buffer's head for a device's control command: the char device path with its NUL,
 * padded to 8 bytes so the command's own data stays aligned. `dev_path_len` is its whole length; the
 * driver skips it before reading or writing the data.
 */
export function devPathPrefix(devId: number): Uint8Array {
  const path = Buffer.from(`${charDevPath(devId)}\0`, "latin1");
  const out = new Uint8Array(Math.ceil(path.length / 8) * 8);
  out.set(path);
  return out;
}

function uidOf(path: string): number | undefined {
  try {
    return statSync(path).uid;
  } catch {
    return undefined;
  }
}

/**
 * Why a control command on device `devId` was refused with EPERM or EACCES, as a person should read
 * it. EPERM: the device is privileged and the caller is not root. EACCES: the device is unprivileged
 * and the caller has no access to its char device node, which then tells whose it is.
 */
export function refusalReason(devId: number, code: string, command: string): string {
  if (command === "ADD_DEV") {
    if (code === "EPERM")
      return "only root creates privileged devices: add --unprivileged to create one you own";
    return "the driver's limit of unprivileged devices is reached (ublk_drv's ublks_max parameter)";
  }
  if (code === "EPERM")
    return `device ${devId} was created by root (not --unprivileged): only root may use it`;
  const node = charDevPath(devId);
  const owner = uidOf(node);
  const me = process.getuid?.() ?? 0;
  if (owner === undefined) return `no access to ${node}`;
  if (owner === me) return `no read and write access to ${node} (its mode forbids it)`;
  if (owner === 0)
    return `${node} still belongs to root: the udev rule that gives users their devices' nodes is not installed (${INSTALL_HINT})`;
  return `device ${devId} belongs to uid ${owner}: only its owner or root may use it`;
}

/** Throws the one line below when this user may not open `path` for reading and writing. */
export function checkControlAccess(path: string): void {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EACCES") throw new Error(controlAccessMessage(path));
  }
}

/** The one line for a /dev/ublk-control this user may not open. */
export function controlAccessMessage(path: string): string {
  let mode = "";
  try {
    const st = statSync(path);
    mode = ` (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}, uid ${st.uid}, gid ${st.gid})`;
  } catch {}
  return `no access to ${path}${mode}: run as root, or let users create unprivileged devices (${INSTALL_HINT})`;
}
