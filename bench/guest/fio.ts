// fio for the benchmark: one fio process per device runs all of that device's runs, and hooks
// snapshot the time, the daemon's CPU ticks and the disk's stat file around each run.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { basename } from "node:path";
import type { BenchOptions, FioJobSpec, RunResult } from "../common.js";
import type { LiveDevice } from "./device.js";
import { CLK_TCK, say, setCurrentChild, ticksOf } from "./exec.js";

//
// fio takes seconds just to start under TCG (more when the host is busy), so each device gets ONE
// fio process running all its runs one after the other (stonewall), repeats interleaved (the 1st
// run of every job, then the 2nd...) so that a noisy moment does not hit all runs of one job.
// exec_prerun/exec_postrun snapshot the time, the daemon's CPU ticks and the disk's stat file
// around each run; fio saves their output as <job>.prerun.txt / <job>.postrun.txt in its cwd.

/** fio options shared by every run (the report shows them). */
export function fioGlobalArgs(o: BenchOptions): string[] {
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

export interface PlannedRun {
  /** fio job name, also the stem of its prerun/postrun files. */
  id: string;
  job: FioJobSpec;
  rep: number;
}

export function planRuns(o: BenchOptions, jobs: readonly FioJobSpec[]): PlannedRun[] {
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
    setCurrentChild(child);
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
      setCurrentChild(undefined);
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
export async function measureDevice(
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
