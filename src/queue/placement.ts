// Which CPUs a queue thread may run on.
//
// The driver suggests each queue's blk-mq CPUs (GET_QUEUE_AFFINITY): IO submitted on those CPUs
// arrives on that queue. Pinning the queue thread there keeps the work near its submitters, but when
// the mask is a single CPU the thread can only ever run where its submitter runs: a lone fio thread
// and the one busy queue thread then share one vCPU while the others idle (-q 2 on 2 CPUs: about
// half of -q 1 at qd64, in ublksrv too; bench/NOTES.md, "Two queues at qd64"). So a single-CPU mask
// leaves the thread to the scheduler, which puts it next to (not on) its submitter; a wider mask pins.
export type QueuePlacement = "auto" | "driver" | "any" | "first";

/** Benchmark lever (bench/NOTES.md): UBLK_TS_QUEUE_CPUS=auto|driver|any|first. */
export const QUEUE_PLACEMENT: QueuePlacement =
  (["driver", "any", "first"] as const).find((p) => p === process.env.UBLK_TS_QUEUE_CPUS) ?? "auto";

/** The CPUs to pin the thread of a queue the driver maps to `driverCpus`; [] leaves it unpinned. */
export function queueThreadCpus(driverCpus: number[], placement = QUEUE_PLACEMENT): number[] {
  if (placement === "any" || (placement === "auto" && driverCpus.length < 2)) return [];
  if (placement === "first") return driverCpus.slice(0, 1);
  return driverCpus;
}

/**
 * A per-IO daemon's CPUs: it serves tags of several queues, so the union of their driver CPUs,
 * placed by the same rule as a queue thread's.
 */
export function perIoThreadCpus(driverCpusPerQueue: number[][], placement = QUEUE_PLACEMENT): number[] {
  const union = [...new Set(driverCpusPerQueue.flat())].sort((a, b) => a - b);
  return queueThreadCpus(union, placement);
}
