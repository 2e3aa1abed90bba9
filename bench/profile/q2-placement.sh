#!/bin/bash
# Why 2 queues at qd64 fall behind 1 queue: one fio thread submits through the hardware queue of the
# CPU it runs on, and that queue's thread is pinned to that same CPU, so fio and the one busy queue
# thread share a vCPU while the other idles. Runs 4k randread qd64 on null -q 2 (ublk-ts, then each
# peer given) with fio pinned to CPU 0, to CPU 1 and unpinned, and prints IOPS and where each
# queue thread ran. In the guest: npm run vm -- 'bash bench/profile/q2-placement.sh [PEER_CLI...]'
set -u
RUNTIME=${RUNTIME:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UBLK="node $ROOT/dist/src/cli/main.js"

runs() { # NAME DEV PID
  for pin in 0 1 none; do
    local aff=()
    [ $pin != none ] && aff=(--cpus_allowed=$pin)
    local out
    out=$(fio --name=q2 --filename=$2 --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=64 \
      --time_based --runtime=$RUNTIME --ramp_time=2 --randrepeat=0 --norandommap "${aff[@]}" \
      --output-format=json 2>/dev/null)
    local iops
    iops=$(node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const t=s.slice(s.indexOf("{"));console.log(JSON.parse(t).jobs[0].read.iops.toFixed(0))})' <<<"$out")
    echo "$1 fio on CPU $pin: $iops IOPS; threads (tid cpu-last-ran utime+stime): $(for t in /proc/$3/task/*; do awk '{ sub(/.*\) /, ""); printf "%s:%s:%d ", "'"$(basename $t)"'", $37, $12+$13 }' $t/stat; done)"
  done
}

out=$($UBLK add -t null --size 1G -q 2 -d 128) || exit 1
id=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' <<<"$out")
pid=$($UBLK list -n $id --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s)[0];console.log(d.daemon_pid);console.error("queues: "+JSON.stringify(d.queues))})')
runs ublk-ts /dev/ublkb$id $pid
$UBLK del -n $id
for peer in "$@"; do
  out=$($peer add -t null -q 2 -d 128) || continue
  id=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' <<<"$out")
  pid=$(sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' <<<"$out")
  grep -o 'queue [0-9]*: tid [0-9]* affinity([0-9 ]*)' <<<"$out"
  runs $(basename $peer) /dev/ublkb$id $pid
  $peer del -n $id
done
