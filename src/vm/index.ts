export { ensureVmAssets, type VmAssets } from "./provision.js";
export { type RunInVmOptions, type RunInVmResult, runInVm } from "./run.js";
