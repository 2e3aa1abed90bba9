// Polling before a queue thread sleeps. Under qemu TCG, going to sleep in io_uring_enter and being
// woken costs the queue thread ~90 us of CPU per request more than a C server's (bench/NOTES.md,
// "Polling before sleeping"): while requests keep arriving soon after each batch, the thread polls
// the ring for a while instead, and sleeps as before once polling stops paying.
import type { Ring } from "../uring/ring.js";

/** A sleep that ended within this many poll windows turns polling on (a sleep lasts longer than a poll). */
const ENABLE_FACTOR = 5;
/** Waits to skip polling after polls that ran out: doubling per miss, up to this. */
const MAX_BACKOFF = 64;
/** Benchmark lever (bench/NOTES.md): fruitless polls in a row before the backoff starts. */
const MISSES_BEFORE_BACKOFF = Math.max(1, Number(process.env.UBLK_TS_POLL_MISSES ?? 1) || 1);
/**
 * The longest poll window. The blocking loop's yield timer completes every 100 ms even on an idle
 * device; ENABLE_FACTOR windows must stay below that, or its CQE alone would keep an idle thread polling.
 */
export const MAX_POLL_US = 10_000;

export type PolledRing = Pick<Ring, "submitAndWaitFor" | "ready">;

export class AdaptivePoll {
  /** The poll window, ms; 0 never polls. */
  readonly windowMs: number;
  /** The last wait ended soon enough that a poll would likely have caught it. */
  private next = false;
  /** Waits left without polling, and the current backoff. */
  private skip = 0;
  private backoff = 0;
  /** Fruitless polls since the last one that found CQEs. */
  private misses = 0;
  /** Counters for UBLK_TS_POLL_STATS (bench/NOTES.md): waits, polls, polls that found, sleeps. */
  readonly stats = { waits: 0, polls: 0, found: 0, sleeps: 0 };

  constructor(windowUs: number) {
    this.windowMs = Math.min(MAX_POLL_US, Math.max(0, windowUs)) / 1000;
  }

  /**
   * Submits what is pending and waits until `owed` CQEs are ready: polls first when it pays, then
   * sleeps (bounded by timeoutNs when > 0). False when the sleep ended without them (timeout, EINTR).
   */
  wait(ring: PolledRing, owed: number, timeoutNs: number): boolean {
    const stats = this.stats;
    stats.waits++;
    if (this.windowMs === 0) return ring.submitAndWaitFor(timeoutNs, 0, owed);
    const start = performance.now();
    let polled = false;
    let found = false;
    if (this.next) {
      if (this.skip > 0) this.skip--;
      else {
        polled = true;
        found = this.poll(ring, start + this.windowMs, owed);
        stats.polls++;
        if (found) stats.found++;
      }
    }
    if (!found) stats.sleeps++;
    const woke = found || ring.submitAndWaitFor(timeoutNs, 0, owed);
    this.update(polled, found, performance.now() - start);
    return woke;
  }

  /** After a wait of `waitedMs`: poll next time if it was short; back off after a fruitless poll. */
  update(polled: boolean, found: boolean, waitedMs: number): void {
    if (polled) {
      if (found) {
        this.backoff = 0;
        this.misses = 0;
      } else if (++this.misses >= MISSES_BEFORE_BACKOFF) {
        this.backoff = Math.min(MAX_BACKOFF, this.backoff * 2 || 1);
        this.skip = this.backoff;
      }
    }
    this.next = waitedMs < ENABLE_FACTOR * this.windowMs;
  }

  /** Whether the next wait polls first. */
  get pollsNext(): boolean {
    return this.next && this.skip === 0;
  }

  /** Enters the ring without waiting (which runs the task work that posts CQEs) until `owed` are ready. */
  private poll(ring: PolledRing, until: number, owed: number): boolean {
    do ring.submitAndWaitFor(0, 0, 0);
    while (ring.ready < owed && performance.now() < until);
    return ring.ready >= owed;
  }
}
