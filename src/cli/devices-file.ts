// Declared devices, like /etc/fstab entries: one JSON file per device in /etc/ublk-ts/devices.d/,
// named NAME.json. `ublk up [NAME]` creates what they declare and `ublk down [NAME]` deletes it. An
// entry is the `ublk add` command line in JSON, checked by the same parser:
//   { "target": "loop", "file": "/var/lib/disk.img", "id": 3,
//     "options": { "queues": 2, "buffered_io": true, "logical_block_size": 4096 },
//     "flags": ["recovery", "recovery_reissue", "supervise"] }
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ParsedArgs, parseArgs, UsageError } from "./args.js";
import { specFromArgs } from "./spec.js";
import type { AddSpec } from "./state.js";

export const DEVICES_DIR = process.env.UBLK_TS_DEVICES_DIR ?? "/etc/ublk-ts/devices.d";

export interface DeviceEntry {
  /** Built-in target name or path to a target module. */
  target: string;
  /** Backing file (loop). */
  file?: string;
  /** Device id; omitted: the first free one at `up`. */
  id?: number;
  /** `ublk add` long options without the dashes; true for a switch without a value. */
  options?: Record<string, string | number | boolean>;
  /** recovery, recovery_reissue, need_get_data, uring_comp (each as `--NAME 1`), supervise. */
  flags?: string[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
const ENTRY_KEYS = new Set(["target", "file", "id", "options", "flags"]);
const DEVICE_FLAGS = new Set(["recovery", "recovery_reissue", "need_get_data", "uring_comp"]);

export interface Declared {
  name: string;
  spec: AddSpec;
  /** The parsed `add` arguments (for --supervise and the like). */
  args: ParsedArgs;
}

/** The `ublk add` argv an entry stands for; throws UsageError naming the entry on bad input. */
export function entryArgv(name: string, raw: unknown): string[] {
  const bad = (msg: string) => new UsageError(`${name}: ${msg}`);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw bad("must be a JSON object");
  const e = raw as Record<string, unknown>;
  for (const k of Object.keys(e))
    if (!ENTRY_KEYS.has(k)) throw bad(`unknown key '${k}' (${[...ENTRY_KEYS].join(", ")})`);
  if (typeof e.target !== "string" || !e.target)
    throw bad('needs "target" (null, loop, ram or a module path)');
  const argv = ["-t", e.target];
  if (e.id !== undefined) {
    if (!Number.isInteger(e.id) || (e.id as number) < 0)
      throw bad(`"id" must be an integer >= 0, not ${JSON.stringify(e.id)}`);
    argv.push("-n", String(e.id));
  }
  if (e.options !== undefined) {
    if (!e.options || typeof e.options !== "object" || Array.isArray(e.options))
      throw bad('"options" must be an object');
    for (const [k, v] of Object.entries(e.options as Record<string, unknown>)) {
      if (k === "type" || k === "number" || k === "file")
        throw bad(
          `give ${k} as "${k === "number" ? "id" : k === "type" ? "target" : "file"}", not in options`,
        );
      if (v === true) argv.push(`--${k}`);
      else if (typeof v === "string" || typeof v === "number") argv.push(`--${k}`, String(v));
      else throw bad(`option '${k}' must be a string, a number or true`);
    }
  }
  if (e.flags !== undefined) {
    if (!Array.isArray(e.flags)) throw bad('"flags" must be an array of names');
    for (const f of e.flags) {
      if (f === "supervise") argv.push("--supervise");
      else if (typeof f === "string" && DEVICE_FLAGS.has(f)) argv.push(`--${f}`, "1");
      else throw bad(`unknown flag ${JSON.stringify(f)} (supervise, ${[...DEVICE_FLAGS].join(", ")})`);
    }
  }
  if (e.file !== undefined) {
    if (typeof e.file !== "string" || !e.file) throw bad('"file" must be a path');
    argv.push(e.file);
  }
  return argv;
}

/** Parses one declared device; every error is one line naming its file. */
export function parseEntry(name: string, text: string, where = name): Declared {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${where}: not valid JSON (${(err as Error).message})`);
  }
  const argv = entryArgv(where, raw);
  try {
    const args = parseArgs(argv);
    return { name, spec: { ...specFromArgs(args), name }, args };
  } catch (err) {
    throw new UsageError(`${where}: ${(err as Error).message}`);
  }
}

/** Names declared in the directory (files NAME.json), sorted. */
export function declaredNames(dir = DEVICES_DIR): string[] {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  return files
    .filter((f) => f.endsWith(".json"))
    .map((f) => f.slice(0, -".json".length))
    .filter((n) => NAME_RE.test(n))
    .sort();
}

export function readDeclared(name: string, dir = DEVICES_DIR): Declared {
  if (!NAME_RE.test(name)) throw new UsageError(`'${name}' is not a device name (letters, digits, _ . @ -)`);
  const path = join(dir, `${name}.json`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new UsageError(`no device '${name}' declared: ${path} does not exist`);
  }
  return parseEntry(name, text, path);
}
