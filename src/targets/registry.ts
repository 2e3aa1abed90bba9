// Where a target's module lives. Queue threads import the same module the main thread did, so a target
// is always named by a module URL: built-ins by name, user targets by file path.
import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { importModule } from "./import-module.js";
import type { Target } from "./target.js";

export const BUILTIN_TARGETS = [
  "null",
  "loop",
  "ram",
  "stripe",
  "fault_inject",
  "zoned",
  "nbd",
  "qcow2",
] as const;

/** Built-ins made of several modules live in a folder; the rest in one file named after them. */
const BUILTIN_MODULES: Record<string, string> = { nbd: "./nbd/target.js" };

export function targetModuleUrl(nameOrPath: string, cwd = process.cwd()): string {
  if ((BUILTIN_TARGETS as readonly string[]).includes(nameOrPath)) {
    return new URL(BUILTIN_MODULES[nameOrPath] ?? `./${nameOrPath}.js`, import.meta.url).href;
  }
  if (nameOrPath.startsWith("file:")) return nameOrPath;
  const looksLikePath = nameOrPath.includes("/") || /\.[cm]?[jt]s$/.test(nameOrPath);
  const path = isAbsolute(nameOrPath) ? nameOrPath : resolve(cwd, nameOrPath);
  if (!looksLikePath || !existsSync(path)) {
    throw new Error(
      `unknown target '${nameOrPath}': use one of ${BUILTIN_TARGETS.join(", ")} or a path to a target module (./my-target.ts or .js)`,
    );
  }
  return pathToFileURL(path).href;
}

export async function loadTarget(url: string): Promise<Target> {
  const mod = (await importModule(url)) as { default?: Target; target?: Target };
  const target = mod.default ?? mod.target;
  if (!target || typeof target.open !== "function" || typeof target.read !== "function") {
    throw new Error(`${url} does not export a target (export default { name, open, read, write, ... })`);
  }
  return target;
}
