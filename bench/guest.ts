// The measuring half of `npm run bench`. Runs where the ublk driver is (inside the VM harness, as
// root): sets up each device in turn (a ublk-ts target, then the kernel driver it is compared with),
// runs all the fio runs against it in one fio process, samples the ublk-ts daemon's CPU time around
// every run, and tears every device down again, whatever happened. Progress goes to stdout as it
// happens; the results end up as one JSON line after RESULT_MARKER, which run.ts turns into the report.
// Exit status: 0 when every device came up and every fio run succeeded, 1 otherwise, 2 on bad flags.
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { ControlDevice } from "../src/ctrl/control.js";
import { featureNames } from "../src/uapi/ublk_cmd.js";
import {
  type BenchOptions,
  type BenchResult,
  BenchUsageError,
  type DeviceConfig,
  deviceConfigs,
  deviceLabel,
  jobsFor,
  LOOP_FILE_MIB,
  median,
  parseOptions,
  QUEUE_DEPTH,
  RAM_DISK_MIB,
  RESULT_MARKER,
  type Row,
  type RunResult,
  USAGE,
  variantLabel,
} from "./common.js";
import { type LiveDevice, setUpPeer, setUpUblk } from "./guest/device.js";
import {
  CLK_TCK,
  cmd,
  daemonLogTail,
  onTeardown,
  readClockTick,
  say,
  teardown,
  teardownErrors,
  teardownMark,
  WORK_DIR,
} from "./guest/exec.js";
import { fioGlobalArgs, measureDevice, type PlannedRun, planRuns } from "./guest/fio.js";
import { NULL_BLK_SETTINGS } from "./guest/kinds/basic.js";
import { GUEST_KINDS } from "./guest/kinds/index.js";

function setUp(c: DeviceConfig, prepareErrors: Map<string, string>): Promise<LiveDevice> {
  const kind = GUEST_KINDS[c.kind];
  if (!kind) throw new Error(`no guest support for device kind ${c.kind}`);
  const failed = prepareErrors.get(c.kind);
  if (failed) throw new Error(failed);
  if (c.impl === "peer") {
    if (!c.peer || !kind.peerTarget) throw new Error(`no peer target for device kind ${c.kind}`);
    return setUpPeer(c, c.peer, kind.peerTarget(c.peer));
  }
  return c.impl === "ublk-ts" ? setUpUblk(c, kind.ublkTarget(c)) : kind.setUpReference(c);
}

const SET_UP_FAILED = "device set-up failed";

/**
 * Brings the device up, runs `runs` on it in one fio, adds each run's result to its job's row (or the
 * row's first error, also to `errors`), and takes the device down again.
 */
async function measureConfig(
  o: BenchOptions,
  c: DeviceConfig,
  runs: PlannedRun[],
  rows: Row[],
  prepareErrors: Map<string, string>,
  errors: string[],
): Promise<void> {
  const name = `${deviceLabel(c)} ${variantLabel(c)}`;
  let d: LiveDevice;
  const mark = teardownMark();
  try {
    d = await setUp(c, prepareErrors);
    say(`${name}: ${d.dev}: ${d.note}`);
  } catch (e) {
    const msg = `${name}: set-up failed: ${(e as Error).message}`;
    say(msg);
    if (c.impl === "ublk-ts") daemonLogTail();
    errors.push(msg);
    for (const row of rows) row.error = SET_UP_FAILED;
    teardown(mark);
    return;
  }
  let results: Map<string, RunResult | Error>;
  try {
    results = await measureDevice(o, runs, d, `${WORK_DIR}/fio`);
  } catch (e) {
    results = new Map(runs.map((p) => [p.id, e as Error]));
  }
  let failed = false;
  for (const row of rows) {
    row.dev = d.dev;
    row.queueCpus = d.queueCpus;
    for (const p of runs.filter((x) => x.job.name === row.job)) {
      const r = results.get(p.id) ?? new Error("no result");
      if (r instanceof Error) {
        row.error ??= r.message;
        const msg = `${name} ${row.job} #${p.rep}: ${r.message.slice(0, 400)}`;
        say(msg);
        errors.push(msg);
        failed = true;
        continue;
      }
      row.runs.push(r);
      const cpu =
        r.daemonCpuUs === undefined ? "" : `, daemon ${(r.daemonCpuUs / r.windowIos!).toFixed(1)} µs/IO`;
      say(
        `  ${row.job} #${p.rep}: ${fmtK(r.iops)} IOPS, ${(r.bwBytes / 1e6).toFixed(1)} MB/s, ` +
          `clat mean ${((r.meanNs ?? Number.NaN) / 1000).toFixed(1)} µs p50 ${(r.p50Ns / 1000).toFixed(1)} µs p99 ${(r.p99Ns / 1000).toFixed(1)} µs${cpu}`,
      );
    }
  }
  if (failed && c.impl === "ublk-ts") daemonLogTail();
  // This device goes before the next one comes up (the loop file stays for the next loop row).
  teardown(mark);
}

const fmtK = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));

function summarize(row: Row): void {
  const rs = row.runs;
  row.iops = median(rs.map((r) => r.iops));
  row.mbps = median(rs.map((r) => r.bwBytes / 1e6));
  row.p50Us = median(rs.map((r) => r.p50Ns / 1000));
  row.p99Us = median(rs.map((r) => r.p99Ns / 1000));
  const means = rs.filter((r) => r.meanNs !== undefined);
  if (means.length > 0) row.meanUs = median(means.map((r) => r.meanNs! / 1000));
  if (row.impl !== "kernel") {
    const per = rs.filter((r) => r.daemonCpuUs !== undefined && r.windowIos);
    if (per.length > 0) row.cpuUsPerIo = median(per.map((r) => r.daemonCpuUs! / r.windowIos!));
  }
}

async function main(argv: string[]): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseOptions(argv);
  } catch (e) {
    if (e instanceof BenchUsageError) {
      if (e.message) process.stderr.write(`bench: ${e.message}\n`);
      process.stderr.write(`${USAGE}\n`);
      return 2;
    }
    throw e;
  }
  const t0 = Date.now();
  const errors: string[] = [];
  if (!existsSync("/dev/ublk-control")) errors.push("no /dev/ublk-control: the ublk driver is not loaded");
  if (process.getuid?.() !== 0) errors.push("needs root");
  const fioVersion = cmd("fio", ["--version"]);
  if (fioVersion.code !== 0) errors.push("fio is not installed");
  readClockTick();
  let features = 0;
  if (errors.length === 0) {
    const ctrl = await ControlDevice.open();
    try {
      features = await ctrl.getFeatures();
    } finally {
      ctrl.close();
    }
  }

  for (const e of errors) say(`cannot run: ${e}`);
  const skipped: string[] = [];
  const configs = deviceConfigs(o).filter((c) => {
    const missing = (c.needs ?? 0) & ~features;
    if (missing)
      skipped.push(
        `${deviceLabel(c)} ${variantLabel(c)}: the driver lacks ${featureNames(missing).join(", ")}`,
      );
    return !missing;
  });
  for (const s of skipped) say(`skipped ${s}`);
  const jobs = jobsFor(o);
  const rows: Row[] = [];
  say(
    `${configs.length} device(s) x ${jobs.length} job(s) x ${o.repeat} run(s) of ${o.rampSec} s ramp + ${o.runtimeSec} s`,
  );
  try {
    if (errors.length === 0) {
      mkdirSync(WORK_DIR, { recursive: true });
      onTeardown(WORK_DIR, () => rmSync(WORK_DIR, { recursive: true, force: true }));
    }
    // Each kind prepares once (the loop file, say); its failure fails that kind's rows only.
    const prepareErrors = new Map<string, string>();
    for (const kind of errors.length === 0 ? new Set(configs.map((c) => c.kind)) : []) {
      try {
        await GUEST_KINDS[kind]?.prepare?.();
      } catch (e) {
        prepareErrors.set(kind, `${kind}: preparing failed: ${(e as Error).message}`);
      }
    }
    // A pass brings every device up once: for all the repeats, or with --interleave one pass per
    // repeat (pass 0: every repeat).
    const plan = planRuns(o, jobs);
    const passes = o.interleave ? Array.from({ length: o.repeat }, (_, i) => i + 1) : [0];
    const perConfig = (errors.length > 0 ? [] : configs).map((c) =>
      jobs.map(
        (job): Row => ({
          kind: c.kind,
          impl: c.impl,
          device: deviceLabel(c),
          queues: c.queues,
          flags: c.flags,
          ...(c.peer ? { peer: c.peer.name } : {}),
          job: job.name,
          runs: [],
        }),
      ),
    );
    for (const pass of errors.length > 0 ? [] : passes) {
      const runs = plan.filter((p) => pass === 0 || p.rep === pass);
      for (const [i, c] of configs.entries()) {
        if (perConfig[i].some((row) => row.error === SET_UP_FAILED)) continue;
        await measureConfig(o, c, runs, perConfig[i], prepareErrors, errors);
      }
    }
    for (const jobRows of perConfig) {
      for (const row of jobRows) if (!row.error) summarize(row);
      rows.push(...jobRows);
    }
  } finally {
    teardown();
  }
  errors.push(...teardownErrors);
  const mem = Math.round(totalmem() / 2 ** 20);
  const result: BenchResult = {
    version: 1,
    options: o,
    settings: {
      fio: `fio ${fioGlobalArgs(o).join(" ")} --rw=RW --bs=BS --iodepth=QD`,
      nullBlk: NULL_BLK_SETTINGS,
      loopFileMiB: LOOP_FILE_MIB,
      ramDiskMiB: RAM_DISK_MIB,
      queueDepth: QUEUE_DEPTH,
    },
    machine: {
      vmCpus: cpus().length,
      vmMemMiB: mem,
      kernel: release(),
      fio: fioVersion.stdout.trim(),
      node: process.version,
      clkTck: CLK_TCK,
      date: new Date().toISOString(),
      where: process.env.UBLK_BENCH_WHERE ?? "host",
    },
    rows,
    skipped,
    errors,
    ok: errors.length === 0,
    elapsedSec: Math.round((Date.now() - t0) / 1000),
  };
  process.stdout.write(`${RESULT_MARKER}${JSON.stringify(result)}\n`);
  say(`done in ${result.elapsedSec} s${errors.length ? `, ${errors.length} error(s)` : ""}`);
  return result.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    teardown();
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
