// Where daemons keep their state, admin sockets and log: /run/ublk-ts for root; for any other user a
// private directory of their own, since one user's daemons must not write where another's can. The
// per-user place is $XDG_RUNTIME_DIR/ublk-ts (the session's runtime directory, /run/user/UID), or
// /run/user/UID/ublk-ts when that exists, else /tmp/ublk-ts-UID (mode 0700; refused unless it is a
// real directory owned by the user and closed to others, as /tmp is shared).
// UBLK_TS_RUN_DIR overrides the choice for the process that sets it.
import { existsSync, lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const myUid = (): number => process.getuid?.() ?? 0;

/** The run directory of user `uid` (defaults to this process's user) as ublk-ts would choose it. */
export function runDirFor(uid = myUid(), env: NodeJS.ProcessEnv = process.env): string {
  if (uid === myUid() && env.UBLK_TS_RUN_DIR) return env.UBLK_TS_RUN_DIR;
  if (uid === 0) return "/run/ublk-ts";
  if (uid === myUid() && env.XDG_RUNTIME_DIR && existsSync(env.XDG_RUNTIME_DIR))
    return join(env.XDG_RUNTIME_DIR, "ublk-ts");
  if (existsSync(`/run/user/${uid}`)) return `/run/user/${uid}/ublk-ts`;
  return `/tmp/ublk-ts-${uid}`;
}

/** This process's run directory. */
export const RUN_DIR = runDirFor();

/** Creates this process's run directory; a shared-/tmp one must be ours alone, or it is refused. */
export function ensureRunDir(dir = RUN_DIR): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (myUid() === 0 || !dir.startsWith("/tmp/")) return;
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== myUid() || (st.mode & 0o077) !== 0)
    throw new Error(
      `${dir} is not a private directory of uid ${myUid()} (owner ${st.uid}, mode ${(st.mode & 0o777).toString(8)}): ` +
        "remove it, or set UBLK_TS_RUN_DIR",
    );
}
