// zoned: a ZNS-like zoned block device (UBLK_F_ZONED, which the driver only grants with user copy),
// in RAM or over a file. The data lives in one shared mapping of a file (a file of the user's, or an
// unlinked one in /dev/shm for RAM), so reads and writes are copied by the queue straight between the
// char device and the mapping; resets punch the zone's range out of the file. The zone table
// (zone-table.ts) is shared by the queues; a file-backed device keeps it after its data and writes
// it there at every flush and when the daemon ends, so zone states survive a restart.
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IORING_FSYNC_DATASYNC,
  IOSQE_IO_LINK,
  SQE_FLAGS,
} from "../uring/constants.js";
import { parseSize } from "./size.js";
import { defineTarget, type IoRequest, QUEUED, type QueueContext } from "./target.js";
import { tableBytes, type ZoneGeometry, ZoneTable } from "./zone-table.js";

interface ZonedState {
  fd: number;
  /** Address of the device's data, mapped shared from the file. */
  base: number;
  size: number;
  geometry: ZoneGeometry;
  zones: SharedArrayBuffer;
  /** File-backed: the zone table is kept at `size` in the file. */
  persistent: boolean;
}

const SUB_TABLE = 1;
/** One ZoneTable view per queue thread (and the main thread), over the shared memory. */
const tables = new WeakMap<SharedArrayBuffer, ZoneTable>();
const mappings = new WeakMap<ZonedState, ArrayBuffer>();

function table(st: ZonedState): ZoneTable {
  let t = tables.get(st.zones);
  if (!t) {
    t = new ZoneTable(st.zones, st.geometry);
    tables.set(st.zones, t);
  }
  return t;
}

function count(options: Record<string, unknown>, key: string, max: number): number {
  const v = options[key];
  if (v === undefined) return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new Error(`zoned --${key} ${v} must be an integer from 0 to ${max}`);
  return n;
}

/** The data file: the user's, or an unlinked file in memory. Returns its fd. */
function openBacking(file: unknown): number {
  if (typeof file === "string" && file !== "") {
    try {
      return openSync(file, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (err) {
      throw new Error(`cannot open zoned backing file ${file}: ${(err as NodeJS.ErrnoException).code}`);
    }
  }
  let dir: string;
  try {
    dir = mkdtempSync("/dev/shm/ublk-zoned-");
  } catch {
    dir = mkdtempSync(join(tmpdir(), "ublk-zoned-"));
  }
  const fd = openSync(join(dir, "data"), constants.O_RDWR | constants.O_CREAT, 0o600);
  rmSync(dir, { recursive: true, force: true }); // gone from the namespace, alive while open
  return fd;
}

/** Writes the zone table after the data (main thread, at exit). */
function saveTable(st: ZonedState): void {
  const t = table(st).table;
  writeSync(st.fd, t, 0, t.length, st.size);
  fsyncSync(st.fd);
}

/** Where the request's data goes in the mapping, with the zone rules applied first. */
function accept(req: IoRequest, ctx: QueueContext<ZonedState>): number {
  const append = req.op === U.UBLK_IO_OP_ZONE_APPEND;
  const at = table(ctx.state).write(req.offset / 512, req.length / 512, append);
  if (at < 0) return at;
  if (append) req.setAppendSector(at);
  return ctx.state.base + at * 512;
}

/** A WRITE or ZONE_APPEND whose data landed in the mapping (accepted) or in a pool buffer (refused). */
function writeResult(req: IoRequest, ctx: QueueContext<ZonedState>): number | typeof QUEUED {
  const at = req.op === U.UBLK_IO_OP_ZONE_APPEND ? req.appendSector : req.offset / 512;
  if (at >= 0 && req.address === ctx.state.base + at * 512) return req.length;
  // writeDestination refused it (or was not asked): ask again to get the error; a write the rules now
  // accept goes from the buffer to the file.
  const dest = accept(req, ctx);
  if (dest < 0) return dest;
  const ring = ctx.ring;
  const sector = (dest - ctx.state.base) / 512;
  ring.prepWrite(
    ring.sqeOrSubmit(),
    ctx.state.fd,
    req.address,
    req.length,
    sector * 512,
    ctx.userData(req.tag),
  );
  return QUEUED;
}

function punch(ctx: QueueContext<ZonedState>, req: IoRequest, offset: number, length: number): typeof QUEUED {
  const ring = ctx.ring;
  const mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  ring.prepFallocate(ring.sqeOrSubmit(), ctx.state.fd, mode, offset, length, ctx.userData(req.tag));
  return QUEUED;
}

export default defineTarget<ZonedState>({
  name: "zoned",

  open(options) {
    if (options.size === undefined)
      throw new Error("zoned needs --size (and --zone_size, default 256M): e.g. --size 1G --zone_size 64M");
    const size = parseSize(options.size, "size");
    const zoneSize = parseSize(options.zone_size ?? "256M", "zone_size");
    if (zoneSize < 4096 || (zoneSize & (zoneSize - 1)) !== 0 || zoneSize > 2 ** 32)
      throw new Error(`zoned --zone_size ${options.zone_size} must be a power of two from 4K to 4G`);
    if (size % zoneSize !== 0 || size < zoneSize)
      throw new Error(
        `zoned --size ${options.size} must be a whole number of zones (--zone_size ${zoneSize})`,
      );
    const nrZones = size / zoneSize;
    const convZones = count(options, "conv_zones", nrZones - 1);
    const seq = nrZones - convZones;
    const maxOpen = count(options, "max_open", seq);
    const maxActive = count(options, "max_active", seq);
    if (maxOpen > 0 && maxActive > 0 && maxOpen > maxActive)
      throw new Error(`zoned --max_open ${maxOpen} exceeds --max_active ${maxActive}`);
    const geometry: ZoneGeometry = { zoneSectors: zoneSize / 512, nrZones, convZones, maxOpen, maxActive };
    const persistent = typeof options.file === "string" && options.file !== "";
    const fd = openBacking(options.file);
    let mapping: ArrayBuffer | null = null;
    try {
      if (persistent && !fstatSync(fd).isFile())
        throw new Error(`zoned backing file ${options.file} is not a regular file`);
      const t = ZoneTable.allocate(geometry);
      const need = size + (persistent ? tableBytes(nrZones) : 0);
      const have = fstatSync(fd).size;
      // A file is new (empty, or just the data size: zones start empty) or a zoned image made with
      // the same geometry (its size says so; the table's header confirms it).
      if (persistent && have === need) {
        const saved = new Uint8Array(tableBytes(nrZones));
        readSync(fd, saved, 0, saved.length, size);
        const problem = t.load(saved);
        if (problem) throw new Error(`zoned backing file ${options.file} ${problem}`);
      } else if (persistent && have !== 0 && have !== size) {
        throw new Error(
          `zoned backing file ${options.file} is ${have} bytes, not the ${need} of a zoned image of this ` +
            "--size and --zone_size: give the options it was made with, or a new file",
        );
      }
      if (have < need) ftruncateSync(fd, need);
      mapping = native.mmapFile(fd, 0, size, true, false);
      const state: ZonedState = {
        fd,
        base: native.bufferAddress(mapping),
        size,
        geometry,
        zones: t.shared,
        persistent,
      };
      tables.set(t.shared, t);
      mappings.set(state, mapping);
      return {
        size,
        state,
        flags: U.UBLK_F_ZONED | U.UBLK_F_USER_COPY,
        params: {
          logicalBlockSize: 4096,
          physicalBlockSize: 4096,
          chunkSectors: zoneSize / 512,
          // A file-backed device has a cache to flush: its data and zone table reach the file then.
          volatileCache: persistent,
          discard: null,
          zoned: { maxOpenZones: maxOpen, maxActiveZones: maxActive, maxZoneAppendSectors: 0 },
        },
        description: {
          backing: persistent ? String(options.file) : "ram",
          zone_size: zoneSize,
          zones: nrZones,
          conv_zones: convZones,
          max_open: maxOpen,
          max_active: maxActive,
        },
      };
    } catch (err) {
      if (mapping) native.munmapBuffer(mapping);
      closeSync(fd);
      throw err;
    }
  },

  close(setup) {
    const st = setup.state;
    if (st.persistent) saveTable(st);
    const mapping = mappings.get(st);
    if (mapping) native.munmapBuffer(mapping);
    closeSync(st.fd);
  },

  initQueue(ctx) {
    if (!(ctx.flags & U.UBLK_F_USER_COPY) || !(ctx.flags & U.UBLK_F_ZONED))
      throw new Error("the zoned target needs UBLK_F_ZONED and UBLK_F_USER_COPY (Linux >= 6.6)");
  },

  read(req, ctx) {
    // Past the write pointer the file holds zeros (a reset punches the zone out).
    req.serveFrom(ctx.state.base + req.offset);
    return req.length;
  },

  writeDestination(req, ctx) {
    const dest = accept(req, ctx);
    return Math.max(dest, 0);
  },

  write: writeResult,
  zoneAppend: writeResult,

  flush(req, ctx) {
    const st = ctx.state;
    if (!st.persistent) return 0;
    // The zone table goes after the data, then one fdatasync covers both (linked: in this order).
    const ring = ctx.ring;
    const t = table(st).table;
    const off = ring.sqeOrSubmit();
    ring.prepWrite(off, st.fd, native.bufferAddress(t), t.length, st.size, ctx.userData(req.tag, SUB_TABLE));
    ring.sqeView.setUint8(off + SQE_FLAGS, IOSQE_IO_LINK);
    ring.prepFsync(ring.sqeOrSubmit(), st.fd, IORING_FSYNC_DATASYNC, ctx.userData(req.tag));
    return QUEUED;
  },

  reportZones(req, ctx) {
    const view = new DataView(req.buffer.buffer, req.buffer.byteOffset, req.nrZones * 64);
    return table(ctx.state).report(req.offset / 512, req.nrZones, view) * 64;
  },

  zoneManage(req, ctx) {
    const t = table(ctx.state);
    const zs = ctx.state.geometry.zoneSectors * 512;
    switch (req.op) {
      case U.UBLK_IO_OP_ZONE_OPEN:
        return t.manage("open", req.offset / 512);
      case U.UBLK_IO_OP_ZONE_CLOSE:
        return t.manage("close", req.offset / 512);
      case U.UBLK_IO_OP_ZONE_FINISH:
        return t.manage("finish", req.offset / 512);
      case U.UBLK_IO_OP_ZONE_RESET: {
        const res = t.manage("reset", req.offset / 512);
        return res < 0 ? res : punch(ctx, req, req.offset - (req.offset % zs), zs);
      }
      case U.UBLK_IO_OP_ZONE_RESET_ALL: {
        t.resetAll();
        const first = ctx.state.geometry.convZones * zs;
        return punch(ctx, req, first, ctx.state.size - first);
      }
      default:
        return -95;
    }
  },

  complete(_req, res, sub) {
    // The table write of a flush: its fsync (linked) completes the request.
    if (sub === SUB_TABLE) return res < 0 ? res : QUEUED;
    return res;
  },
});
