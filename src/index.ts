// Public API of ublk-ts.
export { ControlDevice, type DevInfo, listDevIds } from "./ctrl/control.js";
export { errnoName, UblkError } from "./ctrl/errors.js";
export type { DeviceParamOverrides, DeviceParams, DiscardParams } from "./ctrl/params.js";
export { DeviceError, type DeviceOptions, type QueueInfo, UblkDevice } from "./device.js";
export type { SharedMemoryOptions } from "./shared-memory.js";
export { shareMemory, shmemSocketPath } from "./shmem-socket.js";
export { parseSize } from "./targets/size.js";
export {
  defineTarget,
  type IoRequest,
  type IoResult,
  QUEUED,
  type QueueContext,
  type Target,
  type TargetOptions,
  type TargetSetup,
} from "./targets/target.js";
export * as uapi from "./uapi/ublk_cmd.js";
