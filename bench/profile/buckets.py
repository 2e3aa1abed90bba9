#!/usr/bin/env python3
# Turns a qd1-perf.sh recording into microseconds per IO by bucket, on the host (perf report under TCG
# is slow): the whole machine's cpu-clock samples (idle CPUs included, as "idle") split into the
# daemon's queue thread (kernel, JIT-compiled JS, V8/node runtime, the N-API addon, libc), the daemon's
# other threads, fio (kernel, user) and the rest. Each sample is 1/FREQ s of one vCPU; divided by the
# requests the device completed in the window.
# usage: buckets.py OUT NAME DAEMON_PID QUEUE_TIDS(comma-separated) REQUESTS FREQ
import collections
import subprocess
import sys

d, name, pid, qtids, reqs, freq = sys.argv[1:7]
qtids = set(qtids.split(",")) if qtids else set()
out = subprocess.run(["perf", "script", "-i", f"{d}/{name}.perf.data", f"--kallsyms={d}/kallsyms", "-F", "comm,pid,tid,ip,dso"],
                     capture_output=True, text=True).stdout
c = collections.Counter()
for line in out.splitlines():
    p = line.split()
    if len(p) < 3: continue
    comm = p[0]; pt = p[1]; dso = p[-1].strip("()")
    if comm.startswith("perf"): comm = "perf"
    pp, tt = pt.split("/") if "/" in pt else (pt, pt)
    if comm == "swapper": c["idle"] += 1; continue
    if pp == pid:
        who = "queue thread" if (tt in qtids or not qtids) else "daemon other threads"
        if "kernel" in dso or "ublk_drv" in dso: what = "kernel"
        elif "JIT" in dso or "perf-" in dso: what = "JS (JIT)"
        elif "ublk_native" in dso: what = "N-API addon"
        elif dso.endswith("/node") or dso == "node": what = "node/V8 runtime"
        else: what = "libc/other"
        c[f"{who}: {what}"] += 1
    elif comm == "fio": c["fio: " + ("kernel" if "kernel" in dso else "user")] += 1
    else: c["other: " + comm.split("/")[0][:12]] += 1
tot = sum(c.values()); per = 1e6 / float(freq) / int(reqs)
print(f"{name}: {tot} samples at {freq} Hz, {reqs} requests; us per IO (2 vCPUs):")
for k, v in sorted(c.items()):
    print(f"  {k:40s} {v:6d}  {v*per:8.1f}")
