// The shared memory a --shmem_zc device serves without copying (UBLK_F_SHMEM_ZC), daemon side.
// Two ways in, as kublk: the file given with --htlb (typically on hugetlbfs), which the daemon maps and
// registers before the device starts and applications map themselves; and memory an application
// sends over the device's socket (shmem-socket.ts) while it runs. Each is mapped MAP_SHARED here and
// registered with REG_BUF: the driver pins its pages and flags every request that lies in them. The
// queues learn of each buffer through the region table (queue/shmem-zc.ts) before anyone is told
// its index. On close every buffer is unregistered, unmapped and its file closed.
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import type { ControlDevice } from "./ctrl/control.js";
import { native } from "./native.js";
import { newRegionTable, publishRegion, REGION_SLOTS, withdrawRegion } from "./queue/shmem-zc.js";
import { ShmemSocketServer, shmemSocketPath } from "./shmem-socket.js";
import { UBLK_SHMEM_BUF_READ_ONLY } from "./uapi/ublk_cmd.js";

/** The driver's limit for one buffer. */
const MAX_BUFFER_BYTES = 2 ** 32;
const EINVAL = 22;

export interface SharedMemoryOptions {
  /** --htlb FILE: shared memory (a hugetlbfs file) registered when the device starts. */
  file?: string;
  /**
   * --rdonly_shmem_buf: register FILE read-only (pages pinned without write access, so a sealed
   * memfd works too); only WRITE requests then take the zero-copy path.
   */
  readOnly?: boolean;
}

interface Buffer {
  index: number;
  fd: number;
  memory: ArrayBuffer;
  size: number;
  source: string;
}

export class SharedMemoryError extends Error {
  constructor(
    message: string,
    readonly errno = EINVAL,
  ) {
    super(message);
  }
}

/**
 * Opens FILE for --htlb, before any device exists, so that a wrong path is refused with nothing
 * created. Returns its descriptor and size.
 */
export function openSharedFile(path: string, readOnly: boolean): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, readOnly ? constants.O_RDONLY : constants.O_RDWR);
  } catch (err) {
    throw new SharedMemoryError(`--htlb ${path}: ${(err as Error).message}`);
  }
  const size = fstatSync(fd).size;
  const problem = sizeProblem(size);
  if (problem) {
    closeSync(fd);
    throw new SharedMemoryError(`--htlb ${path}: ${problem} (e.g. fallocate -l 4M on a hugetlbfs mount)`);
  }
  return { fd, size };
}

function sizeProblem(size: number): string | null {
  if (size <= 0) return "the file is empty";
  if (size % native.pageSize !== 0) return `its size ${size} is not a multiple of the page size`;
  if (size > MAX_BUFFER_BYTES) return `its size ${size} is over the driver's limit of 4 GiB`;
  return null;
}

export class SharedMemory {
  /** Shared with the queue threads (QueueConfig.shmemTable). */
  readonly table = newRegionTable();
  private readonly buffers = new Map<number, Buffer>();
  private server: ShmemSocketServer | null = null;
  private closing = false;

  constructor(
    private readonly ctrl: ControlDevice,
    private readonly devId: number,
    private readonly log: (m: string) => void,
    /** --htlb FILE, if given (for `ublk list`). */
    readonly file?: string,
  ) {}

  /**
   * Maps `fd` (all of it, or `size` bytes, shared), registers it with the driver and publishes it to
   * the queues; resolves with its buffer index. Takes over `fd`: closed on failure, or when
   * unregistered.
   */
  async register(fd: number, source: string, readOnly = false, size?: number): Promise<number> {
    let memory: ArrayBuffer | null = null;
    try {
      if (this.closing) throw new SharedMemoryError("the device is stopping");
      size ??= fstatSync(fd).size;
      const problem = sizeProblem(size);
      if (problem) throw new SharedMemoryError(`${source}: ${problem}`);
      memory = native.mmapFile(fd, 0, size, !readOnly, false);
      const flags = readOnly ? UBLK_SHMEM_BUF_READ_ONLY : 0;
      const index = await this.ctrl.regBuf(this.devId, native.bufferAddress(memory), size, flags);
      // Past the table, or close() began while the driver registered it: take it back.
      if (index >= REGION_SLOTS || this.closing) {
        await this.ctrl.unregBuf(this.devId, index).catch(() => {});
        throw new SharedMemoryError(
          this.closing
            ? "the device is stopping"
            : `${source}: more than ${REGION_SLOTS} shared memory buffers`,
        );
      }
      publishRegion(this.table, index, fd, size, !readOnly);
      this.buffers.set(index, { index, fd, memory, size, source });
      this.log(`shared memory buffer ${index}: ${size} bytes of ${source}${readOnly ? " (read-only)" : ""}`);
      return index;
    } catch (err) {
      if (memory) native.munmapBuffer(memory);
      closeSync(fd);
      throw err;
    }
  }

  /** Accepts applications' memory on the device's socket (kublk's protocol) until close(). */
  async listen(): Promise<string> {
    const path = shmemSocketPath(this.devId);
    this.server = await ShmemSocketServer.listen(
      path,
      (fd) => this.register(fd, "memory sent over the socket"),
      this.log,
    );
    return path;
  }

  /**
   * Stops the socket and unregisters every buffer (the driver unpins them), then unmaps and closes
   * them. Call after the queues have ended. A device deleted meanwhile has dropped them itself.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.server?.close();
    this.server = null;
    for (const b of this.buffers.values()) {
      withdrawRegion(this.table, b.index);
      try {
        await this.ctrl.unregBuf(this.devId, b.index);
      } catch (err) {
        if ((err as { code?: string }).code !== "ENODEV")
          this.log(`UNREG_BUF ${b.index}: ${err instanceof Error ? err.message : err}`);
      }
      native.munmapBuffer(b.memory);
      closeSync(b.fd);
    }
    this.buffers.clear();
  }
}
