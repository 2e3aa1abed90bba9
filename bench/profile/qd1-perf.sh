#!/bin/bash
# Where a queue-depth-1 IO's time goes, per server: run in the guest as root (npm run vm -- 'bash
# bench/profile/qd1-perf.sh [PEER_CLI...]'). For ublk-ts null and each peer's null target (1 queue,
# depth 128) it runs fio 4k randread qd1 under `perf record -a` (cpu-clock, so idle CPUs are sampled
# too) and prints: fio's IOPS and clat mean, the daemon's CPU time per IO, and the samples of the whole
# machine split by command and DSO, which bench/NOTES.md turns into microseconds per IO.
# Env: RUNTIME (s, default 6), WARM (s of unmeasured qd1 IO first, default 5), FREQ (Hz, default 250: more makes TCG crawl), MODE=perf|strace (strace
# -c -f on the daemon), OUT (default /tmp/ublk-profile; a host path keeps perf.data, the guest's
# kallsyms and V8's perf maps for `perf report --kallsyms=OUT/kallsyms -i OUT/NAME.perf.data` on the host).
set -u
RUNTIME=${RUNTIME:-6}
FREQ=${FREQ:-250}
MODE=${MODE:-perf}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UBLK="node $ROOT/dist/src/cli/main.js"
OUT=${OUT:-/tmp/ublk-profile}
mkdir -p $OUT
PERF=perf

ticks() { # utime+stime of a process, in clock ticks
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' /proc/$1/stat
}

measure() { # NAME DEV PID
  local name=$1 dev=$2 pid=$3
  local fio=(fio --name=qd1 --filename=$dev --ioengine=io_uring --direct=1 --rw=randread --bs=4k
    --iodepth=1 --time_based --runtime=$RUNTIME --ramp_time=2 --randrepeat=0 --norandommap
    --output-format=json --output=$OUT/$name.fio.json)
  local t0 r0 t1 r1
  # Warm up first (V8 compiles the hot path over the first seconds, a CPU-second or more under TCG).
  fio --name=warm --filename=$dev --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=1 \
    --time_based --runtime=${WARM:-5} --randrepeat=0 --norandommap >/dev/null 2>&1
  t0=$(ticks $pid); r0=$(awk '{print $1}' /sys/block/$(basename $dev)/stat)
  if [ "$MODE" = strace ]; then
    strace -c -f -p $pid -o $OUT/$name.strace 2>/dev/null &
    local st=$!
    sleep 1
    "${fio[@]}" >/dev/null 2>&1
    kill -INT $st; wait $st 2>/dev/null
  else
    $PERF record -q -F $FREQ -a -o $OUT/$name.perf.data -- "${fio[@]}" >/dev/null 2>&1
  fi
  t1=$(ticks $pid); r1=$(awk '{print $1}' /sys/block/$(basename $dev)/stat)
  node -e '
    const j = require(process.argv[1]).jobs[0].read;
    const [name, dt, dr, hz, rt] = process.argv.slice(2).map((x, i) => (i ? Number(x) : x));
    console.log(`== ${name}: ${j.iops.toFixed(0)} IOPS, clat mean ${(j.clat_ns.mean / 1000).toFixed(1)} us ` +
      `p50 ${(j.clat_ns.percentile["50.000000"] / 1000).toFixed(1)} us; daemon CPU ${((dt * 1e6) / hz / dr).toFixed(1)} us/IO ` +
      `over ${dr} requests; ${j.total_ios} IOs in ${rt} s measured`);
  ' $OUT/$name.fio.json "$name" $((t1 - t0)) $((r1 - r0)) $(getconf CLK_TCK) $RUNTIME
  if [ "$MODE" = strace ]; then
    head -20 $OUT/$name.strace
  else
    cp /proc/kallsyms $OUT/kallsyms 2>/dev/null
    cp /tmp/perf-$pid.map $OUT/ 2>/dev/null
    echo "-- samples by command and DSO (whole machine, $FREQ Hz per CPU):"
    $PERF report -i $OUT/$name.perf.data --stdio --sort comm,dso --percent-limit 0.5 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -30
  fi
}

# ublk-ts
# V8 writes /tmp/perf-PID.map, so perf can name the JIT-compiled JS functions.
out=$(NODE_OPTIONS=--perf-basic-prof $UBLK add -t null --size 1G -q 1 -d 128) || { echo "ublk add failed: $out"; exit 1; }
id=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' <<<"$out")
pid=$($UBLK list -n $id --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].daemon_pid))')
sleep 1
echo "ublk-ts: dev $id daemon $pid; queue threads: $(ps -L -o tid=,psr=,comm= -p $pid | tr '\n' ';')"
measure ublk-ts /dev/ublkb$id $pid
$UBLK del -n $id

for peer in "$@"; do
  name=$(basename $peer)
  out=$($peer add -t null -q 1 -d 128) || { echo "$peer add failed: $out"; continue; }
  id=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' <<<"$out")
  pid=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
  sleep 1
  echo "$name: dev $id daemon $pid; threads: $(ps -L -o tid=,psr=,comm= -p $pid | tr '\n' ';')"
  measure $name /dev/ublkb$id $pid
  $peer del -n $id
done
