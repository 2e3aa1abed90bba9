// Module hooks (node:module register) that strip the types of .ts and .mts files, for Node versions
// without their own type stripping. Registered per thread by import-module.ts; everything else loads
// untouched. Sucrase is pure JavaScript: no child process and no WebAssembly to start in every queue
// thread, which matters in a slow VM. Both extensions load as ES modules.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

type Transform = (
  code: string,
  options: { transforms: string[]; disableESTransforms: boolean; filePath: string },
) => { code: string };

let transform: Transform | undefined;

interface LoadResult {
  format?: string;
  source?: string | ArrayBuffer | Uint8Array;
  shortCircuit?: boolean;
}

export async function load(
  url: string,
  context: { format?: string },
  nextLoad: (url: string, context: { format?: string }) => Promise<LoadResult>,
): Promise<LoadResult> {
  if (!url.startsWith("file:") || !/\.m?ts$/.test(new URL(url).pathname)) return nextLoad(url, context);
  transform ??= (createRequire(import.meta.url)("sucrase") as { transform: Transform }).transform;
  const filePath = fileURLToPath(url);
  const { code } = transform(readFileSync(filePath, "utf8"), {
    transforms: ["typescript"],
    disableESTransforms: true, // the code is modern already: only the types go
    filePath,
  });
  return { format: "module", source: code, shortCircuit: true };
}
