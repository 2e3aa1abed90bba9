// The typed boundary of the native addon (native/ublk_native.c). Everything the C side exports is
// declared here, and nothing else in the project loads the addon directly.
import { createRequire } from "node:module";

export interface NativeRing {
  /** Opaque handle passed back to the ring functions. */
  readonly handle: object;
  readonly fd: number;
  readonly sqEntries: number;
  readonly cqEntries: number;
  readonly sqeSize: 64 | 128;
  readonly cqeSize: 16 | 32;
  /** IORING_FEAT_* bits the kernel reported. */
  readonly features: number;
  /** The mmapped SQE array (sqEntries * sqeSize bytes). */
  readonly sqes: ArrayBuffer;
  /** The mmapped CQE array (cqEntries * cqeSize bytes). */
  readonly cqes: ArrayBuffer;
  /** Control block, see CTL_* in ring.ts. */
  readonly ctl: ArrayBuffer;
}

export interface NativeAddon {
  ringSetup(entries: number, flags: number, cqEntries: number): NativeRing;
  /** Publishes SQ tail / CQ head, enters the kernel if there is work, refreshes the control block. */
  ringEnter(handle: object, toSubmit: number, minComplete: number, flags: number, timeoutNs?: number): number;
  ringPoll(handle: object, onCompletion: () => void): void;
  ringUnpoll(handle: object): void;
  ringClose(handle: object): void;
  /** io_uring_register(2) on the ring: its result, or -errno. `arg` laid out by the caller. */
  ringRegister(handle: object, opcode: number, arg: ArrayBuffer | null, nr: number): number;
  /** Page-aligned anonymous memory, freed when the ArrayBuffer is collected. */
  allocBuffer(size: number): ArrayBuffer;
  bufferAddress(buffer: ArrayBuffer | ArrayBufferView): number;
  /** MAP_SHARED; MAP_POPULATE unless populate is false. */
  mmapFile(fd: number, offset: number, length: number, writable: boolean, populate?: boolean): ArrayBuffer;
  munmapBuffer(buffer: ArrayBuffer): void;
  gettid(): number;
  setAffinity(cpus: readonly number[]): number;
  getAffinity(): number[];
  setIoFlusher(): number;
  readonly pageSize: number;
}

const require = createRequire(import.meta.url);

/**
 * The package's own build (build/Release, made by `npm ci` from source when no prebuild fits) if
 * there is one, else the prebuilt addon for this platform, arch and libc (prebuilds/, see README).
 */
function load(): NativeAddon {
  const root = new URL("../..", import.meta.url).pathname;
  try {
    const nodeGypBuild = require("node-gyp-build") as (dir: string) => NativeAddon;
    return nodeGypBuild(root);
  } catch (err) {
    const reason = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new Error(
      `ublk-ts native addon: none built or prebuilt for ${process.platform}-${process.arch} (${reason}); ` +
        "build it from source with 'npx node-gyp rebuild' in the package directory (needs g++, make, python3)",
    );
  }
}

export const native: NativeAddon = load();
