// Declared devices (/etc/ublk-ts/devices.d/NAME.json): parsing, every error in one line naming the
// file, and the shipped systemd unit.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { declaredNames, entryArgv, parseEntry, readDeclared } from "../../src/cli/devices-file.js";
import { findProgram } from "../../src/host/ensure.js";
import { UBLK_F_USER_RECOVERY, UBLK_F_USER_RECOVERY_REISSUE } from "../../src/uapi/ublk_cmd.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

test("an entry is the add command line: target, id, options, flags, file", () => {
  const entry = {
    target: "loop",
    file: "/var/lib/disk.img",
    id: 3,
    options: { queues: 1, depth: 64, buffered_io: true, logical_block_size: "4K" },
    flags: ["recovery", "recovery_reissue", "supervise"],
  };
  assert.deepEqual(entryArgv("x", entry), [
    "-t",
    "loop",
    "-n",
    "3",
    "--queues",
    "1",
    "--depth",
    "64",
    "--buffered_io",
    "--logical_block_size",
    "4K",
    "--recovery",
    "1",
    "--recovery_reissue",
    "1",
    "--supervise",
    "/var/lib/disk.img",
  ]);
  const d = parseEntry("data", JSON.stringify(entry));
  assert.equal(d.spec.name, "data");
  assert.equal(d.spec.devId, 3);
  assert.equal(d.spec.queues, 1);
  assert.equal(d.spec.depth, 64);
  assert.deepEqual(d.spec.targetOptions, { file: "/var/lib/disk.img", buffered_io: true });
  assert.equal(d.spec.params.logicalBlockSize, 4096);
  assert.equal(d.spec.flags, UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE);
  assert.ok(d.args.flags.has("supervise"));
  assert.equal(parseEntry("n", '{"target":"null"}').spec.devId, -1, "no id: the first free one");
});

test("bad entries are refused in one line that names the file and the problem", () => {
  const bad: [string, RegExp][] = [
    ["{", /^f\.json: not valid JSON/],
    ["[]", /^f\.json: must be a JSON object$/],
    ["{}", /^f\.json: needs "target"/],
    ['{"target":"loop","size":1}', /^f\.json: unknown key 'size'/],
    ['{"target":"null","id":-2}', /^f\.json: "id" must be an integer >= 0/],
    ['{"target":"null","options":{"queue":2}}', /^f\.json: unknown option --queue/],
    ['{"target":"null","options":{"depth":0}}', /^f\.json: --depth 0 is out of range/],
    ['{"target":"null","flags":["fast"]}', /^f\.json: unknown flag "fast"/],
    ['{"target":"ram","options":{"size":"8M"},"flags":["recovery"]}', /^f\.json: a ram disk's data lives/],
    ['{"target":"nope"}', /^f\.json: unknown target 'nope'/],
    ['{"target":"null","options":{"number":2}}', /^f\.json: give number as "id"/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => parseEntry("f", text, "f.json"),
      (e: Error) => re.test(e.message) && !e.message.includes("\n"),
      text,
    );
  }
});

test("the directory: NAME.json files, sorted; an undeclared name is refused", () => {
  const dir = mkdtempSync("/tmp/ublk-ts-decl-");
  try {
    writeFileSync(join(dir, "b.json"), '{"target":"null"}');
    writeFileSync(join(dir, "a.json"), '{"target":"null","options":{"size":"1G"}}');
    writeFileSync(join(dir, "notes.txt"), "not a device");
    mkdirSync(join(dir, "sub.d"));
    assert.deepEqual(declaredNames(dir), ["a", "b"]);
    assert.equal(readDeclared("a", dir).spec.targetOptions.size, "1G");
    assert.throws(() => readDeclared("c", dir), /no device 'c' declared: .*c\.json does not exist/);
    assert.throws(() => readDeclared("../etc/passwd", dir), /not a device name/);
    assert.deepEqual(declaredNames(join(dir, "missing")), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const analyze = findProgram("systemd-analyze");
test("systemd/ublk-ts@.service passes systemd-analyze verify", {
  skip: analyze ? false : "systemd-analyze is not installed (package systemd)",
}, () => {
  const r = spawnSync(analyze as string, ["verify", join(ROOT, "systemd", "ublk-ts@.service")], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), "", "no warnings");
});
