// One tag's request as a target sees it (IoRequest), plus what the queue loop keeps per tag.
import type { IoRequest } from "../targets/target.js";
import * as U from "../uapi/ublk_cmd.js";
import type { PooledBuffer } from "./buffer-pool.js";

export const NO_BUFFER = new Uint8Array(0);

export class Request implements IoRequest {
  op = 0;
  flags = 0;
  offset = 0;
  length = 0;
  /** REPORT_ZONES: how many zones the driver asks for (its length is that many struct blk_zone). */
  nrZones = 0;
  /** ZONE_APPEND: the sector the data landed at (-1 until set), returned to the driver in the commit. */
  appendSector = -1;
  /** User copy: bytes of this request's data moved so far between the char device and `address`. */
  copied = 0;
  /** Set while the request holds a buffer from the pool (NEED_GET_DATA or user copy mode). */
  pooled: PooledBuffer | null = null;
  private view: Uint8Array | null = null;
  constructor(
    readonly qid: number,
    readonly tag: number,
    public buffer: Uint8Array,
    public address: number,
    /** The driver takes data from any address at commit time (NEED_GET_DATA or user copy). */
    private readonly anyAddress: boolean,
  ) {}
  serveFrom(address: number): void {
    // With a buffer per tag the commit's address is also the next request's buffer, so a WRITE would
    // land in the target's memory: refuse.
    if (!this.anyAddress || this.op !== U.UBLK_IO_OP_READ)
      throw new Error("serveFrom() needs a READ on a device with UBLK_F_NEED_GET_DATA or UBLK_F_USER_COPY");
    this.address = address;
  }
  setAppendSector(sector: number): void {
    if (this.op !== U.UBLK_IO_OP_ZONE_APPEND) throw new Error("setAppendSector() is for ZONE_APPEND only");
    this.appendSector = sector;
  }
  get data(): Uint8Array {
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
