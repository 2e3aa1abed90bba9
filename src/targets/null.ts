// null: every request succeeds at once and reads return whatever is in the buffer. Measures the
// round trip through ublk and this project, with no backing store.

import { parseSize } from "./size.js";
import { defineTarget } from "./target.js";

export default defineTarget<null>({
  name: "null",
  // Never touches the data, so it runs with zero copy too (-z still registers each buffer, as a
  // server that moved the data would: the cost being measured).
  zeroCopy: true,
  shmemZeroCopy: true,
  open(options) {
    const size = options.size === undefined ? 250 * 2 ** 30 : parseSize(options.size, "size");
    return {
      size,
      state: null,
      params: { logicalBlockSize: 512, physicalBlockSize: 4096 },
      description: { size },
    };
  },
  // Nothing backs it: any size will do.
  resize: () => {},
  // Integrity metadata is dropped, as kublk's null does: reads return 0xFF metadata (PI unchecked).
  openIntegrity: () => {},
  read: (req) => req.length,
  write: (req) => req.length,
  flush: () => 0,
});
