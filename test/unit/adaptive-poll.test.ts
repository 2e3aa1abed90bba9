// Polling before a queue thread sleeps (src/queue/adaptive-poll.ts): when it polls, when it backs
// off, and that --poll_us reaches the device spec.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { specFromArgs } from "../../src/cli/spec.js";
import { AdaptivePoll, type PolledRing } from "../../src/queue/adaptive-poll.js";

/** A ring whose CQE arrives on the n-th enter; every enter is recorded as [timeoutNs, minComplete]. */
function fakeRing(arrivesOnEnter: number): PolledRing & { enters: number[][] } {
  const enters: number[][] = [];
  return {
    enters,
    get ready() {
      return enters.length >= arrivesOnEnter ? 1 : 0;
    },
    submitAndWaitFor(timeoutNs: number, _flags = 0, minComplete = 1) {
      enters.push([timeoutNs, minComplete]);
      return true;
    },
  };
}

test("a wait after a long sleep does not poll; a short one turns polling on", () => {
  const p = new AdaptivePoll(500);
  const ring = fakeRing(1);
  assert.equal(p.wait(ring, 1, 0), true);
  assert.deepEqual(ring.enters, [[0, 1]]); // straight to the blocking wait
  p.update(false, false, 10); // slept 10 ms: nothing to gain
  assert.equal(p.pollsNext, false);
  p.update(false, false, 0.2); // woken after 0.2 ms: a 0.5 ms poll would have caught it
  assert.equal(p.pollsNext, true);
});

test("a poll that finds the CQE skips the sleep", () => {
  const p = new AdaptivePoll(1_000_000); // a window no slow machine runs out of
  p.update(false, false, 0.1);
  const ring = fakeRing(3);
  assert.equal(p.wait(ring, 1, 0), true);
  // Non-blocking enters only (minComplete 0) until the CQE came.
  assert.deepEqual(ring.enters, [
    [0, 0],
    [0, 0],
    [0, 0],
  ]);
  assert.equal(p.pollsNext, true);
});

test("fruitless polls back off, doubling, and a found CQE resets the backoff", () => {
  const p = new AdaptivePoll(500);
  p.update(false, false, 0.1);
  p.update(true, false, 0.6); // polled the whole window, found nothing
  const skipped = () => {
    let n = 0;
    while (!p.pollsNext && n < 1000) {
      p.wait(fakeRing(1), 1, 0); // a blocking wait, woken at once: polling stays wanted
      n++;
    }
    return n;
  };
  assert.equal(skipped(), 1);
  p.update(true, false, 0.6);
  assert.equal(skipped(), 2);
  p.update(true, false, 0.6);
  assert.equal(skipped(), 4);
  p.update(true, true, 0.1);
  assert.equal(p.pollsNext, true);
  p.update(true, false, 0.6);
  assert.equal(skipped(), 1);
});

test("--poll_us 0 never polls", () => {
  const p = new AdaptivePoll(0);
  p.update(false, false, 0);
  const ring = fakeRing(5);
  p.wait(ring, 1, 7);
  assert.deepEqual(ring.enters, [[7, 1]]);
});

test("--poll_us N goes into the device spec; absent, the queue loop's default; bad values refused", () => {
  const spec = (...argv: string[]) => specFromArgs(parseArgs(["-t", "null", ...argv]));
  assert.equal(spec("--poll_us", "0").pollUs, 0);
  assert.equal(spec("--poll_us", "150").pollUs, 150);
  assert.equal(spec().pollUs, undefined);
  for (const bad of ["-1", "x", "10001"])
    assert.throws(
      () => spec("--poll_us", bad),
      (e: unknown) => e instanceof UsageError,
    );
});
