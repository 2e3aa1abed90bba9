#!/bin/bash
# Batched IO commands (-b) against the per-tag commands, paired: two devices of the same target side
# by side (per-tag and -b), fio runs alternating between them, so host load swings hit both alike.
# Prints IOPS and the daemon's CPU per IO (utime+stime of the whole daemon, 10 ms ticks) per run.
# In the guest (7.3): npm run vm -- --kernel 7.3 'bash bench/profile/batch-ab.sh null|loop [ROUNDS]'
# loop uses sparse tmpfs files, so both devices read through the ring (a fully written file would be
# served from its mapping with NEED_GET_DATA, which -b cannot use).
set -u
TARGET=${1:-null}
ROUNDS=${2:-5}
RUNTIME=${RUNTIME:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UBLK="node $ROOT/dist/src/cli/main.js"

add() { $UBLK add "$@" | sed -n 's/^dev id \([0-9]*\):.*/\1/p'; }
if [ "$TARGET" = loop ]; then
  truncate -s 512M /tmp/ab-a.img /tmp/ab-b.img
  A=$(add -t loop -q 1 /tmp/ab-a.img)
  B=$(add -t loop -q 1 -b /tmp/ab-b.img)
else
  A=$(add -t null -q 1 --size 1G)
  B=$(add -t null -q 1 --size 1G -b)
fi
pid() { $UBLK list -n "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["daemon_pid"])'; }
PA=$(pid "$A")
PB=$(pid "$B")
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # DEV_ID QD DAEMON_PID
  local c0 c1
  c0=$(cpu "$3")
  fio --name=ab --filename="/dev/ublkb$1" --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
    --iodepth="$2" --runtime="$RUNTIME" --time_based --output-format=json >/tmp/ab.json
  c1=$(cpu "$3")
  python3 -c "import json; r=json.load(open('/tmp/ab.json'))['jobs'][0]['read']; print(int(r['iops']), 'IOPS', int(($c1-$c0)*10000/r['total_ios']), 'us/IO')"
}
echo "$TARGET: per-tag ublkb$A, -b ublkb$B"
for i in $(seq "$ROUNDS"); do
  for qd in 1 64; do
    echo "qd$qd round $i: per-tag $(run "$A" $qd "$PA") | -b $(run "$B" $qd "$PB")"
  done
done
$UBLK del -n "$A"
$UBLK del -n "$B"
rm -f /tmp/ab-a.img /tmp/ab-b.img /tmp/ab.json
