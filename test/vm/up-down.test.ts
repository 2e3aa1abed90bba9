// Declared devices: `ublk up` creates what devices.d declares, twice changes nothing, `down` deletes
// them, and a loop device brought back up serves the data its file kept.
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { after, test } from "node:test";
import { deleteAll, listedIds, sh, skipReason, ublk, waitFor } from "./helpers.js";

const DIR = "/tmp/ublk-ts-devices.d";
process.env.UBLK_TS_DEVICES_DIR = DIR; // the CLI runs inherit it

after(() => {
  if (!skipReason) deleteAll();
  rmSync(DIR, { recursive: true, force: true });
});

/** name -> [id, daemon pid] from `ublk list --json` and the state files. */
function devices(): Map<number, number> {
  const r = ublk("list", "--json");
  assert.equal(r.code, 0, r.stderr);
  return new Map(
    (JSON.parse(r.stdout) as { dev_id: number; daemon_pid: number }[]).map((d) => [d.dev_id, d.daemon_pid]),
  );
}

test("ublk up / down from declared files: idempotent, data kept across down and up", {
  skip: skipReason,
}, () => {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  sh("truncate -s 16M /tmp/up-disk.img");
  writeFileSync(
    `${DIR}/disk.json`,
    JSON.stringify({ target: "loop", file: "/tmp/up-disk.img", id: 7, options: { queues: 1 } }),
  );
  writeFileSync(
    `${DIR}/scratch.json`,
    JSON.stringify({ target: "null", options: { size: "32M", depth: 32 } }),
  );

  const first = ublk("up");
  assert.equal(first.code, 0, first.stderr);
  const ids = listedIds().sort((a, b) => a - b);
  assert.equal(ids.length, 2);
  assert.ok(ids.includes(7), "the declared id is used");
  assert.equal(sh("blockdev --getsize64 /dev/ublkb7").stdout.trim(), String(16 * 2 ** 20));
  const before = devices();

  const again = ublk("up");
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /disk: already up as \/dev\/ublkb7/);
  assert.match(again.stdout, /scratch: already up/);
  assert.deepEqual(devices(), before, "up twice: same devices, same daemons");
  // A supervisor's --foreground must not report success for a device another daemon serves.
  const fg = ublk("up", "--foreground", "disk");
  assert.notEqual(fg.code, 0, "up --foreground of a LIVE device exited 0");
  assert.match(
    fg.stderr,
    /^ublk: disk: already up as \/dev\/ublkb7, served by daemon pid \d+ .*ublk down disk/,
  );
  assert.equal(fg.stderr.trim().split("\n").length, 1, fg.stderr);
  assert.deepEqual(devices(), before, "the refused --foreground left the device alone");

  sh("dd if=/dev/urandom of=/tmp/up-data bs=1M count=4 status=none");
  sh("dd if=/tmp/up-data of=/dev/ublkb7 bs=1M oflag=direct status=none");
  const down = ublk("down", "disk");
  assert.equal(down.code, 0, down.stderr);
  assert.match(down.stdout, /^disk: down \(device 7 deleted\)$/m);
  assert.ok(!listedIds().includes(7));
  assert.equal(listedIds().length, 1, "the other declared device stays up");

  const back = ublk("up", "disk");
  assert.equal(back.code, 0, back.stderr);
  sh("cmp -n 4194304 /tmp/up-data /dev/ublkb7");

  const all = ublk("down");
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(listedIds(), []);
  const twice = ublk("down");
  assert.equal(twice.code, 0);
  assert.match(twice.stdout, /disk: not up\nscratch: not up/);
});

test("up refuses an undeclared name and a bad file in one line, creating nothing", {
  skip: skipReason,
}, () => {
  mkdirSync(DIR, { recursive: true });
  writeFileSync(`${DIR}/broken.json`, JSON.stringify({ target: "null", options: { depth: 99999 } }));
  const r = ublk("up", "broken", "nothere");
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^ublk: .*broken\.json: --depth 99999 is out of range/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  assert.deepEqual(listedIds(), []);
  rmSync(`${DIR}/broken.json`);
});

test("up recovers a declared device whose daemon died (QUIESCED) in place: same id, data kept", {
  skip: skipReason,
}, async () => {
  mkdirSync(DIR, { recursive: true });
  sh("truncate -s 16M /tmp/up-rec.img");
  writeFileSync(
    `${DIR}/rec.json`,
    JSON.stringify({ target: "loop", file: "/tmp/up-rec.img", options: { queues: 1 }, flags: ["recovery"] }),
  );
  const r = ublk("up", "rec");
  assert.equal(r.code, 0, r.stderr);
  const [id] = listedIds();
  const state = () =>
    JSON.parse(ublk("list", "-n", String(id), "--json").stdout)[0] as { state: string; daemon_pid: number };
  const dead = state().daemon_pid;
  sh("dd if=/dev/urandom of=/tmp/up-rec-data bs=1M count=2 status=none");
  sh(`dd if=/tmp/up-rec-data of=/dev/ublkb${id} bs=1M oflag=direct status=none`);
  process.kill(dead, "SIGKILL");
  assert.ok(await waitFor(() => state().state === "QUIESCED", 45_000), "QUIESCED after the daemon died");
  const again = ublk("up", "rec");
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`^dev id ${id}: .*\\n.*state LIVE`, "m"));
  assert.notEqual(state().daemon_pid, dead);
  sh(`cmp -n 2097152 /tmp/up-rec-data /dev/ublkb${id}`);
  assert.equal(ublk("down", "rec").code, 0);
  assert.deepEqual(listedIds(), []);
  rmSync(`${DIR}/rec.json`);
});
