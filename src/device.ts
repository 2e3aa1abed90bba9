// A ublk device served by this process: ADD_DEV, SET_PARAMS, one queue thread per hardware queue
// (each arms all its tags; with per-IO daemons, --nthreads threads each arming its share of every
// queue's tags), START_DEV, and the reverse on stop. Policy for the whole lifecycle lives here.
import { closeSync, constants, openSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { charDevPath, refusalReason } from "./ctrl/access.js";
import { ControlDevice, type DevInfo } from "./ctrl/control.js";
import { UblkError } from "./ctrl/errors.js";
import {
  type DeviceParamOverrides,
  type DeviceParams,
  mergeParams,
  toUblkParams,
  validateParams,
} from "./ctrl/params.js";
import { integrityFormat, integrityFormatOf, integrityLayout, integrityRefusal } from "./device-integrity.js";
import type { IntegrityLayout } from "./queue/integrity.js";
import { perIoShares } from "./queue/per-io.js";
import { perIoThreadCpus, queueThreadCpus } from "./queue/placement.js";
import type { QueueConfig } from "./queue/queue-loop.js";
import type { QueueWorkerData, QueueWorkerMessage } from "./queue/worker.js";
import { openSharedFile, SharedMemory, type SharedMemoryOptions } from "./shared-memory.js";
import { shmemSocketPath } from "./shmem-socket.js";
import { loadTarget, targetModuleUrl } from "./targets/registry.js";
import type { Target, TargetOptions, TargetSetup } from "./targets/target.js";
import * as U from "./uapi/ublk_cmd.js";

export interface DeviceOptions {
  /** Built-in target name ("null", "loop"), a path to a target module, or a file: URL. */
  target: string;
  targetOptions?: TargetOptions;
  /** Device id, or -1 (default) for the first free one. */
  devId?: number;
  queues?: number;
  /**
   * Serving threads, with UBLK_F_PER_IO_DAEMON in `flags` (then any count up to queues x depth);
   * without it, the queue count (the default).
   */
  threads?: number;
  depth?: number;
  /** Per-tag IO buffer, also the largest request; default 512 KiB. */
  maxIoBufBytes?: number;
  /** UBLK_F_* to ask for. */
  flags?: number;
  /** With UBLK_F_AUTO_BUF_REG: ask the driver to hand over requests whose buffer it could not register. */
  autoBufRegFallback?: boolean;
  /**
   * false: keep the copying data path even where autoZeroCopyFits() would pick automatic buffer
   * registration (--no_auto_zc). Default true.
   */
  autoZeroCopy?: boolean;
  /** How long a queue thread polls before sleeping while requests keep coming (QueueConfig.pollUs). */
  pollUs?: number;
  params?: DeviceParamOverrides;
  /** With UBLK_F_SHMEM_ZC: the shared memory to register (--htlb) and how. */
  shmem?: SharedMemoryOptions;
  log?: (message: string) => void;
}

export interface QueueInfo {
  /** The queue (per-IO daemons: the first queue the thread serves). */
  qid: number;
  tid: number;
  cpus: number[];
  /** Per-IO daemons: the thread's index, and per queue it serves, how many of its tags. */
  thread?: number;
  serves?: { qid: number; tags: number }[];
}

const WAIT_STEP_MS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves true when `p` settles within `ms`, false otherwise; never leaves its timer behind. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class DeviceError extends Error {
  override name = "DeviceError";
}

/**
 * Opens /dev/ublkcN, waiting briefly for devtmpfs/udev to create the node after ADD_DEV (and, for an
 * unprivileged device, for the udev rule to hand it to its owner: access.ts). With user
 * copy it is opened O_NONBLOCK: the driver's read and write only copy memory and never wait, but it
 * does not tell io_uring so, which would then hand every copy to an io-wq worker thread; io_uring
 * treats an O_NONBLOCK file as able to run inline. The uring_cmds and mmap ignore the flag.
 */
async function openCharDev(devId: number, flags: number, timeoutMs = 5000): Promise<number> {
  const path = charDevPath(devId);
  const unprivileged = (flags & U.UBLK_F_UNPRIVILEGED_DEV) !== 0;
  // An unprivileged device's node must also reach its owner (udev's RUN helper): allow for a slow one.
  const deadline = Date.now() + (unprivileged ? 6 * timeoutMs : timeoutMs);
  const inline = flags & U.UBLK_F_USER_COPY && process.env.UBLK_TS_COPY_INLINE !== "0";
  for (;;) {
    try {
      return openSync(path, constants.O_RDWR | (inline ? constants.O_NONBLOCK : 0));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const waiting = code === "ENOENT" || (unprivileged && code === "EACCES");
      if (waiting && Date.now() <= deadline) {
        await sleep(WAIT_STEP_MS);
        continue;
      }
      if (code === "EACCES")
        throw new DeviceError(
          `${refusalReason(devId, code, "open")}; device ${devId} stays until root deletes it (ublk del -n ${devId})`,
        );
      throw err;
    }
  }
}

class QueueThread {
  readonly worker: Worker;
  info: QueueInfo | null = null;
  readonly ready: Promise<QueueInfo>;
  /** The thread started and loaded its target; it waits for start(charFd). */
  readonly prepared: Promise<void>;
  readonly exited: Promise<void>;
  private done = false;
  private onPrepared!: () => void;

  constructor(data: QueueWorkerData, log: (m: string) => void) {
    const name = data.thread === undefined ? `queue ${data.cfgs[0].qid}` : `thread ${data.thread}`;
    this.worker = new Worker(new URL("./queue/worker.js", import.meta.url), { workerData: data });
    this.prepared = new Promise((resolve) => {
      this.onPrepared = resolve;
    });
    this.ready = new Promise((resolve, reject) => {
      this.worker.on("message", (m: QueueWorkerMessage) => {
        if (m.type === "prepared") this.onPrepared();
        else if (m.type === "ready") {
          this.info = { qid: data.cfgs[0].qid, tid: m.tid, cpus: m.cpus };
          if (data.thread !== undefined) {
            this.info.thread = data.thread;
            this.info.serves = data.cfgs.map((c) => ({ qid: c.qid, tags: c.tags?.length ?? c.depth }));
          }
          resolve(this.info);
        } else if (m.type === "log") log(m.message);
        else if (m.type === "error") reject(new DeviceError(`${name}: ${m.message}`));
        else if (m.type === "done") this.done = true;
      });
      this.worker.on("error", (err) => reject(err));
      this.worker.on("exit", () => reject(new DeviceError(`${name} thread exited before it was ready`)));
    });
    // A thread that fails before it is prepared settles `ready` with the error; let that win (this
    // handler also keeps the rejection from going unhandled).
    this.ready.catch(() => this.onPrepared());
    this.exited = new Promise((resolve) => this.worker.on("exit", () => resolve()));
  }

  /** Hands the thread the device's char fd: it maps its descriptors and fetches every tag. */
  start(charFd: number): void {
    this.worker.postMessage({ type: "start", charFd });
  }

  get finished(): boolean {
    return this.done;
  }

  /** Asks the thread to drop its ring (the driver then cancels its commands) and exit. */
  async close(timeoutMs: number): Promise<void> {
    this.worker.postMessage({ type: "close" });
    if (!(await settlesWithin(this.exited, timeoutMs))) await this.worker.terminate();
  }
}

/** prepareQueues' optional settings, as create() and recover() have them. */
interface QueueSetup {
  autoBufRegFallback?: boolean;
  integrity?: IntegrityLayout;
  shmemTable?: SharedArrayBuffer;
  perIoThreads?: number;
  pollUs?: number;
}

/**
 * One thread per hardware queue, pinned where the driver suggests, started and with its target
 * loaded, but not yet touching the device (see startQueues). With per-IO daemons asked for
 * (`perIoThreads`), that many threads instead, each with its share of the (queue, tag) pairs
 * (per-io.ts), placed on the CPUs of the queues it serves. Asked for, not granted: the 7.3 driver
 * sets UBLK_F_PER_IO_DAEMON on every device, and a plain device keeps one thread per queue.
 */
async function prepareQueues(
  ctrl: ControlDevice,
  info: DevInfo,
  targetUrl: string,
  setup: TargetSetup,
  threads: QueueThread[],
  log: (m: string) => void,
  { autoBufRegFallback = false, integrity, shmemTable, perIoThreads, pollUs }: QueueSetup,
): Promise<void> {
  const driverCpus: number[][] = [];
  for (let qid = 0; qid < info.nrHwQueues; qid++)
    driverCpus.push(await ctrl.getQueueAffinity(info.devId, qid));
  const base = {
    devId: info.devId,
    depth: info.queueDepth,
    bufSize: info.maxIoBufBytes,
    charFd: -1,
    flags: info.flags,
    autoBufRegFallback,
    integrity,
    shmemTable,
    pollUs,
  };
  const state = setup.state;
  if (perIoThreads !== undefined && info.flags & U.UBLK_F_PER_IO_DAEMON) {
    for (const share of perIoShares(info.nrHwQueues, info.queueDepth, perIoThreads)) {
      const cfgs: QueueConfig[] = share.queues.map(({ qid, tags }) => ({ ...base, qid, tags }));
      const cpus = perIoThreadCpus(share.queues.map(({ qid }) => driverCpus[qid]));
      threads.push(new QueueThread({ cfgs, thread: share.thread, targetUrl, state, cpus }, log));
    }
  } else
    for (let qid = 0; qid < info.nrHwQueues; qid++) {
      const cpus = queueThreadCpus(driverCpus[qid]);
      threads.push(new QueueThread({ cfgs: [{ ...base, qid }], targetUrl, state, cpus }, log));
    }
  await Promise.race([
    Promise.all(threads.map((t) => t.prepared)),
    Promise.all(threads.map((t) => t.ready)), // rejects first if a thread fails early
  ]);
}

/** Prepared queues map their descriptors and arm every tag; resolves once all are ready. */
function startQueues(threads: QueueThread[], charFd: number): Promise<QueueInfo[]> {
  for (const t of threads) t.start(charFd);
  return Promise.all(threads.map((t) => t.ready));
}

export interface RecoverOptions {
  devId: number;
  /** Per-IO daemons (as created with them): how many threads serve; absent: one per queue. */
  threads?: number;
  /** As given to create(). */
  autoBufRegFallback?: boolean;
  pollUs?: number;
  target: string;
  targetOptions?: TargetOptions;
  /** How long to retry START_USER_RECOVERY while the driver says EBUSY (default 60 s). */
  waitMs?: number;
  log?: (message: string) => void;
}

/**
 * The UBLK_F_* to ask ADD_DEV for: what the user and the target asked (refused, naming the bits, when
 * the driver lacks one), plus what ublk-ts uses whenever the driver has it: ioctl-encoded commands,
 * online resize, safe stop, and quiesce for recoverable devices (the daemon upgrade path).
 */
export function chooseFlags(wanted: number, features: number): number {
  const missing = wanted & ~features;
  if (missing) {
    throw new DeviceError(
      `the ublk driver lacks ${U.featureNames(missing).join(", ")} (features 0x${features.toString(16)}); ` +
        "drop that option or use a newer kernel",
    );
  }
  let extra = U.UBLK_F_CMD_IOCTL_ENCODE | U.UBLK_F_UPDATE_SIZE | U.UBLK_F_SAFE_STOP_DEV;
  if (wanted & U.UBLK_F_USER_RECOVERY) extra |= U.UBLK_F_QUIESCE;
  return wanted | (extra & features);
}

/** The data-path choices a user makes; with none of them the device may take zero copy by itself. */
const DATA_PATH_FLAGS =
  U.UBLK_F_USER_COPY |
  U.UBLK_F_NEED_GET_DATA |
  U.UBLK_F_SUPPORT_ZERO_COPY |
  U.UBLK_F_AUTO_BUF_REG |
  U.UBLK_F_BATCH_IO |
  U.UBLK_F_SHMEM_ZC |
  U.UBLK_F_PER_IO_DAEMON |
  U.UBLK_F_UNPRIVILEGED_DEV |
  // Recoverable devices keep the copying path for now: once on 7.3 (CI of 2026-12-02) a QUIESCE_DEV
  // of a loop -r 1 device with the default zero copy under fio never finished (bench/NOTES.md).
  U.UBLK_F_USER_RECOVERY;

/**
 * Whether a device runs with automatic buffer registration although nobody asked: the driver has it,
 * the target never touches the requests' bytes (Target.zeroCopy), and the user chose no data path
 * (copy modes, zero copy, batches, shared memory, per-IO daemons, unprivileged), no user recovery
 * and no integrity metadata. Then no byte is copied between the request and the daemon: under TCG on
 * 7.3 that copy costs more than the rest of a 4k request (bench/NOTES.md, "Linux 7.3 at qd1").
 */
export function autoZeroCopyFits(
  userFlags: number,
  target: Pick<Target, "zeroCopy">,
  features: number,
  integrity: boolean,
): boolean {
  return (
    target.zeroCopy === true &&
    !integrity &&
    (features & U.UBLK_F_AUTO_BUF_REG) !== 0 &&
    (userFlags & DATA_PATH_FLAGS) === 0
  );
}

export class UblkDevice {
  private stopping: Promise<void> | null = null;
  private currentSize: number;
  /** Resolves when every queue has ended (after stop(), or when the device was stopped elsewhere). */
  readonly ended: Promise<void>;

  private constructor(
    readonly info: DevInfo,
    readonly params: DeviceParams,
    readonly sizeBytes: number,
    readonly queues: QueueInfo[],
    readonly targetUrl: string,
    readonly setup: TargetSetup,
    private readonly target: Target,
    private readonly ctrl: ControlDevice,
    private readonly charFd: number,
    private readonly threads: QueueThread[],
    private readonly log: (m: string) => void,
    /** --shmem_zc: the registered shared memory and its socket. */
    private readonly shmem: SharedMemory | null = null,
  ) {
    this.ended = Promise.all(threads.map((t) => t.exited)).then(() => {});
    this.currentSize = sizeBytes;
  }

  get devId(): number {
    return this.info.devId;
  }

  get blockDevice(): string {
    return `/dev/ublkb${this.info.devId}`;
  }

  get charDevice(): string {
    return `/dev/ublkc${this.info.devId}`;
  }

  /** --shmem_zc: where applications send their memory, and the file registered at start. */
  get sharedMemoryInfo(): Record<string, string> {
    if (!this.shmem) return {};
    return {
      shmem_socket: shmemSocketPath(this.devId),
      ...(this.shmem.file ? { shmem_file: this.shmem.file } : {}),
    };
  }

  static async create(opts: DeviceOptions): Promise<UblkDevice> {
    const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
    const queues = opts.queues ?? 1;
    const depth = opts.depth ?? 128;
    const nthreads = opts.threads ?? queues;
    const perIo = ((opts.flags ?? 0) & U.UBLK_F_PER_IO_DAEMON) !== 0;
    const maxIoBufBytes = opts.maxIoBufBytes ?? 512 * 1024;
    if (!Number.isInteger(queues) || queues < 1 || queues > U.UBLK_MAX_NR_QUEUES)
      throw new DeviceError(`queue count ${queues} must be 1..${U.UBLK_MAX_NR_QUEUES}`);
    if (!Number.isInteger(depth) || depth < 1 || depth > U.UBLK_MAX_QUEUE_DEPTH)
      throw new DeviceError(`queue depth ${depth} must be 1..${U.UBLK_MAX_QUEUE_DEPTH}`);
    if (!perIo && nthreads !== queues)
      throw new DeviceError(
        `${nthreads} threads for ${queues} queues: without per-IO daemons (UBLK_F_PER_IO_DAEMON) each queue has one thread`,
      );
    if (!Number.isInteger(nthreads) || nthreads < 1 || nthreads > queues * depth)
      throw new DeviceError(`thread count ${nthreads} must be 1..${queues * depth} (queues x depth)`);
    if (maxIoBufBytes < 4096 || maxIoBufBytes % 4096 !== 0)
      throw new DeviceError(`IO buffer size ${maxIoBufBytes} must be a multiple of 4096`);

    const targetUrl = targetModuleUrl(opts.target);
    const target = await loadTarget(targetUrl);
    const setup = await target.open(opts.targetOptions ?? {});
    let params = mergeParams(setup.params, opts.params);
    const problem =
      validateParams(params, setup.size, maxIoBufBytes) ?? integrityRefusal(target, params, opts.flags ?? 0);
    if (problem) {
      await target.close?.(setup);
      throw new DeviceError(problem);
    }

    const zeroCopy = (opts.flags ?? 0) & (U.UBLK_F_SUPPORT_ZERO_COPY | U.UBLK_F_AUTO_BUF_REG);
    if (zeroCopy && !target.zeroCopy) {
      await target.close?.(setup);
      throw new DeviceError(
        `the ${target.name} target needs the requests' bytes: it cannot run with zero copy (-z, --auto_zc)`,
      );
    }
    const shmemZc = ((opts.flags ?? 0) & U.UBLK_F_SHMEM_ZC) !== 0;
    if (shmemZc && !target.shmemZeroCopy) {
      await target.close?.(setup);
      throw new DeviceError(
        `the ${target.name} target cannot serve requests from shared memory (--shmem_zc): loop and null can`,
      );
    }
    // With zero copy the user's choice wins over a target's own NEED_GET_DATA (its mapped-memory path).
    let flags = (opts.flags ?? 0) | ((setup.flags ?? 0) & (zeroCopy ? ~U.UBLK_F_NEED_GET_DATA : ~0));
    // A target that serves from its own memory asks for NEED_GET_DATA; with user copy the queue copies
    // straight from and into that memory instead, and the driver drops the flag anyway.
    if (flags & U.UBLK_F_USER_COPY) flags &= ~U.UBLK_F_NEED_GET_DATA;
    const integrity = integrityFormat(params);
    if (integrity) flags |= U.UBLK_F_INTEGRITY;
    if (flags & U.UBLK_F_BATCH_IO) {
      // The driver has no NEED_GET_DATA with batched commands: such a target copies through the tag's
      // buffer. User copy and shared-memory requests are not served in batches here.
      flags &= ~U.UBLK_F_NEED_GET_DATA;
      const other = flags & (U.UBLK_F_USER_COPY | U.UBLK_F_SHMEM_ZC);
      if (other) {
        await target.close?.(setup);
        const asked =
          (opts.flags ?? 0) & other
            ? ""
            : integrity
              ? " (integrity metadata moves by user copy)"
              : ` (the ${target.name} target asks for it)`;
        throw new DeviceError(
          `batched IO commands (-b) do not run with ${U.featureNames(other).join(", ")} here${asked}`,
        );
      }
    }
    const ctrl = await ControlDevice.open();
    let info: DevInfo;
    let shmemFile: { fd: number; size: number } | null = null;
    try {
      const features = await ctrl.getFeatures();
      flags = chooseFlags(flags, features);
      if (
        opts.autoZeroCopy !== false &&
        autoZeroCopyFits(opts.flags ?? 0, target, features, Boolean(integrity))
      )
        flags = (flags | U.UBLK_F_AUTO_BUF_REG) & ~U.UBLK_F_NEED_GET_DATA;
      if (integrity) {
        // The target may change its parameters for it (loop drops discard).
        await target.openIntegrity?.(setup, integrity);
        params = mergeParams(setup.params, opts.params);
      }
      if (shmemZc && opts.shmem?.file)
        shmemFile = openSharedFile(opts.shmem.file, opts.shmem.readOnly === true);
      info = await ctrl.addDev({
        devId: opts.devId ?? -1,
        nrHwQueues: queues,
        queueDepth: depth,
        maxIoBufBytes,
        flags,
      });
    } catch (err) {
      if (shmemFile) closeSync(shmemFile.fd);
      ctrl.close();
      await target.close?.(setup);
      throw err;
    }

    const devId = info.devId;
    let charFd = -1;
    const threads: QueueThread[] = [];
    const shmem = shmemZc ? new SharedMemory(ctrl, devId, log, opts.shmem?.file) : null;
    try {
      // The driver silently drops flags it does not know.
      const missing =
        flags &
        ~info.flags &
        (U.UBLK_F_USER_COPY |
          U.UBLK_F_ZONED |
          U.UBLK_F_SUPPORT_ZERO_COPY |
          U.UBLK_F_AUTO_BUF_REG |
          U.UBLK_F_INTEGRITY |
          U.UBLK_F_BATCH_IO |
          U.UBLK_F_SHMEM_ZC |
          U.UBLK_F_PER_IO_DAEMON);
      if (missing)
        throw new DeviceError(
          `this ublk driver does not support ${U.featureNames(missing).join(" and ")} (see 'ublk features')`,
        );
      charFd = await openCharDev(devId, info.flags);
      await ctrl.setParams(devId, toUblkParams(params, setup.size, info.maxIoBufBytes));
      // Before the device starts no request can come, so REG_BUF need not freeze the queue.
      if (shmem && shmemFile && opts.shmem?.file) {
        const { fd, size } = shmemFile;
        shmemFile = null; // the registration owns it now
        await shmem.register(fd, opts.shmem.file, opts.shmem.readOnly === true, size);
      }
      await prepareQueues(ctrl, info, targetUrl, setup, threads, log, {
        autoBufRegFallback: opts.autoBufRegFallback,
        integrity: integrityLayout(integrity),
        shmemTable: shmem?.table,
        perIoThreads: perIo ? nthreads : undefined,
        pollUs: opts.pollUs,
      });
      const queueInfos = await startQueues(threads, charFd);
      await ctrl.startDev(devId, process.pid);
      if (shmem) log(`shared memory socket: ${await shmem.listen()}`);
      const live = await ctrl.getDevInfo(devId);
      return new UblkDevice(
        live,
        params,
        setup.size,
        queueInfos,
        targetUrl,
        setup,
        target,
        ctrl,
        charFd,
        threads,
        log,
        shmem,
      );
    } catch (err) {
      // Leave nothing half-created: drop the queues, release the char device, delete.
      await Promise.all(threads.map((t) => t.close(2000)));
      await shmem?.close();
      if (shmemFile) closeSync(shmemFile.fd);
      if (charFd >= 0) closeSync(charFd);
      await ctrl.stopDev(devId).catch(() => {});
      await ctrl.delDev(devId).catch((e: unknown) => log(`cleanup of ublk${devId} failed: ${e}`));
      ctrl.close();
      await target.close?.(setup);
      throw err;
    }
  }

  /**
   * Takes over a device whose daemon died (user recovery): START_USER_RECOVERY (retried while the
   * driver answers EBUSY, i.e. until the old daemon is gone and the device is QUIESCED), a fresh set of
   * queues that fetch every tag, then END_USER_RECOVERY: LIVE again. Parameters are not sent: the
   * driver keeps them and refuses SET_PARAMS after start. Geometry comes from the driver.
   */
  static async recover(opts: RecoverOptions): Promise<UblkDevice> {
    const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
    const targetUrl = targetModuleUrl(opts.target);
    const target = await loadTarget(targetUrl);
    const ctrl = await ControlDevice.open();
    const devId = opts.devId;
    let setup: TargetSetup | null = null;
    let charFd = -1;
    const threads: QueueThread[] = [];
    try {
      const info = await ctrl.getDevInfo(devId);
      if (!(info.flags & U.UBLK_F_USER_RECOVERY))
        throw new DeviceError(
          info.flags & U.UBLK_F_UNPRIVILEGED_DEV
            ? `device ${devId} is unprivileged: the driver gives such devices no user recovery`
            : `device ${devId} was created without user recovery (-r 1): it cannot be recovered`,
        );
      // All the slow work first: between START_USER_RECOVERY and the first queue being ready the
      // 6.12 driver cannot take over again should this daemon die (it answers EINVAL after that).
      setup = await target.open(opts.targetOptions ?? {});
      const kernelParams = await ctrl.getParams(devId);
      const sizeBytes = Number(kernelParams.basic.dev_sectors) * 512;
      if (setup.size < sizeBytes)
        throw new DeviceError(`target is ${setup.size} bytes, the device ${sizeBytes}`);
      const params = mergeParams(setup.params);
      params.logicalBlockSize = 1 << kernelParams.basic.logical_bs_shift;
      const integrity = integrityFormatOf(kernelParams);
      if (integrity) {
        if (!target.openIntegrity)
          throw new DeviceError(
            `device ${devId} has integrity metadata, which the ${target.name} target cannot keep`,
          );
        await target.openIntegrity(setup, integrity);
      }
      await prepareQueues(ctrl, info, targetUrl, setup, threads, log, {
        autoBufRegFallback: opts.autoBufRegFallback,
        integrity: integrityLayout(integrity),
        perIoThreads: opts.threads, // saved only for a device made with per-IO daemons
        pollUs: opts.pollUs,
      });
      const deadline = Date.now() + (opts.waitMs ?? 60_000);
      for (;;) {
        try {
          await ctrl.startUserRecovery(devId);
          break;
        } catch (err) {
          if (err instanceof UblkError && err.code === "EINVAL")
            throw new DeviceError(
              `device ${devId} cannot be recovered: an earlier recovery died before any queue was ready, ` +
                `and this kernel refuses a new one after that; remove it with 'ublk del -n ${devId}'`,
            );
          if (!(err instanceof UblkError && err.code === "EBUSY") || Date.now() > deadline) throw err;
          await sleep(250);
        }
      }
      charFd = await openCharDev(devId, info.flags);
      const queueInfos = await startQueues(threads, charFd);
      await ctrl.endUserRecovery(devId, process.pid);
      const live = await ctrl.getDevInfo(devId);
      return new UblkDevice(
        live,
        params,
        sizeBytes,
        queueInfos,
        targetUrl,
        setup,
        target,
        ctrl,
        charFd,
        threads,
        log,
      );
    } catch (err) {
      // Leave the device as it was (QUIESCED, recoverable again): only release what we opened.
      await Promise.all(threads.map((t) => t.close(2000)));
      if (charFd >= 0) closeSync(charFd);
      ctrl.close();
      if (setup) await target.close?.(setup);
      throw err;
    }
  }

  /** Current state from the driver. */
  getInfo(): Promise<DevInfo> {
    return this.ctrl.getDevInfo(this.devId);
  }

  /** True once stop() was called: the queues' end is ours, not the driver's or another tool's. */
  get stopRequested(): boolean {
    return this.stopping !== null;
  }

  /**
   * After the queues ended without stop() (the device was quiesced, e.g. for a daemon upgrade): let go
   * of the device without deleting it, so a new daemon can take it over with `ublk recover`.
   */
  async release(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close(2000)));
    await this.shmem?.close();
    closeSync(this.charFd);
    this.ctrl.close();
    await this.target.close?.(this.setup);
  }

  /**
   * Changes the capacity of the live device: the target is asked first (it may grow its backing or
   * refuse), then UPDATE_SIZE tells the driver. Needs UBLK_F_UPDATE_SIZE.
   */
  async resize(newSize: number): Promise<void> {
    if (!(this.info.flags & U.UBLK_F_UPDATE_SIZE))
      throw new DeviceError(`device ${this.devId} cannot change size: the driver lacks UBLK_F_UPDATE_SIZE`);
    const lbs = this.params.logicalBlockSize;
    if (!Number.isSafeInteger(newSize) || newSize <= 0 || newSize % lbs !== 0)
      throw new DeviceError(`size ${newSize} must be a positive multiple of the ${lbs}-byte logical block`);
    if (!this.target.resize) throw new DeviceError(`the ${this.target.name} target cannot change size`);
    await this.target.resize(this.setup, newSize);
    await this.ctrl.updateSize(this.devId, newSize / 512);
    this.currentSize = newSize;
  }

  /** The capacity now (after any resize). */
  get size(): number {
    return this.currentSize;
  }

  /**
   * STOP_DEV while the queues still serve (so in-flight IO completes), wait for every queue to see its
   * tags aborted, release the char device, then DEL_DEV. Safe to call more than once.
   */
  stop(timeoutMs = 30_000): Promise<void> {
    this.stopping ??= this.doStop(timeoutMs);
    return this.stopping;
  }

  private async doStop(timeoutMs: number): Promise<void> {
    try {
      await this.ctrl.stopDev(this.devId);
    } catch (err) {
      this.log(`STOP_DEV of ublk${this.devId}: ${err instanceof Error ? err.message : err}`);
    }
    if (!(await settlesWithin(this.ended, timeoutMs))) {
      this.log(`ublk${this.devId}: queues did not end within ${timeoutMs} ms; closing them`);
      await Promise.all(this.threads.map((t) => t.close(2000)));
    }
    // The queues are gone: nothing reads the shared buffers any more.
    await this.shmem?.close();
    closeSync(this.charFd);
    try {
      await this.ctrl.delDev(this.devId);
    } finally {
      this.ctrl.close();
      await this.target.close?.(this.setup);
    }
  }
}
