// When the queue thread blocks in io_uring_enter it still has to give its event loop a turn now and
// then (the device's "close" message, a target's timers). A timer bounded every wait before (an
// EXT_ARG timeout: an hrtimer started and cancelled per IO); this is one IORING_OP_TIMEOUT in the
// ring instead, completing every period whatever the IO does, re-armed by the blocking loop: one
// timer per period, not one per wait.
import { native } from "../native.js";
import type { Ring } from "../uring/ring.js";

export class YieldTick {
  /** A TIMEOUT is in the ring (submitted or about to be). */
  armed = false;
  /** Its CQE arrived since the blocking loop last looked. */
  fired = false;
  private readonly ts: ArrayBuffer;
  private readonly tsAddr: number;

  constructor(
    private readonly ring: Ring,
    periodNs: number,
    private readonly userData: number,
  ) {
    // struct __kernel_timespec; the kernel copies it when it takes the SQE.
    this.ts = native.allocBuffer(16);
    this.tsAddr = native.bufferAddress(this.ts);
    const v = new DataView(this.ts);
    v.setBigInt64(0, BigInt(Math.floor(periodNs / 1e9)), true);
    v.setBigInt64(8, BigInt(periodNs % 1e9), true);
  }

  arm(): void {
    // off (the completion count) stays 0: a pure timer, not "after N completions".
    this.ring.prepTimeout(this.ring.sqeOrSubmit(), this.tsAddr, this.userData);
    this.armed = true;
    this.fired = false; // a CQE reaped while the event loop drove the queue is old news
  }

  /** The TIMEOUT's CQE (-ETIME when it ran out, -ECANCELED when the ring goes away). */
  onCqe(): void {
    this.armed = false;
    this.fired = true;
  }
}
