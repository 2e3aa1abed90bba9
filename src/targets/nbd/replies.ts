// Decodes the server's replies (simple replies and structured reply chunks) as bytes arrive.
//
// The socket reads into whatever buffer nextBuffer() returns: a scratch buffer for headers and small
// payloads, or, when the next bytes are a READ's data and nothing else is waiting in the scratch
// buffer, straight into the request's own IO buffer. Large reads thus land in the tag's buffer with
// no copy in userspace; the driver's copy into the bio pages is the only other one.
import * as P from "./protocol.js";

/** A request on the wire, found by its handle (the tag). */
export interface InFlight {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  /** READ: where its data goes (the tag's buffer). */
  readonly dest: Uint8Array | null;
  /** First error a structured reply reported for it (NBD error value), 0 while none. */
  error: number;
}

export interface ReplySink {
  lookup(handle: number): InFlight | undefined;
  /** The request's reply is complete: `error` 0 for success, else an NBD error value. */
  finish(handle: number, error: number): void;
  /** The server broke the protocol: drop the connection (requests are sent again on the next one). */
  protocolError(message: string): void;
}

const HEADER = 0;
const DATA = 1;
const META = 2;
const SKIP = 3;

/** Longest error chunk or other metadata payload accepted (strings are bounded at 4096 bytes). */
const MAX_META = 16 * 1024;
const SCRATCH_BYTES = 256 * 1024;

export class ReplyParser {
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly hdr = Buffer.alloc(P.STRUCTURED_HEADER_SIZE);
  private hdrHave = 0;
  private hdrNeed = 4;
  private state = HEADER;
  private broken = false;
  // The chunk being received.
  private handle = 0;
  private current: InFlight | undefined;
  private chunkFlags = 0;
  private chunkType = 0;
  private structuredChunk = false;
  // DATA: bytes still to land in dest at destPos.
  private dest: Uint8Array | null = null;
  private destPos = 0;
  private remaining = 0;
  // META: the payload of a small chunk, gathered whole.
  private meta = Buffer.alloc(MAX_META);
  private metaHave = 0;
  private metaNeed = 0;

  constructor(private readonly sink: ReplySink) {}

  /** Where the socket's next read should go. */
  nextBuffer = (): Uint8Array => {
    if (this.state === DATA && this.dest !== null && this.remaining > 0)
      return this.dest.subarray(this.destPos, this.destPos + this.remaining);
    return this.scratch;
  };

  /** `n` bytes arrived in `buf` (the buffer nextBuffer() returned before the read). */
  onRead = (n: number, buf: Uint8Array): void => {
    if (this.broken) return;
    if (buf !== this.scratch) {
      // A direct read into the request's buffer.
      this.destPos += n;
      this.remaining -= n;
      if (this.remaining === 0) this.endChunk();
      return;
    }
    let i = 0;
    while (i < n && !this.broken) {
      const avail = n - i;
      switch (this.state) {
        case HEADER: {
          const take = Math.min(this.hdrNeed - this.hdrHave, avail);
          this.scratch.copy(this.hdr, this.hdrHave, i, i + take);
          this.hdrHave += take;
          i += take;
          if (this.hdrHave === this.hdrNeed) this.onHeaderBytes();
          break;
        }
        case DATA: {
          const take = Math.min(this.remaining, avail);
          if (this.dest) this.dest.set(this.scratch.subarray(i, i + take), this.destPos);
          this.destPos += take;
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) this.endChunk();
          break;
        }
        case META: {
          const take = Math.min(this.metaNeed - this.metaHave, avail);
          this.scratch.copy(this.meta, this.metaHave, i, i + take);
          this.metaHave += take;
          i += take;
          if (this.metaHave === this.metaNeed) this.onMeta();
          break;
        }
        case SKIP: {
          const take = Math.min(this.remaining, avail);
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) this.endChunk();
          break;
        }
      }
    }
  };

  /** A new connection starts with a new stream of replies. */
  reset(): void {
    this.state = HEADER;
    this.hdrHave = 0;
    this.hdrNeed = 4;
    this.broken = false;
    this.dest = null;
    this.current = undefined;
  }

  private fail(message: string): void {
    this.broken = true;
    this.sink.protocolError(message);
  }

  private onHeaderBytes(): void {
    const h = this.hdr;
    if (this.hdrNeed === 4) {
      const magic = h.readUInt32BE(0);
      if (magic === P.SIMPLE_REPLY_MAGIC) this.hdrNeed = P.SIMPLE_REPLY_SIZE;
      else if (magic === P.STRUCTURED_REPLY_MAGIC) this.hdrNeed = P.STRUCTURED_HEADER_SIZE;
      else {
        this.fail(`bad reply magic 0x${magic.toString(16)}`);
        return;
      }
      return;
    }
    this.hdrHave = 0;
    this.structuredChunk = this.hdrNeed === P.STRUCTURED_HEADER_SIZE;
    this.hdrNeed = 4;
    // Both reply forms carry the 64-bit handle at byte 8; ours are tags (high half zero).
    if (h.readUInt32BE(8) !== 0) {
      this.fail("reply for a handle never sent");
      return;
    }
    this.handle = h.readUInt32BE(12);
    const f = this.sink.lookup(this.handle);
    if (!f) {
      this.fail(`reply for handle ${this.handle}, which is not in flight`);
      return;
    }
    this.current = f;
    if (!this.structuredChunk) {
      const error = h.readUInt32BE(4);
      this.chunkFlags = P.REPLY_FLAG_DONE;
      this.chunkType = P.REPLY_TYPE_NONE;
      if (error !== 0) f.error = error;
      if (error === 0 && f.type === P.CMD_READ) {
        this.expectData(f, 0, f.length);
        return;
      }
      this.endChunk();
      return;
    }
    this.chunkFlags = h.readUInt16BE(4);
    this.chunkType = h.readUInt16BE(6);
    const len = h.readUInt32BE(16);
    switch (this.chunkType) {
      case P.REPLY_TYPE_NONE:
        if (len !== 0) {
          this.fail("NBD_REPLY_TYPE_NONE with a payload");
          return;
        }
        this.endChunk();
        return;
      case P.REPLY_TYPE_OFFSET_DATA:
        if (len < 9 || f.dest === null) {
          this.fail("bad NBD_REPLY_TYPE_OFFSET_DATA chunk");
          return;
        }
        this.remaining = len - 8; // the data, after the 8-byte offset gathered as metadata
        this.expectMeta(8);
        return;
      case P.REPLY_TYPE_OFFSET_HOLE:
        if (len !== 12 || f.dest === null) {
          this.fail("bad NBD_REPLY_TYPE_OFFSET_HOLE chunk");
          return;
        }
        this.expectMeta(12);
        return;
      default:
        if (this.chunkType & P.REPLY_TYPE_ERROR_BIT) {
          if (len < 6 || len > MAX_META) {
            this.fail(`bad error chunk of ${len} bytes`);
            return;
          }
          this.expectMeta(len);
          return;
        }
        // An unknown chunk type without the error bit: skip its payload, as the spec allows.
        if (len === 0) {
          this.endChunk();
          return;
        }
        this.state = SKIP;
        this.remaining = len;
    }
  }

  private expectData(f: InFlight, at: number, len: number): void {
    this.state = DATA;
    this.dest = f.dest;
    this.destPos = at;
    this.remaining = len;
    if (len === 0) this.endChunk();
  }

  private expectMeta(len: number): void {
    this.state = META;
    this.metaHave = 0;
    this.metaNeed = len;
  }

  private onMeta(): void {
    const f = this.current as InFlight;
    const m = this.meta;
    if (this.chunkType === P.REPLY_TYPE_OFFSET_DATA || this.chunkType === P.REPLY_TYPE_OFFSET_HOLE) {
      const at = Number(m.readBigUInt64BE(0)) - f.offset;
      const len = this.chunkType === P.REPLY_TYPE_OFFSET_DATA ? this.remaining : m.readUInt32BE(8);
      if (at < 0 || len <= 0 || at + len > f.length) {
        this.fail("read reply chunk outside its request");
        return;
      }
      if (this.chunkType === P.REPLY_TYPE_OFFSET_HOLE) {
        f.dest?.fill(0, at, at + len);
        this.endChunk();
        return;
      }
      this.expectData(f, at, len);
      return;
    }
    // An error chunk: error, message length, message (ignored here; the errno is what the kernel gets).
    const error = m.readUInt32BE(0);
    if (f.error === 0) f.error = error === 0 ? 5 : error;
    this.endChunk();
  }

  private endChunk(): void {
    this.state = HEADER;
    this.dest = null;
    if (this.chunkFlags & P.REPLY_FLAG_DONE) {
      const f = this.current as InFlight;
      this.current = undefined;
      this.sink.finish(this.handle, f.error);
    }
  }
}
