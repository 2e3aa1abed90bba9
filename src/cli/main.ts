#!/usr/bin/env node
// The `ublk` command: subcommands are small modules; errors become one line on stderr and a non-zero exit.
import { parseArgs, UsageError } from "./args.js";
import { add, daemonMain, recover } from "./commands/add.js";
import { del } from "./commands/del.js";
import { features } from "./commands/features.js";
import { help, USAGE } from "./commands/help.js";
import { list } from "./commands/list.js";
import { quiesce, stop, updateSize } from "./commands/manage.js";
import { udevInstall } from "./commands/udev-install.js";
import { down, up } from "./commands/up.js";
import { superviseMain } from "./supervise.js";

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "__supervise") process.exit(await superviseMain(rest[0] ?? "{}", rest[1] ?? "add"));
  if (command === "__daemon") process.exit(await daemonMain(rest[0] ?? "{}", rest[1] ?? "add"));
  if (command === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  const args = parseArgs(rest);
  if (args.flags.has("help")) return help();
  switch (command) {
    case "add":
      return add(args);
    case "recover":
      return recover(args);
    case "list":
      return list(args);
    case "del":
      return del(args);
    case "stop":
      return stop(args);
    case "quiesce":
      return quiesce(args);
    case "update_size":
      return updateSize(args);
    case "up":
      return up(args);
    case "down":
      return down(args);
    case "features":
      return features();
    case "udev-install":
      return udevInstall(args);
    case "help":
    case "--help":
    case "-h":
      return help();
    default:
      throw new UsageError(`unknown command '${command}' (see 'ublk help')`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const usage = err instanceof UsageError;
    process.stderr.write(`ublk: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = usage ? 2 : 1;
  },
);
