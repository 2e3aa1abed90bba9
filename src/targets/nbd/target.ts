// nbd: a remote export served over the NBD protocol as a ublk disk, like the kernel's nbd driver with
// nbd-client. `open` probes the server once from the main thread (handshake, size, flags); each queue
// thread then keeps its own connection and pipelines its requests on it. Flush, FUA, trim and
// write-zeroes are offered to the kernel only when the server offers them.
import * as U from "../../uapi/ublk_cmd.js";
import { defineTarget, type TargetOptions } from "../target.js";
import { type Address, Connection, describeAddress } from "./connection.js";
import * as P from "./protocol.js";

export interface NbdState {
  address: Address;
  exportName: string;
  timeoutMs: number;
  /** Export size and transmission flags the device was created with. */
  size: number;
  flags: number;
}

const EOPNOTSUPP = 95;
const DEFAULT_PORT = 10809;
const DEFAULT_TIMEOUT_S = 30;
/** Largest discard or write-zeroes request: NBD lengths are 32 bits. */
const MAX_ZERO_SECTORS = 2 ** 31 / 512;

/** This thread's connection (one queue per thread). */
let conn: Connection | null = null;

function intOpt(options: TargetOptions, key: string, def: number, min: number, max: number): number {
  const raw = options[key];
  if (raw === undefined) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`nbd --${key} must be an integer from ${min} to ${max}, not '${raw}'`);
  return n;
}

function addressFrom(options: TargetOptions): Address {
  const { host, socket } = options;
  if (host !== undefined && socket !== undefined) throw new Error("nbd takes --host or --socket, not both");
  if (typeof socket === "string" && socket !== "") {
    if (options.port !== undefined) throw new Error("nbd --port goes with --host, not with --socket");
    return { path: socket };
  }
  if (typeof host === "string" && host !== "")
    return { host: host.replace(/^\[(.*)\]$/, "$1"), port: intOpt(options, "port", DEFAULT_PORT, 1, 65535) };
  throw new Error("nbd needs a server: --host HOST [--port PORT] or --socket PATH");
}

const isPow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;

export default defineTarget<NbdState>({
  name: "nbd",

  async open(options) {
    if (options.tls !== undefined)
      throw new Error("nbd --tls is not supported yet: use a Unix socket (--socket) or a loopback address");
    const address = addressFrom(options);
    const exportName = typeof options.export === "string" ? options.export : "";
    const timeoutMs = intOpt(options, "timeout", DEFAULT_TIMEOUT_S, 1, 86_400) * 1000;
    const connections = intOpt(options, "connections", 1, 1, U.UBLK_MAX_NR_QUEUES);
    const where = describeAddress(address);
    let probe: Connection;
    try {
      probe = await Connection.probe({ address, exportName, timeoutMs, devId: -1, log: () => {} });
    } catch (err) {
      throw new Error(`NBD server at ${where}: ${err instanceof Error ? err.message : err}`);
    }
    const info = probe.info as P.ExportInfo;
    probe.close();
    if (connections > 1 && !(info.flags & P.TF_CAN_MULTI_CONN))
      throw new Error(
        `the NBD server at ${where} does not allow several connections to one export ` +
          `(no NBD_FLAG_CAN_MULTI_CONN): use --connections 1`,
      );

    // Block sizes: the server's minimum becomes the logical block (the kernel never sends less).
    const bs = info.blockSize;
    const logical = bs && bs.min > 512 ? bs.min : 512;
    if (!isPow2(logical) || logical > 4096)
      throw new Error(`the NBD server at ${where} needs ${logical}-byte blocks; ublk allows 512 to 4096`);
    const preferred = bs && isPow2(bs.preferred) ? Math.min(Math.max(bs.preferred, logical), 65536) : 4096;
    const maxSectors = bs && bs.max < 512 * 1024 ? Math.floor(bs.max / 512) : 0;
    const size = info.size - (info.size % logical);
    if (size <= 0) throw new Error(`the export at ${where} is smaller than one ${logical}-byte block`);

    const f = info.flags;
    const zeroes = (f & P.TF_SEND_TRIM) !== 0 || (f & P.TF_SEND_WRITE_ZEROES) !== 0;
    return {
      size,
      state: { address, exportName, timeoutMs, size: info.size, flags: f },
      params: {
        logicalBlockSize: logical,
        physicalBlockSize: Math.max(preferred, logical),
        maxSectors,
        readOnly: (f & P.TF_READ_ONLY) !== 0,
        rotational: (f & P.TF_ROTATIONAL) !== 0,
        volatileCache: (f & P.TF_SEND_FLUSH) !== 0,
        fua: (f & P.TF_SEND_FLUSH) !== 0 && (f & P.TF_SEND_FUA) !== 0,
        discard: zeroes
          ? {
              granularity: Math.max(preferred, logical),
              alignment: 0,
              maxSectors: MAX_ZERO_SECTORS,
              maxWriteZeroesSectors: f & P.TF_SEND_WRITE_ZEROES ? MAX_ZERO_SECTORS : 0,
              maxSegments: 1,
            }
          : null,
      },
      description: {
        server: where,
        export: exportName === "" ? "(default)" : exportName,
        export_size: info.size,
        server_flags: P.describeFlags(f),
        structured_replies: info.structured,
        connections,
        timeout_s: timeoutMs / 1000,
      },
    };
  },

  async initQueue(ctx) {
    const s = ctx.state;
    conn = new Connection({
      address: s.address,
      exportName: s.exportName,
      timeoutMs: s.timeoutMs,
      expectSize: s.size,
      devId: ctx.devId,
      log: (m) => ctx.log(`ublk${ctx.devId} queue ${ctx.qid}: ${m}`),
    });
    // A server that is down right now does not stop the queue: its IO waits for the reconnection.
    await conn.start();
  },

  closeQueue() {
    conn?.close();
    conn = null;
  },

  read(req) {
    return (conn as Connection).submit(req.tag, P.CMD_READ, 0, req.offset, req.length, req.buffer, null);
  },

  write(req, ctx) {
    const fua = req.flags & U.UBLK_IO_F_FUA && ctx.state.flags & P.TF_SEND_FUA ? P.CMD_FLAG_FUA : 0;
    return (conn as Connection).submit(req.tag, P.CMD_WRITE, fua, req.offset, req.length, null, req.data);
  },

  flush(req, ctx) {
    if (!(ctx.state.flags & P.TF_SEND_FLUSH)) return 0;
    return (conn as Connection).submit(req.tag, P.CMD_FLUSH, 0, 0, 0, null, null);
  },

  discard(req, ctx) {
    // Discard is a hint: a server offering only write-zeroes (the kernel gets both or neither) drops it.
    if (!(ctx.state.flags & P.TF_SEND_TRIM)) return 0;
    return (conn as Connection).submit(req.tag, P.CMD_TRIM, 0, req.offset, req.length, null, null);
  },

  writeZeroes(req, ctx) {
    if (!(ctx.state.flags & P.TF_SEND_WRITE_ZEROES)) return -EOPNOTSUPP;
    const noHole = req.flags & U.UBLK_IO_F_NOUNMAP ? P.CMD_FLAG_NO_HOLE : 0;
    return (conn as Connection).submit(
      req.tag,
      P.CMD_WRITE_ZEROES,
      noHole,
      req.offset,
      req.length,
      null,
      null,
    );
  },
});
