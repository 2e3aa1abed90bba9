// The measuring half of `npm run bench`. Runs where the ublk driver is (inside the VM harness, as
// root): sets up each device in turn (ublk-ts null/loop, null_blk over configfs, the kernel loop
// driver), runs all the fio runs against it in one fio process, samples the ublk-ts daemon's CPU
// time around every run, and tears every device down again, whatever happened. Progress goes to stdout as it happens; the
// results end up as one JSON line after RESULT_MARKER, which run.ts turns into the report.
// Exit status: 0 when every device came up and every fio run succeeded, 1 otherwise, 2 on bad flags.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem } from "node:os";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type BenchOptions,
  type BenchResult,
  BenchUsageError,
  type DeviceConfig,
  deviceConfigs,
  deviceLabel,
  type FioJobSpec,
  jobsFor,
  LOOP_FILE_MIB,
  median,
  NULL_SIZE_MIB,
  parseOptions,
  QUEUE_DEPTH,
  RAM_DISK_MIB,
  RESULT_MARKER,
  type Row,
  type RunResult,
  USAGE,
  variantLabel,
} from "./common.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const NULLB_DIR = "/sys/kernel/config/nullb/nullb-bench";
const WORK_DIR = "/tmp/ublk-bench";
const LOOP_FILE = `${WORK_DIR}/disk.img`;
const DAEMON_LOG = "/run/ublk-ts/ublk-ts.log";

const T0 = Date.now();
const say = (s: string) =>
  process.stdout.write(`[bench ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

interface Cmd {
  code: number;
  stdout: string;
  stderr: string;
}

function cmd(file: string, args: string[], timeoutMs = 120_000): Cmd {
  const r = spawnSync(file, args, { encoding: "utf8", timeout: timeoutMs });
  const code = r.error || r.signal ? -1 : (r.status ?? -1);
  const why = r.error ? ` (${r.error.message})` : r.signal ? ` (signal ${r.signal})` : "";
  return { code, stdout: r.stdout ?? "", stderr: `${r.stderr ?? ""}${why}` };
}

function must(file: string, args: string[], timeoutMs?: number): string {
  const r = cmd(file, args, timeoutMs);
  if (r.code !== 0) {
    const name = file === process.execPath ? "ublk" : basename(file);
    throw new Error(
      `${name} ${args.join(" ")} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}`,
    );
  }
  return r.stdout;
}

const ublk = (...args: string[]) => must(process.execPath, [CLI, ...args]);

// ---- teardown: everything set up registers its undo here, run in reverse, each at most once ----

const undo: { what: string; fn: () => void }[] = [];
const teardownErrors: string[] = [];

/** Undoes the set-up steps newer than `mark` (all of them by default). */
function teardown(mark = 0): void {
  while (undo.length > mark) {
    const u = undo.pop()!;
    try {
      u.fn();
    } catch (e) {
      const msg = `teardown of ${u.what} failed: ${(e as Error).message}`;
      teardownErrors.push(msg);
      say(msg);
    }
  }
}

let currentFio: ChildProcess | undefined;
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    say(`${sig}: stopping, tearing down`);
    currentFio?.kill("SIGKILL");
    teardown();
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

// ---- sampling ----

/** utime+stime of a /proc/PID/stat line, in clock ticks; for a process, all its threads. */
function ticksOf(stat: string): number {
  // Fields after "pid (comm)": state is field 3, utime 14, stime 15 (the comm may hold spaces).
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const t = Number(f[11]) + Number(f[12]);
  if (!Number.isFinite(t)) throw new Error(`cannot read CPU ticks from: ${stat.slice(0, 200)}`);
  return t;
}

const readTicks = (pid: number) => ticksOf(readFileSync(`/proc/${pid}/stat`, "utf8"));

async function waitForNode(dev: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(dev) || !existsSync(`/sys/block/${basename(dev)}`)) {
    if (Date.now() > end) throw new Error(`${dev} did not appear within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- devices ----

interface LiveDevice {
  dev: string;
  daemonPid?: number;
  queueCpus?: number[][];
  note: string;
}

let loopFileError: string | undefined;

/** Creates the loop file once, before any device (so it outlives each loop device's teardown). */
function makeLoopFile(): void {
  const t0 = Date.now();
  // Written in full, so neither driver reads holes.
  must(
    "dd",
    ["if=/dev/zero", `of=${LOOP_FILE}`, "bs=1M", `count=${LOOP_FILE_MIB}`, "conv=fsync", "status=none"],
    600_000,
  );
  say(`${LOOP_FILE}: ${LOOP_FILE_MIB} MiB written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

function needLoopFile(): void {
  if (loopFileError) throw new Error(loopFileError);
}

async function setUpNullBlk(c: DeviceConfig): Promise<LiveDevice> {
  if (!existsSync("/sys/kernel/config/nullb")) {
    throw new Error("no /sys/kernel/config/nullb: null_blk not loaded or configfs not mounted");
  }
  mkdirSync(NULLB_DIR);
  undo.push({
    what: NULLB_DIR,
    fn: () => {
      try {
        writeFileSync(`${NULLB_DIR}/power`, "0");
      } finally {
        rmdirSync(NULLB_DIR);
      }
    },
  });
  const attrs: [string, string][] = [
    ["queue_mode", "2"], // blk-mq
    ["irqmode", "0"], // complete in the submitter's context
    ["size", String(NULL_SIZE_MIB)], // MiB
    ["blocksize", "512"],
    ["submit_queues", String(c.queues)],
    ["hw_queue_depth", String(QUEUE_DEPTH)],
    ["poll_queues", "0"], // default 1: an extra hw queue only polled IO uses; ublk has none
    ["memory_backed", "0"],
    ["power", "1"],
  ];
  for (const [k, v] of attrs) {
    try {
      writeFileSync(`${NULLB_DIR}/${k}`, v);
    } catch (e) {
      throw new Error(`null_blk configfs ${k}=${v}: ${(e as Error).message}`);
    }
  }
  // Since 5.19 the disk takes the configfs directory's name; before, nullb<index>.
  const index = readFileSync(`${NULLB_DIR}/index`, "utf8").trim();
  const names = [basename(NULLB_DIR), `nullb${index}`];
  const end = Date.now() + 10_000;
  const found = () => names.find((n) => existsSync(`/sys/block/${n}`));
  for (; !found(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > end) throw new Error(`null_blk index ${index}: none of /sys/block/{${names}} appeared`);
  }
  const name = found()!;
  const dev = `/dev/${name}`;
  await waitForNode(dev);
  const hwq = readdirSync(`/sys/block/${name}/mq`).length;
  if (hwq !== c.queues) throw new Error(`${dev} has ${hwq} hardware queue(s), asked for ${c.queues}`);
  return { dev, note: `${attrs.map(([k, v]) => `${k}=${v}`).join(" ")}; ${hwq} hw queue(s)` };
}

async function setUpKernelLoop(): Promise<LiveDevice> {
  needLoopFile();
  const dev = must("losetup", ["--direct-io=on", "--find", "--show", LOOP_FILE]).trim();
  undo.push({ what: dev, fn: () => must("losetup", ["-d", dev]) });
  await waitForNode(dev);
  const dio = readFileSync(`/sys/block/${basename(dev)}/loop/dio`, "utf8").trim();
  if (dio !== "1") throw new Error(`${dev}: the loop driver did not take direct IO (loop/dio = ${dio})`);
  return { dev, note: `losetup --direct-io=on ${LOOP_FILE} (dio=1)` };
}

/** brd reloaded with one disk of RAM_DISK_MIB (the boot loaded it with its defaults: 16 small disks). */
async function setUpBrd(): Promise<LiveDevice> {
  if (existsSync("/sys/module/brd")) must("modprobe", ["-r", "brd"]);
  must("modprobe", ["brd", "rd_nr=1", `rd_size=${RAM_DISK_MIB * 1024}`]);
  undo.push({ what: "brd", fn: () => must("modprobe", ["-r", "brd"]) });
  const dev = "/dev/ram0";
  await waitForNode(dev);
  const bytes = Number(readFileSync("/sys/block/ram0/size", "utf8").trim()) * 512;
  if (bytes !== RAM_DISK_MIB * 2 ** 20)
    throw new Error(`${dev} has ${bytes} bytes, asked for ${RAM_DISK_MIB} MiB`);
  return { dev, note: `modprobe brd rd_nr=1 rd_size=${RAM_DISK_MIB * 1024}` };
}

interface ListedDevice {
  dev_id: number;
  daemon_pid: number;
  flags: number;
  state: string;
  queues: { qid: number; tid: number; cpus: number[] }[];
}

async function setUpUblk(c: DeviceConfig): Promise<LiveDevice> {
  const args = ["add", "-t", c.kind];
  if (c.kind === "null") args.push("--size", `${NULL_SIZE_MIB}M`);
  else if (c.kind === "ram") args.push("--size", `${RAM_DISK_MIB}M`);
  else {
    needLoopFile();
    args.push(LOOP_FILE);
  }
  args.push("-q", String(c.queues), "-d", String(QUEUE_DEPTH));
  if (c.getData) args.push("-g");
  const out = ublk(...args);
  const m = /^dev id (\d+): /m.exec(out);
  if (!m) throw new Error(`ublk ${args.join(" ")} printed no "dev id N:" line: ${out.trim()}`);
  const id = m[1];
  undo.push({ what: `ublk device ${id}`, fn: () => ublk("del", "-n", id) });
  const listed = (JSON.parse(ublk("list", "-n", id, "--json")) as ListedDevice[])[0];
  if (listed?.state !== "LIVE") throw new Error(`ublk device ${id} is not LIVE: ${JSON.stringify(listed)}`);
  if (listed.queues.length !== c.queues) {
    throw new Error(`ublk device ${id} lists ${listed.queues.length} queue(s), asked for ${c.queues}`);
  }
  const dev = `/dev/ublkb${id}`;
  await waitForNode(dev);
  readTicks(listed.daemon_pid); // fails now, not mid-run, if the pid is wrong
  const queueCpus = [...listed.queues].sort((a, b) => a.qid - b.qid).map((q) => q.cpus);
  const pins = listed.queues.map((q) => `q${q.qid} tid ${q.tid} cpus ${q.cpus.join(",")}`).join("; ");
  return {
    dev,
    daemonPid: listed.daemon_pid,
    queueCpus,
    note: `ublk ${args.join(" ")}: daemon ${listed.daemon_pid}, flags 0x${listed.flags.toString(16)}; ${pins}`,
  };
}

function setUp(c: DeviceConfig): Promise<LiveDevice> {
  if (c.impl === "ublk-ts") return setUpUblk(c);
  return c.kind === "null" ? setUpNullBlk(c) : c.kind === "loop" ? setUpKernelLoop() : setUpBrd();
}

// ---- fio ----
//
// fio takes seconds just to start under TCG (more when the host is busy), so each device gets ONE
// fio process running all its runs one after the other (stonewall), repeats interleaved (the 1st
// run of every job, then the 2nd...) so that a noisy moment does not hit all runs of one job.
// exec_prerun/exec_postrun snapshot the time, the daemon's CPU ticks and the disk's stat file
// around each run; fio saves their output as <job>.prerun.txt / <job>.postrun.txt in its cwd.

/** fio options shared by every run (the report shows them). */
function fioGlobalArgs(o: BenchOptions): string[] {
  return [
    "--ioengine=io_uring",
    "--direct=1",
    "--time_based",
    `--runtime=${o.runtimeSec}`,
    ...(o.rampSec > 0 ? [`--ramp_time=${o.rampSec}`] : []),
    "--numjobs=1",
    "--thread",
    "--percentile_list=50:99",
    "--randrepeat=0",
    "--norandommap",
  ];
}

interface PlannedRun {
  /** fio job name, also the stem of its prerun/postrun files. */
  id: string;
  job: FioJobSpec;
  rep: number;
}

function planRuns(o: BenchOptions, jobs: readonly FioJobSpec[]): PlannedRun[] {
  const out: PlannedRun[] = [];
  for (let rep = 1; rep <= o.repeat; rep++) {
    jobs.forEach((job, j) => {
      out.push({ id: `r${rep}-j${j}`, job, rep });
    });
  }
  return out;
}

function fioArgs(o: BenchOptions, runs: readonly PlannedRun[], d: LiveDevice, output: string): string[] {
  const files = [
    ...(d.daemonPid === undefined ? [] : [`/proc/${d.daemonPid}/stat`]),
    `/sys/block/${basename(d.dev)}/stat`,
  ];
  // fio runs it with system() (sh -c), appending "> <job>.<prerun|postrun>.txt 2>&1", hence the
  // braces. Shell builtins only: every exec costs a few hundred ms under TCG, twice per run.
  const all = ["/proc/uptime", ...files];
  const hook = `{ ${all.map((f, i) => `read -r l${i} < ${f}`).join("; ")}; echo ${all.map((_, i) => `"$l${i}"`).join(" '|' ")}; }`;
  const args = [`--output=${output}`, "--output-format=json", `--filename=${d.dev}`, ...fioGlobalArgs(o)];
  for (const r of runs) {
    args.push(
      `--name=${r.id}`,
      `--rw=${r.job.rw}`,
      `--bs=${r.job.bs}`,
      `--iodepth=${r.job.iodepth}`,
      "--stonewall",
      `--exec_prerun=${hook}`,
      `--exec_postrun=${hook}`,
    );
  }
  return args;
}

interface FioDir {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { percentile?: Record<string, number> };
}

interface FioJob {
  jobname: string;
  error: number;
  read: FioDir;
  write: FioDir;
}

function runFio(
  args: string[],
  cwd: string,
  timeoutMs: number,
  onLine: (line: string) => void,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn("fio", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    currentFio = child;
    let output = "";
    let carry = "";
    const take = (d: string) => {
      output += d;
      const lines = (carry + d).split("\n");
      carry = lines.pop() ?? "";
      for (const l of lines) onLine(l);
    };
    child.stdout.setEncoding("utf8").on("data", take);
    child.stderr.setEncoding("utf8").on("data", take);
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeoutMs / 1000} s)`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (e) => {
      output += `\n${e.message}`;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      currentFio = undefined;
      if (carry) onLine(carry);
      resolve({ code: code ?? (signal ? 128 : -1), output });
    });
  });
}

interface Snapshot {
  /** /proc/uptime, seconds (10 ms resolution). */
  uptime: number;
  ticks?: number;
  /** Requests completed and sectors moved, reads plus writes. */
  requests: number;
  sectors: number;
}

/** A prerun/postrun file: one line, "/proc/uptime | /proc/PID/stat (ublk-ts only) | disk stat". */
function readSnapshot(path: string, withDaemon: boolean): Snapshot {
  const text = readFileSync(path, "utf8").trim();
  const parts = text.split(" | ");
  const uptime = Number(parts[0]?.split(" ")[0]);
  if (parts.length !== (withDaemon ? 3 : 2) || !Number.isFinite(uptime)) {
    throw new Error(`unexpected ${basename(path)}: ${text.slice(0, 300)}`);
  }
  const f = parts[parts.length - 1].trim().split(/\s+/).map(Number);
  return {
    uptime,
    ticks: withDaemon ? ticksOf(parts[1]) : undefined,
    requests: f[0] + f[4],
    sectors: f[2] + f[6],
  };
}

/** Runs every planned run on the device in one fio; returns each run's result or why it has none. */
async function measureDevice(
  o: BenchOptions,
  runs: readonly PlannedRun[],
  d: LiveDevice,
  dir: string,
): Promise<Map<string, RunResult | Error>> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const output = `${dir}/fio.json`;
  const t0 = Date.now();
  const onLine = (line: string) => {
    if (line.trim()) say(`  fio: ${line}`);
  };
  // Progress: a run has started once fio has written its prerun file.
  let next = 0;
  const progress = setInterval(() => {
    while (next < runs.length && existsSync(`${dir}/${runs[next].id}.prerun.txt`)) {
      const p = runs[next++];
      say(`  run ${next}/${runs.length}: ${p.job.name} #${p.rep}`);
    }
  }, 500);
  const perRun = o.runtimeSec + o.rampSec + 30;
  let r: { code: number; output: string };
  try {
    r = await runFio(fioArgs(o, runs, d, output), dir, (runs.length * perRun + 120) * 1000, onLine);
  } finally {
    clearInterval(progress);
  }
  const wall = (Date.now() - t0) / 1000;
  const tail = () =>
    r.output
      .trim()
      .slice(-600)
      .replace(/\s*\n\s*/g, " | ");
  const results = new Map<string, RunResult | Error>();
  let jobs: FioJob[];
  try {
    // fio's own log lines ("<job> : Saving output of prerun...") come first in the file.
    const text = readFileSync(output, "utf8");
    const start = text.search(/^\{/m);
    jobs = (JSON.parse(start < 0 ? text : text.slice(start)) as { jobs?: FioJob[] }).jobs ?? [];
  } catch (e) {
    const why = `fio exited ${r.code} without a usable JSON report (${(e as Error).message}): ${tail()}`;
    for (const run of runs) results.set(run.id, new Error(why));
    return results;
  }
  const withDaemon = d.daemonPid !== undefined;
  for (const run of runs) {
    const fj = jobs.find((j) => j.jobname === run.id);
    try {
      if (!fj) throw new Error(`fio (exit ${r.code}) reported nothing for it: ${tail()}`);
      if (fj.error !== 0) throw new Error(`fio job error ${fj.error} (exit ${r.code}): ${tail()}`);
      const side = run.job.rw.includes("read") ? fj.read : fj.write;
      if (!(side.total_ios > 0)) throw new Error("fio did no IO");
      const pre = readSnapshot(`${dir}/${run.id}.prerun.txt`, withDaemon);
      const post = readSnapshot(`${dir}/${run.id}.postrun.txt`, withDaemon);
      const pct = side.clat_ns.percentile ?? {};
      const res: RunResult = {
        iops: side.iops,
        bwBytes: side.bw_bytes,
        p50Ns: pct["50.000000"] ?? Number.NaN,
        p99Ns: pct["99.000000"] ?? Number.NaN,
        ios: side.total_ios,
        windowIos: ((post.sectors - pre.sectors) * 512) / run.job.bsBytes,
        windowRequests: post.requests - pre.requests,
        wallSec: post.uptime - pre.uptime,
      };
      if (withDaemon) res.daemonCpuUs = ((post.ticks! - pre.ticks!) * 1e6) / CLK_TCK;
      results.set(run.id, res);
    } catch (e) {
      results.set(run.id, e as Error);
    }
  }
  if (r.code !== 0 && [...results.values()].every((x) => !(x instanceof Error))) {
    for (const run of runs) results.set(run.id, new Error(`fio exited ${r.code}: ${tail()}`));
  }
  const measured = runs.length * (o.runtimeSec + o.rampSec);
  say(`  fio: ${runs.length} run(s) in ${wall.toFixed(0)} s (${measured} s of ramp+runtime)`);
  return results;
}

// ---- main ----

let CLK_TCK = 100;

const fmtK = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0));

function summarize(row: Row): void {
  const rs = row.runs;
  row.iops = median(rs.map((r) => r.iops));
  row.mbps = median(rs.map((r) => r.bwBytes / 1e6));
  row.p50Us = median(rs.map((r) => r.p50Ns / 1000));
  row.p99Us = median(rs.map((r) => r.p99Ns / 1000));
  if (row.impl === "ublk-ts") {
    const per = rs.filter((r) => r.daemonCpuUs !== undefined && r.windowIos);
    if (per.length > 0) row.cpuUsPerIo = median(per.map((r) => r.daemonCpuUs! / r.windowIos!));
  }
}

function daemonLogTail(): void {
  if (!existsSync(DAEMON_LOG)) return;
  const lines = readFileSync(DAEMON_LOG, "utf8").trimEnd().split("\n").slice(-20);
  say(`last lines of ${DAEMON_LOG}:\n${lines.map((l) => `    ${l}`).join("\n")}`);
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
  CLK_TCK = Number(cmd("getconf", ["CLK_TCK"]).stdout.trim()) || 100;

  for (const e of errors) say(`cannot run: ${e}`);
  const configs = deviceConfigs(o);
  const jobs = jobsFor(o);
  const rows: Row[] = [];
  say(
    `${configs.length} device(s) x ${jobs.length} job(s) x ${o.repeat} run(s) of ${o.rampSec} s ramp + ${o.runtimeSec} s`,
  );
  try {
    if (errors.length === 0) {
      mkdirSync(WORK_DIR, { recursive: true });
      undo.push({ what: WORK_DIR, fn: () => rmSync(WORK_DIR, { recursive: true, force: true }) });
    }
    if (errors.length === 0 && configs.some((c) => c.kind === "loop")) {
      try {
        makeLoopFile();
      } catch (e) {
        loopFileError = `loop file: ${(e as Error).message}`;
      }
    }
    for (const c of errors.length > 0 ? [] : configs) {
      const name = `${deviceLabel(c)} ${variantLabel(c)}`;
      const base = {
        kind: c.kind,
        impl: c.impl,
        device: deviceLabel(c),
        queues: c.queues,
        getData: c.getData,
      };
      let d: LiveDevice;
      const mark = undo.length;
      try {
        d = await setUp(c);
        say(`${name}: ${d.dev}: ${d.note}`);
      } catch (e) {
        const msg = `${name}: set-up failed: ${(e as Error).message}`;
        say(msg);
        if (c.impl === "ublk-ts") daemonLogTail();
        errors.push(msg);
        for (const job of jobs)
          rows.push({ ...base, job: job.name, runs: [], error: "device set-up failed" });
        teardown(mark);
        continue;
      }
      const plan = planRuns(o, jobs);
      let results: Map<string, RunResult | Error>;
      try {
        results = await measureDevice(o, plan, d, `${WORK_DIR}/fio`);
      } catch (e) {
        results = new Map(plan.map((p) => [p.id, e as Error]));
      }
      let failed = false;
      for (const job of jobs) {
        const row: Row = { ...base, job: job.name, dev: d.dev, queueCpus: d.queueCpus, runs: [] };
        rows.push(row);
        for (const p of plan.filter((x) => x.job === job)) {
          const r = results.get(p.id) ?? new Error("no result");
          if (r instanceof Error) {
            row.error ??= r.message;
            const msg = `${name} ${job.name} #${p.rep}: ${r.message.slice(0, 400)}`;
            say(msg);
            errors.push(msg);
            failed = true;
            continue;
          }
          row.runs.push(r);
          const cpu =
            r.daemonCpuUs === undefined ? "" : `, daemon ${(r.daemonCpuUs / r.windowIos!).toFixed(1)} µs/IO`;
          say(
            `  ${job.name} #${p.rep}: ${fmtK(r.iops)} IOPS, ${(r.bwBytes / 1e6).toFixed(1)} MB/s, ` +
              `clat p50 ${(r.p50Ns / 1000).toFixed(1)} µs p99 ${(r.p99Ns / 1000).toFixed(1)} µs${cpu}`,
          );
        }
        if (!row.error) summarize(row);
      }
      if (failed && c.impl === "ublk-ts") daemonLogTail();
      // This device goes before the next one comes up (the loop file stays for the next loop row).
      teardown(mark);
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
      nullBlk:
        "configfs queue_mode=2 irqmode=0 size=1024 (MiB) blocksize=512 hw_queue_depth=128 poll_queues=0 memory_backed=0 power=1",
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
