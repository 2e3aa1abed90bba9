// A daemon's admin socket (ID.sock in its run directory, /run/ublk-ts for root): requests that only
// the serving process can carry out, such as `ublk update_size` (its target grows the backing
// first). One JSON line each way.
import { chmodSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { ensureRunDir, RUN_DIR, runDirFor } from "./run-dir.js";

/** The socket of device `devId`'s daemon; `ownerUid` finds another user's (root only). */
export const adminSocketPath = (devId: number, ownerUid?: number) =>
  join(
    ownerUid === undefined || ownerUid === process.getuid?.() ? RUN_DIR : runDirFor(ownerUid),
    `${devId}.sock`,
  );

export type AdminRequest = { op: "resize"; size: number };
export type AdminReply = { ok: true; size: number } | { ok: false; error: string };

/** Serves the device's admin socket until the returned function is called. */
export function serveAdmin(devId: number, handle: (req: AdminRequest) => Promise<AdminReply>): () => void {
  const path = adminSocketPath(devId);
  ensureRunDir();
  rmSync(path, { force: true });
  const server = createServer((sock) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      let req: AdminRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as AdminRequest;
      } catch {
        sock.end(`${JSON.stringify({ ok: false, error: "malformed request" })}\n`);
        return;
      }
      handle(req).then(
        (reply) => sock.end(`${JSON.stringify(reply)}\n`),
        (err: unknown) =>
          sock.end(
            `${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`,
          ),
      );
    });
    sock.on("error", () => {});
  });
  server.listen(path, () => chmodSync(path, 0o600));
  server.unref();
  return () => {
    server.close();
    rmSync(path, { force: true });
  };
}

/** Sends one request to device `devId`'s daemon. */
export function adminRequest(
  devId: number,
  req: AdminRequest,
  timeoutMs = 120_000,
  ownerUid?: number,
): Promise<AdminReply> {
  const path = adminSocketPath(devId, ownerUid);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`device ${devId}'s daemon did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on("data", (d: string) => {
      buf += d;
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === "ENOENT" || err.code === "ECONNREFUSED"
          ? `no ublk-ts daemon serves device ${devId} (no admin socket ${path})`
          : err.message;
      reject(new Error(why));
    });
    sock.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as AdminReply);
      } catch {
        reject(new Error(`device ${devId}'s daemon gave no answer`));
      }
    });
  });
}
