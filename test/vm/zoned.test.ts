// The zoned target against the real driver: the layout blkzone reports, fio's zoned-mode verify,
// write-pointer rules, resets, zone state kept in the file across a daemon restart, and f2fs on it.
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import { addDevice, deleteAll, fioRun, sh, skipReason, ublk } from "./helpers.js";

const DIR = "/tmp/ublk-zoned-test";

const zonedSkip =
  skipReason ||
  (sh("command -v blkzone", { allowFail: true }).code !== 0 ? "needs blkzone (util-linux)" : false);

after(() => {
  if (zonedSkip) return;
  sh(`umount -q ${DIR}/mnt`, { allowFail: true });
  deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

interface Zone {
  start: number;
  len: number;
  wp: number;
  cond: number;
  type: number;
}

/** `blkzone report` parsed: sectors, condition and type numbers. */
function report(dev: string): Zone[] {
  const out = sh(`blkzone report ${dev}`).stdout.trim().split("\n");
  return out.map((l) => {
    const m =
      /start: (0x[0-9a-f]+), len (0x[0-9a-f]+), cap 0x[0-9a-f]+, wptr (0x[0-9a-f]+).*zcond: *(\d+).*type: (\d+)/.exec(
        l,
      );
    assert.ok(m, `unexpected blkzone line: ${l}`);
    // blkzone prints the write pointer relative to the zone's start
    return {
      start: Number(m[1]),
      len: Number(m[2]),
      wp: Number(m[1]) + Number(m[3]),
      cond: Number(m[4]),
      type: Number(m[5]),
    };
  });
}

const EMPTY = 1;
const IMP_OPEN = 2;
const FULL = 14;
const ZS = 8192; // 4 MiB in sectors

test("zoned: blkzone shows the declared layout; unaligned writes fail; fio zbd verify; reset empties", {
  skip: zonedSkip,
}, () => {
  const id = addDevice(
    "-t",
    "zoned",
    "--size",
    "64M",
    "--zone_size",
    "4M",
    "--conv_zones",
    "2",
    "--max_open",
    "4",
  );
  const dev = `/dev/ublkb${id}`;
  const q = (a: string) => readFileSync(`/sys/block/ublkb${id}/queue/${a}`, "utf8").trim();
  assert.equal(q("zoned"), "host-managed");
  assert.equal(q("nr_zones"), "16");
  assert.equal(q("max_open_zones"), "4");
  const zones = report(dev);
  assert.equal(zones.length, 16);
  zones.forEach((z, i) => {
    assert.equal(z.start, i * ZS);
    assert.equal(z.len, ZS);
    assert.equal(z.type, i < 2 ? 1 : 2, `zone ${i} type`);
    if (i >= 2) assert.deepEqual([z.cond, z.wp], [EMPTY, i * ZS], `zone ${i} starts empty`);
  });
  const list = JSON.parse(ublk("list", "-n", String(id), "--json").stdout)[0];
  assert.equal(list.target_info?.zones, 16);

  // Sequential zones take writes at the write pointer only.
  const off = 3 * ZS * 512;
  const bad = sh(
    `dd if=/dev/urandom of=${dev} bs=4k count=1 seek=${off / 4096 + 1} oflag=direct status=none`,
    {
      allowFail: true,
    },
  );
  assert.notEqual(bad.code, 0, "a write past the write pointer must fail");
  // After a failed zone write the block layer re-reads the zone's write pointer (REPORT_ZONES) in the
  // background, and in 6.12 fails writes issued before that is done: let it finish.
  report(dev);
  sh("sleep 1");
  sh(`dd if=/dev/urandom of=${dev} bs=4k count=3 seek=${off / 4096} oflag=direct status=none`);
  assert.deepEqual([report(dev)[3].cond, report(dev)[3].wp], [IMP_OPEN, 3 * ZS + 24]);

  const job =
    `--name=z --filename=${dev} --direct=1 --zonemode=zbd --max_open_zones=4 --ioengine=io_uring ` +
    "--iodepth=8 --bs=16k --offset=16M --size=32M --verify=crc32c --verify_state_save=0";
  const w = fioRun(`${job} --rw=randwrite`);
  assert.equal(w.code, 0, `fio zbd randwrite with verify failed:\n${w.output}`);
  assert.ok(w.jobs[0].write.io_bytes > 0 && w.jobs[0].error === 0, w.output);
  assert.ok(
    report(dev).some((z) => z.cond === FULL),
    "fio filled no zone",
  );
  sh(`blkzone reset ${dev}`);
  for (const [i, z] of report(dev).entries())
    if (i >= 2) assert.deepEqual([z.cond, z.wp], [EMPTY, i * ZS], `zone ${i} after reset`);
  const zeros = sh(
    `dd if=${dev} bs=4k count=3 skip=${off / 4096} iflag=direct status=none | od -An -tx1 | sort -u`,
  );
  assert.equal(
    zeros.stdout.trim().split("\n")[0].trim(),
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
    "a reset zone reads zeros",
  );
  assert.equal(ublk("del", "-n", String(id)).code, 0);
});

test("zoned over a file: f2fs files and zone states survive a daemon restart; a mismatched image is refused", {
  skip: zonedSkip,
}, () => {
  // The VM packs f2fs (and its dependencies) for loading on demand.
  sh("modprobe f2fs");
  sh(`mkdir -p ${DIR}/mnt && rm -f ${DIR}/z.img && head -c $((5 * 1024 * 1024 + 3)) /dev/urandom >${DIR}/f`);
  const args = ["-t", "zoned", "--size", "128M", "--zone_size", "4M", "--conv_zones", "8", `${DIR}/z.img`];
  let id = addDevice(...args);
  let dev = `/dev/ublkb${id}`;
  sh(`mkfs.f2fs -q -f -m ${dev}`);
  sh(`mount -t f2fs ${dev} ${DIR}/mnt && cp ${DIR}/f ${DIR}/mnt/f && umount ${DIR}/mnt`);
  const before = report(dev);
  assert.ok(
    before.some((z) => z.type === 2 && z.wp > z.start),
    "f2fs wrote no sequential zone",
  );
  assert.equal(ublk("del", "-n", String(id)).code, 0);

  id = addDevice(...args);
  dev = `/dev/ublkb${id}`;
  assert.deepEqual(report(dev), before, "write pointers and conditions changed across the restart");
  sh(`mount -t f2fs ${dev} ${DIR}/mnt`);
  try {
    sh(`cmp ${DIR}/f ${DIR}/mnt/f`);
  } finally {
    sh(`umount ${DIR}/mnt`);
  }
  assert.equal(ublk("del", "-n", String(id)).code, 0);

  const bad = ublk("add", "-t", "zoned", "--size", "128M", "--zone_size", "8M", `${DIR}/z.img`);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /^ublk: zoned backing file [^\n]*--zone_size[^\n]*\n$/);
});
