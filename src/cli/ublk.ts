#!/usr/bin/env node
// The installed `ublk` command. Loads main.js so that a failure while loading it (no native addon
// fits this machine, say) is one line on stderr, like every other error, rather than a stack.
import("./main.js").catch((err: unknown) => {
  process.stderr.write(`ublk: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}\n`);
  process.exitCode = 1;
});
