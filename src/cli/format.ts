// The device block printed by `add` and `list`, in the kernel selftest server's format.
import type { DevInfo } from "../ctrl/control.js";
import type { QueueInfo } from "../device.js";
import { UBLK_F_UNPRIVILEGED_DEV, type ublk_params } from "../uapi/ublk_cmd.js";

const STATES = ["DEAD", "LIVE", "QUIESCED", "FAIL_IO"];

export function stateName(state: number): string {
  return STATES[state] ?? `UNKNOWN(${state})`;
}

export function formatDevice(
  info: DevInfo,
  params: ublk_params | null,
  queues: readonly QueueInfo[],
): string {
  const bs = params ? 1 << params.basic.logical_bs_shift : 0;
  const capacity = params ? params.basic.dev_sectors : 0n;
  const lines = [
    `dev id ${info.devId}: nr_hw_queues ${info.nrHwQueues} queue_depth ${info.queueDepth} block size ${bs} dev_capacity ${capacity}`,
    `\tmax rq size ${info.maxIoBufBytes} daemon pid ${info.ublksrvPid} flags 0x${info.flags.toString(16)} state ${stateName(info.state)}`,
  ];
  // An unprivileged device belongs to the user who created it (ublksrv prints it the same way).
  if (info.flags & UBLK_F_UNPRIVILEGED_DEV)
    lines.push(`\towner: ${info.ownerUid}:${info.ownerGid} (unprivileged)`);
  for (const q of queues) {
    const affinity = `affinity(${q.cpus.map((c) => `${c} `).join("")})`;
    // Per-IO daemons: a line per thread, with the tags it serves of each queue.
    if (q.thread !== undefined)
      lines.push(
        `\tthread ${q.thread}: tid ${q.tid} ${affinity} tags ${(q.serves ?? []).map((s) => `q${s.qid}:${s.tags}`).join(" ")}`,
      );
    else lines.push(`\tqueue ${q.qid}: tid ${q.tid} ${affinity}`);
  }
  return `${lines.join("\n")}\n`;
}

export function formatParams(p: ublk_params): string {
  const b = p.basic;
  const d = p.discard;
  const out = [
    `\tlogical_block_size ${1 << b.logical_bs_shift} physical_block_size ${1 << b.physical_bs_shift} io_min ${1 << b.io_min_shift} io_opt ${b.io_opt_shift ? 1 << b.io_opt_shift : 0}`,
    `\tmax_sectors ${b.max_sectors} chunk_sectors ${b.chunk_sectors} attrs 0x${b.attrs.toString(16)} dev_sectors ${b.dev_sectors}`,
  ];
  if (p.types & 2)
    out.push(
      `\tdiscard_granularity ${d.discard_granularity} discard_alignment ${d.discard_alignment} max_discard_sectors ${d.max_discard_sectors} max_write_zeroes_sectors ${d.max_write_zeroes_sectors} max_discard_segments ${d.max_discard_segments}`,
    );
  if (p.types & 8) {
    const z = p.zoned;
    out.push(
      `\tzoned max_open_zones ${z.max_open_zones} max_active_zones ${z.max_active_zones} max_zone_append_sectors ${z.max_zone_append_sectors}`,
    );
  }
  const i = p.integrity;
  if (p.types & 64 && i)
    out.push(
      `\tintegrity metadata_size ${i.metadata_size} pi_offset ${i.pi_offset} csum_type ${i.csum_type} flags 0x${i.flags.toString(16)} tag_size ${i.tag_size} interval ${2 ** i.interval_exp}`,
    );
  return `${out.join("\n")}\n`;
}
