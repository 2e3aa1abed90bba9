// The host side of unprivileged devices: the path every control command on such a device carries,
// the per-user run directory, the refusals of `add --unprivileged`, and the udev rule it installs.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { udevRules } from "../../src/cli/commands/udev-install.js";
import { runDirFor } from "../../src/cli/run-dir.js";
import { specFromArgs } from "../../src/cli/spec.js";
import { udevWithoutNodeRule } from "../../src/cli/unprivileged.js";
import { devPathPrefix, refusalReason } from "../../src/ctrl/access.js";
import { UblkError } from "../../src/ctrl/errors.js";

test("a command on an unprivileged device starts with /dev/ublkcN and its NUL, padded to 8 bytes", () => {
  const p = devPathPrefix(7);
  assert.equal(p.length, 16);
  assert.equal(Buffer.from(p).toString("latin1"), "/dev/ublkc7\0\0\0\0\0");
  assert.equal(devPathPrefix(1234567).length, 24); // "/dev/ublkc1234567" is 17 bytes, 18 with the NUL
});

test("daemons keep their files in root's /run/ublk-ts, or in a directory of the user's own", () => {
  assert.equal(runDirFor(0, {}), "/run/ublk-ts");
  const other = 54321;
  const expected = existsSync(`/run/user/${other}`) ? `/run/user/${other}/ublk-ts` : `/tmp/ublk-ts-${other}`;
  assert.equal(runDirFor(other, {}), expected);
  // Another user's XDG_RUNTIME_DIR is not ours to know: it only counts for this process's own user.
  assert.equal(runDirFor(other, { XDG_RUNTIME_DIR: "/nonexistent" }), expected);
  const me = process.getuid?.() ?? 0;
  assert.equal(runDirFor(me, { UBLK_TS_RUN_DIR: "/somewhere" }), "/somewhere");
});

test("add --unprivileged refuses what the driver does not give such devices, in one line", () => {
  const refuse = (line: string, re: RegExp) => {
    assert.throws(
      () => specFromArgs(parseArgs(line.split(" "))),
      (e: unknown) => e instanceof UsageError && re.test(e.message) && !e.message.includes("\n"),
    );
  };
  refuse("-t null --unprivileged -r 1", /no user recovery/);
  refuse("-t null --unprivileged -i", /no user recovery/);
  refuse("-t loop --unprivileged -u /tmp/x", /no user copy or zero copy/);
  refuse("-t loop --unprivileged -z /tmp/x", /no user copy or zero copy/);
  refuse("-t zoned --unprivileged --size 1G", /zoned target needs user copy/);
  refuse("-t null --unprivileged --metadata_size 8", /integrity metadata needs user copy/);
  if (process.getuid?.() === 0) refuse("-t null --unprivileged", /makes root's devices privileged/);
});

test("the driver's refusals say whose device it is and what to do", () => {
  assert.match(refusalReason(3, "EPERM", "STOP_DEV"), /created by root .*only root/);
  assert.match(refusalReason(-1, "EPERM", "ADD_DEV"), /add --unprivileged/);
  assert.match(refusalReason(-1, "EACCES", "ADD_DEV"), /ublks_max/);
  const e = new UblkError(
    "DEL_DEV",
    13,
    3,
    "device 3 belongs to uid 1001: only its owner or root may use it",
  );
  assert.equal(
    e.message,
    "ublk DEL_DEV for device 3 failed: EACCES (device 3 belongs to uid 1001: only its owner or root may use it)",
  );
  assert.equal(new UblkError("GET_DEV_INFO2", 95, 1).code, "EOPNOTSUPP");
});

test("add --unprivileged is refused where udev runs without a rule for ublk nodes", () => {
  const dir = mkdtempSync(join(tmpdir(), "ublk-rules-"));
  try {
    const control = join(dir, "control");
    assert.equal(udevWithoutNodeRule([dir], control), false, "no udev: not ours to judge");
    writeFileSync(control, "");
    writeFileSync(join(dir, "50-other.rules"), 'KERNEL=="ublk-control", MODE="0666"\n');
    assert.equal(udevWithoutNodeRule([dir], control), true);
    writeFileSync(join(dir, "99-ublk-ts.rules"), udevRules({ node: "/usr/bin/node", helper: "/h.js" }));
    assert.equal(udevWithoutNodeRule([dir], control), false);
    rmSync(join(dir, "99-ublk-ts.rules"));
    writeFileSync(join(dir, "90-ublksrv.rules"), 'KERNEL=="ublk[bc]*",RUN+="/usr/local/sbin/x %k"\n');
    assert.equal(udevWithoutNodeRule([dir], control), false, "ublksrv's rule does the same job");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the udev rule opens /dev/ublk-control and hands users' nodes to them through the helper", () => {
  const all = udevRules({ node: "/usr/bin/node", helper: "/opt/ublk-ts/dist/src/cli/udev-owner.js" });
  assert.doesNotMatch(all, /@[A-Z_]+@/);
  assert.match(all, /^KERNEL=="ublk-control", MODE="0666", OPTIONS\+="static_node=ublk-control"$/m);
  assert.match(
    all,
    /^ACTION!="remove", KERNEL=="ublk\[bc\]\[0-9\]\*", RUN\+="\/usr\/bin\/node \/opt\/ublk-ts\/dist\/src\/cli\/udev-owner\.js %k"$/m,
  );
  const group = udevRules({ group: "ublk", node: "/usr/bin/node", helper: "/h.js" });
  assert.match(group, /^KERNEL=="ublk-control", GROUP="ublk", MODE="0660", /m);
  assert.throws(
    () => udevRules({ node: "/my node/bin/node", helper: "/h.js" }),
    /absolute path without spaces/,
  );
  assert.throws(() => udevRules({ group: 'x" RUN+="/bin/evil' }), /not a group name/);
  // By default the rule runs this very node and the helper shipped beside the CLI.
  const mine = udevRules();
  const helper = fileURLToPath(new URL("../../src/cli/udev-owner.js", import.meta.url));
  assert.ok(mine.includes(`RUN+="${process.execPath} ${helper} %k"`), mine);
  assert.ok(existsSync(helper), "the helper is built next to the CLI");
});
