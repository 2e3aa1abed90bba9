// How an application hands the daemon of a --shmem_zc device a piece of its memory, as kublk and
// ublksrv do: it connects to /run/ublk/ublkbN.sock and sends one byte carrying the memory's file
// descriptor (a memfd, say) in an SCM_RIGHTS message; the daemon maps and registers it and answers
// with a 32-bit integer, the buffer index, or a negative errno. Node has no way to pass descriptors,
// so both ends speak it through io_uring (SOCKET, BIND, LISTEN, ACCEPT, RECVMSG, SEND, CONNECT,
// SENDMSG, RECV): every structure is laid out here, nothing native is needed. BIND and LISTEN need
// Linux 6.11, older than any driver with UBLK_F_SHMEM_ZC.
import { chmodSync, closeSync, mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { native } from "./native.js";
import * as C from "./uring/constants.js";
import { Ring } from "./uring/ring.js";

/** kublk's path for device `devId`, so its clients find ours. */
export const shmemSocketPath = (devId: number) => `/run/ublk/ublkb${devId}.sock`;

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const ECANCELED = 125;
const EINVAL = 22;

// One page per connection (LP64 layouts): sockaddr_un, msghdr, its iovec, the byte, the cmsg, the reply.
const SOCKADDR = 0;
const MSGHDR = 128;
const IOVEC = 192;
const BYTE = 208;
const CMSG = 216;
const CMSG_SPACE_FD = 24; // CMSG_SPACE(sizeof(int)): 16-byte header, 4 bytes, padding
const CMSG_LEN_FD = 20;
const REPLY = 256;

export class SocketError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** io_uring operations awaited one by one, completions reaped on the event loop (ring eventfd). */
class Calls {
  readonly ring = new Ring({ entries: 32 });
  private readonly waiting = new Map<number, (res: number) => void>();
  private next = 1;
  private polling = false;

  /** `prep` fills the SQE at `off` with user data `id`; resolves with the CQE's result. */
  call(prep: (ring: Ring, off: number, id: number) => void): Promise<number> {
    if (this.ring.isClosed) return Promise.resolve(-ECANCELED);
    const id = this.next;
    this.next = (this.next % 0x7fffffff) + 1;
    const done = new Promise<number>((resolve) => this.waiting.set(id, resolve));
    prep(this.ring, this.ring.sqeOrSubmit(), id);
    if (!this.polling) {
      this.ring.poll(this.wake);
      this.polling = true;
    }
    this.ring.submit();
    this.wake(); // a completion may be there already (the poll fires on new signals only)
    return done;
  }

  private wake = (): void => {
    this.ring.reap((ud, res) => {
      const resolve = this.waiting.get(ud);
      this.waiting.delete(ud);
      resolve?.(res);
    });
  };

  /** The kernel cancels what is in flight; its callers see -ECANCELED. */
  close(): void {
    if (this.polling) this.ring.unpoll();
    this.ring.close();
    for (const resolve of this.waiting.values()) resolve(-ECANCELED);
    this.waiting.clear();
  }
}

function check(what: string, res: number): number {
  if (res < 0) throw new SocketError(-res, `${what} failed: errno ${-res}`);
  return res;
}

function writeSockaddr(v: DataView, path: string): number {
  const bytes = Buffer.from(path);
  if (bytes.length > 107) throw new SocketError(EINVAL, `socket path too long: ${path}`);
  v.setUint16(SOCKADDR, AF_UNIX, true);
  new Uint8Array(v.buffer, SOCKADDR + 2, 108).fill(0).set(bytes);
  return 2 + bytes.length + 1;
}

/** msghdr for one byte at BYTE plus room for one descriptor at CMSG. */
function writeMsghdr(v: DataView, base: number): void {
  v.setBigUint64(IOVEC, BigInt(base + BYTE), true);
  v.setBigUint64(IOVEC + 8, 1n, true);
  v.setBigUint64(MSGHDR + 16, BigInt(base + IOVEC), true); // msg_iov
  v.setBigUint64(MSGHDR + 24, 1n, true); // msg_iovlen
  v.setBigUint64(MSGHDR + 32, BigInt(base + CMSG), true); // msg_control
  v.setBigUint64(MSGHDR + 40, BigInt(CMSG_SPACE_FD), true); // msg_controllen
}

async function newSocket(calls: Calls): Promise<number> {
  return check(
    "socket",
    await calls.call((r, off, id) =>
      r.prepRw(off, C.IORING_OP_SOCKET, AF_UNIX, 0, 0, SOCK_STREAM | SOCK_CLOEXEC, id),
    ),
  );
}

/**
 * The daemon's end: accepts connections at `path` (root only) and calls `onFd` with each descriptor
 * received; `onFd` owns it, and its result (an index, or -errno) is the answer.
 */
export class ShmemSocketServer {
  private closed = false;

  private constructor(
    private readonly calls: Calls,
    private readonly fd: number,
    readonly path: string,
    private readonly onFd: (fd: number) => Promise<number>,
    private readonly log: (m: string) => void,
  ) {}

  static async listen(
    path: string,
    onFd: (fd: number) => Promise<number>,
    log: (m: string) => void,
  ): Promise<ShmemSocketServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    rmSync(path, { force: true });
    const calls = new Calls();
    let fd = -1;
    try {
      fd = await newSocket(calls);
      const mem = native.allocBuffer(4096);
      const len = writeSockaddr(new DataView(mem), path);
      const addr = native.bufferAddress(mem);
      check("bind", await calls.call((r, off, id) => r.prepRw(off, C.IORING_OP_BIND, fd, addr, 0, len, id)));
      // Connecting takes write permission on the file: root only, as the device itself.
      chmodSync(path, 0o600);
      check("listen", await calls.call((r, off, id) => r.prepRw(off, C.IORING_OP_LISTEN, fd, 0, 16, 0, id)));
      void mem.byteLength; // keep the sockaddr alive until the kernel read it
    } catch (err) {
      calls.close();
      if (fd >= 0) closeSync(fd);
      rmSync(path, { force: true });
      throw err;
    }
    const server = new ShmemSocketServer(calls, fd, path, onFd, log);
    void server.acceptLoop();
    return server;
  }

  private async acceptLoop(): Promise<void> {
    while (!this.closed) {
      const res = await this.calls.call((r, off, id) => {
        r.prepRw(off, C.IORING_OP_ACCEPT, this.fd, 0, 0, 0, id);
        r.sqeView.setUint32(off + C.SQE_OP_FLAGS, SOCK_CLOEXEC, true);
      });
      if (this.closed) {
        if (res >= 0) closeSync(res);
        return;
      }
      if (res < 0) {
        this.log(`shared memory socket: accept failed: errno ${-res}`);
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      void this.serve(res);
    }
  }

  /** One client: a byte with a descriptor in, the answer out. */
  private async serve(client: number): Promise<void> {
    const mem = native.allocBuffer(4096);
    const v = new DataView(mem);
    const base = native.bufferAddress(mem);
    try {
      writeMsghdr(v, base);
      const got = await this.calls.call((r, off, id) => {
        r.prepRw(off, C.IORING_OP_RECVMSG, client, base + MSGHDR, 1, 0, id);
        r.sqeView.setUint32(off + C.SQE_OP_FLAGS, MSG_CMSG_CLOEXEC, true);
      });
      if (this.closed) return;
      const controlLen = Number(v.getBigUint64(MSGHDR + 40, true));
      const passed =
        got > 0 &&
        controlLen >= CMSG_LEN_FD &&
        v.getInt32(CMSG + 8, true) === SOL_SOCKET &&
        v.getInt32(CMSG + 12, true) === SCM_RIGHTS
          ? v.getInt32(CMSG + 16, true)
          : -1;
      let answer = -EINVAL;
      if (passed >= 0) {
        try {
          answer = await this.onFd(passed);
        } catch (err) {
          const errno = (err as { errno?: unknown }).errno;
          answer = typeof errno === "number" && errno > 0 ? -errno : -EINVAL;
          this.log(`shared memory socket: ${err instanceof Error ? err.message : err}`);
        }
      } else this.log("shared memory socket: a client sent no descriptor");
      v.setInt32(REPLY, answer, true);
      await this.calls.call((r, off, id) => {
        r.prepRw(off, C.IORING_OP_SEND, client, base + REPLY, 4, 0, id);
        r.sqeView.setUint32(off + C.SQE_OP_FLAGS, MSG_NOSIGNAL, true);
      });
    } finally {
      closeSync(client);
      void mem.byteLength;
    }
  }

  /** Stops accepting (connections in progress are dropped) and removes the socket file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.calls.close();
    closeSync(this.fd);
    rmSync(this.path, { force: true });
  }
}

/**
 * The application's end: sends `fd` (memory it mapped MAP_SHARED, e.g. a memfd) to the daemon
 * listening at `path` (shmemSocketPath(devId)) and returns the buffer index it was registered as.
 * O_DIRECT IO on the device from that memory then reaches the target without a copy.
 */
export async function shareMemory(path: string, fd: number): Promise<number> {
  const calls = new Calls();
  let sock = -1;
  const mem = native.allocBuffer(4096);
  const v = new DataView(mem);
  const base = native.bufferAddress(mem);
  try {
    sock = await newSocket(calls);
    const len = writeSockaddr(v, path);
    check(
      `connect to ${path}`,
      await calls.call((r, off, id) => r.prepRw(off, C.IORING_OP_CONNECT, sock, base + SOCKADDR, 0, len, id)),
    );
    writeMsghdr(v, base);
    v.setBigUint64(CMSG, BigInt(CMSG_LEN_FD), true);
    v.setInt32(CMSG + 8, SOL_SOCKET, true);
    v.setInt32(CMSG + 12, SCM_RIGHTS, true);
    v.setInt32(CMSG + 16, fd, true);
    check(
      "sendmsg",
      await calls.call((r, off, id) => {
        r.prepRw(off, C.IORING_OP_SENDMSG, sock, base + MSGHDR, 1, 0, id);
        r.sqeView.setUint32(off + C.SQE_OP_FLAGS, MSG_NOSIGNAL, true);
      }),
    );
    let have = 0;
    while (have < 4) {
      const n = check(
        "recv",
        await calls.call((r, off, id) =>
          r.prepRw(off, C.IORING_OP_RECV, sock, base + REPLY + have, 4 - have, 0, id),
        ),
      );
      if (n === 0)
        throw new SocketError(EINVAL, `${path}: the daemon closed the connection without an answer`);
      have += n;
    }
  } finally {
    calls.close();
    if (sock >= 0) closeSync(sock);
  }
  const answer = v.getInt32(REPLY, true);
  if (answer < 0)
    throw new SocketError(-answer, `the daemon could not register the memory: errno ${-answer}`);
  return answer;
}
