// Drives the qcow2 target without the ublk driver: requests go straight to its ops, and the ring
// operations it queues run on a real io_uring, as a queue thread would run them. For host tests of
// the image format against qemu-img.
import { native } from "../../src/native.js";
import qcow2 from "../../src/targets/qcow2.js";
import {
  type IoRequest,
  type IoResult,
  QUEUED,
  type QueueContext,
  type TargetSetup,
} from "../../src/targets/target.js";
import * as U from "../../src/uapi/ublk_cmd.js";
import { Ring } from "../../src/uring/ring.js";

const BUF = 1024 * 1024;

export class Qcow2Harness {
  readonly setup: TargetSetup<unknown>;
  private readonly owner: boolean;
  private readonly ring = new Ring({ entries: 64 });
  private readonly ctx: QueueContext<unknown>;
  private readonly mem = native.allocBuffer(BUF);
  private readonly buffer = new Uint8Array(this.mem);
  private readonly address = native.bufferAddress(this.mem);

  /** Opens `file`, or joins a setup another thread opened (its state as a structured clone). */
  constructor(file: string, shared?: TargetSetup<unknown>) {
    this.owner = shared === undefined;
    this.setup = shared ?? (qcow2.open({ file }) as TargetSetup<unknown>);
    this.ctx = {
      devId: 0,
      qid: 0,
      depth: 1,
      flags: 0,
      state: this.setup.state,
      ring: this.ring,
      userData: (tag: number, sub = 0) => ((sub & 0x7f) << 24) | (1 << 16) | tag,
      log: (msg: string) => process.stderr.write(`${msg}\n`),
    };
    qcow2.initQueue?.(this.ctx as never);
  }

  get size(): number {
    return this.setup.size;
  }

  private run(op: number, offset: number, length: number): number {
    const buffer = this.buffer;
    const req: IoRequest = {
      qid: 0,
      tag: 0,
      op,
      flags: 0,
      offset,
      length,
      buffer,
      data: buffer.subarray(0, length),
      address: this.address,
      bufIndex: -1,
      nrZones: 0,
      appendSector: -1,
      integrity: null,
      integrityAddress: 0,
      serveFrom() {
        throw new Error("not in NEED_GET_DATA mode");
      },
      setAppendSector() {
        throw new Error("not a ZONE_APPEND");
      },
    };
    const t = qcow2 as unknown as Required<typeof qcow2>;
    const ctx = this.ctx as never;
    let res: IoResult =
      op === U.UBLK_IO_OP_READ
        ? t.read(req, ctx)
        : op === U.UBLK_IO_OP_WRITE
          ? t.write(req, ctx)
          : op === U.UBLK_IO_OP_DISCARD
            ? t.discard(req, ctx)
            : t.flush(req, ctx);
    while (res === QUEUED) {
      this.ring.submitAndWait(1);
      let next: IoResult = QUEUED;
      this.ring.reap((ud, r) => {
        next = t.complete(req, r, ud >>> 24, ctx);
      });
      res = next;
    }
    if (typeof res !== "number") throw new Error("the qcow2 target returned a Promise");
    return res;
  }

  read(offset: number, length: number): Buffer {
    const res = this.run(U.UBLK_IO_OP_READ, offset, length);
    if (res !== length) throw new Error(`read ${offset}+${length} returned ${res}`);
    return Buffer.from(this.buffer.subarray(0, length));
  }

  /** Writes `data` in requests of at most the buffer size (512 KiB, the device's default). */
  write(offset: number, data: Uint8Array): void {
    for (let done = 0; done < data.length; done += BUF / 2) {
      const part = data.subarray(done, done + BUF / 2);
      this.buffer.set(part);
      const res = this.run(U.UBLK_IO_OP_WRITE, offset + done, part.length);
      if (res !== part.length) throw new Error(`write ${offset + done}+${part.length} returned ${res}`);
    }
  }

  discard(offset: number, length: number): void {
    const res = this.run(U.UBLK_IO_OP_DISCARD, offset, length);
    if (res !== 0) throw new Error(`discard ${offset}+${length} returned ${res}`);
  }

  flush(): void {
    const res = this.run(U.UBLK_IO_OP_FLUSH, 0, 0);
    if (res !== 0) throw new Error(`flush returned ${res}`);
  }

  close(): void {
    this.ring.close();
    if (this.owner) qcow2.close?.(this.setup as never);
  }
}
