// ring-seq.c's sequence through ublk-ts's Ring: one NOP in, wait for its CQE in the same enter
// (submitAndWaitFor, one N-API call), reap it in JS.
// `node dist/bench/profile/ring-seq.js [ROUNDS] [WAIT_TIMEOUT_NS]` (0: wait without an EXT_ARG timeout).
import {
  IORING_SETUP_COOP_TASKRUN,
  IORING_SETUP_DEFER_TASKRUN,
  IORING_SETUP_SINGLE_ISSUER,
} from "../../src/uring/constants.js";
import { Ring } from "../../src/uring/ring.js";

const rounds = Number(process.argv[2] ?? 200_000);
const timeoutNs = Number(process.argv[3] ?? 100_000_000);
const ring = new Ring({
  entries: 256,
  cqEntries: 512,
  flags: IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
});
let seen = 0;
const onCqe = (userData: number) => {
  seen += userData >= 0 ? 1 : 0;
};
const run = (n: number) => {
  for (let i = 0; i < n; i++) {
    const off = ring.sqeOrSubmit();
    ring.prepNop(off, i & 0xffff);
    ring.submitAndWaitFor(timeoutNs);
    ring.reap(onCqe);
  }
};
run(Math.min(20_000, rounds)); // let V8 optimise the loop first, as the bench's ramp does
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
run(rounds);
const us = Number(process.hrtime.bigint() - t0) / 1000 / rounds;
const c = process.cpuUsage(c0);
const cpuUs = (c.user + c.system) / rounds;
ring.close();
console.log(
  `ublk-ts Ring, wait timeout ${timeoutNs} ns: ${rounds} rounds, ${us.toFixed(2)} us per round (CPU ${cpuUs.toFixed(2)} us; ${seen} CQEs)`,
);
