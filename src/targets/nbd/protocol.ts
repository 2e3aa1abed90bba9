// The NBD wire protocol's numbers (doc/proto.md of the NBD project) and the request header encoder.
// Everything on the wire is big-endian.

// Handshake magics.
export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"; also the magic of every option the client sends
export const CLISERV_MAGIC = 0x00420281861253n; // oldstyle negotiation, which this client does not speak
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Options.
export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_STARTTLS = 5;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;

// Option replies; errors have bit 31 set.
export const REP_ACK = 1;
export const REP_INFO = 3;
export const REP_ERR_BIT = 0x80000000;
export const REP_ERR_UNSUP = REP_ERR_BIT + 1;
export const REP_ERR_POLICY = REP_ERR_BIT + 2;
export const REP_ERR_TLS_REQD = REP_ERR_BIT + 5;
export const REP_ERR_UNKNOWN = REP_ERR_BIT + 6;
export const REP_ERR_SHUTDOWN = REP_ERR_BIT + 7;
export const REP_ERR_BLOCK_SIZE_REQD = REP_ERR_BIT + 8;

// NBD_REP_INFO types.
export const INFO_EXPORT = 0;
export const INFO_BLOCK_SIZE = 3;

// Transmission flags.
export const TF_HAS_FLAGS = 1 << 0;
export const TF_READ_ONLY = 1 << 1;
export const TF_SEND_FLUSH = 1 << 2;
export const TF_SEND_FUA = 1 << 3;
export const TF_ROTATIONAL = 1 << 4;
export const TF_SEND_TRIM = 1 << 5;
export const TF_SEND_WRITE_ZEROES = 1 << 6;
export const TF_CAN_MULTI_CONN = 1 << 8;

// Commands and their flags.
export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_WRITE_ZEROES = 6;
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;

// Transmission magics.
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;

// Structured reply chunks.
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_ERROR_BIT = 1 << 15;

/** What the server said about the export once option haggling ended. */
export interface ExportInfo {
  size: number;
  /** Transmission flags (TF_*). */
  flags: number;
  /** Whether the server will answer with structured replies. */
  structured: boolean;
  /** NBD_INFO_BLOCK_SIZE, when the server sent it. */
  blockSize: { min: number; preferred: number; max: number } | null;
}

/** Transmission flags as words, for `ublk list -v` and logs. */
export function describeFlags(flags: number): string {
  const names: [number, string][] = [
    [TF_READ_ONLY, "read_only"],
    [TF_SEND_FLUSH, "flush"],
    [TF_SEND_FUA, "fua"],
    [TF_ROTATIONAL, "rotational"],
    [TF_SEND_TRIM, "trim"],
    [TF_SEND_WRITE_ZEROES, "write_zeroes"],
    [TF_CAN_MULTI_CONN, "multi_conn"],
  ];
  return (
    names
      .filter(([bit]) => flags & bit)
      .map(([, n]) => n)
      .join(",") || "none"
  );
}

/** Writes a request header into `buf` (28 bytes). The handle is the tag: unique while in flight. */
export function encodeRequest(
  buf: Buffer,
  cmdFlags: number,
  type: number,
  handle: number,
  offset: number,
  length: number,
): void {
  buf.writeUInt32BE(REQUEST_MAGIC, 0);
  buf.writeUInt16BE(cmdFlags, 4);
  buf.writeUInt16BE(type, 6);
  buf.writeUInt32BE(0, 8);
  buf.writeUInt32BE(handle, 12);
  buf.writeUInt32BE(Math.floor(offset / 0x100000000), 16);
  buf.writeUInt32BE(offset >>> 0, 20);
  buf.writeUInt32BE(length, 24);
}

/** An option request: IHAVEOPT, option, length, data. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(16);
  head.writeBigUInt64BE(IHAVEOPT, 0);
  head.writeUInt32BE(option, 8);
  head.writeUInt32BE(data.length, 12);
  return Buffer.concat([head, data]);
}
