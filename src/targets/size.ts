/** Parses "4096", "512K", "10M", "250G", "1T" (binary units) into bytes; throws a one-line error. */
export function parseSize(value: string | number | boolean | readonly string[], what: string): number {
  if (Array.isArray(value)) throw new Error(`${what} given more than once`);
  if (typeof value === "number" && Number.isSafeInteger(value) && value > 0) return value;
  const m = /^(\d+)([kmgt]i?b?)?$/i.exec(String(value).trim());
  if (!m)
    throw new Error(`invalid ${what} '${value}': use a byte count with an optional K, M, G or T suffix`);
  const unit = (m[2] ?? "").charAt(0).toLowerCase();
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[unit] ?? 1;
  const bytes = Number(m[1]) * mult;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`invalid ${what} '${value}': out of range`);
  return bytes;
}
