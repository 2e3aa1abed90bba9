// One tag's request as a target sees it (IoRequest), plus what the queue loop keeps per tag.
import type { IoRequest, IoResult, QueueContext, Target } from "../targets/target.js";
import { BLK_ZONE_BYTES } from "../uapi/blkzoned.js";
import * as U from "../uapi/ublk_cmd.js";
import type { PooledBuffer } from "./buffer-pool.js";

export const NO_BUFFER = new Uint8Array(0);
const EOPNOTSUPP = 95;

export class Request implements IoRequest {
  op = 0;
  flags = 0;
  offset = 0;
  length = 0;
  /** REPORT_ZONES: how many zones the driver asks for (its length is that many struct blk_zone). */
  nrZones = 0;
  /** ZONE_APPEND: the sector the data landed at (-1 until set), returned to the driver in the commit. */
  appendSector = -1;
  /** Zero copy: the fixed buffer (slot in the queue ring's table) holding the data, else -1. */
  bufIndex = -1;
  /** User copy: bytes of this request's data moved so far between the char device and `address`. */
  copied = 0;
  /** UBLK_F_INTEGRITY: the request's metadata (set by the queue's QueueIntegrity), or null. */
  integrity: Uint8Array | null = null;
  integrityAddress = 0;
  /** Set while the request holds a buffer from the pool (NEED_GET_DATA or user copy mode). */
  pooled: PooledBuffer | null = null;
  private view: Uint8Array | null = null;
  private ownBuffer: Uint8Array;
  /** Shared-memory zero copy: the region mapping holding this request's data, else null. */
  private region: ArrayBuffer | null = null;
  private regionOffset = 0;
  private ownAddress = 0;
  constructor(
    readonly qid: number,
    readonly tag: number,
    buffer: Uint8Array,
    public address: number,
    /** The driver takes data from any address at commit time (NEED_GET_DATA or user copy). */
    private readonly anyAddress: boolean,
  ) {
    this.ownBuffer = buffer;
  }
  /** The tag's buffer, or the request's bytes in a shared region (made on first use). */
  get buffer(): Uint8Array {
    if (this.region !== null && this.view === null)
      this.view = new Uint8Array(this.region, this.regionOffset, this.length);
    return this.region === null ? this.ownBuffer : (this.view as Uint8Array);
  }
  set buffer(b: Uint8Array) {
    this.ownBuffer = b;
  }
  /** True while the request is served from a shared region (UBLK_IO_F_SHMEM_ZC). */
  get inRegion(): boolean {
    return this.region !== null;
  }
  /** The data is `length` bytes at `offset` of `region`, mapped at `regionAddress`. */
  useRegion(region: ArrayBuffer, regionAddress: number, offset: number): void {
    this.region = region;
    this.regionOffset = offset;
    this.view = null;
    this.ownAddress = this.address;
    this.address = regionAddress + offset;
  }
  /** Back to the tag's buffer, whose address the commit carries (the next request's buffer). */
  leaveRegion(): void {
    if (this.region === null) return;
    this.region = null;
    this.view = null;
    this.address = this.ownAddress;
  }
  /** Fills the request from its descriptor in the queue's mapped iod array (as 32-bit words). */
  decode(w: Uint32Array): void {
    const i = this.tag * (U.ublksrv_io_desc_LAYOUT.size >>> 2);
    const opFlags = w[i];
    this.op = opFlags & 0xff;
    this.flags = opFlags & ~0xff;
    const count = w[i + 1]; // nr_sectors, or nr_zones for REPORT_ZONES
    this.nrZones = this.op === U.UBLK_IO_OP_REPORT_ZONES ? count : 0;
    this.appendSector = -1;
    this.length = this.nrZones > 0 ? count * BLK_ZONE_BYTES : count * 512;
    this.offset = (w[i + 2] + w[i + 3] * 0x100000000) * 512;
  }
  serveFrom(address: number): void {
    // With a buffer per tag the commit's address is also the next request's buffer, so a WRITE would
    // land in the target's memory: refuse.
    // The driver copies nothing for a request in shared memory: the data must land in the region.
    if (this.region !== null) throw new Error("serveFrom() cannot serve a request in shared memory");
    if (!this.anyAddress || this.op !== U.UBLK_IO_OP_READ)
      throw new Error("serveFrom() needs a READ on a device with UBLK_F_NEED_GET_DATA or UBLK_F_USER_COPY");
    this.address = address;
  }
  setAppendSector(sector: number): void {
    if (this.op !== U.UBLK_IO_OP_ZONE_APPEND) throw new Error("setAppendSector() is for ZONE_APPEND only");
    this.appendSector = sector;
  }
  get data(): Uint8Array {
    if (this.region !== null) return this.buffer;
    if (this.view === null || this.view.length !== this.length || this.view.buffer !== this.buffer.buffer)
      this.view = this.buffer.subarray(0, this.length);
    return this.view;
  }
  attach(buf: PooledBuffer): void {
    this.pooled = buf;
    this.buffer = buf.bytes;
    this.address = buf.address;
  }
  detach(): void {
    this.pooled = null;
    this.buffer = NO_BUFFER;
    this.address = 0;
  }
}

/** Calls the target op for the request's UBLK_IO_OP_*; ops a target lacks succeed (flush) or fail. */
export function route<S>(t: Target<S>, req: Request, ctx: QueueContext<S>): IoResult {
  switch (req.op) {
    case U.UBLK_IO_OP_READ:
      return t.read(req, ctx);
    case U.UBLK_IO_OP_WRITE:
      return t.write(req, ctx);
    case U.UBLK_IO_OP_FLUSH:
      return t.flush ? t.flush(req, ctx) : 0;
    case U.UBLK_IO_OP_DISCARD:
      return t.discard ? t.discard(req, ctx) : -EOPNOTSUPP;
    case U.UBLK_IO_OP_WRITE_ZEROES:
      return t.writeZeroes ? t.writeZeroes(req, ctx) : -EOPNOTSUPP;
    case U.UBLK_IO_OP_ZONE_APPEND:
      return t.zoneAppend ? t.zoneAppend(req, ctx) : -EOPNOTSUPP;
    case U.UBLK_IO_OP_REPORT_ZONES:
      return t.reportZones ? t.reportZones(req, ctx) : -EOPNOTSUPP;
    case U.UBLK_IO_OP_ZONE_OPEN:
    case U.UBLK_IO_OP_ZONE_CLOSE:
    case U.UBLK_IO_OP_ZONE_FINISH:
    case U.UBLK_IO_OP_ZONE_RESET:
    case U.UBLK_IO_OP_ZONE_RESET_ALL:
      return t.zoneManage ? t.zoneManage(req, ctx) : -EOPNOTSUPP;
    default:
      return -EOPNOTSUPP;
  }
}
