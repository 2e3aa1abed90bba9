// ublk help
export const USAGE = `ublk-ts: Linux ublk block devices served by TypeScript

usage: ublk <command> [options]

  add -t TARGET [-n ID] [-q QUEUES] [-d DEPTH] [--foreground] [--quiet] [-r 0|1] [-i 0|1] [-e 0|1]
      [-g] [-u] [-z] [--auto_zc [--auto_zc_fallback]] [--batch|-b] [--shmem_zc [--htlb FILE]]
      [--uring_comp 0|1] [--unprivileged] [--nthreads N --per_io_tasks] [--poll_us N]
      [target options] [FILE...]
        TARGET: null, loop, ram, stripe, fault_inject, zoned, nbd, qcow2, or ./my-target.ts (.mts, .js)
        create /dev/ublkbN and leave a daemon serving it; prints the device once it is LIVE
        defaults: -n -1 (first free id), -q 2 (at most one per CPU), -d 128
        null options:  --size SIZE (default 250G)
        loop options:  FILE or -f FILE (backing file or block device), --buffered_io
        ram options:   --size SIZE (required; memory is taken as it is written)
        stripe options: [--chunk_size N (default 65536)] FILE1 [FILE2 [FILE3 [FILE4]]]
                       RAID-0: chunk a power of two from 4K to 512K, files of equal size
        fault_inject options: [--delay_us N (default 0)] [--error_rate P] [--error_sectors A-B]
                       [--slow_rate P --slow_us N] [--die_after N] [--seed N] [--size SIZE | -f FILE]
                       P a fraction 0..1; A-B 512-byte sectors, inclusive; a null device
                       (250G) unless -f FILE; --die_after N: the daemon crashes at request N+1
        -e 1 recovery, but IO fails at once while no daemon serves (instead of waiting)
        --no_auto_part_scan: no partition scan when the device starts (blockdev --rereadpt asks)
        zoned options: --size SIZE (required) --zone_size SIZE (power of two, default 256M)
                       --conv_zones N --max_open N --max_active N (0: no limit) [FILE]
                       host-managed zones in RAM, or in FILE with the zone states after the data
        -r 1 user recovery, -i 1 reissue in-flight IO after recovery, -g 1 NEED_GET_DATA,
        -u 1 user copy (data moves by read/write on /dev/ublkcN; not with -g)
        -z zero copy (the target moves data between its backing and the request's own pages;
           loop, null), --auto_zc the same with the driver registering the buffers (7.3),
           --auto_zc_fallback: requests the driver could not register are registered by the queue
        -b, --batch: batched IO commands (7.3): each queue fetches and commits many requests per
           command; the copying data path or zero copy (-z, --auto_zc), not with -g or -u
        --shmem_zc [--htlb FILE [--rdonly_shmem_buf]]: shared-memory zero copy (7.3; loop, null):
           O_DIRECT IO from memory the application shares with the daemon (FILE, typically on
           hugetlbfs, mapped by both; or a memfd sent to /run/ublk/ublkbN.sock) is served from it
           without a copy; --rdonly_shmem_buf registers FILE read-only (then only writes use it)
        --nthreads N --per_io_tasks: per-IO daemons (7.3): N threads serve all queues' tags
           between them (thread t takes pairs t, t+N, ... of the (queue, tag) list, queue major),
           any N up to queues x depth; without --per_io_tasks N must be the queue count;
           not with -b, --shmem_zc or -t nbd
        --poll_us N: while requests keep coming, a queue thread polls its ring for up to N us
           before it sleeps (default 500, at most 10000; 0: always sleep); fruitless polls back off
        nbd options:   --host HOST [--port PORT] | --socket PATH, [--export NAME]
                       [--connections N] (one per queue; default 1) [--timeout SECONDS] (default 30:
                       how long IO waits for a lost server while it reconnects); --tls is refused
        qcow2 options: FILE or -f FILE (a qcow2 image, version 2 or 3, from qemu-img create -f
                       qcow2; clusters are allocated on first write and freed by discard; its
                       backing files, qcow2 or raw, are read and never written)
        integrity (7.3, with -u): --metadata_size N (bytes per logical block; turns it on)
          [--pi_offset N] [--csum_type ip|t10dif|nvme] [--tag_size N] [--integrity_capable]
          [--integrity_reftag]; loop keeps the metadata in FILE.meta, or in a second FILE
          (or --metadata_file FILE); null and fault_inject drop it
        --supervise (with -r 1): restart a daemon that dies and recover the device automatically
        --unprivileged: as a user (not root), create a device only you (and root) may use; not
           with -r/-i/-e, -u, -z; needs the udev rule of 'ublk udev-install' 
        parameters: --logical_block_size N --physical_block_size N --io_opt N --io_min N
          --max_sectors N --chunk_sectors N --read_only 0|1 --rotational 0|1 --wc 0|1 --fua 0|1
          --discard_granularity N --discard_alignment N --max_discard_sectors N
          --max_discard_segments N --max_write_zeroes_sectors N --max_io_buf_bytes N
  recover -n ID [-t TARGET [options] [FILE]]
        a new daemon takes over a device whose daemon died (created with -r 1); the target and
        its options come from the saved state unless given
  up [NAME...] [--foreground]   create the devices declared in /etc/ublk-ts/devices.d/NAME.json
        (all without NAME); a LIVE one is left alone, a QUIESCED one recovered
  down [NAME...]                delete the declared devices that are up
  list [-n ID] [--json] [-v]    show devices (state DEAD, LIVE, QUIESCED or FAIL_IO)
  del -n ID | -a [--safe] [--async]
        stop and delete a device (or all of them); --safe: refuse while it is mounted or open;
        --async: do not wait for the last user to let go
  stop -n ID [--safe]           stop a device; its daemon then removes it
  quiesce -n ID [--timeout MS]  hand a device made with -r 1 over: its daemon finishes what it holds
                                and leaves, IO waits QUIESCED for 'ublk recover' (daemon upgrade)
  update_size -n ID -s SIZE     resize a live device; the target makes room first (loop grows its
                                file, and refuses to shrink over data)
  features                      show what the loaded ublk driver supports
  udev-install [--group NAME] [--print]
        as root: install the udev rule that lets users (all, or NAME's members) open
        /dev/ublk-control and gives each user's device nodes to them; --print shows it only
  help                          this text

Switches written bare (-r, -i, -g, -u, --uring_comp) mean 1. Sizes take K, M, G, T suffixes.
Daemon logs: /run/ublk-ts/ublk-ts.log (root); a user's in $XDG_RUNTIME_DIR/ublk-ts or /tmp/ublk-ts-UID
`;

export function help(): number {
  process.stdout.write(USAGE);
  return 0;
}
