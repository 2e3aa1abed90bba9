// The zone state machine of the `zoned` target: a write pointer and a condition per zone, kept in a
// SharedArrayBuffer that every queue thread sees, changed only under one lock (zone ops are short).
// Rules as a ZNS drive: a sequential zone is written only at its write pointer; a write opens it
// implicitly (EMPTY/CLOSED -> IMP_OPEN), filling it makes it FULL; at most maxOpen zones are open and
// at most maxActive are open or closed (0: no limit), an implicitly open zone being closed to make
// room. The table's bytes (after the lock words) are what a file-backed device stores after its data.
import {
  BLK_ZONE_BYTES,
  BLK_ZONE_CAPACITY,
  BLK_ZONE_COND,
  BLK_ZONE_COND_CLOSED,
  BLK_ZONE_COND_EMPTY,
  BLK_ZONE_COND_EXP_OPEN,
  BLK_ZONE_COND_FULL,
  BLK_ZONE_COND_IMP_OPEN,
  BLK_ZONE_COND_NOT_WP,
  BLK_ZONE_LEN,
  BLK_ZONE_START,
  BLK_ZONE_TYPE,
  BLK_ZONE_TYPE_CONVENTIONAL,
  BLK_ZONE_TYPE_SEQWRITE_REQ,
  BLK_ZONE_WP,
} from "../uapi/blkzoned.js";

export const EIO = 5;
/** The block layer's BLK_STS_ZONE_OPEN_RESOURCE. */
export const ETOOMANYREFS = 109;
/** The block layer's BLK_STS_ZONE_ACTIVE_RESOURCE. */
export const EOVERFLOW = 75;

export interface ZoneGeometry {
  zoneSectors: number;
  nrZones: number;
  convZones: number;
  maxOpen: number;
  maxActive: number;
}

const MAGIC = 0x314e5a55; // "UZN1"
const LOCK_BYTES = 16; // lock, open count, active count, spare
const HEADER_BYTES = 32;

/** Bytes of the persisted table: a header, a write pointer and a condition per zone. */
export function tableBytes(nrZones: number): number {
  return HEADER_BYTES + nrZones * 8 + Math.ceil(nrZones / 8) * 8;
}

export class ZoneTable {
  readonly g: ZoneGeometry;
  private readonly words: Int32Array;
  private readonly wp: Float64Array;
  private readonly cond: Uint8Array;
  private readonly header: DataView;
  /** The persisted part (header and zones), a view into the shared memory. */
  readonly table: Uint8Array;

  /** `shared` from ZoneTable.allocate(), in this or another thread. */
  constructor(
    readonly shared: SharedArrayBuffer,
    g: ZoneGeometry,
  ) {
    this.g = g;
    this.words = new Int32Array(shared, 0, 4);
    this.table = new Uint8Array(shared, LOCK_BYTES, tableBytes(g.nrZones));
    this.header = new DataView(shared, LOCK_BYTES, HEADER_BYTES);
    this.wp = new Float64Array(shared, LOCK_BYTES + HEADER_BYTES, g.nrZones);
    this.cond = new Uint8Array(shared, LOCK_BYTES + HEADER_BYTES + g.nrZones * 8, g.nrZones);
  }

  static allocate(g: ZoneGeometry): ZoneTable {
    const t = new ZoneTable(new SharedArrayBuffer(LOCK_BYTES + tableBytes(g.nrZones)), g);
    t.resetState();
    return t;
  }

  /** Every zone empty (conventional ones NOT_WP), with a fresh header. */
  resetState(): void {
    const h = this.header;
    h.setUint32(0, MAGIC, true);
    h.setUint32(4, 1, true);
    h.setFloat64(8, this.g.zoneSectors, true);
    h.setUint32(16, this.g.nrZones, true);
    h.setUint32(20, this.g.convZones, true);
    for (let z = 0; z < this.g.nrZones; z++) {
      const conv = z < this.g.convZones;
      this.wp[z] = conv ? (z + 1) * this.g.zoneSectors : z * this.g.zoneSectors;
      this.cond[z] = conv ? BLK_ZONE_COND_NOT_WP : BLK_ZONE_COND_EMPTY;
    }
    this.recount();
  }

  /**
   * Takes a table read back from a file: null when it is one (zeros: a new file), else a one-line
   * problem when it does not describe this geometry.
   */
  load(bytes: Uint8Array): string | null {
    const h = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
    if (h.getUint32(0, true) !== MAGIC) {
      if (bytes.some((b) => b !== 0))
        return "holds no zone table where one belongs (not made by the zoned target?)";
      this.resetState();
      return null;
    }
    const zs = h.getFloat64(8, true);
    const nr = h.getUint32(16, true);
    const conv = h.getUint32(20, true);
    if (zs !== this.g.zoneSectors || nr !== this.g.nrZones || conv !== this.g.convZones)
      return `holds ${nr} zones of ${zs * 512} bytes (${conv} conventional): give the same --size, --zone_size and --conv_zones, or a new file`;
    this.table.set(bytes);
    this.recount();
    return null;
  }

  private recount(): void {
    let open = 0;
    let active = 0;
    for (const c of this.cond) {
      if (c === BLK_ZONE_COND_IMP_OPEN || c === BLK_ZONE_COND_EXP_OPEN) open++;
      if (c === BLK_ZONE_COND_IMP_OPEN || c === BLK_ZONE_COND_EXP_OPEN || c === BLK_ZONE_COND_CLOSED)
        active++;
    }
    this.words[1] = open;
    this.words[2] = active;
  }

  private lock(): void {
    while (Atomics.compareExchange(this.words, 0, 0, 1) !== 0) Atomics.wait(this.words, 0, 1, 1);
  }

  private unlock(): void {
    Atomics.store(this.words, 0, 0);
    Atomics.notify(this.words, 0, 1);
  }

  private locked<T>(fn: () => T): T {
    this.lock();
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }

  zoneOf(sector: number): number {
    return Math.floor(sector / this.g.zoneSectors);
  }

  /**
   * Accepts a write of `sectors` at `sector` (append: at the zone's write pointer, `sector` being any
   * sector of the zone) and advances the write pointer. Returns the sector written, or a negative errno.
   */
  write(sector: number, sectors: number, append: boolean): number {
    const z = this.zoneOf(sector);
    if (z < 0 || z >= this.g.nrZones || sectors <= 0) return -EIO;
    if (z < this.g.convZones) return append ? -EIO : sector;
    return this.locked(() => {
      const c = this.cond[z];
      const end = (z + 1) * this.g.zoneSectors;
      const at = append ? this.wp[z] : sector;
      if (c === BLK_ZONE_COND_FULL || at !== this.wp[z] || at + sectors > end) return -EIO;
      if (c === BLK_ZONE_COND_EMPTY || c === BLK_ZONE_COND_CLOSED) {
        const err = this.openZone(z, BLK_ZONE_COND_IMP_OPEN);
        if (err < 0) return err;
      }
      this.wp[z] = at + sectors;
      if (this.wp[z] === end) this.release(z, BLK_ZONE_COND_FULL);
      return at;
    });
  }

  /** EMPTY/CLOSED -> `to` (an open state), within the open and active limits. Lock held. */
  private openZone(z: number, to: number): number {
    const w = this.words;
    const { maxOpen, maxActive } = this.g;
    const wasEmpty = this.cond[z] === BLK_ZONE_COND_EMPTY;
    if (wasEmpty && maxActive > 0 && w[2] >= maxActive) return -EOVERFLOW;
    if (maxOpen > 0 && w[1] >= maxOpen) {
      // Make room by closing a zone the device opened by itself, as a ZNS drive does.
      const victim = this.cond.indexOf(BLK_ZONE_COND_IMP_OPEN);
      if (victim < 0) return -ETOOMANYREFS;
      this.cond[victim] = BLK_ZONE_COND_CLOSED;
      w[1]--;
    }
    this.cond[z] = to;
    w[1]++;
    if (wasEmpty) w[2]++;
    return 0;
  }

  /** Leaves the open/closed states for `to` (EMPTY, CLOSED or FULL), keeping the counts. Lock held. */
  private release(z: number, to: number): void {
    const c = this.cond[z];
    const open = c === BLK_ZONE_COND_IMP_OPEN || c === BLK_ZONE_COND_EXP_OPEN;
    if (open) this.words[1]--;
    if ((open || c === BLK_ZONE_COND_CLOSED) && to !== BLK_ZONE_COND_CLOSED) this.words[2]--;
    this.cond[z] = to;
  }

  /** ZONE_OPEN, ZONE_CLOSE, ZONE_FINISH or ZONE_RESET of the zone holding `sector`: 0 or -errno. */
  manage(op: "open" | "close" | "finish" | "reset", sector: number): number {
    const z = this.zoneOf(sector);
    if (z < this.g.convZones || z >= this.g.nrZones) return -EIO;
    return this.locked(() => this.manageLocked(op, z));
  }

  private manageLocked(op: "open" | "close" | "finish" | "reset", z: number): number {
    const c = this.cond[z];
    const start = z * this.g.zoneSectors;
    switch (op) {
      case "open":
        if (c === BLK_ZONE_COND_EXP_OPEN) return 0;
        if (c === BLK_ZONE_COND_FULL) return -EIO;
        if (c === BLK_ZONE_COND_IMP_OPEN) {
          this.cond[z] = BLK_ZONE_COND_EXP_OPEN;
          return 0;
        }
        return this.openZone(z, BLK_ZONE_COND_EXP_OPEN);
      case "close":
        if (c === BLK_ZONE_COND_IMP_OPEN || c === BLK_ZONE_COND_EXP_OPEN)
          this.release(z, this.wp[z] === start ? BLK_ZONE_COND_EMPTY : BLK_ZONE_COND_CLOSED);
        return 0;
      case "finish":
        this.release(z, BLK_ZONE_COND_FULL);
        this.wp[z] = start + this.g.zoneSectors;
        return 0;
      case "reset":
        this.release(z, BLK_ZONE_COND_EMPTY);
        this.wp[z] = start;
        return 0;
    }
  }

  /** ZONE_RESET_ALL: every sequential zone empty. */
  resetAll(): void {
    this.locked(() => {
      for (let z = this.g.convZones; z < this.g.nrZones; z++) this.manageLocked("reset", z);
    });
  }

  /** Fills `out` with struct blk_zone entries from the zone holding `sector`; returns how many. */
  report(sector: number, maxZones: number, out: DataView): number {
    const first = this.zoneOf(sector);
    const n = Math.max(0, Math.min(maxZones, this.g.nrZones - first));
    const zs = this.g.zoneSectors;
    const setU64 = (o: number, v: number) => {
      out.setUint32(o, v >>> 0, true);
      out.setUint32(o + 4, Math.floor(v / 0x100000000), true);
    };
    this.locked(() => {
      for (let i = 0; i < n; i++) {
        const z = first + i;
        const o = i * BLK_ZONE_BYTES;
        for (let b = 0; b < BLK_ZONE_BYTES; b += 4) out.setUint32(o + b, 0);
        setU64(o + BLK_ZONE_START, z * zs);
        setU64(o + BLK_ZONE_LEN, zs);
        setU64(o + BLK_ZONE_WP, this.wp[z]);
        setU64(o + BLK_ZONE_CAPACITY, zs);
        out.setUint8(
          o + BLK_ZONE_TYPE,
          z < this.g.convZones ? BLK_ZONE_TYPE_CONVENTIONAL : BLK_ZONE_TYPE_SEQWRITE_REQ,
        );
        out.setUint8(o + BLK_ZONE_COND, this.cond[z]);
      }
    });
    return n;
  }

  /** Condition and write pointer of one zone (tests, list). */
  zone(z: number): { cond: number; wp: number } {
    return { cond: this.cond[z], wp: this.wp[z] };
  }
}
