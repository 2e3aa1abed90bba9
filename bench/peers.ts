// Other ublk servers measured next to ublk-ts in the same boot (`--peer`): ublksrv's `ublk` and the
// kernel selftests' `kublk`, each driven through its own command line. Their binaries are the user's:
// built outside this repository, run from the path given (the VM sees the host's root).
import { basename } from "node:path";

/** Which command line the binary speaks: they differ only in how the loop target takes its file. */
export type PeerDialect = "ublksrv" | "kublk";

export interface Peer {
  /** Row label and ratio column name, e.g. "ublksrv". */
  name: string;
  /** Absolute or working-directory-relative path of the server's CLI binary. */
  path: string;
  dialect: PeerDialect;
}

export class PeerSpecError extends Error {}

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;

/**
 * `--peer PATH` or `--peer NAME=PATH`. Without a name: kublk's binary is "kublk", ublksrv's (`ublk`)
 * "ublksrv", anything else its file name. A name or file name containing "kublk" selects kublk's
 * syntax; everything else is taken to speak ublksrv's.
 */
export function parsePeer(spec: string): Peer {
  const m = /^([^=/]+)=(.+)$/.exec(spec);
  const path = m ? m[2] : spec;
  if (!path) throw new PeerSpecError("--peer takes PATH or NAME=PATH");
  const file = basename(path);
  const name = m ? m[1] : file === "ublk" ? "ublksrv" : file;
  if (!NAME.test(name)) {
    throw new PeerSpecError(`--peer name "${name}": use letters, digits, _ . - (say --peer NAME=${path})`);
  }
  if (name === "ublk-ts" || name === "kernel") throw new PeerSpecError(`--peer name "${name}" is taken`);
  const dialect: PeerDialect = /kublk/i.test(name) || /kublk/i.test(file) ? "kublk" : "ublksrv";
  return { name, path, dialect };
}

/** Back to the form parsePeer reads (host -> guest). */
export const peerToArg = (p: Peer) => `--peer=${p.name}=${p.path}`;

/** `add` arguments for a null device (both servers' null target: no size option, 250 GiB). */
export function peerNullTarget(): string[] {
  return ["-t", "null"];
}

/** `add` arguments for a loop device over `file`: ublksrv names it with -f, kublk takes it last. */
export function peerLoopTarget(p: Peer, file: string): string[] {
  return p.dialect === "kublk" ? ["-t", "loop", file] : ["-t", "loop", "-f", file];
}

/** What the server prints after `add`: the device id and the serving daemon's pid (both servers). */
export function parsePeerAdd(out: string): { id: number; pid?: number } | undefined {
  const id = /^dev id (\d+):/m.exec(out);
  if (!id) return undefined;
  const pid = /daemon pid (\d+)/.exec(out);
  return { id: Number(id[1]), pid: pid && Number(pid[1]) > 0 ? Number(pid[1]) : undefined };
}
