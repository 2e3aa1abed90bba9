// Turns a BenchResult into the console table, the Markdown report and the SVG bar chart of the
// ublk-ts/kernel IOPS ratios (and ublk-ts/peer, for --peer). Pure functions of the result: no I/O here.
import { BENCH_KINDS, type BenchResult, DEVICE_KINDS, JOBS, type Row, variantLabel } from "./common.js";

export interface Ratio {
  ratio: number;
  /** The kernel row it is measured against, e.g. "null_blk q2". */
  vs: string;
}

/**
 * The kernel row a ublk-ts row is compared with: same device kind and job, same queue count when the
 * kernel has that row (null_blk q1/q2), else its only one (the kernel loop driver has one queue).
 */
export function kernelRowFor(rows: readonly Row[], r: Row): Row | undefined {
  const ks = rows.filter((k) => k.impl === "kernel" && k.kind === r.kind && k.job === r.job);
  return ks.find((k) => k.queues === r.queues) ?? (ks.length === 1 ? ks[0] : undefined);
}

/** IOPS against the kernel's driver, for a ublk-ts or a peer row. */
export function ratioFor(rows: readonly Row[], r: Row): Ratio | undefined {
  if (r.impl === "kernel" || r.iops === undefined) return undefined;
  const k = kernelRowFor(rows, r);
  if (!k?.iops) return undefined;
  return { ratio: r.iops / k.iops, vs: `${k.device} ${variantLabel(k)}` };
}

/** Names of the peers in the result, in the order they were measured. */
export function peerNames(rows: readonly Row[]): string[] {
  return [...new Set(rows.flatMap((r) => (r.impl === "peer" && r.peer ? [r.peer] : [])))];
}

/** The peer row a ublk-ts row is compared with: same kind, job and queue count. */
export function peerRowFor(rows: readonly Row[], r: Row, peer: string): Row | undefined {
  return rows.find(
    (p) =>
      p.impl === "peer" && p.peer === peer && p.kind === r.kind && p.job === r.job && p.queues === r.queues,
  );
}

/** ublk-ts IOPS / the peer's IOPS for the same job and queue count (a -g row against the plain peer). */
export function peerRatioFor(rows: readonly Row[], r: Row, peer: string): number | undefined {
  if (r.impl !== "ublk-ts" || r.iops === undefined) return undefined;
  const p = peerRowFor(rows, r, peer);
  return p?.iops ? r.iops / p.iops : undefined;
}

const IMPL_ORDER = { kernel: 0, "ublk-ts": 1, peer: 2 } as const;

const kindOf = (r: Row) => BENCH_KINDS.find((k) => k.kind === r.kind);

/** Rows grouped for reading: device kind, then job, then the kernel row before its ublk-ts rows. */
export function orderedRows(rows: readonly Row[]): Row[] {
  const jobIndex = (j: string) => JOBS.findIndex((x) => x.name === j);
  const peers = peerNames(rows);
  const key = (r: Row) => [
    DEVICE_KINDS.indexOf(r.kind),
    jobIndex(r.job),
    kindOf(r)?.referencePerQueues ? r.queues : 0, // null_blk has a row per queue count; others one
    r.impl === "kernel" ? 0 : 1,
    r.queues,
    IMPL_ORDER[r.impl],
    r.impl === "peer"
      ? peers.indexOf(r.peer ?? "")
      : (kindOf(r)?.variants.findIndex((v) => v.flags.join(" ") === r.flags.join(" ")) ?? 0),
  ];
  return [...rows].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
    return 0;
  });
}

const num = (n: number | undefined, digits = 0) =>
  n === undefined || !Number.isFinite(n) ? "-" : n.toFixed(digits);
const lat = (us: number | undefined) => (us === undefined ? "-" : num(us, us < 100 ? 1 : 0));
const fmtRatio = (x: number) => x.toFixed(x < 0.1 ? 3 : 2);
// Per-IO daemons: a thread each (t0, t1, ...) rather than a queue each.
const pins = (r: Row) => {
  const p = r.flags.includes("--per_io_tasks") ? "t" : "q";
  return r.queueCpus ? r.queueCpus.map((c, q) => `${p}${q}:${c.join(",")}`).join(" ") : "";
};

/** Columns: the fixed ones, then one "ts/PEER" ratio column per peer, then the queue CPUs. */
export function header(rows: readonly Row[]): { names: string[]; right: boolean[] } {
  const peers = peerNames(rows).map((p) => `ts/${p}`);
  const names = ["device", "variant", "job", "IOPS", "MB/s", "mean µs", "p50 µs", "p99 µs", "CPU µs/IO"];
  names.push("vs kernel", ...peers, "queue CPUs");
  const right = names.map((_, i) => i >= 3 && i < names.length - 1);
  return { names, right };
}

function cells(rows: readonly Row[]): string[][] {
  const peers = peerNames(rows);
  return orderedRows(rows).map((r) => {
    const rat = ratioFor(rows, r);
    if (r.error) {
      return [
        r.device,
        variantLabel(r),
        r.job,
        "FAILED",
        "",
        "",
        "",
        "",
        "",
        "",
        ...peers.map(() => ""),
        pins(r),
      ];
    }
    return [
      r.device,
      variantLabel(r),
      r.job,
      num(r.iops),
      num(r.mbps, 1),
      lat(r.meanUs),
      lat(r.p50Us),
      lat(r.p99Us),
      r.impl !== "kernel" ? num(r.cpuUsPerIo, 1) : "",
      rat ? fmtRatio(rat.ratio) : "",
      ...peers.map((p) => {
        const x = peerRatioFor(rows, r, p);
        return x === undefined ? "" : fmtRatio(x);
      }),
      pins(r),
    ];
  });
}

/** The table for the console: aligned columns, a blank line between device kinds and jobs. */
export function textTable(res: BenchResult): string {
  const body = cells(res.rows);
  const ordered = orderedRows(res.rows);
  const { names, right } = header(res.rows);
  const width = names.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (row: string[]) =>
    row
      .map((c, i) => (right[i] ? c.padStart(width[i]) : c.padEnd(width[i])))
      .join("  ")
      .trimEnd();
  const out = [line(names), width.map((w) => "-".repeat(w)).join("  ")];
  body.forEach((row, i) => {
    const prev = ordered[i - 1];
    if (prev && (prev.kind !== ordered[i].kind || prev.job !== ordered[i].job)) out.push("");
    out.push(line(row));
  });
  return `${out.join("\n")}\n`;
}

function mdTable(res: BenchResult): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const { names, right } = header(res.rows);
  const out = [`| ${names.join(" | ")} |`, `| ${right.map((r) => (r ? "---:" : "---")).join(" | ")} |`];
  for (const row of cells(res.rows)) out.push(`| ${row.map(esc).join(" | ")} |`);
  return out.join("\n");
}

export function markdown(res: BenchResult): string {
  const o = res.options;
  const m = res.machine;
  const mode = o.smoke ? "smoke run (CI check, not a measurement)" : "full run";
  const lines = [
    "# ublk-ts benchmark",
    "",
    `${mode}, ${m.date}${o.only ? `, only the ${o.only} pair` : ""}. Generated by \`npm run bench${
      o.smoke ? " -- --smoke" : ""
    }\`; do not edit.`,
    "",
    "## Machine",
    "",
    `- host CPU: ${m.hostCpu ?? "unknown"}${m.hostCpus ? ` (${m.hostCpus} CPUs)` : ""}`,
    `- where: ${m.where}, ${m.vmCpus} vCPUs, ${m.vmMemMiB} MiB`,
    `- kernel: ${m.kernel}`,
    `- ${m.fio}, node ${m.node}`,
    "",
    "## Settings",
    "",
    `- each job: ${o.rampSec} s ramp + ${o.runtimeSec} s measured, ${o.repeat} run(s), median reported`,
    o.interleave
      ? `- fio: \`${res.settings.fio}\`; interleaved (--interleave): each repeat brings every device up anew, one after the other, and runs each job once on it in one fio process (stonewall)`
      : `- fio: \`${res.settings.fio}\`; all runs on a device go through one fio process, one after the other (stonewall), the repeats interleaved (every job once, then again)`,
    `- ublk-ts: \`ublk add -t null --size 1G -q Q -d ${res.settings.queueDepth} [-g]\`, \`ublk add -t loop FILE -q Q -d ${res.settings.queueDepth}\``,
    `- null_blk: ${res.settings.nullBlk}, submit_queues = Q`,
    ...(o.peers ?? []).map(
      (p) =>
        `- peer ${p.name}: \`${p.path} add -t null|loop -q Q -d ${res.settings.queueDepth}\` (${p.dialect}'s syntax)`,
    ),
    `- loop: a ${res.settings.loopFileMiB} MiB file on the guest's tmpfs, written in full with dd; the kernel loop driver via \`losetup --direct-io=on\`, ublk-ts loop with O_DIRECT (the file has no holes, so it serves IO through its mapping: \`mapped_reads\` in \`ublk list -v\`)`,
    ...(res.settings.ramDiskMiB
      ? [
          `- ram: \`ublk add -t ram --size ${res.settings.ramDiskMiB}M -q Q -d ${res.settings.queueDepth} -g\` (the ram target always runs with NEED_GET_DATA) vs \`modprobe brd rd_nr=1 rd_size=${res.settings.ramDiskMiB * 1024}\``,
        ]
      : []),
    `- whole run: ${res.elapsedSec} s in the guest${res.wallSec ? `, ${res.wallSec} s with the VM boot` : ""}`,
    "",
    "## Results",
    "",
    ...(m.where.includes("TCG")
      ? [
          "Under qemu TCG every instruction is emulated (no KVM): absolute numbers are far below native and",
          "swing with the host's load; the ublk-ts/kernel ratios are what to compare between runs.",
          "",
        ]
      : []),
    mdTable(res),
    "",
    "- IOPS, MB/s (10^6 bytes/s): fio's, after the ramp; mean, p50, p99: fio's completion latency (clat) mean and percentiles.",
    "- CPU µs/IO: the serving daemon's utime+stime (all its threads; ublk-ts and peers) over the whole fio run, ramp included, " +
      "divided by the job-sized IOs the device moved in that window (/sys/block/DEV/stat sectors).",
    "- vs kernel: IOPS / kernel IOPS for the same job: against null_blk with the same queue count, " +
      "against the kernel loop driver (one queue) for both loop rows, and against brd for both ram rows.",
    ...peerNames(res.rows).map(
      (p) =>
        `- ts/${p}: ublk-ts IOPS / ${p} IOPS, same job and queue count, measured in the same boot (\`--peer\`).`,
    ),
    "- queue CPUs: the CPUs each ublk-ts queue thread is pinned to (`ublk list --json`).",
    "- fio submits from one thread, so at any moment a 2-queue device gets its IO through the one hardware queue mapped to that thread's CPU.",
    "",
  ];
  if (res.errors.length > 0) {
    lines.push("## Errors", "", ...res.errors.map((e) => `- ${e.replace(/\n/g, " ")}`), "");
  }
  return lines.join("\n");
}

const xml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const COLORS: Record<string, string> = {
  q1: "#4e79a7",
  "q1 -g": "#a0cbe8",
  q2: "#f28e2b",
  "q2 -g": "#ffbe7d",
};

/** A horizontal bar per ublk-ts row: its IOPS ratio to the kernel, with a line at 1.0. */
export function svg(res: BenchResult): string {
  const bars = orderedRows(res.rows)
    .filter((r) => r.impl !== "kernel")
    .map((r) => ({ r, rat: ratioFor(res.rows, r) }));
  const maxRatio = Math.max(1, ...bars.map((b) => b.rat?.ratio ?? 0)) * 1.08;
  const W = 900;
  const labelW = 300;
  const plotW = W - labelW - 70;
  const barH = 16;
  const gap = 4;
  const groupGap = 12;
  const top = 56;
  const x = (v: number) => labelW + (v / maxRatio) * plotW;
  const parts: string[] = [];
  let y = top;
  let prev: Row | undefined;
  for (const { r, rat } of bars) {
    if (prev && (prev.kind !== r.kind || prev.job !== r.job)) y += groupGap;
    if (!prev || prev.kind !== r.kind || prev.job !== r.job) {
      parts.push(`<text x="8" y="${y + barH - 4}" font-weight="bold">${xml(`${r.kind}: ${r.job}`)}</text>`);
    }
    const v = variantLabel(r);
    const label = r.impl === "peer" ? `${r.peer} ${v}` : v;
    parts.push(`<text x="${labelW - 8}" y="${y + barH - 4}" text-anchor="end">${xml(label)}</text>`);
    if (rat) {
      const w = Math.max(1, x(rat.ratio) - labelW);
      parts.push(
        `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${r.impl === "peer" ? "#bab0ac" : (COLORS[v] ?? "#888")}">` +
          `<title>${xml(`${r.device} ${v} ${r.job}: ${rat.ratio.toFixed(3)} x ${rat.vs}`)}</title></rect>`,
      );
      parts.push(
        `<text x="${(labelW + w + 4).toFixed(1)}" y="${y + barH - 4}">${fmtRatio(rat.ratio)}</text>`,
      );
    } else {
      parts.push(
        `<text x="${labelW + 4}" y="${y + barH - 4}" fill="#c00">${r.error ? "failed" : "no kernel row"}</text>`,
      );
    }
    y += barH + gap;
    prev = r;
  }
  const bottom = y + 8;
  const one = x(1);
  const o = res.options;
  const title = `IOPS / kernel IOPS (null vs null_blk, loop vs kernel loop; grey: other ublk servers)`;
  const sub = `${o.smoke ? "SMOKE RUN, " : ""}median of ${o.repeat} x ${o.runtimeSec} s, ${res.machine.where}, ${res.machine.vmCpus} vCPUs, ${res.machine.kernel}, ${res.machine.date.slice(0, 10)}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${bottom + 20}" viewBox="0 0 ${W} ${bottom + 20}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="8" y="20" font-size="15" font-weight="bold">${xml(title)}</text>`,
    `<text x="8" y="38" fill="#555">${xml(sub)}</text>`,
    ...parts,
    `<line x1="${one.toFixed(1)}" y1="${top - 6}" x2="${one.toFixed(1)}" y2="${bottom}" stroke="#333" stroke-dasharray="4 3"/>`,
    `<text x="${one.toFixed(1)}" y="${bottom + 14}" text-anchor="middle" fill="#333">kernel = 1.0</text>`,
    `<line x1="${labelW}" y1="${top - 6}" x2="${labelW}" y2="${bottom}" stroke="#999"/>`,
    "</svg>",
    "",
  ].join("\n");
}
