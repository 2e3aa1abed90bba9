// ram: a RAM disk held by the daemon, like the kernel's brd. The memory is one anonymous mapping in
// the daemon, taken page by page as it is written (unwritten pages read as zeros). No IO and no copy
// here: with NEED_GET_DATA the driver copies a READ's data straight out of it and a WRITE's data
// straight into it (with user copy, -u, the queue's reads and writes on /dev/ublkcN do, equally
// once). The contents live as long as the daemon: user recovery cannot bring them back.
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { parseSize } from "./size.js";
import { defineTarget } from "./target.js";

const EIO = 5;

interface RamState {
  /** Address of the disk's memory in the daemon (shared by its queue threads). */
  base: number;
}

/** Main thread: keeps the memory alive while the device is (it is unmapped when collected). */
const memory = new Map<RamState, ArrayBuffer>();

export default defineTarget<RamState>({
  name: "ram",
  open(options) {
    if (options.size === undefined)
      throw new Error("ram needs --size (e.g. --size 1G): the disk holds that much memory once written");
    const size = parseSize(options.size, "size");
    if (size % 4096 !== 0) throw new Error(`ram --size ${options.size} must be a multiple of 4096 bytes`);
    let mem: ArrayBuffer;
    try {
      mem = native.allocBuffer(size);
    } catch (err) {
      throw new Error(`ram: cannot reserve ${size} bytes of memory (${(err as Error).message})`);
    }
    const state: RamState = { base: native.bufferAddress(mem) };
    memory.set(state, mem);
    return {
      size,
      state,
      flags: U.UBLK_F_NEED_GET_DATA,
      params: { logicalBlockSize: 512, physicalBlockSize: 4096 },
      description: { size },
    };
  },
  close(setup) {
    memory.delete(setup.state);
  },
  initQueue(ctx) {
    // With user copy (-u) the queue copies between the char device and this memory directly.
    if (!(ctx.flags & (U.UBLK_F_NEED_GET_DATA | U.UBLK_F_USER_COPY)))
      throw new Error("the ram target needs UBLK_F_NEED_GET_DATA, which this ublk driver did not grant");
  },
  read(req, ctx) {
    req.serveFrom(ctx.state.base + req.offset);
    return req.length;
  },
  writeDestination: (req, ctx) => ctx.state.base + req.offset,
  // The driver has already copied the data into place (writeDestination).
  write: (req, ctx) => (req.address === ctx.state.base + req.offset ? req.length : -EIO),
  flush: () => 0,
});
