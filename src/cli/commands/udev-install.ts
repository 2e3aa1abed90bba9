// ublk udev-install [--group NAME] [--print] [--rules FILE]: the one install step for unprivileged
// devices. It fills in the shipped rule template (udev/99-ublk-ts.rules) with this installation's
// node and helper, writes it to /etc/udev/rules.d and has udev apply it to the nodes present now.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type ParsedArgs, UsageError } from "../args.js";

export const RULES_FILE = "/etc/udev/rules.d/99-ublk-ts.rules";
const TEMPLATE = fileURLToPath(new URL("../../../../udev/99-ublk-ts.rules", import.meta.url));
const HELPER = fileURLToPath(new URL("../udev-owner.js", import.meta.url));

export interface RuleOptions {
  /** Only this group's members may create devices; default: every user (mode 0666). */
  group?: string;
  /** The node binary and helper the rule runs (absolute: udev has no useful PATH). */
  node?: string;
  helper?: string;
}

/** The rule file's text for these options. */
export function udevRules(o: RuleOptions = {}, template = readFileSync(TEMPLATE, "utf8")): string {
  const node = o.node ?? process.execPath;
  const helper = o.helper ?? HELPER;
  for (const p of [node, helper])
    if (!p.startsWith("/") || /[\s"'%$\\]/.test(p))
      throw new Error(
        `cannot put ${JSON.stringify(p)} in a udev rule: it needs an absolute path without spaces or quotes`,
      );
  if (o.group !== undefined && !/^[a-z_][a-z0-9_-]*\$?$/i.test(o.group))
    throw new UsageError(`--group '${o.group}' is not a group name`);
  const access = o.group === undefined ? 'MODE="0666"' : `GROUP="${o.group}", MODE="0660"`;
  return template.replaceAll("@CONTROL_ACCESS@", access).replaceAll("@OWNER_HELPER@", `${node} ${helper}`);
}

function groupExists(name: string): boolean {
  try {
    return readFileSync("/etc/group", "utf8")
      .split("\n")
      .some((l) => l.split(":")[0] === name);
  } catch {
    return true; // no /etc/group to ask (NSS elsewhere): let udev judge
  }
}

export async function udevInstall(args: ParsedArgs): Promise<number> {
  const group = args.options.group;
  const text = udevRules({ group });
  if (args.flags.has("print")) {
    process.stdout.write(text);
    return 0;
  }
  if (process.getuid?.() !== 0) throw new UsageError(`udev-install writes ${RULES_FILE}: run it as root`);
  if (group !== undefined && !groupExists(group))
    throw new UsageError(`no group '${group}': create it first (groupadd ${group}) and add its users`);
  const file = args.options.rules ?? RULES_FILE;
  writeFileSync(file, text, { mode: 0o644 });
  process.stdout.write(`wrote ${file}\n`);
  // Reload, then replay "add" for the control node and any ublk nodes present, so it applies now.
  const reload = spawnSync("udevadm", ["control", "--reload-rules"], { encoding: "utf8" });
  if (reload.error || reload.status !== 0) {
    process.stdout.write(
      `udev is not running here (udevadm control failed): it applies the rule when it starts; meanwhile ` +
        `${existsSync("/dev/ublk-control") ? "set /dev/ublk-control's mode by hand" : "nothing to apply it to"}\n`,
    );
    return 0;
  }
  const trigger = spawnSync(
    "udevadm",
    [
      "trigger",
      "--action=add",
      "--sysname-match=ublk-control",
      "--sysname-match=ublkc*",
      "--sysname-match=ublkb*",
    ],
    { encoding: "utf8" },
  );
  if (trigger.status !== 0)
    throw new Error(`udevadm trigger failed: ${(trigger.stderr || "").trim() || `status ${trigger.status}`}`);
  process.stdout.write(
    `udev applied it: ${group === undefined ? "every user" : `members of group ${group}`} may now create unprivileged devices\n`,
  );
  return 0;
}
