// A RAM disk in a few lines of TypeScript: `ublk add -t ./examples/ram-target.ts --size 64M`.
// open() runs once in the daemon; its state (a SharedArrayBuffer) is shared by every queue thread.
// Written for type stripping (no enums or namespaces), so every supported Node runs it as is.
import { type IoRequest, parseSize, type QueueContext, type Target, type TargetOptions } from "ublk-ts";

type Memory = SharedArrayBuffer;

const ram: Target<Memory> = {
  name: "ram",
  open(options: TargetOptions) {
    const size = parseSize(String(options.size ?? "64M"), "size");
    return { size, state: new SharedArrayBuffer(size), params: { discard: null } };
  },
  read(req: IoRequest, { state }: QueueContext<Memory>): number {
    req.buffer.set(new Uint8Array(state, req.offset, req.length));
    return req.length;
  },
  write(req: IoRequest, { state }: QueueContext<Memory>): number {
    new Uint8Array(state, req.offset, req.length).set(req.data);
    return req.length;
  },
};

export default ram;
