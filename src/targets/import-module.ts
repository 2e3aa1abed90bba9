// Imports a target module, TypeScript included. Node strips types itself from 22.6 on (by default
// since 22.18/23.6; process.features.typescript says so); on older Node (20 is supported) .ts and
// .mts files go through ts-hooks.ts instead. Hooks registered in one thread do not reach the others
// on Node 20, so each thread that imports a target (the daemon and every queue thread) registers them.
import { register } from "node:module";

const TS_FILE = /\.m?ts$/;
let hooksRegistered = false;

/** True when this Node imports .ts files natively (type stripping). */
export function nodeStripsTypes(): boolean {
  return !!(process.features as { typescript?: string | false }).typescript;
}

export async function importModule(url: string): Promise<Record<string, unknown>> {
  if (TS_FILE.test(new URL(url).pathname) && !nodeStripsTypes() && !hooksRegistered) {
    register(new URL("./ts-hooks.js", import.meta.url));
    hooksRegistered = true;
  }
  return (await import(url)) as Record<string, unknown>;
}
