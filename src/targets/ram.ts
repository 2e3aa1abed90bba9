// ram: a RAM disk held by the daemon, like the kernel's brd. The memory is one anonymous mapping in
// the daemon, taken page by page as it is written (unwritten pages read as zeros). No IO and no copy
// here: with NEED_GET_DATA the driver copies a READ's data straight out of it and a WRITE's data
// straight into it (with user copy, -u, the queue's reads and writes on /dev/ublkcN do, equally
// once). With batched IO commands (-b) the driver offers neither, so the data is copied between the
// tag's buffer and the disk here: one copy more. The contents live as long as the daemon: user
// recovery cannot bring them back.
import { native } from "../native.js";
import * as U from "../uapi/ublk_cmd.js";
import { parseSize } from "./size.js";
import { defineTarget } from "./target.js";

const EIO = 5;

interface RamState {
  /** Address of the disk's memory in the daemon (shared by its queue threads). */
  base: number;
  /** The same memory (lazily backed, zero until written), for the copying path. */
  memory: SharedArrayBuffer;
}

export default defineTarget<RamState>({
  name: "ram",
  open(options) {
    if (options.size === undefined)
      throw new Error("ram needs --size (e.g. --size 1G): the disk holds that much memory once written");
    const size = parseSize(options.size, "size");
    if (size % 4096 !== 0) throw new Error(`ram --size ${options.size} must be a multiple of 4096 bytes`);
    let memory: SharedArrayBuffer;
    try {
      memory = new SharedArrayBuffer(size);
    } catch (err) {
      throw new Error(`ram: cannot reserve ${size} bytes of memory (${(err as Error).message})`);
    }
    const state: RamState = { base: native.bufferAddress(new Uint8Array(memory, 0, 1)), memory };
    return {
      size,
      state,
      flags: U.UBLK_F_NEED_GET_DATA,
      params: { logicalBlockSize: 512, physicalBlockSize: 4096 },
      description: { size },
    };
  },
  initQueue(ctx) {
    // With user copy (-u) the queue copies between the char device and this memory directly.
    if (!(ctx.flags & (U.UBLK_F_NEED_GET_DATA | U.UBLK_F_USER_COPY | U.UBLK_F_BATCH_IO)))
      throw new Error("the ram target needs UBLK_F_NEED_GET_DATA, which this ublk driver did not grant");
  },
  read(req, ctx) {
    if (ctx.flags & U.UBLK_F_BATCH_IO) {
      req.buffer.set(new Uint8Array(ctx.state.memory, req.offset, req.length));
      return req.length;
    }
    req.serveFrom(ctx.state.base + req.offset);
    return req.length;
  },
  writeDestination: (req, ctx) => ctx.state.base + req.offset,
  write(req, ctx) {
    if (ctx.flags & U.UBLK_F_BATCH_IO) {
      new Uint8Array(ctx.state.memory, req.offset, req.length).set(req.data);
      return req.length;
    }
    // The driver has already copied the data into place (writeDestination).
    return req.address === ctx.state.base + req.offset ? req.length : -EIO;
  },
  flush: () => 0,
});
