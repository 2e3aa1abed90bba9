#!/bin/bash
# A/B of server variants in one boot, alternating, for levers that a busy host would otherwise drown:
# each round brings up every variant's null device (1 GiB; KIND=loop: a 512 MiB file on tmpfs) in turn,
# -q $QUEUES -d 128, runs fio 4k randread at qd1 and qd64 (JOBS; seq128k: 128k read at qd64) on it
# ($RUNTIME s each after a 1 s ramp) and deletes it. Prints one line per run; the medians at the end.
# In the guest: npm run vm -- 'ROUNDS=3 bash bench/profile/ab.sh "base=node /old/dist/src/cli/main.js" \
#   "new=node dist/src/cli/main.js" "notick=env UBLK_TS_WAIT_TIMEOUT=1 node dist/src/cli/main.js"'
# A variant is NAME[@QUEUES]=COMMAND [-- ADD_FLAGS], COMMAND being a ublk CLI (ublk-ts, ublksrv's or
# kublk's) with any env, ADD_FLAGS more flags for its add ("zc=node dist/src/cli/main.js -- --auto_zc").
set -u
RUNTIME=${RUNTIME:-4}
ROUNDS=${ROUNDS:-3}
QUEUES=${QUEUES:-1}
JOBS=${JOBS:-qd1 qd64}
FIO_CPUS=${FIO_CPUS:-}
WARM=${WARM:-0} # seconds of unmeasured qd1 IO on each fresh device before the measured jobs
KIND=${KIND:-null} # null, or loop over a 512 MiB file on the guest's tmpfs ($IMG)
IMG=/tmp/ab-loop.img
[ "$KIND" = loop ] && [ ! -f $IMG ] && dd if=/dev/urandom of=$IMG bs=1M count=512 status=none
RESULTS=$(mktemp)
echo "load: $(cat /proc/loadavg); nproc $(nproc); queues $QUEUES; $RUNTIME s per run"

one() { # NAME[@QUEUES] COMMAND...
  local name=$1 QUEUES=$QUEUES
  [[ "$name" == *@* ]] && QUEUES=${name#*@}
  shift
  local cmd=() extra=() seen=0 a
  for a in "$@"; do # COMMAND -- ADD_FLAGS
    if [ "$a" = -- ]; then seen=1; elif [ $seen = 1 ]; then extra+=("$a"); else cmd+=("$a"); fi
  done
  set -- "${cmd[@]}"
  local out id target=(-t null)
  if [ "$KIND" = loop ]; then
    if [[ "$*" == *kublk* ]]; then target=(-t loop); elif [[ "$*" == *node* ]]; then target=(-t loop "$IMG")
    else target=(-t loop -f "$IMG"); fi
  elif [[ "$*" == *node* ]]; then target=(-t null --size 1G); fi
  # kublk takes the backing file last.
  if [[ "$*" == *kublk* && "$KIND" = loop ]]; then out=$("$@" add "${target[@]}" -q "$QUEUES" -d 128 "${extra[@]}" "$IMG" 2>&1)
  else out=$("$@" add "${target[@]}" -q "$QUEUES" -d 128 "${extra[@]}" 2>&1); fi
  id=$(grep -o 'dev id [0-9]*' <<<"$out" | head -1 | grep -o '[0-9]*$')
  if [ -z "$id" ]; then
    echo "$name: add failed: $out"
    return
  fi
  udevadm settle 2>/dev/null
  local args=()
  for j in $JOBS; do # qdN: 4k randread at depth N; seq128k: 128k sequential read at depth 64
    if [ "$j" = seq128k ]; then args+=(--name="$j" --rw=read --bs=128k --iodepth=64 --stonewall)
    else args+=(--name="$j" --rw=randread --bs=4k --iodepth="${j#qd}" --stonewall); fi
  done
  local json
  [ "$WARM" -gt 0 ] && fio --name=warm --filename=/dev/ublkb$id --ioengine=io_uring --direct=1 --rw=randread \
    --bs=4k --iodepth=1 --time_based --runtime="$WARM" --thread >/dev/null 2>&1
  json=$(fio --filename=/dev/ublkb$id --ioengine=io_uring --direct=1 --time_based --runtime="$RUNTIME" \
    --ramp_time=1 --randrepeat=0 --norandommap --thread ${FIO_CPUS:+--cpus_allowed=$FIO_CPUS} \
    --output-format=json "${args[@]}" 2>/dev/null)
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const j = JSON.parse(s.slice(s.indexOf("{")));
      for (const x of j.jobs)
        console.log(`${process.argv[1]} ${x.jobname} ${x.read.iops.toFixed(0)} ${(x.read.clat_ns.mean / 1000).toFixed(1)} ${(x.read.clat_ns.percentile["50.000000"] / 1000).toFixed(1)} ${(x.read.clat_ns.percentile["99.000000"] / 1000).toFixed(1)}`);
    });' "$name" <<<"$json" | tee -a "$RESULTS"
  "$@" del -n "$id" >/dev/null 2>&1
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round (load $(cut -d' ' -f1-3 /proc/loadavg))"
  for v in "$@"; do
    one "${v%%=*}" ${v#*=}
  done
done
echo "medians (variant job IOPS clat-mean-us p50-us p99-us):"
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (a) => { a.sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
  const keys = [...new Set(rows.map((r) => r[0] + " " + r[1]))];
  for (const k of keys) {
    const rs = rows.filter((r) => r[0] + " " + r[1] === k);
    console.log(`${k} ${med(rs.map((r) => +r[2]))} ${med(rs.map((r) => +r[3]))} ${med(rs.map((r) => +r[4]))} ${med(rs.map((r) => +r[5]))} (n=${rs.length}: ${rs.map((r) => r[2]).join("/")})`);
  }' "$RESULTS"
