// Prints the sha256 of what the native addon is built from (binding.gyp and native/*), in a stable
// order. prebuilds/SOURCE.sha256 holds it for the shipped prebuilds; test/unit/prebuilds checks it.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";

const root = new URL("..", import.meta.url);
const files = [
  "binding.gyp",
  ...readdirSync(new URL("native/", root))
    .sort()
    .map((f) => `native/${f}`),
];
const h = createHash("sha256");
for (const f of files)
  h.update(`${f}\0`)
    .update(readFileSync(new URL(f, root)))
    .update("\0");
process.stdout.write(`${h.digest("hex")}\n`);
