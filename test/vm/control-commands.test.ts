// Every control command must complete. `ublk list`, `add` and `del` each send a handful of them and
// wait for each answer, so one lost completion hangs the command for good.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ControlDevice } from "../../src/ctrl/control.js";
import { skipReason } from "./helpers.js";

const COMMANDS = 3000;
const STUCK_MS = 5000;

test(`${COMMANDS} sequential control commands (GET_FEATURES) all complete`, {
  skip: skipReason,
}, async () => {
  const ctrl = await ControlDevice.open();
  let done = 0;
  let stuck: NodeJS.Timeout | undefined;
  try {
    for (; done < COMMANDS; done++) {
      const hung = new Promise<"hung">((r) => {
        stuck = setTimeout(() => r("hung"), STUCK_MS);
      });
      const r = await Promise.race([ctrl.getFeatures(), hung]);
      clearTimeout(stuck);
      assert.notEqual(
        r,
        "hung",
        `command ${done + 1} got no completion within ${STUCK_MS} ms (${done} completed)`,
      );
    }
  } finally {
    clearTimeout(stuck);
    ctrl.close(); // drops the ring and its poll handle, even with a command outstanding
  }
  assert.equal(done, COMMANDS);
});
