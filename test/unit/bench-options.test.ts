// The benchmark's flags (--peer, --jobs, --queues) and the report's ratio columns against peers.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type BenchResult,
  BenchUsageError,
  deviceConfigs,
  estimateSeconds,
  jobsFor,
  optionsToArgs,
  parseOptions,
  type Row,
} from "../../bench/common.js";
import { parsePeer, parsePeerAdd, peerLoopTarget } from "../../bench/peers.js";
import { header, peerRatioFor, ratioFor, textTable } from "../../bench/report.js";

describe("bench --peer", () => {
  it("names a peer after its binary, or as told, and picks its command-line dialect", () => {
    assert.deepEqual(parsePeer("/opt/ublksrv/ublk"), {
      name: "ublksrv",
      path: "/opt/ublksrv/ublk",
      dialect: "ublksrv",
    });
    assert.deepEqual(parsePeer("/x/kublk"), { name: "kublk", path: "/x/kublk", dialect: "kublk" });
    assert.deepEqual(parsePeer("c=/x/kublk"), { name: "c", path: "/x/kublk", dialect: "kublk" });
    assert.equal(parsePeer("srv=/a=b/ublk").path, "/a=b/ublk");
    assert.deepEqual(peerLoopTarget(parsePeer("/x/kublk"), "/f"), ["-t", "loop", "/f"]);
    assert.deepEqual(peerLoopTarget(parsePeer("/x/ublk"), "/f"), ["-t", "loop", "-f", "/f"]);
  });

  it("takes --peer PATH, --peer=PATH and NAME=PATH, repeated, and passes them on to the guest", () => {
    const o = parseOptions(["--peer", "/p/ublk", "--peer=kublk=/k/kublk", "--runtime=6", "--only", "null"]);
    assert.deepEqual(
      o.peers?.map((p) => p.name),
      ["ublksrv", "kublk"],
    );
    assert.deepEqual(o.only, ["null"]);
    const again = parseOptions(optionsToArgs(o));
    assert.deepEqual(again.peers, o.peers);
    assert.equal(again.runtimeSec, 6);
  });

  it("refuses a missing value, a clashing name and a bad name", () => {
    assert.throws(() => parseOptions(["--peer"]), BenchUsageError);
    assert.throws(() => parseOptions(["--peer", "--smoke"]), BenchUsageError);
    assert.throws(() => parseOptions(["--peer", "/a/ublk", "--peer", "/b/ublk"]), /two peers named ublksrv/);
    assert.throws(() => parseOptions(["--peer", "ublk-ts=/a/ublk"]), /taken/);
    assert.throws(() => parseOptions(["--peer", "/a/my server"]), BenchUsageError);
  });

  it("adds a peer row per queue count for null and loop, none for ram", () => {
    const o = parseOptions(["--peer", "/p/ublk", "--queues=1"]);
    const peers = deviceConfigs(o).filter((c) => c.impl === "peer");
    assert.deepEqual(
      peers.map((c) => `${c.kind} q${c.queues} ${c.peer?.name}`),
      ["null q1 ublksrv", "loop q1 ublksrv"],
    );
    assert.equal(deviceConfigs(parseOptions(["--smoke"])).filter((c) => c.impl === "peer").length, 0);
  });

  it("reads the device id and daemon pid both servers print after add", () => {
    const out =
      "dev id 3: nr_hw_queues 1 queue_depth 128 block size 512 dev_capacity 2097152\n" +
      "\tmax rq size 524288 daemon pid 412 flags 0x42 state LIVE\n";
    assert.deepEqual(parsePeerAdd(out), { id: 3, pid: 412 });
    assert.equal(parsePeerAdd("nothing"), undefined);
  });
});

describe("bench --interleave", () => {
  it("is passed on to the guest, costs a set-up per repeat, and is no smoke flag", () => {
    const base = ["--only=null", "--repeat=3", "--runtime=5"];
    const o = parseOptions([...base, "--interleave"]);
    assert.equal(o.interleave, true);
    assert.equal(parseOptions(optionsToArgs(o)).interleave, true);
    assert.equal(parseOptions(base).interleave, undefined);
    assert.ok(estimateSeconds(o) > estimateSeconds(parseOptions(base)));
    assert.throws(() => parseOptions(["--smoke", "--interleave"]), BenchUsageError);
    assert.throws(() => parseOptions(["--interleave=1"]), BenchUsageError);
  });
});

describe("bench --jobs, --queues", () => {
  it("selects jobs by id and queue counts", () => {
    const o = parseOptions(["--jobs=rr-qd1,rr-qd64", "--queues=2"]);
    assert.deepEqual(
      jobsFor(o).map((j) => j.name),
      ["4k randread qd1", "4k randread qd64"],
    );
    assert.ok(deviceConfigs(o).every((c) => c.queues === 2));
    assert.throws(() => parseOptions(["--jobs=nope"]), BenchUsageError);
    assert.throws(() => parseOptions(["--queues=0"]), BenchUsageError);
    assert.throws(() => parseOptions(["--smoke", "--queues=1"]), /smoke/);
  });
});

describe("bench per-IO daemon rows", () => {
  const perIo = (argv: string[]) =>
    deviceConfigs(parseOptions(argv))
      .filter((c) => c.flags.includes("--per_io_tasks"))
      .map((c) => `${c.kind} q${c.queues} ${c.flags.join(" ")}`);

  it("measure null and loop with 1 queue on 2 threads, never in --smoke", () => {
    assert.deepEqual(perIo([]), [
      "null q1 --nthreads 2 --per_io_tasks",
      "loop q1 --nthreads 2 --per_io_tasks",
    ]);
    assert.deepEqual(perIo(["--smoke"]), []);
    assert.deepEqual(perIo(["--queues=2"]), []);
  });

  it("--variants keeps the kernel references and only the ublk-ts rows named", () => {
    const o = parseOptions(["--only=null", "--queues=1", "--variants", "plain,per_io_tasks"]);
    assert.deepEqual(
      deviceConfigs(o).map((c) => `${c.impl} ${c.flags.join(" ")}`.trim()),
      ["kernel", "ublk-ts", "ublk-ts --nthreads 2 --per_io_tasks"],
    );
    assert.deepEqual(parseOptions(optionsToArgs(o)).variants, ["plain", "per_io_tasks"]);
    assert.throws(() => parseOptions(["--smoke", "--variants=plain"]), /smoke/);
  });
});

describe("bench report with peers", () => {
  const row = (impl: Row["impl"], iops: number, extra: Partial<Row> = {}): Row => ({
    kind: "null",
    impl,
    device: impl,
    queues: 1,
    flags: [],
    job: "4k randread qd1",
    runs: [],
    iops,
    mbps: 1,
    p50Us: 100,
    p99Us: 200,
    meanUs: 150,
    ...extra,
  });
  const rows = [
    row("kernel", 4000),
    row("ublk-ts", 1000),
    row("peer", 2000, { peer: "ublksrv", device: "ublksrv null" }),
    row("peer", 500, { peer: "kublk", device: "kublk null" }),
  ];

  it("divides ublk-ts by each peer of the same job and queue count, and peers by the kernel", () => {
    assert.equal(peerRatioFor(rows, rows[1], "ublksrv"), 0.5);
    assert.equal(peerRatioFor(rows, rows[1], "kublk"), 2);
    assert.equal(peerRatioFor(rows, { ...rows[1], queues: 2 }, "kublk"), undefined);
    assert.equal(ratioFor(rows, rows[2])?.ratio, 0.5);
    assert.deepEqual(header(rows).names.slice(5, 12), [
      "mean µs",
      "p50 µs",
      "p99 µs",
      "CPU µs/IO",
      "vs kernel",
      "ts/ublksrv",
      "ts/kublk",
    ]);
  });

  it("prints the mean latency and the peer ratios in the table", () => {
    const res = { rows } as unknown as BenchResult;
    const lines = textTable(res).split("\n");
    const ts = lines.find((l) => l.startsWith("ublk-ts"));
    assert.match(ts ?? "", /150\s+100\s+200\s+-\s+0\.25\s+0\.50\s+2\.00/);
    assert.ok(lines.findIndex((l) => l.startsWith("ublksrv")) > lines.indexOf(ts ?? ""));
  });
});
