// Command-line parsing compatible with the kernel selftest server (kublk) and ublksrv where they
// overlap: `-f FILE` and a trailing FILE mean the same, and 0|1 switches may be written bare.

export class UsageError extends Error {
  override name = "UsageError";
}

/** Options that take a value; the name on the right is the canonical key. */
const VALUE_OPTIONS: Record<string, string> = {
  "-t": "type",
  "--type": "type",
  "-n": "number",
  "--number": "number",
  "-q": "queues",
  "--queues": "queues",
  "-d": "depth",
  "--depth": "depth",
  "-f": "file",
  "--file": "file",
  "-s": "size",
  "--size": "size",
  "--max_io_buf_bytes": "max_io_buf_bytes",
  "--zone_size": "zone_size",
  "--conv_zones": "conv_zones",
  "--max_open": "max_open",
  "--max_active": "max_active",
  "--logical_block_size": "logical_block_size",
  "--physical_block_size": "physical_block_size",
  "--io_opt": "io_opt",
  "--io_min": "io_min",
  "--max_sectors": "max_sectors",
  "--chunk_sectors": "chunk_sectors",
  "--discard_granularity": "discard_granularity",
  "--discard_alignment": "discard_alignment",
  "--max_discard_sectors": "max_discard_sectors",
  "--max_discard_segments": "max_discard_segments",
  "--max_write_zeroes_sectors": "max_write_zeroes_sectors",
  "--read_only": "read_only",
  "--rotational": "rotational",
  "--wc": "wc",
  "--fua": "fua",
  "--timeout": "timeout",
  // stripe
  "--chunk_size": "chunk_size",
  // fault_inject
  "--delay_us": "delay_us",
  "--error_rate": "error_rate",
  "--error_sectors": "error_sectors",
  "--slow_rate": "slow_rate",
  "--slow_us": "slow_us",
  "--die_after": "die_after",
  "--seed": "seed",
  "--host": "host",
  "--port": "port",
  "--socket": "socket",
  "--export": "export",
  "--connections": "connections",
  // per-IO daemons (UBLK_F_PER_IO_DAEMON), kublk's spelling
  "--nthreads": "nthreads",
  // how long a queue thread polls before sleeping while IO keeps coming
  "--poll_us": "poll_us",
  // integrity (UBLK_F_INTEGRITY)
  "--metadata_size": "metadata_size",
  "--pi_offset": "pi_offset",
  "--csum_type": "csum_type",
  "--tag_size": "tag_size",
  "--metadata_file": "metadata_file",
  // shared-memory zero copy
  "--htlb": "htlb",
  // udev-install
  "--group": "group",
  "--rules": "rules",
};

const BOOL_KEYS: Record<string, string> = {
  "-r": "recovery",
  "--recovery": "recovery",
  "-i": "recovery_reissue",
  "--recovery_reissue": "recovery_reissue",
  "-g": "need_get_data",
  "--need_get_data": "need_get_data",
  "-z": "zero_copy",
  "--zero_copy": "zero_copy",
  "-u": "user_copy",
  "--user_copy": "user_copy",
  "-e": "recovery_fail_io",
  "--uring_comp": "uring_comp",
};

/** Flags without a value. */
const FLAGS: Record<string, string> = {
  "-a": "all",
  "--all": "all",
  "--foreground": "foreground",
  "--quiet": "quiet",
  "--json": "json",
  "-v": "verbose",
  "--verbose": "verbose",
  "--buffered_io": "buffered_io",
  "--supervise": "supervise",
  "--safe": "safe",
  "--async": "async",
  "--no_auto_part_scan": "no_auto_part_scan",
  "--unprivileged": "unprivileged",
  "--print": "print",
  "--auto_zc": "auto_zc",
  "--auto_zc_fallback": "auto_zc_fallback",
  "--no_auto_zc": "no_auto_zc",
  "-b": "batch",
  "--batch": "batch",
  "--tls": "tls",
  "--integrity_capable": "integrity_capable",
  "--integrity_reftag": "integrity_reftag",
  "--shmem_zc": "shmem_zc",
  "--per_io_tasks": "per_io_tasks",
  "--rdonly_shmem_buf": "rdonly_shmem_buf",
  "-h": "help",
  "--help": "help",
};

export interface ParsedArgs {
  options: Record<string, string>;
  flags: Set<string>;
  positional: string[];
}

export function parseArgs(argv: readonly string[]): ParsedArgs {
  const options: Record<string, string> = {};
  const flags = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let inline: string | undefined;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    if (eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg in BOOL_KEYS) {
      let value = inline;
      if (value === undefined && (argv[i + 1] === "0" || argv[i + 1] === "1")) value = argv[++i];
      value ??= "1";
      if (value !== "0" && value !== "1") throw new UsageError(`${arg} takes 0 or 1, not '${value}'`);
      options[BOOL_KEYS[arg]] = value;
    } else if (arg in VALUE_OPTIONS) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${arg} needs a value`);
      options[VALUE_OPTIONS[arg]] = value;
    } else if (arg in FLAGS) {
      flags.add(FLAGS[arg]);
    } else if (arg.startsWith("-") && arg !== "-") {
      throw new UsageError(`unknown option ${arg} (see 'ublk help')`);
    } else {
      positional.push(arg);
    }
  }
  return { options, flags, positional };
}

/** An integer option within [min, max], or the default. */
export function intOption(
  options: Record<string, string>,
  key: string,
  def: number,
  min: number,
  max: number,
): number {
  const raw = options[key];
  if (raw === undefined) return def;
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`--${key} must be an integer, not '${raw}'`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`--${key} ${n} is out of range (${min}..${max})`);
  return n;
}
