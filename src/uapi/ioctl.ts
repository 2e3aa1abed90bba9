// Linux asm-generic ioctl number encoding (include/uapi/asm-generic/ioctl.h), used by
// x86, arm64, riscv, loongarch, s390. alpha/mips/powerpc/sparc use other bit splits;
// ublk-ts does not target them.
//   bits 0-7 nr | 8-15 type | 16-29 size | 30-31 dir

export const _IOC_NRBITS = 8;
export const _IOC_TYPEBITS = 8;
export const _IOC_SIZEBITS = 14;
export const _IOC_DIRBITS = 2;
export const _IOC_NRSHIFT = 0;
export const _IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS;
export const _IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS;
export const _IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS;
export const _IOC_NONE = 0;
export const _IOC_WRITE = 1;
export const _IOC_READ = 2;

const typeCode = (type: string | number): number => (typeof type === "string" ? type.charCodeAt(0) : type);

/** Encodes an ioctl number; the result is a non-negative u32 (`>>> 0`), suitable for setUint32. */
export function _IOC(dir: number, type: string | number, nr: number, size: number): number {
  if (size < 0 || size >= 1 << _IOC_SIZEBITS) throw new RangeError(`ioctl size ${size} out of range`);
  return (
    ((dir << _IOC_DIRSHIFT) |
      (typeCode(type) << _IOC_TYPESHIFT) |
      (nr << _IOC_NRSHIFT) |
      (size << _IOC_SIZESHIFT)) >>>
    0
  );
}
export const _IO = (type: string | number, nr: number): number => _IOC(_IOC_NONE, type, nr, 0);
export const _IOR = (type: string | number, nr: number, size: number): number =>
  _IOC(_IOC_READ, type, nr, size);
export const _IOW = (type: string | number, nr: number, size: number): number =>
  _IOC(_IOC_WRITE, type, nr, size);
export const _IOWR = (type: string | number, nr: number, size: number): number =>
  _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);

export const _IOC_DIR = (cmd: number): number => (cmd >>> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1);
export const _IOC_TYPE = (cmd: number): number => (cmd >>> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1);
export const _IOC_NR = (cmd: number): number => (cmd >>> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1);
export const _IOC_SIZE = (cmd: number): number => (cmd >>> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1);
