#!/usr/bin/env node
// The `ublk` command: subcommands are small modules; errors become one line on stderr and a non-zero exit.
// Each command's module is imported only when it runs: `help`, `list` or `del` need not load the
// queue, target and device code that `add` needs, which costs seconds per call under an emulator.
import { parseArgs, UsageError } from "./args.js";
import { help, USAGE } from "./commands/help.js";

type Args = ReturnType<typeof parseArgs>;

const commands: Record<string, (args: Args) => Promise<number>> = {
  add: async (a) => (await import("./commands/add.js")).add(a),
  recover: async (a) => (await import("./commands/add.js")).recover(a),
  list: async (a) => (await import("./commands/list.js")).list(a),
  del: async (a) => (await import("./commands/del.js")).del(a),
  stop: async (a) => (await import("./commands/manage.js")).stop(a),
  quiesce: async (a) => (await import("./commands/manage.js")).quiesce(a),
  update_size: async (a) => (await import("./commands/manage.js")).updateSize(a),
  up: async (a) => (await import("./commands/up.js")).up(a),
  down: async (a) => (await import("./commands/up.js")).down(a),
  features: async () => (await import("./commands/features.js")).features(),
  "udev-install": async (a) => (await import("./commands/udev-install.js")).udevInstall(a),
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "__supervise") {
    const { superviseMain } = await import("./supervise.js");
    process.exit(await superviseMain(rest[0] ?? "{}", rest[1] ?? "add"));
  }
  if (command === "__daemon") {
    const { daemonMain } = await import("./commands/add.js");
    process.exit(await daemonMain(rest[0] ?? "{}", rest[1] ?? "add"));
  }
  if (command === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  const args = parseArgs(rest);
  if (args.flags.has("help") || command === "help" || command === "--help" || command === "-h") return help();
  const run = Object.hasOwn(commands, command) ? commands[command] : undefined;
  if (!run) throw new UsageError(`unknown command '${command}' (see 'ublk help')`);
  return run(args);
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
