// One connection to the NBD server, owned by one queue thread: requests go out pipelined, tagged with
// their ublk tag as the handle, and complete in whatever order the server answers.
//
// When the connection drops, nothing fails at once: every request not yet answered stays in the
// table, the connection is made again with backoff (100 ms doubling to 5 s), and the requests are
// sent again on the new one, as the kernel's nbd driver does. A request waits at most `timeoutMs`
// for that; then it fails with EIO. A device being deleted fails what waits at once, so `ublk del`
// never waits for a server that is gone. Attempts stop once nothing waits and the timeout has
// passed; the next request starts them again.
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { ByteQueue, HandshakeError, negotiate } from "./handshake.js";
import * as P from "./protocol.js";
import { type InFlight, ReplyParser, type ReplySink } from "./replies.js";

export type Address = { host: string; port: number } | { path: string };

export function describeAddress(a: Address): string {
  return "path" in a ? a.path : a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface ConnectionOptions {
  address: Address;
  exportName: string;
  /** How long a request may wait for the server (reconnection included) before it fails. */
  timeoutMs: number;
  /** Export size the device was created with: a server now offering another size is not used. */
  expectSize?: number;
  /** The ublk device this serves, to notice its deletion; -1 for none. */
  devId: number;
  log: (message: string) => void;
}

const EIO = 5;
/** NBD error values are the Linux errno of the same name; anything else becomes EIO. */
const KNOWN_ERRORS = new Set([1, 5, 12, 22, 28, 75, 95, 108]);
const ESHUTDOWN = 108;
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 5000;
const CONNECT_TIMEOUT_MS = 10_000;
const TICK_MS = 250;

interface Request extends InFlight {
  cmdFlags: number;
  /** WRITE: the data to send. */
  data: Uint8Array | null;
  /** When it started waiting (submitted, or its connection dropped). */
  since: number;
  resolve: (res: number) => void;
}

export class Connection implements ReplySink {
  private socket: net.Socket | null = null;
  private handshake: ByteQueue | null = null;
  private readonly parser = new ReplyParser(this);
  private readonly requests = new Map<number, Request>();
  private readonly headers: Buffer[] = [];
  private ready = false;
  private closed = false;
  private attempting = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private backoffMs = BACKOFF_FIRST_MS;
  private downSince = 0;
  private corked = false;
  private diskSeen = false;
  /** What the server said on the current (or last) connection. */
  info: P.ExportInfo | null = null;

  constructor(private readonly opts: ConnectionOptions) {}

  /** One attempt; on failure the connection keeps trying in the background and IO waits. */
  async start(): Promise<void> {
    this.downSince = Date.now();
    await this.attempt();
  }

  /** Connects once, negotiates, and leaves the connection for the caller (main thread: the probe). */
  static async probe(opts: ConnectionOptions): Promise<Connection> {
    const c = new Connection(opts);
    c.attempting = true;
    try {
      c.info = await c.connectOnce();
      c.ready = true;
    } catch (err) {
      c.close();
      throw err;
    } finally {
      c.attempting = false;
    }
    return c;
  }

  /** Sends a request; resolves to its result (bytes for READ/WRITE, 0, or a negative errno). */
  submit(
    tag: number,
    type: number,
    cmdFlags: number,
    offset: number,
    length: number,
    dest: Uint8Array | null,
    data: Uint8Array | null,
  ): Promise<number> {
    if (this.closed) return Promise.resolve(-EIO);
    return new Promise((resolve) => {
      const r: Request = { type, cmdFlags, offset, length, dest, data, error: 0, since: Date.now(), resolve };
      this.requests.set(tag, r);
      if (this.ready) this.send(tag, r);
      else if (!this.attempting && this.retryTimer === null) this.scheduleAttempt(0);
      this.ensureTicker();
    });
  }

  /** Ends the connection: a clean NBD_CMD_DISC when nothing is in flight; what waits fails. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    for (const [tag, r] of this.requests) {
      this.requests.delete(tag);
      r.resolve(-EIO);
    }
    const s = this.socket;
    this.socket = null;
    if (s && this.ready) {
      const disc = Buffer.alloc(P.REQUEST_HEADER_SIZE);
      P.encodeRequest(disc, 0, P.CMD_DISC, 0, 0, 0);
      s.end(disc);
      s.once("error", () => {});
      setTimeout(() => s.destroy(), 1000).unref();
    } else s?.destroy();
    this.ready = false;
  }

  // ReplySink, called by the parser.
  lookup(handle: number): InFlight | undefined {
    return this.requests.get(handle);
  }

  finish(handle: number, error: number): void {
    const r = this.requests.get(handle);
    if (!r) return;
    if (error === ESHUTDOWN) {
      // The server is going away: keep the request for the next connection.
      this.drop("the server is shutting down (ESHUTDOWN)");
      return;
    }
    this.requests.delete(handle);
    if (error !== 0) r.resolve(-(KNOWN_ERRORS.has(error) ? error : EIO));
    else r.resolve(r.type === P.CMD_READ || r.type === P.CMD_WRITE ? r.length : 0);
  }

  protocolError(message: string): void {
    this.drop(`protocol error from the server: ${message}`);
  }

  private send(tag: number, r: Request): void {
    const s = this.socket as net.Socket;
    let header = this.headers[tag];
    if (header === undefined) {
      header = Buffer.alloc(P.REQUEST_HEADER_SIZE);
      this.headers[tag] = header;
    }
    P.encodeRequest(header, r.cmdFlags, r.type, tag, r.offset, r.length);
    // Everything sent in one wake-up leaves in one writev; the tag's buffer is sent as it is.
    if (!this.corked) {
      this.corked = true;
      s.cork();
      queueMicrotask(this.uncork);
    }
    s.write(header);
    if (r.data !== null) s.write(r.data);
  }

  private uncork = (): void => {
    this.corked = false;
    this.socket?.uncork();
  };

  private async attempt(): Promise<void> {
    this.attempting = true;
    try {
      const info = await this.connectOnce();
      if (this.closed) return;
      if (this.socket === null) throw new Error("the server closed the connection after the handshake");
      // Ready and the resend in one synchronous step: a request submitted meanwhile is sent once.
      this.info = info;
      this.ready = true;
      if (this.downSince !== 0 && this.requests.size > 0)
        this.opts.log(
          `reconnected to ${describeAddress(this.opts.address)}; resending ${this.requests.size} requests`,
        );
      this.downSince = 0;
      this.backoffMs = BACKOFF_FIRST_MS;
      for (const [tag, r] of this.requests) this.send(tag, r);
    } catch (err) {
      if (this.closed) return;
      const msg = err instanceof Error ? err.message : String(err);
      if (this.backoffMs === BACKOFF_FIRST_MS || err instanceof HandshakeError)
        this.opts.log(`cannot reach the NBD server at ${describeAddress(this.opts.address)}: ${msg}`);
      // Keep trying while something waits, or until the timeout passed since the connection was lost.
      if (this.requests.size > 0 || Date.now() - this.downSince < this.opts.timeoutMs) {
        this.scheduleAttempt(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
      }
    } finally {
      this.attempting = false;
    }
  }

  private scheduleAttempt(ms: number): void {
    if (this.closed || this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.attempt();
    }, ms);
    this.retryTimer.unref();
  }

  /** Opens the socket and runs the handshake; rejects with what went wrong. */
  private connectOnce(): Promise<P.ExportInfo> {
    const { address, exportName } = this.opts;
    this.parser.reset();
    const q = new ByteQueue();
    this.handshake = q;
    return new Promise<P.ExportInfo>((resolve, reject) => {
      const where = "path" in address ? { path: address.path } : { host: address.host, port: address.port };
      const s = net.connect({
        ...where,
        noDelay: true,
        onread: {
          buffer: this.parser.nextBuffer,
          callback: (n: number, buf: Uint8Array) => {
            if (this.socket !== s) return false;
            if (this.handshake !== null) this.handshake.push(buf.subarray(0, n));
            else this.parser.onRead(n, buf);
            return true;
          },
        },
      } as net.NetConnectOpts);
      this.socket = s;
      const timer = setTimeout(() => s.destroy(new Error("timed out")), CONNECT_TIMEOUT_MS);
      timer.unref();
      const lost = (err?: Error) => {
        clearTimeout(timer);
        const why = err ?? new Error("the server closed the connection");
        q.fail(why);
        reject(why); // no effect once the handshake succeeded
        if (this.socket === s) this.onLost(err);
      };
      s.on("error", lost);
      s.on("close", () => lost());
      s.once("connect", () => {
        negotiate(q, (b) => s.write(b), exportName).then((info) => {
          clearTimeout(timer);
          this.handshake = null;
          if (this.socket !== s) return reject(new Error("the connection closed during the handshake"));
          if (q.leftover > 0) {
            s.destroy();
            return reject(new HandshakeError("the server sent data before any request", false));
          }
          if (this.opts.expectSize !== undefined && info.size !== this.opts.expectSize) {
            s.destroy();
            return reject(
              new HandshakeError(`the export is now ${info.size} bytes, not ${this.opts.expectSize}`, false),
            );
          }
          resolve(info);
        }, reject);
      });
    }).catch((err: unknown) => {
      if (this.socket !== null && !this.ready) {
        this.socket.destroy();
        this.socket = null;
      }
      this.handshake = null;
      throw err instanceof Error ? err : new Error(String(err));
    });
  }

  /** The socket ended or failed. */
  private onLost(err?: Error): void {
    const wasReady = this.ready;
    this.ready = false;
    this.socket = null;
    this.corked = false;
    if (this.closed || !wasReady) return; // a failed attempt: attempt() decides what follows
    this.opts.log(
      `lost the NBD server at ${describeAddress(this.opts.address)}${err ? ` (${err.message})` : ""}; ` +
        `${this.requests.size} requests wait, for at most ${this.opts.timeoutMs / 1000} s`,
    );
    this.markDown();
    this.scheduleAttempt(0);
  }

  /** Drops a live connection on purpose (protocol error, hung server): requests are sent again. */
  private drop(reason: string): void {
    const s = this.socket;
    if (!s || !this.ready) return;
    this.opts.log(`dropping the connection to ${describeAddress(this.opts.address)}: ${reason}`);
    this.ready = false;
    this.socket = null;
    this.corked = false;
    s.destroy();
    this.markDown();
    this.scheduleAttempt(BACKOFF_FIRST_MS);
  }

  private markDown(): void {
    const now = Date.now();
    this.downSince = now;
    this.backoffMs = BACKOFF_FIRST_MS;
    for (const r of this.requests.values()) r.since = now; // each gets the full timeout to be answered again
    this.ensureTicker();
  }

  private ensureTicker(): void {
    if (this.ticker !== null || this.closed) return;
    this.ticker = setInterval(this.tick, TICK_MS);
    this.ticker.unref();
  }

  /** Fails requests that waited too long, all of them when the device is being deleted. */
  private tick = (): void => {
    if (this.requests.size === 0) {
      if (this.ticker !== null) clearInterval(this.ticker);
      this.ticker = null;
      return;
    }
    const now = Date.now();
    const deleting = !this.ready && this.deviceGoing();
    let oldest = now;
    for (const [tag, r] of this.requests) {
      if (deleting || (!this.ready && now - r.since > this.opts.timeoutMs)) {
        this.requests.delete(tag);
        r.resolve(-EIO);
      } else oldest = Math.min(oldest, r.since);
    }
    // A server that accepts requests but never answers: start over on a new connection.
    if (this.ready && now - oldest > this.opts.timeoutMs)
      this.drop(`no reply for ${this.opts.timeoutMs / 1000} s`);
  };

  /** True once the device's disk existed and is now gone or emptied (STOP_DEV / del_gendisk runs). */
  private deviceGoing(): boolean {
    if (this.opts.devId < 0) return false;
    const sys = `/sys/block/ublkb${this.opts.devId}/size`;
    if (!existsSync(sys)) return this.diskSeen;
    this.diskSeen = true;
    try {
      return readFileSync(sys, "utf8").trim() === "0";
    } catch {
      return true;
    }
  }

  private stopTimers(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.ticker !== null) clearInterval(this.ticker);
    this.retryTimer = null;
    this.ticker = null;
  }
}
