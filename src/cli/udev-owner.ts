#!/usr/bin/env node
// The udev rule's helper (udev/99-ublk-ts.rules): `udev-owner.js ublkcN|ublkbN`, run as root when the
// node appears, gives an unprivileged device's node to the user who created it. The driver checks a
// control command on such a device against the caller's access to /dev/ublkcN, and lets only the
// owner open /dev/ublkbN; devtmpfs makes both root's, so without this the owner could do neither.
import { chmodSync, chownSync } from "node:fs";
import { ControlDevice } from "../ctrl/control.js";
import { UblkError } from "../ctrl/errors.js";
import { UBLK_F_UNPRIVILEGED_DEV } from "../uapi/ublk_cmd.js";

/** Gives /dev/NAME to its device's owner; returns what it did. */
async function giveNodeToOwner(name: string): Promise<string> {
  const m = /^ublk([bc])(\d+)$/.exec(name);
  if (!m) throw new Error(`'${name}' is not a ublk device node name (ublkcN or ublkbN)`);
  const devId = Number(m[2]);
  const ctrl = await ControlDevice.open();
  try {
    const info = await ctrl.getDevInfo(devId);
    if (!(info.flags & UBLK_F_UNPRIVILEGED_DEV)) return `${name}: privileged, left as it is`;
    const node = `/dev/${name}`;
    chownSync(node, info.ownerUid, info.ownerGid);
    chmodSync(node, 0o600);
    return `${node}: owner ${info.ownerUid}:${info.ownerGid}`;
  } catch (err) {
    // Deleted before udev got to it: nothing to hand over.
    if (err instanceof UblkError && (err.code === "ENODEV" || err.code === "ENOENT"))
      return `${name}: gone already`;
    throw err;
  } finally {
    ctrl.close();
  }
}

// One line: what it did on stdout, or why it could not on stderr with status 1 (udev logs both).
giveNodeToOwner(process.argv[2] ?? "").then(
  (done) => process.stdout.write(`${done}\n`),
  (err: unknown) => {
    process.stderr.write(`ublk-ts udev-owner: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
