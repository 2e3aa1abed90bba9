// Devices of users without root (add --unprivileged, UBLK_F_UNPRIVILEGED_DEV): user A creates and
// serves one, does IO on it and deletes it; user B can neither control nor open it; root sees whose
// it is. The guest has no udev, so the test does udev's part exactly as the installed rule would:
// the mode the rule gives /dev/ublk-control, and the rule's RUN command (from `ublk udev-install
// --print`) for every ublk node that appears. Users are numeric ids (setpriv), nothing in /etc.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { after, before, test } from "node:test";
import { UBLK_F_UNPRIVILEGED_DEV } from "../../src/uapi/ublk_cmd.js";
import { CLI, daemonPids, deleteAll, needs, type Run, sh, ublk, ublkNodes, waitFor } from "./helpers.js";

const skip = needs(UBLK_F_UNPRIVILEGED_DEV);
const A = 1001;
const B = 1002;
const DIR = "/tmp/ublk-unpriv-a"; // A's, on the guest's tmpfs
const CONTROL = "/dev/ublk-control";

/** argv that runs `argv` as user `uid` (its own group, no others), as a login would. */
const asUser = (uid: number, argv: string[]) => [
  "setpriv",
  `--reuid=${uid}`,
  `--regid=${uid}`,
  "--clear-groups",
  "--",
  ...argv,
];
const userEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/tmp", LANG: "C" };

function runAs(uid: number, argv: string[]): Run {
  const [cmd, ...args] = asUser(uid, argv);
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120_000, env: userEnv, cwd: "/tmp" });
  return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}
const ublkAs = (uid: number, ...args: string[]) => runAs(uid, [process.execPath, CLI, ...args]);
const shAs = (uid: number, line: string) => runAs(uid, ["bash", "-c", line]);

/** Resolves with the run of `ublk ARGS` as `uid`, leaving the event loop free meanwhile. */
function ublkAsAsync(uid: number, ...args: string[]): Promise<Run> {
  const [cmd, ...rest] = asUser(uid, [process.execPath, CLI, ...args]);
  const child = spawn(cmd, rest, { env: userEnv, cwd: "/tmp", stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d;
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

/** One line on stderr starting `ublk: `, and a failure status. */
function refused(r: Run, re: RegExp): void {
  assert.notEqual(r.code, 0, `expected a refusal, got: ${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^ublk: /);
  assert.match(lines[0], re);
}

/** The installed rule, as `ublk udev-install` would write it. */
let rules = "";
/** udev's stand-in: runs the rule's RUN command for every ublk node that appears (once per inode). */
class UdevStandIn {
  readonly results: string[] = [];
  private readonly seen = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private readonly running = new Set<Promise<void>>();
  constructor(private readonly run: string) {
    this.timer = setInterval(() => this.scan(), 50);
  }
  private scan(): void {
    for (const name of readdirSync("/dev")) {
      if (!/^ublk[bc]\d+$/.test(name)) continue;
      let key: string;
      try {
        key = `${name}:${statSync(`/dev/${name}`).ino}`;
      } catch {
        continue;
      }
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      // The rule's words with %k, the kernel's name for the device, filled in.
      const [cmd, ...args] = this.run.split(" ").map((w) => w.replace("%k", name));
      const p = new Promise<void>((resolve) => {
        const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d;
        });
        child.stderr.on("data", (d: Buffer) => {
          out += d;
        });
        child.on("close", (code) => {
          this.results.push(`${name} ${code}: ${out.trim()}`);
          resolve();
        });
      });
      this.running.add(p);
      void p.then(() => this.running.delete(p));
    }
  }
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.running);
  }
}

let udev: UdevStandIn | null = null;

before(() => {
  if (skip) return;
  const r = ublk("udev-install", "--print");
  assert.equal(r.code, 0, r.stderr);
  rules = r.stdout;
  mkdirSync(DIR, { recursive: true });
  chownSync(DIR, A, A);
  chmodSync(DIR, 0o700);
});

after(async () => {
  if (skip) return;
  await udev?.stop();
  deleteAll();
  if (existsSync(CONTROL)) chmodSync(CONTROL, 0o600);
  rmSync(DIR, { recursive: true, force: true });
  for (const uid of [A, B]) rmSync(`/tmp/ublk-ts-${uid}`, { recursive: true, force: true });
});

test("a user creates, serves, uses and deletes a device of their own; another user cannot touch it", {
  skip,
}, async () => {
  const before = ublkNodes();
  // Without the rule /dev/ublk-control is root's alone: one line saying what to install.
  refused(ublkAs(A, "add", "-t", "null", "--unprivileged"), /no access to \/dev\/ublk-control.*udev-install/);

  // The rule's first line: who may open the control device (every user, by default).
  const mode = /^KERNEL=="ublk-control", MODE="(0[0-7]{3})"/m.exec(rules);
  assert.ok(mode, rules);
  chmodSync(CONTROL, Number.parseInt(mode[1], 8));
  const run = /^ACTION!="remove", KERNEL=="ublk\[bc\]\[0-9\]\*", RUN\+="([^"]+)"$/m.exec(rules);
  assert.ok(run, rules);
  udev = new UdevStandIn(run[1]);

  // What the driver does not give an unprivileged device is refused before anything exists.
  refused(ublkAs(A, "add", "-t", "null", "--unprivileged", "-r", "1"), /no user recovery/);
  assert.deepEqual(ublkNodes(), before, "nothing was created");

  const img = `${DIR}/disk.img`;
  assert.equal(shAs(A, `truncate -s 64M ${img}`).code, 0);
  const added = await ublkAsAsync(A, "add", "-t", "loop", "--unprivileged", "-q", "1", img);
  assert.equal(added.code, 0, `${added.stderr}\n${udev.results.join("\n")}`);
  const id = Number(/^dev id (\d+): /m.exec(added.stdout)?.[1]);
  assert.match(added.stdout, new RegExp(`^\\towner: ${A}:${A} \\(unprivileged\\)$`, "m"));
  const bdev = `/dev/ublkb${id}`;
  for (const node of [`/dev/ublkc${id}`, bdev]) {
    const st = statSync(node);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [A, A, 0o600], `${node}: ${udev.results.join("; ")}`);
  }

  // A's IO goes through A's daemon into A's file.
  const io = shAs(
    A,
    `cd ${DIR} && head -c 4M /dev/urandom >data && dd if=data of=${bdev} bs=1M oflag=direct conv=fsync status=none && ` +
      `dd if=${bdev} bs=1M count=4 iflag=direct status=none | cmp - data`,
  );
  assert.equal(io.code, 0, io.stderr);
  sh(`cmp -n 4194304 ${DIR}/data ${img}`);

  const mine = JSON.parse(ublkAs(A, "list", "--json").stdout) as { dev_id: number; owner_uid: number }[];
  assert.deepEqual(
    mine.map((d) => [d.dev_id, d.owner_uid]),
    [[id, A]],
  );

  // B: no control, no recovery, no block device; B's own list does not show A's device.
  const theirs = new RegExp(`belongs to uid ${A}`);
  refused(ublkAs(B, "del", "-n", String(id)), theirs);
  refused(ublkAs(B, "stop", "-n", String(id)), theirs);
  refused(ublkAs(B, "recover", "-n", String(id), "-t", "loop", img), theirs);
  const open = shAs(B, `dd if=${bdev} of=/dev/null bs=4k count=1 status=none`);
  assert.notEqual(open.code, 0);
  assert.match(open.stderr, /Permission denied/);
  const bList = ublkAs(B, "list");
  assert.equal(bList.code, 0, bList.stderr);
  assert.doesNotMatch(bList.stdout, new RegExp(`dev id ${id}:`));
  // Root sees whose device it is, the queues A's daemon saved in A's run directory, and that B's
  // attempts left it serving.
  const listed = ublk("list", "-n", String(id));
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`owner: ${A}:${A} \\(unprivileged\\)`));
  assert.match(listed.stdout, /^\tqueue 0: tid \d+/m);
  assert.match(listed.stdout, /state LIVE/);

  // A deletes it: device, nodes, daemon and saved state all gone.
  const del = ublkAs(A, "del", "-n", String(id));
  assert.equal(del.code, 0, del.stderr);
  assert.ok(await waitFor(() => !existsSync(bdev) && !existsSync(`/dev/ublkc${id}`), 10_000));
  assert.deepEqual(ublkNodes(), before);
  assert.ok(!existsSync(`/tmp/ublk-ts-${A}/${id}.json`), "the saved state is removed");
  assert.ok(await waitFor(() => daemonPids().length === 0, 10_000), `daemons left: ${daemonPids()}`);
});

test("a user's daemon killed outright: no recovery for it, and its owner deletes the device", {
  skip,
}, async () => {
  assert.ok(udev, "runs after the first test");
  const added = await ublkAsAsync(A, "add", "-t", "null", "--unprivileged", "-q", "1", "--size", "64M");
  assert.equal(added.code, 0, added.stderr);
  const id = Number(/^dev id (\d+): /m.exec(added.stdout)?.[1]);
  const pid = Number(/daemon pid (\d+)/.exec(added.stdout)?.[1]);
  assert.equal(shAs(A, `kill -9 ${pid}`).code, 0);
  // Without recovery the driver stops the device when its daemon dies: the disk goes.
  assert.ok(await waitFor(() => !existsSync(`/dev/ublkb${id}`), 30_000));
  refused(
    ublkAs(A, "recover", "-n", String(id)),
    /unprivileged: the driver gives such devices no user recovery/,
  );
  const del = ublkAs(A, "del", "-n", String(id));
  assert.equal(del.code, 0, del.stderr);
  assert.ok(await waitFor(() => ublkNodes().length === 0, 10_000), `left: ${ublkNodes()}`);
  assert.deepEqual(daemonPids(), []);
  await udev.stop();
  assert.ok(
    udev.results.every((r) => / 0: /.test(r)),
    `the rule's helper failed: ${udev.results.join("; ")}`,
  );
});
