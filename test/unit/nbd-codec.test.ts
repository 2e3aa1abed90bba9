// The nbd target's protocol code without a server: replies decoded however the bytes are split, and
// the handshake against scripted server answers (accepted, refused, an old server).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteQueue, negotiate } from "../../src/targets/nbd/handshake.js";
import * as P from "../../src/targets/nbd/protocol.js";
import { type InFlight, ReplyParser } from "../../src/targets/nbd/replies.js";

function simpleReply(handle: number, error: number, data?: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
  h.writeUInt32BE(error, 4);
  h.writeUInt32BE(handle, 12);
  return data ? Buffer.concat([h, data]) : h;
}

function chunk(handle: number, flags: number, type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(handle, 12);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

function offsetData(offset: number, data: Buffer): Buffer {
  const b = Buffer.alloc(8 + data.length);
  b.writeBigUInt64BE(BigInt(offset));
  data.copy(b, 8);
  return b;
}

interface Harness {
  parser: ReplyParser;
  finished: [number, number][];
  errors: string[];
  reqs: Map<number, InFlight>;
}

function harness(reqs: [number, InFlight][]): Harness {
  const h: Harness = { parser: null as never, finished: [], errors: [], reqs: new Map(reqs) };
  h.parser = new ReplyParser({
    lookup: (handle) => h.reqs.get(handle),
    finish: (handle, error) => {
      h.finished.push([handle, error]);
      h.reqs.delete(handle);
    },
    protocolError: (m) => h.errors.push(m),
  });
  return h;
}

/** Feeds `stream` the way a socket would: into whatever buffer the parser asks for, `step` at most. */
function feed(p: ReplyParser, stream: Buffer, step: number): void {
  for (let i = 0; i < stream.length; ) {
    const buf = p.nextBuffer();
    const n = Math.min(step, buf.length, stream.length - i);
    buf.set(stream.subarray(i, i + n));
    p.onRead(n, buf);
    i += n;
  }
}

const read = (offset: number, length: number): InFlight => ({
  type: P.CMD_READ,
  offset,
  length,
  dest: new Uint8Array(length),
  error: 0,
});

test("replies: simple and structured replies decode the same however the stream is split", () => {
  const a = Buffer.alloc(3000, 0xaa);
  const b1 = Buffer.alloc(1000, 0xb1);
  const b3 = Buffer.alloc(1000, 0xb3);
  const stream = Buffer.concat([
    simpleReply(7, 0), // a write
    chunk(3, 0, P.REPLY_TYPE_OFFSET_DATA, offsetData(8192 + 2000, b3)), // out of order, reassembled
    chunk(2, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, offsetData(4096, a)),
    chunk(3, 0, P.REPLY_TYPE_OFFSET_HOLE, Buffer.from([0, 0, 0, 0, 0, 0, 0x23, 0xe8, 0, 0, 0x03, 0xe8])),
    chunk(3, 0, P.REPLY_TYPE_OFFSET_DATA, offsetData(8192, b1)),
    chunk(3, P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE, Buffer.alloc(0)),
  ]);
  for (const step of [1, 7, 20, 64, 1 << 20]) {
    const r2 = read(4096, 3000);
    const r3 = read(8192, 3000);
    r3.dest?.fill(0xff); // the hole must be written as zeros
    const h = harness([
      [7, { type: P.CMD_WRITE, offset: 0, length: 512, dest: null, error: 0 }],
      [2, r2],
      [3, r3],
    ]);
    feed(h.parser, stream, step);
    assert.deepEqual(h.errors, [], `step ${step}`);
    assert.deepEqual(h.finished, [
      [7, 0],
      [2, 0],
      [3, 0],
    ]);
    assert.deepEqual(Buffer.from(r2.dest as Uint8Array), a);
    assert.deepEqual(
      Buffer.from(r3.dest as Uint8Array),
      Buffer.concat([b1, Buffer.alloc(1000), b3]),
      `step ${step}`,
    );
  }
});

test("replies: a simple read reply carries the data; error chunks and simple errors give the error", () => {
  const data = Buffer.alloc(512, 5);
  const err = Buffer.alloc(6 + 4);
  err.writeUInt32BE(28, 0); // ENOSPC
  err.writeUInt16BE(4, 4);
  err.write("full", 6);
  const r = read(0, 512);
  const h = harness([
    [1, r],
    [2, { type: P.CMD_WRITE, offset: 0, length: 512, dest: null, error: 0 }],
    [4, read(0, 512)],
  ]);
  feed(
    h.parser,
    Buffer.concat([
      simpleReply(1, 0, data),
      chunk(2, P.REPLY_FLAG_DONE, P.REPLY_TYPE_ERROR_BIT | 1, err),
      simpleReply(4, 22),
    ]),
    5,
  );
  assert.deepEqual(h.finished, [
    [1, 0],
    [2, 28],
    [4, 22],
  ]);
  assert.deepEqual(Buffer.from(r.dest as Uint8Array), data);
});

test("replies: a reply for no request, a bad magic or data outside the request is a protocol error", () => {
  for (const stream of [
    simpleReply(9, 0),
    Buffer.from("garbage!garbage!garbage!"),
    chunk(1, P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, offsetData(1024, Buffer.alloc(16))),
  ]) {
    const h = harness([[1, read(0, 512)]]);
    feed(h.parser, stream, 1000);
    assert.equal(h.errors.length, 1, stream.toString("hex"));
    assert.deepEqual(h.finished, []);
  }
});

/** A scripted server: answers in order, recording what the client sent. */
function scripted(answers: Buffer[]): { q: ByteQueue; sent: Buffer[]; send: (b: Buffer) => void } {
  const q = new ByteQueue();
  const sent: Buffer[] = [];
  return {
    q,
    sent,
    send: (b) => {
      sent.push(b);
      const next = answers.shift();
      if (next) q.push(next);
    },
  };
}

function hello(flags: number): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(P.NBDMAGIC, 0);
  b.writeBigUInt64BE(P.IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

function optReply(option: number, type: number, data = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(P.OPT_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  return Buffer.concat([b, data]);
}

test("handshake: NBD_OPT_GO gives size, flags, block sizes and structured replies", async () => {
  const info = Buffer.alloc(12);
  info.writeUInt16BE(P.INFO_EXPORT, 0);
  info.writeBigUInt64BE(64n << 20n, 2);
  info.writeUInt16BE(P.TF_HAS_FLAGS | P.TF_SEND_FLUSH, 10);
  const bs = Buffer.alloc(14);
  bs.writeUInt16BE(P.INFO_BLOCK_SIZE, 0);
  bs.writeUInt32BE(512, 2);
  bs.writeUInt32BE(4096, 6);
  bs.writeUInt32BE(1 << 25, 10);
  const s = scripted([
    Buffer.alloc(0), // after the client flags
    optReply(P.OPT_STRUCTURED_REPLY, P.REP_ACK),
    Buffer.concat([
      optReply(P.OPT_GO, P.REP_INFO, bs),
      optReply(P.OPT_GO, P.REP_INFO, info),
      optReply(P.OPT_GO, P.REP_ACK),
    ]),
  ]);
  s.q.push(hello(P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES));
  const got = await negotiate(s.q, s.send, "disk");
  assert.deepEqual(got, {
    size: 64 * 2 ** 20,
    flags: P.TF_HAS_FLAGS | P.TF_SEND_FLUSH,
    structured: true,
    blockSize: { min: 512, preferred: 4096, max: 1 << 25 },
  });
  assert.equal(s.sent[0].readUInt32BE(0), P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES);
  const go = s.sent[2];
  assert.equal(go.readUInt32BE(8), P.OPT_GO);
  assert.equal(go.readUInt32BE(16), 4); // name length
  assert.equal(go.subarray(20, 24).toString(), "disk");
});

test("handshake: a refused export says so with the server's message; an old server gets NBD_OPT_EXPORT_NAME", async () => {
  const refused = scripted([
    Buffer.alloc(0),
    optReply(P.OPT_STRUCTURED_REPLY, P.REP_ERR_UNSUP),
    optReply(P.OPT_GO, P.REP_ERR_UNKNOWN, Buffer.from("no such export")),
  ]);
  refused.q.push(hello(P.FLAG_FIXED_NEWSTYLE));
  await assert.rejects(negotiate(refused.q, refused.send, "x"), /no export 'x': no such export/);

  const tail = Buffer.alloc(134);
  tail.writeBigUInt64BE(1n << 20n, 0);
  tail.writeUInt16BE(P.TF_HAS_FLAGS | P.TF_READ_ONLY, 8);
  const old = scripted([
    Buffer.alloc(0),
    optReply(P.OPT_STRUCTURED_REPLY, P.REP_ERR_UNSUP),
    optReply(P.OPT_GO, P.REP_ERR_UNSUP),
    tail,
  ]);
  old.q.push(hello(P.FLAG_FIXED_NEWSTYLE));
  assert.deepEqual(await negotiate(old.q, old.send, ""), {
    size: 1 << 20,
    flags: P.TF_HAS_FLAGS | P.TF_READ_ONLY,
    structured: false,
    blockSize: null,
  });
  assert.equal(old.sent[3].readUInt32BE(8), P.OPT_EXPORT_NAME);

  const oldstyle = scripted([]);
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(P.NBDMAGIC, 0);
  b.writeBigUInt64BE(P.CLISERV_MAGIC, 8);
  oldstyle.q.push(b);
  await assert.rejects(negotiate(oldstyle.q, oldstyle.send, ""), /oldstyle/);
});
