// ublk up [NAME...] / ublk down [NAME...]: create or delete the devices declared in devices.d/
// (all of them without a NAME). Idempotent: a declared device that is LIVE is left alone, one left
// QUIESCED by a dead daemon is recovered, one that is DEAD is deleted and created again. A device
// belongs to a name through its saved state (/run/ublk-ts/ID.json records the name it came up as).
import { ControlDevice, type DevInfo, listDevIds } from "../../ctrl/control.js";
import { type ParsedArgs, UsageError } from "../args.js";
import { DEVICES_DIR, type Declared, declaredNames, readDeclared } from "../devices-file.js";
import { stateName } from "../format.js";
import { readState } from "../state.js";
import { start } from "./add.js";
import { deleteDevice } from "./del.js";

/** The device that came up as `name`, if it still exists. */
async function findDevice(ctrl: ControlDevice, name: string): Promise<DevInfo | undefined> {
  for (const id of listDevIds()) {
    if (readState(id)?.spec.name !== name) continue;
    const info = await ctrl.getDevInfo(id).catch(() => undefined);
    if (info) return info;
  }
  return undefined;
}

function namesFrom(args: ParsedArgs, verb: string): string[] {
  const names = args.positional.length > 0 ? args.positional : declaredNames();
  if (names.length === 0) process.stderr.write(`ublk: ${verb}: no devices declared in ${DEVICES_DIR}\n`);
  if (args.flags.has("foreground") && names.length !== 1)
    throw new UsageError(`${verb} --foreground takes exactly one NAME (as a systemd unit runs it)`);
  return names;
}

async function upOne(ctrl: ControlDevice, d: Declared, args: ParsedArgs): Promise<number> {
  const flags = new Set(d.args.flags);
  for (const f of ["foreground", "quiet"]) if (args.flags.has(f)) flags.add(f);
  const startArgs: ParsedArgs = { ...d.args, flags };
  const existing = await findDevice(ctrl, d.name);
  if (!existing && d.spec.devId >= 0) {
    const other = await ctrl.getDevInfo(d.spec.devId).catch(() => undefined);
    if (other)
      throw new Error(`${d.name}: device ${d.spec.devId} exists but was not brought up as ${d.name}`);
  }
  if (!existing) return start(d.spec, startArgs, "add");
  const state = stateName(existing.state);
  if (state === "LIVE") {
    // A supervisor (systemd) runs --foreground to own the daemon: exiting 0 would tell it the unit
    // started and ended, while the device stays with a daemon nobody supervises.
    if (args.flags.has("foreground"))
      throw new Error(
        `${d.name}: already up as /dev/ublkb${existing.devId}, served by daemon pid ${existing.ublksrvPid} ` +
          `that this command did not start: \`ublk down ${d.name}\` first, then start it again`,
      );
    process.stdout.write(
      `${d.name}: already up as /dev/ublkb${existing.devId} (daemon pid ${existing.ublksrvPid})\n`,
    );
    return 0;
  }
  if (state === "QUIESCED") return start({ ...d.spec, devId: existing.devId }, startArgs, "recover");
  // DEAD: its daemon died without recovery; start over with the same id.
  await deleteDevice(ctrl, existing.devId);
  return start({ ...d.spec, devId: existing.devId }, startArgs, "add");
}

export async function up(args: ParsedArgs): Promise<number> {
  const names = namesFrom(args, "up");
  // Parse every entry first: one bad file must not leave half the devices up.
  const declared = names.map((n) => readDeclared(n));
  const ctrl = await ControlDevice.open();
  let status = 0;
  try {
    for (const d of declared) {
      try {
        if ((await upOne(ctrl, d, args)) !== 0) status = 1;
      } catch (err) {
        process.stderr.write(`ublk: ${err instanceof Error ? err.message : err}\n`);
        status = 1;
      }
    }
  } finally {
    ctrl.close();
  }
  return status;
}

export async function down(args: ParsedArgs): Promise<number> {
  const names = namesFrom(args, "down");
  const ctrl = await ControlDevice.open();
  let status = 0;
  try {
    for (const name of names) {
      try {
        const dev = await findDevice(ctrl, name);
        if (!dev) {
          process.stdout.write(`${name}: not up\n`);
          continue;
        }
        await deleteDevice(ctrl, dev.devId);
        process.stdout.write(`${name}: down (device ${dev.devId} deleted)\n`);
      } catch (err) {
        process.stderr.write(`ublk: ${name}: ${err instanceof Error ? err.message : err}\n`);
        status = 1;
      }
    }
  } finally {
    ctrl.close();
  }
  return status;
}
