// A worker thread standing in for one queue thread of the qcow2 target: it joins the image the main
// thread opened and makes random writes in its own region, posting back what it wrote.
import { parentPort, workerData } from "node:worker_threads";
import type { TargetSetup } from "../../src/targets/target.js";
import { Qcow2Harness } from "./qcow2-harness.js";

const { setup, start, length, seed, count } = workerData as {
  setup: TargetSetup<unknown>;
  start: number;
  length: number;
  seed: number;
  count: number;
};

let s = seed >>> 0 || 1;
const next = () => {
  s ^= s << 13;
  s >>>= 0;
  s ^= s >>> 17;
  s ^= s << 5;
  s >>>= 0;
  return s;
};

const h = new Qcow2Harness("", setup);
const mirror = Buffer.alloc(length);
for (let i = 0; i < count; i++) {
  const len = ((next() % 128) + 1) * 512;
  const off = (next() % ((length - len) / 512)) * 512;
  const data = Buffer.alloc(len);
  for (let j = 0; j < len; j += 4) data.writeUInt32LE(next(), j);
  h.write(start + off, data);
  data.copy(mirror, off);
}
h.close();
parentPort?.postMessage(mirror);
