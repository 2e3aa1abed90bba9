// The fixed newstyle handshake: ask for structured replies, then NBD_OPT_GO for the export (with
// NBD_INFO_BLOCK_SIZE, so a server with size constraints can tell us), falling back to
// NBD_OPT_EXPORT_NAME for a server that does not know NBD_OPT_GO. A refusal becomes an Error whose
// message says what the server said.
import * as P from "./protocol.js";

/** Bytes received during the handshake, read back in exact amounts. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  push(bytes: Uint8Array): void {
    this.chunks.push(Buffer.from(bytes)); // a copy: the socket reuses its read buffer
    this.have += bytes.length;
    this.wake();
  }

  /** The connection ended or failed: the pending read and any later one reject with `err`. */
  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure && this.have < n) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
    });
  }

  /** Bytes that arrived after the handshake (none from a well-behaved server). */
  get leftover(): number {
    return this.have;
  }

  private wake(): void {
    const w = this.waiter;
    if (!w || this.have < w.n) return;
    this.waiter = null;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = all.length > w.n ? [all.subarray(w.n)] : [];
    this.have -= w.n;
    w.resolve(all.subarray(0, w.n));
  }
}

export class HandshakeError extends Error {
  override name = "HandshakeError";
  /** A refusal that retrying will not change (no such export, TLS required, ...). */
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

interface OptionReply {
  type: number;
  data: Buffer;
}

/** Longest option reply accepted; the spec bounds strings at 4096 bytes. */
const MAX_OPTION_REPLY = 64 * 1024;

async function readOptionReply(q: ByteQueue, option: number): Promise<OptionReply> {
  const head = await q.read(20);
  if (head.readBigUInt64BE(0) !== P.OPT_REPLY_MAGIC)
    throw new HandshakeError("the server sent a malformed option reply (bad magic)", false);
  if (head.readUInt32BE(8) !== option)
    throw new HandshakeError(`the server answered option ${head.readUInt32BE(8)}, not ${option}`, false);
  const type = head.readUInt32BE(12);
  const len = head.readUInt32BE(16);
  if (len > MAX_OPTION_REPLY) throw new HandshakeError(`option reply of ${len} bytes is too long`, false);
  return { type, data: len > 0 ? await q.read(len) : Buffer.alloc(0) };
}

/** What an error reply means for a person, with the server's own message when it sent one. */
function refusal(exportName: string, r: OptionReply): HandshakeError {
  const said = r.data.length > 0 ? `: ${r.data.toString("utf8").replace(/\s+/g, " ").trim()}` : "";
  const name = exportName === "" ? "the default export" : `export '${exportName}'`;
  switch (r.type) {
    case P.REP_ERR_UNKNOWN:
      return new HandshakeError(`the server has no ${name}${said}`, true);
    case P.REP_ERR_TLS_REQD:
      return new HandshakeError(
        `the server requires TLS for ${name}, which ublk-ts does not speak${said}`,
        true,
      );
    case P.REP_ERR_POLICY:
      return new HandshakeError(`the server's policy refuses ${name}${said}`, true);
    case P.REP_ERR_SHUTDOWN:
      return new HandshakeError(`the server is shutting down${said}`, false);
    case P.REP_ERR_BLOCK_SIZE_REQD:
      return new HandshakeError(`the server insists on block size constraints for ${name}${said}`, true);
    default:
      return new HandshakeError(
        `the server refused ${name} (reply 0x${r.type.toString(16)})${said}`,
        (r.type & P.REP_ERR_BIT) !== 0,
      );
  }
}

/**
 * Runs the handshake over a fresh connection: `q` holds what the server sent, `send` writes to it.
 * Resolves once the connection is in the transmission phase.
 */
export async function negotiate(
  q: ByteQueue,
  send: (b: Buffer) => void,
  exportName: string,
): Promise<P.ExportInfo> {
  const hello = await q.read(18);
  if (hello.readBigUInt64BE(0) !== P.NBDMAGIC)
    throw new HandshakeError("the peer is not an NBD server (no NBDMAGIC)", true);
  const magic = hello.readBigUInt64BE(8);
  if (magic === P.CLISERV_MAGIC)
    throw new HandshakeError("the server speaks only the oldstyle handshake, which ublk-ts does not", true);
  if (magic !== P.IHAVEOPT) throw new HandshakeError("the server sent an unknown handshake magic", true);
  const serverFlags = hello.readUInt16BE(16);
  if (!(serverFlags & P.FLAG_FIXED_NEWSTYLE))
    throw new HandshakeError("the server does not offer the fixed newstyle handshake", true);
  const noZeroes = (serverFlags & P.FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(P.FLAG_C_FIXED_NEWSTYLE | (noZeroes ? P.FLAG_C_NO_ZEROES : 0));
  send(clientFlags);

  // Structured replies let a READ fail cleanly and let the server send holes without data.
  send(P.encodeOption(P.OPT_STRUCTURED_REPLY));
  const sr = await readOptionReply(q, P.OPT_STRUCTURED_REPLY);
  const structured = sr.type === P.REP_ACK;
  if (sr.type === P.REP_ERR_TLS_REQD || sr.type === P.REP_ERR_SHUTDOWN) throw refusal(exportName, sr);

  const name = Buffer.from(exportName, "utf8");
  const go = Buffer.alloc(4 + name.length + 2 + 2);
  go.writeUInt32BE(name.length, 0);
  name.copy(go, 4);
  go.writeUInt16BE(1, 4 + name.length); // one information request:
  go.writeUInt16BE(P.INFO_BLOCK_SIZE, 6 + name.length); // we honour the server's block sizes
  send(P.encodeOption(P.OPT_GO, go));
  let size = -1;
  let flags = 0;
  let blockSize: P.ExportInfo["blockSize"] = null;
  for (let replies = 0; ; replies++) {
    if (replies > 64) throw new HandshakeError("the server sent too many option replies", false);
    const r = await readOptionReply(q, P.OPT_GO);
    if (r.type === P.REP_INFO && r.data.length >= 2) {
      const info = r.data.readUInt16BE(0);
      if (info === P.INFO_EXPORT && r.data.length >= 12) {
        size = Number(r.data.readBigUInt64BE(2));
        flags = r.data.readUInt16BE(10);
      } else if (info === P.INFO_BLOCK_SIZE && r.data.length >= 14) {
        blockSize = {
          min: r.data.readUInt32BE(2),
          preferred: r.data.readUInt32BE(6),
          max: r.data.readUInt32BE(10),
        };
      }
    } else if (r.type === P.REP_ACK) {
      if (size < 0) throw new HandshakeError("the server accepted the export without saying its size", false);
      return { size, flags, structured, blockSize };
    } else if (r.type === P.REP_ERR_UNSUP) {
      break; // an old server: NBD_OPT_EXPORT_NAME below
    } else if (r.type & P.REP_ERR_BIT) {
      throw refusal(exportName, r);
    }
  }
  send(P.encodeOption(P.OPT_EXPORT_NAME, name));
  // A server refusing NBD_OPT_EXPORT_NAME can only hang up: the read below then fails.
  const tail = await q.read(noZeroes ? 10 : 134).catch(() => {
    throw new HandshakeError(`the server closed the connection: it has no export '${exportName}'`, true);
  });
  return { size: Number(tail.readBigUInt64BE(0)), flags: tail.readUInt16BE(8), structured, blockSize };
}
