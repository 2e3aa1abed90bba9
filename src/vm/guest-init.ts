/**
 * /init of the VM's initramfs (busybox sh, PID 1). It loads the modules, mounts the host root over
 * 9p, runs the job from the run dir in a chroot and powers off. Results travel as files in the run
 * dir (its own 9p mount without caching, so the host can poll them); the serial console only
 * carries kernel messages for post-mortems.
 *
 * Kernel cmdline keys: ublkvm.run=<run dir, host path>, ublkvm.cache=<9p cache mode of the root>,
 * ublkvm.msize=<9p msize>, ublkvm.load=<modules,to,load> and <module>.<param>=<value>.
 * (A plain template literal: every shell "${" below is escaped.)
 */
export const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /mnt/host /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
set -f # cmdline words are data, not globs
CMDLINE=$(cat /proc/cmdline)
KVER=$(uname -r)
H=/mnt/host

say() { echo "ublk-vm: [$(cut -d' ' -f1 /proc/uptime)] $*"; }
stop() { sync; poweroff -f; sleep 10; }
# The last key=value wins, so callers' kernel args override the defaults before them.
arg() {
  v=$2
  for w in $CMDLINE; do case $w in "$1"=*) v=\${w#*=} ;; esac; done
  echo "$v"
}
# The kernel leaves mod.param=value to whoever loads mod.
params() {
  p=
  for w in $CMDLINE; do case $w in "$1".*=*) p="$p \${w#"$1".}" ;; esac; done
  if [ "$1" = null_blk ]; then case $p in *" nr_devices="*) ;; *) p="nr_devices=0$p" ;; esac; fi
  echo "$p"
}

# Dependency order comes from the build; ublkvm.load=a,b adds modules kept for on-demand loading.
while read -r name path; do
  insmod "/lib/modules/$KVER/$path" $(params $name) || say "insmod $name failed"
done </etc/ublk-vm/modules
for m in $(arg ublkvm.load | tr , ' '); do modprobe $m $(params $m) || say "modprobe $m failed"; done
say "modules loaded"

RUN=$(arg ublkvm.run)
O="trans=virtio,version=9p2000.L,msize=$(arg ublkvm.msize 512000)"
mount -t 9p -o "$O,cache=$(arg ublkvm.cache loose)" hostroot $H || { say "cannot mount the host root"; stop; }
mount -t 9p -o "$O,cache=none" ublkrun "$H$RUN" || { say "cannot mount the run dir $RUN"; stop; }

# The guest gets its own /tmp, /run, /dev and so on; only the rest of the host tree is shared,
# except the job's working directory (ublkvm.share), which may live under the host's /tmp or /run.
SHARE=$(arg ublkvm.share)
if [ -n "$SHARE" ]; then mkdir -p /share && mount -o bind "$H$SHARE" /share; fi
mount -t proc proc $H/proc
mount -t sysfs sysfs $H/sys
mount -t devtmpfs devtmpfs $H/dev
mkdir -p $H/dev/pts $H/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $H/dev/pts
mount -t tmpfs -o mode=1777 shm $H/dev/shm
mount -t tmpfs -o mode=1777 tmp $H/tmp
mount -t tmpfs -o mode=755 run $H/run
if [ -n "$SHARE" ]; then mkdir -p "$H$SHARE" && mount -o bind /share "$H$SHARE"; fi
mount -t configfs configfs $H/sys/kernel/config
mount -t debugfs debugfs $H/sys/kernel/debug 2>/dev/null
ln -s /proc/self/fd $H/dev/fd
ln -s /proc/self/fd/0 $H/dev/stdin
ln -s /proc/self/fd/1 $H/dev/stdout
ln -s /proc/self/fd/2 $H/dev/stderr

# Give the host's kmod our module tree: a bind of the initramfs copy, which is RAM like a tmpfs
# but needs no copying. /lib may be a symlink that must resolve inside $H.
M=$H/lib
if [ -L $M ]; then
  l=$(readlink $M)
  case $l in /*) M=$H$l ;; *) M=$H/$l ;; esac
fi
M=$M/modules
{ mkdir -p "$M" && mount -o bind /lib/modules "$M"; } ||
  say "no module tree in the chroot"
hostname ublk-vm
# Loopback only: network targets and their test servers talk over 127.0.0.1.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || say "cannot bring up lo"
say "chroot ready"

# Output goes through a pipe, not straight to the file: "echo >/dev/stderr" would truncate a file.
# Daemons the job leaves behind may hold the pipe open, so cat gets 2 s to drain, then goes.
R=$H$RUN
mkfifo /job.out
cat /job.out >"$R/output" &
CAT=$!
: >"$R/started"
say "running the job"
env -i /bin/busybox chroot $H /bin/sh "$RUN/job.sh" </dev/null >/job.out 2>&1
ST=$?
i=0
while kill -0 $CAT 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
kill $CAT 2>/dev/null
echo $ST >"$R/status"
say "job finished"
stop
`;
