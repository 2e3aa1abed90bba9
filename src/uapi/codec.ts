// Little-endian field accessors shared by the struct codecs of src/uapi. A struct's offsets live
// only in its *_LAYOUT const (checked against the C header by test/unit/uapi-layout); codecs
// read them through these helpers so a layout fix cannot drift from the codec.

export type Field = { readonly offset: number; readonly size: number };
export const f = (offset: number, size: number): Field => ({ offset, size });

export const u8 = (v: DataView, o: number, x: Field) => v.getUint8(o + x.offset);
export const u16 = (v: DataView, o: number, x: Field) => v.getUint16(o + x.offset, true);
export const u32 = (v: DataView, o: number, x: Field) => v.getUint32(o + x.offset, true);
export const s32 = (v: DataView, o: number, x: Field) => v.getInt32(o + x.offset, true);
export const u64 = (v: DataView, o: number, x: Field) => v.getBigUint64(o + x.offset, true);
export const w8 = (v: DataView, o: number, x: Field, n: number) => v.setUint8(o + x.offset, n);
export const w16 = (v: DataView, o: number, x: Field, n: number) => v.setUint16(o + x.offset, n, true);
export const w32 = (v: DataView, o: number, x: Field, n: number) => v.setUint32(o + x.offset, n, true);
export const ws32 = (v: DataView, o: number, x: Field, n: number) => v.setInt32(o + x.offset, n, true);
export const w64 = (v: DataView, o: number, x: Field, n: bigint) => v.setBigUint64(o + x.offset, n, true);

/** Copy of a byte-array field (e.g. `__u8 reserved[20]`). */
export function bytes(v: DataView, o: number, x: Field): Uint8Array {
  const at = v.byteOffset + o + x.offset;
  return new Uint8Array(v.buffer.slice(at, at + x.size));
}
/** Writes a byte-array field; missing bytes (shorter or absent `src`) are written as zero. */
export function wbytes(v: DataView, o: number, x: Field, src?: Uint8Array): void {
  for (let i = 0; i < x.size; i++) v.setUint8(o + x.offset + i, src?.[i] ?? 0);
}
