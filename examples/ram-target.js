// A RAM disk in a few lines: `ublk add -t ./examples/ram-target.js --size 64M`.
// open() runs once in the daemon; its state (a SharedArrayBuffer) is shared by every queue thread.
import { defineTarget, parseSize } from "ublk-ts";

export default defineTarget({
  name: "ram",
  open(options) {
    const size = parseSize(options.size ?? "64M", "size");
    return { size, state: new SharedArrayBuffer(size), params: { discard: null } };
  },
  read(req, { state }) {
    req.buffer.set(new Uint8Array(state, req.offset, req.length));
    return req.length;
  },
  write(req, { state }) {
    new Uint8Array(state, req.offset, req.length).set(req.data);
    return req.length;
  },
});
