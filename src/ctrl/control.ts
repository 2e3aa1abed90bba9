// The ublk control device (/dev/ublk-control): every control command is a uring_cmd carrying a
// struct ublksrv_ctrl_cmd in an SQE128. Commands are submitted with IOSQE_ASYNC so the ones that
// sleep in the driver (START_DEV waits for every tag to be fetched, DEL_DEV for every reference)
// run on io_uring's workers and never block this thread's event loop.
// Commands on an unprivileged device (UBLK_F_UNPRIVILEGED_DEV) carry its char device path ahead of
// their data (see access.ts); whether a device is one is learnt from ADD_DEV or GET_DEV_INFO2.
import { closeSync, constants, existsSync, openSync, readdirSync } from "node:fs";
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { IOSQE_ASYNC, SQE_CMD, SQE_FLAGS } from "../uring/constants.js";
import { Ring } from "../uring/ring.js";
import { controlAccessMessage, devPathPrefix, refusalReason } from "./access.js";
import { UblkError } from "./errors.js";

const ECANCELED = 125;
const EPERM = 1;
const EACCES = 13;

export const UBLK_CONTROL_PATH = "/dev/ublk-control";

/** What the driver reports about a device (struct ublksrv_ctrl_dev_info, u64 flags as numbers). */
export interface DevInfo {
  devId: number;
  nrHwQueues: number;
  queueDepth: number;
  state: number;
  maxIoBufBytes: number;
  ublksrvPid: number;
  flags: number;
  ublksrvFlags: number;
  ownerUid: number;
  ownerGid: number;
}

export interface AddDevOptions {
  /** Requested id, or -1 for the first free one. */
  devId: number;
  nrHwQueues: number;
  queueDepth: number;
  maxIoBufBytes: number;
  /** UBLK_F_* requested; the driver answers with what it grants. */
  flags: number;
}

const CMD_NAMES = new Map<number, string>([
  [U.UBLK_U_CMD_GET_QUEUE_AFFINITY, "GET_QUEUE_AFFINITY"],
  [U.UBLK_U_CMD_GET_DEV_INFO, "GET_DEV_INFO"],
  [U.UBLK_U_CMD_ADD_DEV, "ADD_DEV"],
  [U.UBLK_U_CMD_DEL_DEV, "DEL_DEV"],
  [U.UBLK_U_CMD_START_DEV, "START_DEV"],
  [U.UBLK_U_CMD_STOP_DEV, "STOP_DEV"],
  [U.UBLK_U_CMD_SET_PARAMS, "SET_PARAMS"],
  [U.UBLK_U_CMD_GET_PARAMS, "GET_PARAMS"],
  [U.UBLK_U_CMD_START_USER_RECOVERY, "START_USER_RECOVERY"],
  [U.UBLK_U_CMD_END_USER_RECOVERY, "END_USER_RECOVERY"],
  [U.UBLK_U_CMD_GET_DEV_INFO2, "GET_DEV_INFO2"],
  [U.UBLK_U_CMD_GET_FEATURES, "GET_FEATURES"],
  [U.UBLK_U_CMD_DEL_DEV_ASYNC, "DEL_DEV_ASYNC"],
  [U.UBLK_U_CMD_UPDATE_SIZE, "UPDATE_SIZE"],
  [U.UBLK_U_CMD_QUIESCE_DEV, "QUIESCE_DEV"],
  [U.UBLK_U_CMD_TRY_STOP_DEV, "TRY_STOP_DEV"],
  [U.UBLK_U_CMD_REG_BUF, "REG_BUF"],
  [U.UBLK_U_CMD_UNREG_BUF, "UNREG_BUF"],
]);

const NO_DEV = 0xffffffff;
const NO_QUEUE = 0xffff;
const PAGE = 4096;

interface CtrlCommand {
  op: number;
  devId: number;
  queueId?: number;
  /** Bytes of the command buffer exchanged with the driver (addr/len); 0 for none. */
  len?: number;
  data?: number;
  /** Fills the command buffer before submission. */
  fill?: (view: DataView) => void;
  /** Put the device's char device path ahead of the data; by default when the device is unprivileged. */
  withPath?: boolean;
}

/** Commands that name no existing device, so never carry a path. */
const NO_DEVICE_OPS = new Set([U.UBLK_U_CMD_ADD_DEV, U.UBLK_U_CMD_GET_FEATURES]);

interface Pending {
  resolve: (res: number) => void;
}

function toDevInfo(v: DataView): DevInfo {
  const d = U.read_ublksrv_ctrl_dev_info(v, 0);
  return {
    devId: d.dev_id,
    nrHwQueues: d.nr_hw_queues,
    queueDepth: d.queue_depth,
    state: d.state,
    maxIoBufBytes: d.max_io_buf_bytes,
    ublksrvPid: d.ublksrv_pid,
    flags: Number(d.flags),
    ublksrvFlags: Number(d.ublksrv_flags),
    ownerUid: d.owner_uid,
    ownerGid: d.owner_gid,
  };
}

export class ControlDevice {
  private readonly ring: Ring;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private polling = false;
  /** Device id -> created with UBLK_F_UNPRIVILEGED_DEV, as far as this process has seen. */
  private readonly unprivileged = new Map<number, boolean>();
  /** GET_DEV_INFO2 unknown to this driver (older than UNPRIVILEGED_DEV): GET_DEV_INFO instead. */
  private noInfo2 = false;

  private constructor(private readonly fd: number) {
    this.ring = new Ring({ entries: 16, flags: 1 << 10 /* IORING_SETUP_SQE128 */ });
  }

  /** Opens /dev/ublk-control; throws a clear error when the driver is not loaded. */
  static async open(path = UBLK_CONTROL_PATH): Promise<ControlDevice> {
    if (!existsSync(path)) {
      throw new Error(
        `${path} not found: the ublk driver is not loaded (modprobe ublk_drv; needs Linux >= 6.0), ` +
          "or try it in the VM: npm run vm -- npx ublk ...",
      );
    }
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") throw new Error(controlAccessMessage(path));
      throw err;
    }
    return new ControlDevice(fd);
  }

  close(): void {
    this.ring.close();
    closeSync(this.fd);
  }

  private onWake = (): void => {
    this.ring.reap((ud, res) => {
      const p = this.pending.get(ud);
      if (!p) return;
      this.pending.delete(ud);
      p.resolve(res);
    });
    if (this.pending.size === 0 && this.polling) {
      this.ring.unpoll();
      this.polling = false;
    }
  };

  /** Sends one command; resolves with the raw result and the command buffer. */
  private async send(cmd: CtrlCommand): Promise<{ res: number; buf: DataView }> {
    const len = cmd.len ?? 0;
    const prefix = cmd.withPath ? devPathPrefix(cmd.devId) : null;
    const total = (prefix?.length ?? 0) + len;
    const mem = native.allocBuffer(Math.max(total, PAGE));
    if (prefix) new Uint8Array(mem).set(prefix);
    const buf = new DataView(mem, prefix?.length ?? 0, Math.max(len, 1));
    cmd.fill?.(buf);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    const off = this.ring.sqeOrSubmit();
    this.ring.prepUringCmd(off, this.fd, cmd.op, id);
    this.ring.sqeView.setUint8(off + SQE_FLAGS, IOSQE_ASYNC);
    U.write_ublksrv_ctrl_cmd(this.ring.sqeView, off + SQE_CMD, {
      dev_id: cmd.devId >>> 0,
      queue_id: cmd.queueId ?? NO_QUEUE,
      len: total,
      addr: total ? BigInt(native.bufferAddress(mem)) : 0n,
      data: BigInt(cmd.data ?? 0),
      dev_path_len: prefix?.length ?? 0,
      pad: 0,
      reserved: 0,
    });
    const done = new Promise<number>((resolve) => this.pending.set(id, { resolve }));
    if (!this.polling) {
      this.ring.poll(this.onWake);
      this.polling = true;
    }
    this.ring.submit();
    // A completion may already be there (the poll only fires on new eventfd signals).
    this.ring.submit(0);
    this.onWake();
    const res = await done;
    // keep `mem` alive until the driver is done with it
    void mem.byteLength;
    return { res, buf };
  }

  private async run(cmd: CtrlCommand): Promise<{ res: number; buf: DataView }> {
    if (cmd.withPath === undefined && !NO_DEVICE_OPS.has(cmd.op))
      cmd.withPath = await this.isUnprivileged(cmd.devId);
    let out = await this.send(cmd);
    // The driver never answers ECANCELED itself: io-wq gives it when it could not start a worker for
    // the command (seen with a signal pending at that moment), so the command never ran. Send again.
    for (let retry = 0; retry < 3 && out.res === -ECANCELED; retry++) out = await this.send(cmd);
    if (out.res < 0) {
      const name = CMD_NAMES.get(cmd.op) ?? `cmd 0x${cmd.op.toString(16)}`;
      const refused = out.res === -EPERM || out.res === -EACCES;
      const why = refused
        ? refusalReason(cmd.devId, out.res === -EPERM ? "EPERM" : "EACCES", name)
        : undefined;
      throw new UblkError(name, -out.res, cmd.devId, why);
    }
    return out;
  }

  /** Whether commands on `devId` must carry its path; asks the driver (GET_DEV_INFO2) the first time. */
  private async isUnprivileged(devId: number): Promise<boolean> {
    const known = this.unprivileged.get(devId);
    if (known !== undefined) return known;
    return ((await this.getDevInfo(devId)).flags & U.UBLK_F_UNPRIVILEGED_DEV) !== 0;
  }

  async getFeatures(): Promise<number> {
    const { buf } = await this.run({
      op: U.UBLK_U_CMD_GET_FEATURES,
      devId: NO_DEV,
      len: U.UBLK_FEATURES_LEN,
    });
    return Number(buf.getBigUint64(0, true));
  }

  async addDev(o: AddDevOptions): Promise<DevInfo> {
    const devId = o.devId < 0 ? NO_DEV : o.devId;
    const { buf } = await this.run({
      op: U.UBLK_U_CMD_ADD_DEV,
      devId,
      len: U.ublksrv_ctrl_dev_info_LAYOUT.size,
      fill: (v) =>
        U.write_ublksrv_ctrl_dev_info(v, 0, {
          nr_hw_queues: o.nrHwQueues,
          queue_depth: o.queueDepth,
          state: 0,
          io_desc_size: 0,
          max_io_buf_bytes: o.maxIoBufBytes,
          dev_id: devId,
          ublksrv_pid: process.pid,
          pad1: 0,
          flags: BigInt(o.flags),
          ublksrv_flags: 0n,
          owner_uid: 0,
          owner_gid: 0,
          reserved1: 0n,
          reserved2: 0n,
        }),
    });
    const info = toDevInfo(buf);
    this.unprivileged.set(info.devId, (info.flags & U.UBLK_F_UNPRIVILEGED_DEV) !== 0);
    return info;
  }

  /**
   * GET_DEV_INFO2, which works on every device the caller may see (it carries the char device path,
   * so the driver can check an unprivileged device's owner); GET_DEV_INFO on drivers without it.
   */
  async getDevInfo(devId: number): Promise<DevInfo> {
    const len = U.ublksrv_ctrl_dev_info_LAYOUT.size;
    let info: DevInfo | null = null;
    let noNode: UblkError | null = null;
    if (!this.noInfo2) {
      try {
        info = toDevInfo(
          (await this.run({ op: U.UBLK_U_CMD_GET_DEV_INFO2, devId, len, withPath: true })).buf,
        );
      } catch (err) {
        // EOPNOTSUPP: a driver older than GET_DEV_INFO2. ENOENT: no /dev/ublkcN to name (no devtmpfs,
        // or the device is being deleted).
        if (!(err instanceof UblkError && (err.code === "EOPNOTSUPP" || err.code === "ENOENT"))) throw err;
        if (err.code === "EOPNOTSUPP") this.noInfo2 = true;
        else noNode = err;
      }
    }
    if (!info) {
      try {
        info = toDevInfo(
          (await this.run({ op: U.UBLK_U_CMD_GET_DEV_INFO, devId, len, withPath: false })).buf,
        );
      } catch (err) {
        // An unprivileged device cannot be asked without its node (EINVAL): the missing node is the news.
        throw noNode && err instanceof UblkError && err.code === "EINVAL" ? noNode : err;
      }
    }
    this.unprivileged.set(devId, (info.flags & U.UBLK_F_UNPRIVILEGED_DEV) !== 0);
    return info;
  }

  async setParams(devId: number, params: U.ublk_params): Promise<void> {
    const len = U.ublk_params_LAYOUT.size;
    await this.run({
      op: U.UBLK_U_CMD_SET_PARAMS,
      devId,
      len,
      fill: (v) => U.write_ublk_params(v, 0, { ...params, len }),
    });
  }

  async getParams(devId: number): Promise<U.ublk_params> {
    const len = U.ublk_params_LAYOUT.size;
    const { buf } = await this.run({
      op: U.UBLK_U_CMD_GET_PARAMS,
      devId,
      len,
      fill: (v) => v.setUint32(0, len, true),
    });
    return U.read_ublk_params(buf, 0);
  }

  /** The CPUs the driver suggests for queue `queueId` (its blk-mq hardware context's mask). */
  async getQueueAffinity(devId: number, queueId: number): Promise<number[]> {
    const len = 128; // a cpumask for up to 1024 CPUs, a multiple of sizeof(long) as the driver requires
    const { buf } = await this.run({ op: U.UBLK_U_CMD_GET_QUEUE_AFFINITY, devId, len, data: queueId });
    const cpus: number[] = [];
    for (let byte = 0; byte < len; byte++) {
      const b = buf.getUint8(byte);
      for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) cpus.push(byte * 8 + bit);
    }
    return cpus;
  }

  async startDev(devId: number, daemonPid: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_START_DEV, devId, data: daemonPid });
  }

  async stopDev(devId: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_STOP_DEV, devId });
  }

  /** DEL_DEV waits until every reference to the device is gone. */
  async delDev(devId: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_DEL_DEV, devId });
  }

  /** DEL_DEV_ASYNC returns without waiting for references to drop. */
  async delDevAsync(devId: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_DEL_DEV_ASYNC, devId });
  }

  /** UPDATE_SIZE (UBLK_F_UPDATE_SIZE): a live device's capacity becomes `sectors` 512-byte sectors. */
  async updateSize(devId: number, sectors: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_UPDATE_SIZE, devId, data: sectors });
  }

  /**
   * QUIESCE_DEV (UBLK_F_QUIESCE): the driver stops handing out requests, waits until every queue has
   * an idle tag (EBUSY after `timeoutMs`; 0 waits forever) and aborts the daemon's idle commands, so
   * it can leave; the device stays for a new daemon (user recovery).
   */
  async quiesceDev(devId: number, timeoutMs: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_QUIESCE_DEV, devId, data: timeoutMs });
  }

  /** TRY_STOP_DEV (UBLK_F_SAFE_STOP_DEV): STOP_DEV unless the disk is open (EBUSY then). */
  async tryStopDev(devId: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_TRY_STOP_DEV, devId });
  }

  /**
   * REG_BUF (UBLK_F_SHMEM_ZC): the driver pins the `len` bytes of shared memory mapped at `addr` in
   * this process (both page-aligned) and from then on flags every request whose pages lie in them;
   * resolves with the buffer index those requests carry. `flags`: UBLK_SHMEM_BUF_*.
   */
  async regBuf(devId: number, addr: number, len: number, flags = 0): Promise<number> {
    const { res } = await this.run({
      op: U.UBLK_U_CMD_REG_BUF,
      devId,
      len: U.ublk_shmem_buf_reg_LAYOUT.size,
      fill: (v) =>
        U.write_ublk_shmem_buf_reg(v, 0, { addr: BigInt(addr), len: BigInt(len), flags, reserved: 0 }),
    });
    return res;
  }

  /** UNREG_BUF: unpins buffer `index`; requests stop matching it. */
  async unregBuf(devId: number, index: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_UNREG_BUF, devId, data: index });
  }

  async startUserRecovery(devId: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_START_USER_RECOVERY, devId });
  }

  async endUserRecovery(devId: number, daemonPid: number): Promise<void> {
    await this.run({ op: U.UBLK_U_CMD_END_USER_RECOVERY, devId, data: daemonPid });
  }
}

/** Device ids present on this system, from the ublk char devices' sysfs class. */
export function listDevIds(): number[] {
  let names: string[] = [];
  try {
    names = readdirSync("/sys/class/ublk-char");
  } catch {
    return [];
  }
  return names
    .map((n) => /^ublkc(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}
