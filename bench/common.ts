// What the host side (run.ts), the guest side (guest.ts) and the report (report.ts) agree on: the
// flags, the fio jobs, the device configurations and the shape of the results.
import {
  UBLK_F_AUTO_BUF_REG,
  UBLK_F_BATCH_IO,
  UBLK_F_PER_IO_DAEMON,
  UBLK_F_SUPPORT_ZERO_COPY,
  UBLK_F_USER_COPY,
} from "../src/uapi/ublk_cmd.js";
import { type Peer, type PeerSpecError, parsePeer, peerToArg } from "./peers.js";

export interface BenchOptions {
  /** fio --runtime, seconds (measured part of each run, after the ramp). */
  runtimeSec: number;
  /** fio --ramp_time, seconds (0: no ramp). */
  rampSec: number;
  /** Runs of each job; the table reports the median. */
  repeat: number;
  /** CI mode: 1 s, 1 repeat, no ramp, the qd64 randread job and the 1-queue rows only. */
  smoke: boolean;
  /** Only these device kinds: each ublk-ts target and its kernel counterpart. */
  only?: DeviceKind[];
  /** Kernel series of the VM (host side only; the guest measures whatever it runs on). */
  kernel?: string;
  /** Other ublk servers measured next to ublk-ts (`--peer`), in the order given. */
  peers?: Peer[];
  /** Only these jobs (FioJobSpec.id). */
  jobs?: string[];
  /** Only these queue counts (default 1 and 2; smoke 1). */
  queues?: number[];
  /** Only these ublk-ts variants: "plain" (no flags), or text found in the flags ("per_io_tasks"). */
  variants?: string[];
  /**
   * Every repeat brings each device up anew, in turn (device A's 1st run, B's 1st... then A's 2nd):
   * a slow minute of the host then spreads across the devices compared instead of hitting all runs of one.
   */
  interleave?: boolean;
}

/**
 * Seconds measured per run, as the benchmark spec asks. Under TCG a full run (12 devices x 5 jobs x 3
 * repeats) then takes ~50 min; --runtime=5 about 30 min.
 */
export const DEFAULT_RUNTIME_SEC = 10;

export const USAGE =
  "usage: npm run bench -- [--kernel=6.12|7.3] [--runtime=SEC] [--repeat=N] [--smoke] [--only=KIND[,KIND]]\n" +
  "                        [--jobs=ID[,ID]] [--queues=N[,N]] [--peer [NAME=]PATH]... [--interleave]\n" +
  "  --kernel=K     the VM's kernel series (default 6.12)\n" +
  `  --runtime=SEC  measured seconds per fio run (default ${DEFAULT_RUNTIME_SEC}, after a 2 s ramp: ~50 min; 5: ~30 min)\n` +
  "  --repeat=N     runs per job, the median is reported (default 3)\n" +
  "  --smoke        1 s, 1 repeat, no ramp, 4k randread qd64, 1 queue, base variant: checks it all still works\n" +
  "  --only=KINDS   comma-separated device kinds, each a ublk-ts target against the kernel's own:\n" +
  "                 null (null_blk), loop (the loop driver), ram (brd), stripe (dm-stripe over loop),\n" +
  "                 nbd (nbd-client against the same nbdkit export), qcow2 (qemu-nbd + nbd)\n" +
  "  --jobs=IDS     only these fio jobs: rr-qd1, rr-qd64, rw-qd64, seqr-128k, seqw-1m\n" +
  "  --queues=NS    only these queue counts (default 1,2)\n" +
  "  --variants=VS  only these ublk-ts rows: plain (no flags) or text of their flags (-b, per_io_tasks)\n" +
  "  --peer [NAME=]PATH  also measure another ublk server's CLI (repeatable): ublksrv's `ublk`\n" +
  "                 or kublk (`add -t null|loop -q N -d D`), in the same boot, with ublk-ts/peer ratios\n" +
  "  --interleave   each repeat brings every device up anew in turn (A, B, C, then A again...), so the\n" +
  "                 host's slow moments spread over the devices compared (costs a set-up per repeat)";

export class BenchUsageError extends Error {}

export function parseOptions(argv: readonly string[]): BenchOptions {
  argv = joinSpaced(argv);
  const o: BenchOptions = { runtimeSec: DEFAULT_RUNTIME_SEC, rampSec: 2, repeat: 3, smoke: false };
  let runtimeSet = false;
  let repeatSet = false;
  const posInt = (key: string, v: string, max: number) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > max) throw new BenchUsageError(`${key} takes an integer 1..${max}`);
    return n;
  };
  for (const arg of argv) {
    const eq = arg.indexOf("=");
    const key = eq < 0 ? arg : arg.slice(0, eq);
    const val = eq < 0 ? "" : arg.slice(eq + 1);
    if (key === "--runtime") {
      o.runtimeSec = posInt(key, val, 3600);
      runtimeSet = true;
    } else if (key === "--repeat") {
      o.repeat = posInt(key, val, 99);
      repeatSet = true;
    } else if (key === "--smoke" && eq < 0) o.smoke = true;
    else if (key === "--interleave" && eq < 0) o.interleave = true;
    else if (key === "--only" && val.split(",").every((k) => BENCH_KINDS.some((b) => b.kind === k)))
      o.only = val.split(",");
    else if (key === "--kernel" && val) o.kernel = val;
    else if (key === "--peer") {
      let p: Peer;
      try {
        p = parsePeer(val);
      } catch (e) {
        throw new BenchUsageError((e as PeerSpecError).message);
      }
      if (o.peers?.some((q) => q.name === p.name))
        throw new BenchUsageError(`two peers named ${p.name}: name them, --peer NAME=PATH`);
      o.peers = [...(o.peers ?? []), p];
    } else if (key === "--jobs" && val.split(",").every((j) => JOBS.some((x) => x.id === j)))
      o.jobs = val.split(",");
    else if (key === "--variants" && val) o.variants = val.split(",");
    else if (key === "--queues" && /^[1-4](,[1-4])*$/.test(val))
      o.queues = [...new Set(val.split(",").map(Number))].sort();
    else if (key === "--help" || key === "-h") throw new BenchUsageError("");
    else throw new BenchUsageError(`unknown or malformed argument: ${arg}`);
  }
  if (o.smoke) {
    if (runtimeSet || repeatSet || o.jobs || o.queues || o.variants || o.interleave)
      throw new BenchUsageError("--smoke fixes runtime, repeat, jobs, queues and variants; drop them");
    o.runtimeSec = 1;
    o.repeat = 1;
    o.rampSec = 0;
  }
  return o;
}

/** `--peer PATH` and `--jobs X` as `--peer=PATH`, `--jobs=X` (the other flags take `=` only). */
function joinSpaced(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (SPACED.includes(a)) {
      if (i + 1 >= argv.length || argv[i + 1].startsWith("--"))
        throw new BenchUsageError(`${a} needs a value`);
      out.push(`${a}=${argv[++i]}`);
    } else out.push(a);
  }
  return out;
}
const SPACED = ["--peer", "--jobs", "--queues", "--only", "--kernel", "--variants"];

/** The same options as command-line flags (host -> guest). */
export function optionsToArgs(o: BenchOptions): string[] {
  const more = [...(o.only ? [`--only=${o.only.join(",")}`] : []), ...(o.peers ?? []).map(peerToArg)];
  if (o.smoke) return ["--smoke", ...more];
  return [
    `--runtime=${o.runtimeSec}`,
    `--repeat=${o.repeat}`,
    ...more,
    ...(o.jobs ? [`--jobs=${o.jobs.join(",")}`] : []),
    ...(o.queues ? [`--queues=${o.queues.join(",")}`] : []),
    ...(o.variants ? [`--variants=${o.variants.join(",")}`] : []),
    ...(o.interleave ? ["--interleave"] : []),
  ];
}

export interface FioJobSpec {
  /** Short name for --jobs. */
  id: string;
  name: string;
  rw: "randread" | "randwrite" | "read" | "write";
  bs: string;
  bsBytes: number;
  iodepth: number;
}

export const JOBS: readonly FioJobSpec[] = [
  { id: "rr-qd1", name: "4k randread qd1", rw: "randread", bs: "4k", bsBytes: 4096, iodepth: 1 },
  { id: "rr-qd64", name: "4k randread qd64", rw: "randread", bs: "4k", bsBytes: 4096, iodepth: 64 },
  { id: "rw-qd64", name: "4k randwrite qd64", rw: "randwrite", bs: "4k", bsBytes: 4096, iodepth: 64 },
  { id: "seqr-128k", name: "128k read qd64", rw: "read", bs: "128k", bsBytes: 128 << 10, iodepth: 64 },
  { id: "seqw-1m", name: "1M write qd8", rw: "write", bs: "1M", bsBytes: 1 << 20, iodepth: 8 },
];

export const SMOKE_JOB = "4k randread qd64";

export type DeviceKind = string;
/** kernel: the in-kernel driver; peer: another ublk server (--peer). */
export type Impl = "ublk-ts" | "kernel" | "peer";

/** A ublk-ts variant: extra `ublk add` flags, and the UBLK_F_* bits the driver must offer for it. */
export interface Variant {
  flags: string[];
  needs?: number;
  /** Only with these queue counts (default: every one measured). */
  queues?: number[];
  /** Left out of --smoke (CI's time budget). */
  full?: boolean;
}

/** One device kind: a ublk-ts target measured against the kernel's own driver for the same job. */
export interface BenchKind {
  kind: DeviceKind;
  /** Label of the kernel driver it is compared with. */
  reference: string;
  /** The reference takes the queue count too (null_blk); otherwise it runs once, with one queue. */
  referencePerQueues: boolean;
  variants: Variant[];
  /** ublksrv and kublk have this target: --peer adds their rows. */
  peers?: boolean;
}

/** User copy, zero copy and automatic buffer registration: rows only where the driver has them. */
const NEWER_DATA_PATHS: Variant[] = [
  { flags: ["-u"], needs: UBLK_F_USER_COPY },
  { flags: ["-z"], needs: UBLK_F_SUPPORT_ZERO_COPY },
  { flags: ["--auto_zc"], needs: UBLK_F_AUTO_BUF_REG },
];

/** Batched IO commands (copying data path): next to the per-tag rows, where the driver has them. */
const BATCH: Variant = { flags: ["-b"], needs: UBLK_F_BATCH_IO };

/** Per-IO daemons: one queue served by two threads, each with half its tags; not in --smoke. */
const PER_IO: Variant = {
  flags: ["--nthreads", "2", "--per_io_tasks"],
  needs: UBLK_F_PER_IO_DAEMON,
  queues: [1],
  full: true,
};

/** Measured in this order. */
export const BENCH_KINDS: readonly BenchKind[] = [
  {
    kind: "null",
    reference: "null_blk",
    referencePerQueues: true,
    variants: [{ flags: [] }, BATCH, { flags: ["-g"] }, ...NEWER_DATA_PATHS, PER_IO],
    peers: true,
  },
  {
    kind: "loop",
    reference: "loop (kernel)",
    referencePerQueues: false,
    variants: [{ flags: [] }, BATCH, ...NEWER_DATA_PATHS, PER_IO],
    peers: true,
  },
  // The ram target runs with NEED_GET_DATA (-g says so in the label); with -b the driver offers none,
  // and the target copies through the tag's buffer.
  { kind: "ram", reference: "brd", referencePerQueues: false, variants: [{ flags: ["-g"] }, BATCH] },
  // Two tmpfs files, 64K chunks; the kernel's dm-stripe reaches the files through loop devices.
  { kind: "stripe", reference: "dm-stripe", referencePerQueues: false, variants: [{ flags: [] }] },
  // Both against one nbdkit memory export over a Unix socket; ublk-ts -q N opens N connections.
  { kind: "nbd", reference: "nbd (kernel)", referencePerQueues: false, variants: [{ flags: [] }] },
  // QEMU's qcow2 driver on the same image: qemu-nbd serving the kernel's nbd driver.
  { kind: "qcow2", reference: "qemu-nbd+nbd", referencePerQueues: false, variants: [{ flags: [] }] },
];

export const DEVICE_KINDS: readonly DeviceKind[] = BENCH_KINDS.map((k) => k.kind);

/** One device set up once, then every job run against it. */
export interface DeviceConfig {
  kind: DeviceKind;
  impl: Impl;
  /** ublk-ts: -q; null_blk: submit_queues; other kernel references have 1. */
  queues: number;
  /** ublk-ts: extra `ublk add` flags (-g, -u, -z...). */
  flags: string[];
  /** UBLK_F_* the driver must offer; the guest skips the device otherwise. */
  needs?: number;
  /** impl "peer": which server. */
  peer?: Peer;
}

export const NULL_SIZE_MIB = 1024;
export const LOOP_FILE_MIB = 512;
/** ublk-ts ram --size and brd rd_size: written in full by the write jobs, so guest RAM must hold it. */
export const RAM_DISK_MIB = 512;
export const QUEUE_DEPTH = 128;
/** The qcow2 image both ublk-ts and qemu-nbd serve (preallocated on the guest's tmpfs). */
export const QCOW2_IMAGE_MIB = 256;

/** Devices in the order they are measured: each ublk-ts row right after its kernel reference. */
export function deviceConfigs(o: BenchOptions): DeviceConfig[] {
  const queueCounts = o.smoke ? [1] : (o.queues ?? [1, 2]);
  const out: DeviceConfig[] = [];
  for (const k of BENCH_KINDS) {
    if (o.only && !o.only.includes(k.kind)) continue;
    const refQueues = k.referencePerQueues ? queueCounts : [1];
    for (const q of queueCounts) {
      if (refQueues.includes(q)) out.push({ kind: k.kind, impl: "kernel", queues: q, flags: [] });
      // The smoke checks that the bench runs end to end; the other data paths have their VM tests.
      for (const v of o.smoke ? k.variants.slice(0, 1) : k.variants) {
        if ((v.full && o.smoke) || (v.queues && !v.queues.includes(q)) || !variantPicked(v, o)) continue;
        out.push({ kind: k.kind, impl: "ublk-ts", queues: q, flags: v.flags, needs: v.needs });
      }
      if (k.peers)
        for (const peer of o.peers ?? [])
          out.push({ kind: k.kind, impl: "peer", queues: q, flags: [], peer });
    }
  }
  return out;
}

function variantPicked(v: Variant, o: BenchOptions): boolean {
  if (!o.variants) return true;
  const flags = v.flags.join(" ");
  return o.variants.some((t) => (t === "plain" ? flags === "" : flags.includes(t)));
}

/** Threads serving a ublk-ts device: --nthreads N, else one per queue. */
export function threadsOf(c: { queues: number; flags: readonly string[] }): number {
  const at = c.flags.indexOf("--nthreads");
  return at >= 0 ? Number(c.flags[at + 1]) : c.queues;
}

export function jobsFor(o: BenchOptions): FioJobSpec[] {
  if (o.smoke) return JOBS.filter((j) => j.name === SMOKE_JOB);
  return o.jobs ? JOBS.filter((j) => o.jobs!.includes(j.id)) : [...JOBS];
}

// Measured under TCG on a busy 2-CPU host: fio needs 2-6 s just to start (once per device: all of
// a device's runs go through one fio), then ~1 s per run around ramp+runtime (job set-up, the
// exec_prerun/postrun hooks); each ublk CLI call starts node (~4 s): add (CLI + daemon), list,
// del; boot ~20 s; the loop file's dd ~18 s.
const FIO_START_SEC = 6;
const RUN_OVERHEAD_SEC = 1;
const UBLK_DEVICE_SEC = 20;
const KERNEL_DEVICE_SEC = 3;
const PEER_DEVICE_SEC = 6;
const FIXED_SEC = 60;

export function estimateSeconds(o: BenchOptions): number {
  const devices = deviceConfigs(o);
  // --interleave: a fio start and a device set-up per repeat instead of one per device.
  const setUps = o.interleave ? o.repeat : 1;
  const perDevice =
    setUps * FIO_START_SEC + jobsFor(o).length * o.repeat * (o.runtimeSec + o.rampSec + RUN_OVERHEAD_SEC);
  return devices.reduce(
    (t, d) =>
      t +
      perDevice +
      setUps *
        (d.impl === "ublk-ts" ? UBLK_DEVICE_SEC : d.impl === "peer" ? PEER_DEVICE_SEC : KERNEL_DEVICE_SEC),
    FIXED_SEC,
  );
}

export function deviceLabel(c: { kind: DeviceKind; impl: Impl; peer?: { name: string } }): string {
  if (c.impl === "ublk-ts") return `ublk-ts ${c.kind}`;
  if (c.impl === "peer") return `${c.peer?.name ?? "peer"} ${c.kind}`;
  return BENCH_KINDS.find((k) => k.kind === c.kind)?.reference ?? `${c.kind} (kernel)`;
}

export function variantLabel(c: { queues: number; flags: readonly string[] }): string {
  return [`q${c.queues}`, ...c.flags].join(" ");
}

/** One fio run. Latencies are fio's completion latency (clat) percentiles. */
export interface RunResult {
  iops: number;
  bwBytes: number;
  p50Ns: number;
  p99Ns: number;
  /** fio's mean completion latency. */
  meanNs?: number;
  /** IOs fio counted (after the ramp). */
  ios: number;
  /** ublk-ts and peers: daemon utime+stime over the whole fio process, in µs. */
  daemonCpuUs?: number;
  /** IOs of the job's block size the device moved over that same window (ramp included), from sysfs. */
  windowIos?: number;
  /** Requests the device completed over that window (after splitting/merging). */
  windowRequests?: number;
  /** Wall time of the whole fio process, seconds. */
  wallSec?: number;
}

export interface Row {
  kind: DeviceKind;
  impl: Impl;
  device: string;
  queues: number;
  flags: string[];
  /** impl "peer": the server's name (--peer NAME). */
  peer?: string;
  job: string;
  /** The block device measured. */
  dev?: string;
  /** ublk-ts: the CPUs each queue thread is pinned to, by qid (from `ublk list --json`). */
  queueCpus?: number[][];
  /** Every run, in order. */
  runs: RunResult[];
  /** Medians over the runs (absent when a run failed). */
  iops?: number;
  mbps?: number;
  p50Us?: number;
  p99Us?: number;
  meanUs?: number;
  cpuUsPerIo?: number;
  error?: string;
}

export interface Machine {
  hostCpu?: string;
  hostCpus?: number;
  vmCpus: number;
  vmMemMiB: number;
  kernel: string;
  fio: string;
  node: string;
  clkTck: number;
  date: string;
  /** Where the guest ran: "qemu TCG" in the VM harness, "host" otherwise. */
  where: string;
}

export interface BenchResult {
  version: 1;
  options: BenchOptions;
  settings: {
    fio: string;
    nullBlk: string;
    loopFileMiB: number;
    /** Absent in results written before the ram rows existed. */
    ramDiskMiB?: number;
    queueDepth: number;
  };
  machine: Machine;
  rows: Row[];
  /** Devices the driver could not run (a variant whose feature it lacks), with why. */
  skipped?: string[];
  errors: string[];
  ok: boolean;
  /** Wall time of the guest part, seconds. */
  elapsedSec: number;
  /** Wall time of the whole `npm run bench` after the build (boot included), seconds; set by run.ts. */
  wallSec?: number;
}

/** Line prefix the guest puts before its one-line JSON result, so the host can pick it out. */
export const RESULT_MARKER = "@@ublk-bench-result@@ ";

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
