// Per-IO daemons (UBLK_F_PER_IO_DAEMON): which (queue, tag) pairs each serving thread fetches.
//
// With the flag the driver lets each pair be served by whichever task issued its FETCH, so the number
// of threads is free of the number of hardware queues. The split is kublk's: all pairs in a list,
// queue major, and thread t takes entries t, t + N, t + 2N, ... of it (N threads). A thread then hosts
// one loop per queue it has tags of.

export interface ThreadShare {
  /** The thread's index, 0..nthreads-1. */
  thread: number;
  /** Per queue it touches (ascending qid): the tags of that queue it serves, ascending. */
  queues: { qid: number; tags: number[] }[];
}

/** The pairs each of `nthreads` threads serves, for `nrQueues` queues of `depth` tags. */
export function perIoShares(nrQueues: number, depth: number, nthreads: number): ThreadShare[] {
  const shares: ThreadShare[] = [];
  for (let t = 0; t < nthreads; t++) {
    const byQueue = new Map<number, number[]>();
    for (let i = t; i < nrQueues * depth; i += nthreads) {
      const qid = Math.floor(i / depth);
      let tags = byQueue.get(qid);
      if (tags === undefined) {
        tags = [];
        byQueue.set(qid, tags);
      }
      tags.push(i % depth);
    }
    shares.push({ thread: t, queues: [...byQueue].map(([qid, tags]) => ({ qid, tags })) });
  }
  return shares;
}
