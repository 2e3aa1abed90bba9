// Turns parsed `add`/`recover` arguments into an AddSpec, refusing bad input before any device exists.

import { availableParallelism } from "node:os";
import type { DeviceParamOverrides, DeviceParams } from "../ctrl/params.js";
import { MAX_POLL_US } from "../queue/adaptive-poll.js";
import { targetModuleUrl } from "../targets/registry.js";
import { parseSize } from "../targets/size.js";
import * as U from "../uapi/ublk_cmd.js";
import { intOption, type ParsedArgs, UsageError } from "./args.js";
import { integrityFrom } from "./integrity-options.js";
import type { AddSpec } from "./state.js";
import { unprivilegedFlag } from "./unprivileged.js";

const TARGET_OPTION_KEYS = [
  "size",
  "buffered_io",
  "chunk_size",
  "delay_us",
  "error_rate",
  "error_sectors",
  "slow_rate",
  "slow_us",
  "die_after",
  "seed",
  "zone_size",
  "conv_zones",
  "max_open",
  "max_active",
  "host",
  "port",
  "socket",
  "export",
  "timeout",
  "tls",
  "metadata_file",
] as const;

function sizeOpt(options: Record<string, string>, key: string): number | undefined {
  const v = options[key];
  if (v === undefined) return undefined;
  try {
    return parseSize(v, `--${key}`);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function boolOpt(options: Record<string, string>, key: string): boolean | undefined {
  const v = options[key];
  if (v === undefined) return undefined;
  if (v !== "0" && v !== "1") throw new UsageError(`--${key} takes 0 or 1, not '${v}'`);
  return v === "1";
}

function paramsFrom(options: Record<string, string>): DeviceParamOverrides {
  const p: Record<string, unknown> = {};
  const set = (key: keyof DeviceParams, v: unknown) => {
    if (v !== undefined) p[key] = v;
  };
  set("logicalBlockSize", sizeOpt(options, "logical_block_size"));
  set("physicalBlockSize", sizeOpt(options, "physical_block_size"));
  set("ioOpt", sizeOpt(options, "io_opt"));
  set("ioMin", sizeOpt(options, "io_min"));
  set(
    "maxSectors",
    options.max_sectors === undefined ? undefined : intOption(options, "max_sectors", 0, 8, 2 ** 31),
  );
  set(
    "chunkSectors",
    options.chunk_sectors === undefined ? undefined : intOption(options, "chunk_sectors", 0, 0, 2 ** 31),
  );
  set("readOnly", boolOpt(options, "read_only"));
  set("rotational", boolOpt(options, "rotational"));
  set("volatileCache", boolOpt(options, "wc"));
  set("fua", boolOpt(options, "fua"));
  const discard: Record<string, number> = {};
  const dset = (key: string, v: number | undefined) => {
    if (v !== undefined) discard[key] = v;
  };
  dset("granularity", sizeOpt(options, "discard_granularity"));
  dset(
    "alignment",
    options.discard_alignment === undefined
      ? undefined
      : intOption(options, "discard_alignment", 0, 0, 2 ** 31),
  );
  dset(
    "maxSectors",
    options.max_discard_sectors === undefined
      ? undefined
      : intOption(options, "max_discard_sectors", 0, 1, 2 ** 32 - 1),
  );
  dset(
    "maxSegments",
    options.max_discard_segments === undefined
      ? undefined
      : intOption(options, "max_discard_segments", 0, 1, 65535),
  );
  dset(
    "maxWriteZeroesSectors",
    options.max_write_zeroes_sectors === undefined
      ? undefined
      : intOption(options, "max_write_zeroes_sectors", 0, 0, 2 ** 32 - 1),
  );
  if (Object.keys(discard).length > 0) p.discard = discard;
  return p as DeviceParamOverrides;
}

/**
 * --nthreads N [--per_io_tasks] (kublk's): with per-IO daemons (UBLK_F_PER_IO_DAEMON) N threads serve
 * every queue's tags between them, whatever the queue count; without, N must be the queue count.
 */
function threadsFrom(
  { options, flags }: ParsedArgs,
  queues: number,
  depth: number,
  ublkFlags: number,
): { perIo: boolean; count: number } {
  const perIo = flags.has("per_io_tasks");
  const count = intOption(options, "nthreads", queues, 1, U.UBLK_MAX_NR_QUEUES);
  if (!perIo) {
    if (count !== queues)
      throw new UsageError(
        `--nthreads ${count} differs from the queue count ${queues}: that needs --per_io_tasks (per-IO daemons)`,
      );
    return { perIo, count };
  }
  if (count > queues * depth)
    throw new UsageError(
      `--nthreads ${count} is more than the ${queues * depth} tags (queues x depth) to serve`,
    );
  if (ublkFlags & U.UBLK_F_BATCH_IO)
    throw new UsageError("--per_io_tasks with -b (batched IO commands) is not supported: drop one of them");
  if (ublkFlags & U.UBLK_F_SHMEM_ZC)
    throw new UsageError("--per_io_tasks with --shmem_zc is not supported: drop one of them");
  if (options.type === "nbd")
    throw new UsageError("--per_io_tasks is not for -t nbd: it serves each queue on one connection");
  return { perIo, count };
}

export function specFromArgs(args: ParsedArgs): AddSpec {
  const { options, flags, positional } = args;
  const type = options.type;
  if (!type)
    throw new UsageError(
      "missing -t TARGET (null, loop, ram, stripe, fault_inject, or a path to a target module)",
    );
  try {
    targetModuleUrl(type);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const targetOptions: Record<string, string | boolean | string[]> = {};
  if (type === "stripe") {
    // kublk-style: the backing files trail the options (-f FILE counts as the first).
    const files = options.file === undefined ? positional : [options.file, ...positional];
    if (files.length > 0) targetOptions.files = files;
  } else {
    // kublk's loop takes the integrity metadata's file after the data's.
    const metaFile = type === "loop" && options.metadata_size !== undefined ? positional[1] : undefined;
    if (metaFile !== undefined) targetOptions.metadata_file = metaFile;
    if (positional.length > (metaFile === undefined ? 1 : 2))
      throw new UsageError(`unexpected arguments: ${positional.slice(1).join(" ")}`);
    const file = options.file ?? positional[0];
    if (options.file && positional[0] && options.file !== positional[0])
      throw new UsageError("give the backing file once: -f FILE or a trailing FILE");
    if (file !== undefined) targetOptions.file = file;
  }
  for (const key of TARGET_OPTION_KEYS) {
    if (options[key] !== undefined) targetOptions[key] = options[key];
    if (flags.has(key)) targetOptions[key] = true;
  }
  if (targetOptions.size !== undefined) sizeOpt(options, "size");

  const inDaemonMemory = type === "ram" || (type === "zoned" && targetOptions.file === undefined);
  if (
    inDaemonMemory &&
    (options.recovery === "1" || options.recovery_reissue === "1" || options.recovery_fail_io === "1")
  )
    throw new UsageError(
      `a ${type} disk's data lives in its daemon: user recovery (-r/-i) cannot bring it back${type === "zoned" ? " (give a FILE)" : ""}`,
    );

  let ublkFlags = 0;
  if (options.recovery === "1") ublkFlags |= U.UBLK_F_USER_RECOVERY;
  if (options.recovery_reissue === "1") ublkFlags |= U.UBLK_F_USER_RECOVERY | U.UBLK_F_USER_RECOVERY_REISSUE;
  if (options.need_get_data === "1") ublkFlags |= U.UBLK_F_NEED_GET_DATA;
  if (options.user_copy === "1") {
    if (options.need_get_data === "1")
      throw new UsageError("-g and -u exclude each other: with user copy (-u) no buffer address is needed");
    ublkFlags |= U.UBLK_F_USER_COPY;
  }
  // Zero copy: -z registers each request's buffer from the queue, --auto_zc has the driver do it;
  // --auto_zc_fallback lets the queue register the ones the driver could not (needs -z's command).
  const zeroCopy = options.zero_copy === "1" || flags.has("auto_zc");
  if (options.zero_copy === "1") ublkFlags |= U.UBLK_F_SUPPORT_ZERO_COPY;
  if (flags.has("auto_zc")) ublkFlags |= U.UBLK_F_AUTO_BUF_REG;
  if (flags.has("auto_zc_fallback")) {
    if (!flags.has("auto_zc")) throw new UsageError("--auto_zc_fallback goes with --auto_zc");
    ublkFlags |= U.UBLK_F_SUPPORT_ZERO_COPY;
  }
  if (flags.has("no_auto_zc") && zeroCopy)
    throw new UsageError("--no_auto_zc keeps the copying data path: drop -z/--auto_zc or it");
  if (zeroCopy && (options.user_copy === "1" || options.need_get_data === "1"))
    throw new UsageError("zero copy (-z, --auto_zc) moves no data through the daemon: drop -u and -g");
  // Batched IO commands (UBLK_F_BATCH_IO): the copying data path and zero copy. The driver has no
  // NEED_GET_DATA with them, and user copy is not served in batches here.
  if (flags.has("batch")) {
    const other = [options.need_get_data === "1" && "-g", options.user_copy === "1" && "-u"].filter(Boolean);
    if (other.length > 0)
      throw new UsageError(
        `-b (batched IO commands) runs on the copying data path or with zero copy (-z, --auto_zc): drop ${other.join(" ")}`,
      );
    ublkFlags |= U.UBLK_F_BATCH_IO;
  }
  if (options.uring_comp === "1") ublkFlags |= U.UBLK_F_URING_CMD_COMP_IN_TASK;
  // As kublk: -e 1 is recovery whose IO fails at once while no daemon serves, instead of waiting.
  if (options.recovery_fail_io === "1") ublkFlags |= U.UBLK_F_USER_RECOVERY | U.UBLK_F_USER_RECOVERY_FAIL_IO;
  if (flags.has("no_auto_part_scan")) ublkFlags |= U.UBLK_F_NO_AUTO_PART_SCAN;
  // Shared-memory zero copy, kublk's spellings: --htlb FILE is registered at start, applications
  // hand over more (memfds) through the device's socket.
  const shmemZc = flags.has("shmem_zc");
  if (!shmemZc && (options.htlb !== undefined || flags.has("rdonly_shmem_buf")))
    throw new UsageError("--htlb and --rdonly_shmem_buf go with --shmem_zc");
  if (flags.has("rdonly_shmem_buf") && options.htlb === undefined)
    throw new UsageError("--rdonly_shmem_buf is how --htlb FILE is registered: give --htlb");
  if (shmemZc && ublkFlags & U.UBLK_F_USER_RECOVERY)
    throw new UsageError(
      "--shmem_zc with user recovery (-r/-i/-e) is not supported: a new daemon could not reach the memory the old one registered",
    );
  if (shmemZc) ublkFlags |= U.UBLK_F_SHMEM_ZC;
  ublkFlags |= unprivilegedFlag(flags, type, ublkFlags, options.metadata_size !== undefined);

  const cpus = availableParallelism();
  // nbd: one connection per queue, so --connections is the queue count (default 1, as nbd-client).
  let queues =
    options.queues === undefined
      ? Math.min(2, cpus)
      : intOption(options, "queues", 2, 1, U.UBLK_MAX_NR_QUEUES);
  if (options.connections !== undefined && type !== "nbd")
    throw new UsageError("--connections is for -t nbd");
  if (type === "nbd") {
    const conns = intOption(options, "connections", 1, 1, U.UBLK_MAX_NR_QUEUES);
    if (options.queues !== undefined && options.connections !== undefined && conns !== queues)
      throw new UsageError(
        `nbd serves each queue on its own connection: -q ${queues} and --connections ${conns} differ`,
      );
    if (options.queues === undefined) queues = conns;
    targetOptions.connections = String(queues);
  }
  const depth = intOption(options, "depth", 128, 1, U.UBLK_MAX_QUEUE_DEPTH);
  const nthreads = threadsFrom(args, queues, depth, ublkFlags);
  if (nthreads.perIo) ublkFlags |= U.UBLK_F_PER_IO_DAEMON;
  const maxIoBuf = sizeOpt(options, "max_io_buf_bytes") ?? 512 * 1024;
  const params = paramsFrom(options);
  const integrity = integrityFrom(args);
  if (integrity) params.integrity = integrity;
  // A request in shared memory skips the user copy its metadata would travel with.
  if (integrity && shmemZc)
    throw new UsageError("--shmem_zc with integrity metadata is not supported: drop one of them");
  return {
    target: type,
    targetOptions,
    devId: intOption(options, "number", -1, -1, 2 ** 20),
    // As the driver does, never more queues than CPUs by default.
    queues,
    ...(nthreads.perIo ? { nthreads: nthreads.count } : {}),
    ...(options.poll_us === undefined ? {} : { pollUs: intOption(options, "poll_us", 0, 0, MAX_POLL_US) }),
    depth,
    maxIoBufBytes: maxIoBuf,
    flags: ublkFlags,
    autoBufRegFallback: flags.has("auto_zc_fallback") || undefined,
    ...(flags.has("no_auto_zc") ? { autoZeroCopy: false } : {}),
    shmem: shmemZc ? { file: options.htlb, readOnly: flags.has("rdonly_shmem_buf") || undefined } : undefined,
    params,
  };
}
