// `add --unprivileged` (ublksrv's spelling): a device owned by the user who creates it
// (UBLK_F_UNPRIVILEGED_DEV). The driver gives such devices no user recovery and no copy-free data
// path (it drops -r/-i silently and refuses -u/-z/--auto_zc), so those are refused here first, in
// one line, before anything exists.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { INSTALL_HINT } from "../ctrl/access.js";
import * as U from "../uapi/ublk_cmd.js";
import { UsageError } from "./args.js";

/** UBLK_F_UNPRIVILEGED_DEV when asked for and possible with the other flags, else 0. */
export function unprivilegedFlag(
  switches: ReadonlySet<string>,
  target: string,
  flags: number,
  integrity = false,
): number {
  if (!switches.has("unprivileged")) return 0;
  const recovery = U.UBLK_F_USER_RECOVERY | U.UBLK_F_USER_RECOVERY_REISSUE | U.UBLK_F_USER_RECOVERY_FAIL_IO;
  if (flags & recovery)
    throw new UsageError("the driver gives unprivileged devices no user recovery: drop -r/-i/-e");
  if (flags & (U.UBLK_F_USER_COPY | U.UBLK_F_SUPPORT_ZERO_COPY | U.UBLK_F_AUTO_BUF_REG))
    throw new UsageError(
      "the driver allows unprivileged devices no user copy or zero copy: drop -u/-z/--auto_zc",
    );
  if (integrity)
    throw new UsageError("integrity metadata needs user copy, which the driver refuses unprivileged devices");
  if (target === "zoned")
    throw new UsageError("the zoned target needs user copy, which the driver refuses unprivileged devices");
  if (process.getuid?.() === 0)
    throw new UsageError(
      "--unprivileged is for the user who will own the device: the driver makes root's devices privileged",
    );
  if (udevWithoutNodeRule())
    throw new UsageError(
      `udev runs here, but none of its rules gives users their ublk device nodes, so the device could be neither served nor deleted by you (${INSTALL_HINT})`,
    );
  return U.UBLK_F_UNPRIVILEGED_DEV;
}

const RULE_DIRS = ["/etc/udev/rules.d", "/run/udev/rules.d", "/usr/lib/udev/rules.d", "/lib/udev/rules.d"];

/**
 * True when udev manages /dev but no rule of its matches ublk char device nodes (ours, or ublksrv's
 * KERNEL=="ublk[bc]*"). Where udev does not run (containers, the test VM) whoever manages /dev is
 * trusted to hand the nodes over.
 */
export function udevWithoutNodeRule(dirs = RULE_DIRS, udevControl = "/run/udev/control"): boolean {
  if (!existsSync(udevControl)) return false;
  for (const dir of dirs) {
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith(".rules"));
    } catch {
      continue;
    }
    for (const name of names) {
      try {
        if (/KERNEL=="ublk(\[[a-z]*c[a-z]*\]|c)/.test(readFileSync(join(dir, name), "utf8"))) return false;
      } catch {}
    }
  }
  return true;
}
