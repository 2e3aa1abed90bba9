// ublk list: one block per device, from the driver (GET_DEV_INFO2, GET_PARAMS) and the daemon's state.
import { ControlDevice, type DevInfo, listDevIds } from "../../ctrl/control.js";
import { UblkError } from "../../ctrl/errors.js";
import { featureNames, UBLK_F_UNPRIVILEGED_DEV } from "../../uapi/ublk_cmd.js";
import { intOption, type ParsedArgs } from "../args.js";
import { formatDevice, formatParams, stateName } from "../format.js";
import { readState } from "../state.js";

export async function list(args: ParsedArgs): Promise<number> {
  const only =
    args.options.number === undefined ? undefined : intOption(args.options, "number", -1, 0, 2 ** 20);
  const ids = only === undefined ? listDevIds() : [only];
  const ctrl = await ControlDevice.open();
  const json: unknown[] = [];
  let status = 0;
  try {
    for (const id of ids) {
      let info: DevInfo;
      try {
        info = await ctrl.getDevInfo(id);
      } catch (err) {
        const gone = err instanceof UblkError && (err.code === "ENODEV" || err.code === "ENOENT");
        if (gone && only === undefined) continue; // deleted meanwhile
        // Listing all as a user: another user's devices (and root's) are not theirs to see.
        if (err instanceof UblkError && (err.code === "EACCES" || err.code === "EPERM") && only === undefined)
          continue;
        throw err;
      }
      const params = await ctrl.getParams(id).catch(() => null);
      const unprivileged = (info.flags & UBLK_F_UNPRIVILEGED_DEV) !== 0;
      const state = readState(id, unprivileged ? info.ownerUid : undefined);
      const queues = state && state.pid === info.ublksrvPid ? state.queues : [];
      if (args.flags.has("json")) {
        json.push({
          dev_id: info.devId,
          nr_hw_queues: info.nrHwQueues,
          queue_depth: info.queueDepth,
          block_size: params ? 1 << params.basic.logical_bs_shift : null,
          dev_capacity: params ? Number(params.basic.dev_sectors) : null,
          max_rq_size: info.maxIoBufBytes,
          daemon_pid: info.ublksrvPid,
          flags: info.flags,
          state: stateName(info.state),
          unprivileged,
          owner_uid: info.ownerUid,
          owner_gid: info.ownerGid,
          target: state?.spec.target ?? null,
          target_options: state?.spec.targetOptions ?? null,
          target_info: state?.targetInfo ?? null,
          queues,
        });
        continue;
      }
      let text = formatDevice(info, params, queues);
      if (args.flags.has("verbose")) text += `\tflags ${featureNames(info.flags).join(" ")}\n`;
      if (args.flags.has("verbose") && params) text += formatParams(params);
      if (args.flags.has("verbose") && state?.targetInfo) {
        const details = Object.entries(state.targetInfo).map(([k, v]) => ` ${k} ${v}`);
        text += `\ttarget ${state.spec.target}${details.join("")}\n`;
      }
      process.stdout.write(text);
    }
  } catch (err) {
    status = 1;
    throw err;
  } finally {
    ctrl.close();
  }
  if (args.flags.has("json")) process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
  return status;
}
