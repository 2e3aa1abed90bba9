#!/bin/bash
# Where a queue-depth-1 IO's time goes, per server: run in the guest as root (npm run vm -- 'bash
# bench/profile/qd1-perf.sh [PEER_CLI...]'). For ublk-ts null and each peer's null target (1 queue,
# depth 128) it runs fio 4k randread qd1 and records `perf record -a` (cpu-clock, so idle CPUs are
# sampled too) over a window inside the run, and prints the requests, IOPS and per-IO time of that
# window; buckets.py splits the samples per IO on the host (bench/NOTES.md).
# Env: RUNTIME (s, default 6), WARM (s of unmeasured qd1 IO first, default 5), REPORT=1 (perf report
# in the guest: slow under TCG; better on the host, see NOTES.md), FREQ (Hz, default 250: more makes TCG crawl), MODE=perf|strace (strace
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
  local name=$1 dev=$2 pid=$3 stat=/sys/block/$(basename $2)/stat
  local fio=(fio --name=qd1 --filename=$dev --ioengine=io_uring --direct=1 --rw=randread --bs=4k
    --iodepth=1 --time_based --runtime=600 --randrepeat=0 --norandommap)
  # fio runs in the background; the window starts once its IO flows and has gone on for WARM seconds
  # (V8 compiles the hot path over the first seconds, a CPU-second or more under TCG), so neither
  # fio's start-up nor the daemon's warm-up is in it.
  "${fio[@]}" >/dev/null 2>&1 &
  local fpid=$! r0 r1 t0 t1 n=0
  until [ "$(awk '{print $1}' $stat)" -gt 100 ] || [ $n -gt 600 ]; do sleep 0.1; n=$((n + 1)); done
  sleep ${WARM:-5}
  rm -f $OUT/$name.r0 $OUT/$name.r1
  t0=$(ticks $pid); r0=$(awk '{print $1}' $stat); local w0=$(date +%s.%N)
  if [ "$MODE" = strace ]; then
    timeout -s INT $RUNTIME strace -c -f -p $pid -o $OUT/$name.strace 2>/dev/null
  else
    # The counts are taken by the recorded command itself: perf's own start-up and wind-down (tens of
    # seconds under TCG) are outside the sampled window and must be outside the counted one.
    $PERF record -q -F $FREQ -a -o $OUT/$name.perf.data -- sh -c "awk '{print \$1}' $stat > $OUT/$name.r0;
      date +%s.%N > $OUT/$name.w0; sleep $RUNTIME; awk '{print \$1}' $stat > $OUT/$name.r1;
      date +%s.%N > $OUT/$name.w1" >/dev/null 2>&1
  fi
  t1=$(ticks $pid); r1=$(awk '{print $1}' $stat); local w1=$(date +%s.%N)
  if [ -s $OUT/$name.r1 ]; then # the sampled window, not the whole perf run
    r0=$(cat $OUT/$name.r0); r1=$(cat $OUT/$name.r1); w0=$(cat $OUT/$name.w0); w1=$(cat $OUT/$name.w1)
  fi
  kill $fpid; wait $fpid 2>/dev/null
  awk -v n="$name" -v dr=$((r1 - r0)) -v dt=$((t1 - t0)) -v hz=$(getconf CLK_TCK) -v w0=$w0 -v w1=$w1 'BEGIN {
    w = w1 - w0; printf "== %s: %d requests in %.2f s: %.0f IOPS, %.1f us per IO (qd1: the mean latency); " \
      "daemon CPU (ticks) %.1f us/IO\n", n, dr, w, dr / w, w * 1e6 / dr, dt * 1e6 / hz / dr }'
  if [ "$MODE" = strace ]; then
    head -20 $OUT/$name.strace
  else
    cp /proc/kallsyms $OUT/kallsyms 2>/dev/null
    cp /tmp/perf-$pid.map $OUT/ 2>/dev/null
    echo "-- queue threads: $(ps -L -o tid=,psr=,comm= -p $pid | tr '\n' ';')"
    [ -n "${REPORT:-}" ] && $PERF report -i $OUT/$name.perf.data --stdio --sort comm,dso --percent-limit 0.5 2>/dev/null |
      grep -v '^#' | grep -v '^$' | head -30
  fi
  return 0
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
