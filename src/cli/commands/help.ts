// ublk help
export const USAGE = `ublk-ts: Linux ublk block devices served by TypeScript

usage: ublk <command> [options]

  add -t null|loop|ram|qcow2|./target.js [-n ID] [-q QUEUES] [-d DEPTH] [--foreground] [--quiet]
      [-r 0|1] [-i 0|1] [-g 0|1] [--uring_comp 0|1] [target options] [FILE | -f FILE]
        create /dev/ublkbN and leave a daemon serving it; prints the device once it is LIVE
        defaults: -n -1 (first free id), -q 2 (at most one per CPU), -d 128
        null options:  --size SIZE (default 250G)
        loop options:  FILE or -f FILE (backing file or block device), --buffered_io
        ram options:   --size SIZE (required; memory is taken as it is written)
        qcow2 options: FILE or -f FILE (a qcow2 image, version 2 or 3, from qemu-img create -f
                       qcow2; clusters are allocated on first write and freed by discard; its
                       backing files, qcow2 or raw, are read and never written)
        -r 1 user recovery, -i 1 reissue in-flight IO after recovery, -g 1 NEED_GET_DATA
        --supervise (with -r 1): restart a daemon that dies and recover the device automatically
        parameters: --logical_block_size N --physical_block_size N --io_opt N --io_min N
          --max_sectors N --chunk_sectors N --read_only 0|1 --rotational 0|1 --wc 0|1 --fua 0|1
          --discard_granularity N --discard_alignment N --max_discard_sectors N
          --max_discard_segments N --max_write_zeroes_sectors N --max_io_buf_bytes N
  recover -n ID [-t TARGET [options] [FILE]]
        a new daemon takes over a device whose daemon died (created with -r 1); the target and
        its options come from the saved state unless given
  list [-n ID] [--json] [-v]    show devices (state DEAD, LIVE or QUIESCED)
  del -n ID | -a                stop and delete a device (or all of them)
  features                      show what the loaded ublk driver supports
  help                          this text

Switches written bare (-r, -i, -g, --uring_comp) mean 1. Sizes take K, M, G, T suffixes.
Daemon logs: /run/ublk-ts/ublk-ts.log
`;

export function help(): number {
  process.stdout.write(USAGE);
  return 0;
}
