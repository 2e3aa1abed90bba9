// The zoned target's zone rules, without a device: write pointer, conditions, open/active limits,
// reports in struct blk_zone form, and a table saved and loaded back.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EIO, EOVERFLOW, ETOOMANYREFS, ZoneTable } from "../../src/targets/zone-table.js";
import * as Z from "../../src/uapi/blkzoned.js";

const ZS = 128; // sectors per zone
const geometry = { zoneSectors: ZS, nrZones: 8, convZones: 2, maxOpen: 2, maxActive: 3 };

test("writes go at the write pointer only; filling a zone makes it FULL; appends return their sector", () => {
  const t = ZoneTable.allocate(geometry);
  assert.equal(t.write(5, 8, false), 5, "conventional zones take writes anywhere");
  assert.equal(t.write(0, 8, true), -EIO, "no append to a conventional zone");
  const z2 = 2 * ZS;
  assert.equal(t.write(z2 + 8, 8, false), -EIO, "unaligned write to an empty zone");
  assert.equal(t.write(z2, 8, false), z2);
  assert.deepEqual(t.zone(2), { cond: Z.BLK_ZONE_COND_IMP_OPEN, wp: z2 + 8 });
  assert.equal(t.write(z2 + 3, 16, true), z2 + 8, "append lands at the write pointer");
  assert.equal(t.write(z2 + 24, ZS, false), -EIO, "a write past the zone end is refused");
  assert.equal(t.write(z2 + 24, ZS - 24, false), z2 + 24);
  assert.deepEqual(t.zone(2), { cond: Z.BLK_ZONE_COND_FULL, wp: z2 + ZS });
  assert.equal(t.write(z2, 8, false), -EIO, "a full zone takes no write");
  assert.equal(t.manage("reset", z2 + 1), 0);
  assert.deepEqual(t.zone(2), { cond: Z.BLK_ZONE_COND_EMPTY, wp: z2 });
});

test("open and active limits: implicit opens close each other, explicit ones do not, active caps all", () => {
  const t = ZoneTable.allocate(geometry);
  assert.equal(t.manage("open", 2 * ZS), 0);
  assert.equal(t.manage("open", 3 * ZS), 0);
  assert.equal(t.write(4 * ZS, 8, false), -ETOOMANYREFS, "two explicitly open zones leave no room");
  assert.equal(t.manage("close", 3 * ZS), 0);
  assert.equal(t.zone(3).cond, Z.BLK_ZONE_COND_EMPTY, "closing an unwritten zone empties it");
  assert.equal(t.write(3 * ZS, 8, false), 3 * ZS);
  assert.equal(t.write(4 * ZS, 8, false), 4 * ZS, "the implicitly open zone 3 makes room");
  assert.equal(t.zone(3).cond, Z.BLK_ZONE_COND_CLOSED);
  assert.equal(t.write(5 * ZS, 8, false), -EOVERFLOW, "a fourth active zone is refused");
  assert.equal(t.manage("finish", 4 * ZS), 0);
  assert.deepEqual(t.zone(4), { cond: Z.BLK_ZONE_COND_FULL, wp: 5 * ZS });
  assert.equal(t.write(5 * ZS, 8, false), 5 * ZS, "finishing freed an active slot");
  t.resetAll();
  for (let z = 2; z < 8; z++) assert.deepEqual(t.zone(z), { cond: Z.BLK_ZONE_COND_EMPTY, wp: z * ZS });
  assert.equal(t.manage("reset", 0), -EIO, "conventional zones have no write pointer");
});

test("report fills struct blk_zone entries; a saved table loads back, a foreign one is refused", () => {
  const t = ZoneTable.allocate(geometry);
  t.write(6 * ZS, 24, false);
  const out = new DataView(new ArrayBuffer(8 * Z.BLK_ZONE_BYTES));
  assert.equal(t.report(ZS, 100, out), 7, "from zone 1 to the last");
  const at = (i: number, f: number) => Number(out.getBigUint64(i * Z.BLK_ZONE_BYTES + f, true));
  assert.equal(at(0, Z.BLK_ZONE_START), ZS);
  assert.equal(out.getUint8(Z.BLK_ZONE_TYPE), Z.BLK_ZONE_TYPE_CONVENTIONAL);
  assert.equal(out.getUint8(Z.BLK_ZONE_BYTES + Z.BLK_ZONE_TYPE), Z.BLK_ZONE_TYPE_SEQWRITE_REQ);
  assert.equal(at(5, Z.BLK_ZONE_WP), 6 * ZS + 24);
  assert.equal(out.getUint8(5 * Z.BLK_ZONE_BYTES + Z.BLK_ZONE_COND), Z.BLK_ZONE_COND_IMP_OPEN);
  assert.equal(at(5, Z.BLK_ZONE_LEN), ZS);
  assert.equal(at(5, Z.BLK_ZONE_CAPACITY), ZS);

  const copy = ZoneTable.allocate(geometry);
  assert.equal(copy.load(t.table.slice()), null);
  assert.deepEqual(copy.zone(6), t.zone(6));
  assert.equal(copy.write(7 * ZS, 8, false), 7 * ZS);
  assert.equal(copy.write(2 * ZS, 8, false), 2 * ZS);
  assert.equal(
    copy.zone(6).cond,
    Z.BLK_ZONE_COND_CLOSED,
    "the loaded open zone was counted and closed for room",
  );
  assert.equal(copy.write(3 * ZS, 8, false), -EOVERFLOW, "active counts were rebuilt from the table");
  const other = ZoneTable.allocate({ ...geometry, zoneSectors: 256, nrZones: 4 });
  assert.match(other.load(t.table.slice(0, other.table.length)) ?? "", /same --size/);
});
