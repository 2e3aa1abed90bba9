// Opening an image and its backing chain in the daemon's main thread: file descriptors that every
// queue thread then uses (they belong to the process), and the parsed headers.
import { closeSync, constants, fstatSync, openSync, statfsSync, writeSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { AUTOCLEAR_OFFSET, ImageError, isQcow2, parseHeader } from "./header.js";
import type { LayerInfo } from "./layer.js";

/** Longest backing chain followed (a longer one is most likely a loop). */
const MAX_CHAIN = 16;

// statfs f_type of filesystems whose file IO never waits for a device.
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/**
 * O_NONBLOCK for a file in memory: io_uring then runs its reads and writes inline instead of in an
 * io-wq worker (tmpfs does not say it can serve IO without blocking; the loop target does the same).
 */
function inlineFlag(path: string): number {
  try {
    const type = Number(statfsSync(path).type);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC ? constants.O_NONBLOCK : 0;
  } catch {
    return 0;
  }
}

function openFile(path: string, writable: boolean, what: string): number {
  try {
    return openSync(path, (writable ? constants.O_RDWR : constants.O_RDONLY) | inlineFlag(path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ImageError(`${what} ${path} does not exist`);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS")
      throw new ImageError(
        `${what} ${path} cannot be opened ${writable ? "read-write" : "for reading"} (${code})`,
      );
    throw new ImageError(`cannot open ${what} ${path}: ${code}`);
  }
}

export interface Chain {
  /** The image first, then its backing files in order. */
  layers: LayerInfo[];
  /** The top image is only read (it has internal snapshots, whose shared clusters are not handled). */
  readOnly: boolean;
}

export function openChain(path: string): Chain {
  const layers: LayerInfo[] = [];
  try {
    const fd = openFile(path, true, "image");
    if (!isQcow2(fd)) {
      closeSync(fd);
      throw new ImageError(`${path} is not a qcow2 image (create one with qemu-img create -f qcow2)`);
    }
    const header = parseHeader(fd, path);
    layers.push({ path, fd, raw: false, size: header.size, header });
    const readOnly = header.nbSnapshots > 0;
    if (!readOnly && header.autoclearFeatures !== 0) {
      // The spec's rule for a writer that does not maintain those features (persistent bitmaps).
      writeSync(fd, Buffer.alloc(8), 0, 8, AUTOCLEAR_OFFSET);
      header.autoclearFeatures = 0;
    }
    let top = layers[0];
    while (top.header?.backingFile) {
      if (layers.length > MAX_CHAIN) throw new ImageError(`${path}: backing chain longer than ${MAX_CHAIN}`);
      const name = top.header.backingFile;
      const file = isAbsolute(name) ? name : resolve(dirname(top.path), name);
      const bfd = openFile(file, false, "backing file");
      const format = top.header.backingFormat ?? (isQcow2(bfd) ? "qcow2" : "raw");
      if (format === "qcow2") {
        const h = parseHeader(bfd, file);
        layers.push({ path: file, fd: bfd, raw: false, size: h.size, header: h });
      } else if (format === "raw") {
        layers.push({ path: file, fd: bfd, raw: true, size: fstatSync(bfd).size, header: null });
      } else {
        closeSync(bfd);
        throw new ImageError(`${top.path}: backing format '${format}' is not supported (qcow2 or raw)`);
      }
      top = layers[layers.length - 1];
    }
    return { layers, readOnly };
  } catch (err) {
    closeChain(layers);
    throw err;
  }
}

export function closeChain(layers: LayerInfo[]): void {
  for (const l of layers) {
    try {
      closeSync(l.fd);
    } catch {
      // already closed
    }
  }
}
