import assert from "node:assert/strict";
import { test } from "node:test";
import { _IOC_DIR, _IOC_NR, _IOC_SIZE, _IOC_TYPE } from "../../src/uapi/ioctl.js";
import * as u from "../../src/uapi/ublk_cmd.js";

// Round-trips at a non-zero, odd offset inside a larger buffer so offsets are exercised.
function roundTrip<T>(
  size: number,
  write: (v: DataView, o: number, s: T) => void,
  read: (v: DataView, o: number) => T,
  value: T,
): void {
  const v = new DataView(new ArrayBuffer(size + 16), 3);
  write(v, 5, value);
  assert.deepEqual(read(v, 5), value);
}

const basic: u.ublk_param_basic = {
  attrs: u.UBLK_ATTR_VOLATILE_CACHE | u.UBLK_ATTR_FUA,
  logical_bs_shift: 9,
  physical_bs_shift: 12,
  io_opt_shift: 12,
  io_min_shift: 9,
  max_sectors: 1024,
  chunk_sectors: 0,
  dev_sectors: (1n << 40n) + 7n,
  virt_boundary_mask: 0xfffn,
};
const discard: u.ublk_param_discard = {
  discard_alignment: 1,
  discard_granularity: 4096,
  max_discard_sectors: 0xffffffff,
  max_write_zeroes_sectors: 2048,
  max_discard_segments: 256,
  reserved0: 3,
};
const devt: u.ublk_param_devt = { char_major: 240, char_minor: 1, disk_major: 259, disk_minor: 2 };
const zoned: u.ublk_param_zoned = {
  max_open_zones: 14,
  max_active_zones: 14,
  max_zone_append_sectors: 512,
  reserved: Uint8Array.from({ length: 20 }, (_, i) => i + 1),
};
const dma: u.ublk_param_dma_align = { alignment: 511 };
const seg: u.ublk_param_segment = {
  seg_boundary_mask: 0xffff_ffffn,
  max_segment_size: 65536,
  max_segments: 128,
};
const integrity: u.ublk_param_integrity = {
  flags: 0x80000001,
  max_integrity_segments: 0xfffe,
  interval_exp: 12,
  metadata_size: 8,
  pi_offset: 1,
  csum_type: 2,
  tag_size: 3,
};

test("struct codecs round-trip", () => {
  roundTrip(32, u.write_ublksrv_ctrl_cmd, u.read_ublksrv_ctrl_cmd, {
    dev_id: 0xfffffffe,
    queue_id: 0xffff,
    len: 64,
    addr: 0x7fff_1234_5678n,
    data: 0xffff_ffff_ffff_ffffn,
    dev_path_len: 12,
    pad: 1,
    reserved: 2,
  });
  roundTrip(64, u.write_ublksrv_ctrl_dev_info, u.read_ublksrv_ctrl_dev_info, {
    nr_hw_queues: 4,
    queue_depth: 128,
    state: u.UBLK_S_DEV_LIVE,
    io_desc_size: 32,
    max_io_buf_bytes: 512 << 10,
    dev_id: 7,
    ublksrv_pid: -1,
    pad1: 2,
    flags: BigInt(u.UBLK_F_USER_COPY | u.UBLK_F_CMD_IOCTL_ENCODE) | (1n << 63n),
    ublksrv_flags: 5n,
    owner_uid: 1000,
    owner_gid: 1001,
    reserved1: 3n,
    reserved2: 4n,
  });
  roundTrip(24, u.write_ublksrv_io_desc, u.read_ublksrv_io_desc, {
    op_flags: u.UBLK_IO_OP_WRITE | u.UBLK_IO_F_FUA,
    nr_sectors: 8,
    start_sector: 1n << 40n,
    addr: 0x7f00_0000_1000n,
  });
  roundTrip(16, u.write_ublksrv_io_cmd, u.read_ublksrv_io_cmd, {
    q_id: 3,
    tag: 4095,
    result: u.UBLK_IO_RES_ABORT,
    addr: 0x7f00_0000_2000n,
  });
  roundTrip(32, u.write_ublk_param_basic, u.read_ublk_param_basic, basic);
  roundTrip(20, u.write_ublk_param_discard, u.read_ublk_param_discard, discard);
  roundTrip(16, u.write_ublk_param_devt, u.read_ublk_param_devt, devt);
  roundTrip(32, u.write_ublk_param_zoned, u.read_ublk_param_zoned, zoned);
  roundTrip(8, u.write_ublk_param_dma_align, u.read_ublk_param_dma_align, dma);
  roundTrip(16, u.write_ublk_param_segment, u.read_ublk_param_segment, seg);
  roundTrip(16, u.write_ublk_param_integrity, u.read_ublk_param_integrity, integrity);
  const types = u.UBLK_PARAM_TYPE_BASIC | u.UBLK_PARAM_TYPE_DISCARD | u.UBLK_PARAM_TYPE_DEVT;
  const len = u.ublk_params_LAYOUT.size;
  const params = { len, types, basic, discard, devt, zoned, dma, seg, integrity };
  roundTrip(len, u.write_ublk_params, u.read_ublk_params, params);
  roundTrip(24, u.write_ublk_shmem_buf_reg, u.read_ublk_shmem_buf_reg, {
    addr: 0x7f12_3456_7000n,
    len: 1n << 32n,
    flags: u.UBLK_SHMEM_BUF_READ_ONLY,
    reserved: 0,
  });
  roundTrip(8, u.write_ublk_elem_header, u.read_ublk_elem_header, { tag: 4095, buf_index: 7, result: -5 });
  roundTrip(16, u.write_ublk_batch_io, u.read_ublk_batch_io, {
    q_id: 3,
    flags: u.UBLK_BATCH_F_HAS_BUF_ADDR,
    nr_elem: 64,
    elem_bytes: 16,
    reserved: 1,
    reserved2: 2n,
  });
});

test("ublk_params sub-structs land at their offsets", () => {
  const v = new DataView(new ArrayBuffer(u.ublk_params_LAYOUT.size));
  u.write_ublk_params(v, 0, { len: 152, types: 15, basic, discard, devt, zoned, dma, seg, integrity });
  assert.equal(v.getUint32(0, true), 152);
  assert.equal(v.getBigUint64(8 + 16, true), basic.dev_sectors);
  assert.equal(v.getUint16(40 + 16, true), 256);
  assert.equal(v.getUint32(60 + 8, true), 259);
  assert.equal(v.getUint8(76 + 12 + 19), 20);
  assert.equal(v.getUint32(108, true), 511);
  assert.equal(v.getBigUint64(120, true), 0xffff_ffffn);
  assert.equal(v.getUint16(120 + 12, true), 128);
  assert.equal(v.getUint8(136 + 10), 3);
});

test("ublk_params without the parts newer than 6.12: written as zeros, padding too", () => {
  const v = new DataView(new ArrayBuffer(u.ublk_params_LAYOUT.size + 8));
  new Uint8Array(v.buffer).fill(0xa5);
  const types = u.UBLK_PARAM_TYPE_BASIC | u.UBLK_PARAM_TYPE_DISCARD;
  u.write_ublk_params(v, 0, { len: u.ublk_params_LAYOUT.size, types, basic, discard, devt, zoned });
  const bytes = new Uint8Array(v.buffer);
  // 108..151: dma, the 4 padding bytes before seg, seg and integrity; all zero.
  assert.ok(bytes.subarray(108, 152).every((b) => b === 0));
  assert.equal(bytes[152], 0xa5, "wrote past the struct");
  const back = u.read_ublk_params(v, 0);
  assert.deepEqual(back.dma, { alignment: 0 });
  assert.equal(back.seg.max_segments, 0);
  assert.equal(back.integrity.metadata_size, 0);
  assert.equal(back.types, types);
});

test("auto_buf_reg sqe addr and shared-memory zero-copy addr helpers", () => {
  const reg = { index: 0xffff, flags: u.UBLK_AUTO_BUF_REG_FALLBACK, reserved0: 0, reserved1: 0 };
  const addr = u.ublk_auto_buf_reg_to_sqe_addr(reg);
  assert.equal(addr, 0x1ffffn);
  assert.deepEqual(u.ublk_sqe_addr_to_auto_buf_reg(addr), reg);
  assert.equal(u.autoBufRegSqeAddr(0xffff, u.UBLK_AUTO_BUF_REG_FALLBACK), Number(addr));
  assert.equal(u.autoBufRegSqeAddr(5), 5);
  const full = { index: 1, flags: 2, reserved0: 3, reserved1: 0xffffffff };
  assert.deepEqual(u.ublk_sqe_addr_to_auto_buf_reg(u.ublk_auto_buf_reg_to_sqe_addr(full)), full);
  const zc = u.ublk_shmem_zc_addr(0xffff, 0xffffffff);
  assert.equal(zc, 2 ** 48 - 1);
  assert.equal(u.ublk_shmem_zc_index(zc), 0xffff);
  assert.equal(u.ublk_shmem_zc_offset(zc), 0xffffffff);
  assert.equal(u.ublk_shmem_zc_index(u.ublk_shmem_zc_addr(3, 4096)), 3);
  assert.equal(u.ublk_shmem_zc_offset(u.ublk_shmem_zc_addr(3, 4096)), 4096);
  assert.equal(u.ublk_shmem_zc_index(BigInt(zc)), 0xffff);
  assert.equal(u.ublkBatchElemBytes(0), 8);
  assert.equal(u.ublkBatchElemBytes(u.UBLK_BATCH_F_HAS_BUF_ADDR), 16);
  assert.equal(u.ublkBatchElemBytes(u.UBLK_BATCH_F_HAS_BUF_ADDR | u.UBLK_BATCH_F_HAS_ZONE_LBA), 24);
});

test("io_desc hot-path readers", () => {
  const v = new DataView(new ArrayBuffer(24 * 4));
  const off = 24 * 2; // tag 2
  const op = u.UBLK_IO_OP_WRITE | u.UBLK_IO_F_FUA | u.UBLK_IO_F_META;
  v.setUint32(off, op, true);
  v.setUint32(off + 4, 256, true);
  v.setUint32(off + 8, 0x89abcdef, true); // start_sector = 0x1_2345_89abcdef > 2^32
  v.setUint32(off + 12, 0x12345, true);
  v.setUint32(off + 16, 0x1000, true);
  v.setUint32(off + 20, 0x7f12, true);
  assert.equal(u.iodOp(v, off), u.UBLK_IO_OP_WRITE);
  assert.equal(u.iodFlags(v, off), (u.UBLK_IO_F_FUA | u.UBLK_IO_F_META) >>> 8);
  assert.equal(u.iodOpFlags(v, off), op);
  assert.equal(u.iodNrSectors(v, off), 256);
  assert.equal(u.iodStartSector(v, off), 0x12345_89abcdef);
  assert.ok(u.iodStartSector(v, off) > 2 ** 32);
  assert.equal(u.iodAddr(v, off), 0x7f12_0000_1000);
  const s = u.read_ublksrv_io_desc(v, off);
  assert.equal(BigInt(u.iodStartSector(v, off)), s.start_sector);
  assert.equal(BigInt(u.iodAddr(v, off)), s.addr);
});

test("ioctl-encoded commands", () => {
  // _IOR('u', 0x13, 32): dir 2 << 30 | size 32 << 16 | 'u'(0x75) << 8 | nr
  assert.equal(u.UBLK_U_CMD_GET_FEATURES, 0x80207513);
  assert.equal(u.UBLK_U_CMD_DEL_DEV_ASYNC, 0x80207514);
  // _IOWR: dir 3
  assert.equal(u.UBLK_U_CMD_ADD_DEV, 0xc0207504);
  assert.equal(u.UBLK_U_CMD_GET_DEV_INFO, 0x80207502);
  // io cmds: sizeof(ublksrv_io_cmd) = 16
  assert.equal(u.UBLK_U_IO_FETCH_REQ, 0xc0107520);
  assert.equal(u.UBLK_U_IO_COMMIT_AND_FETCH_REQ, 0xc0107521);
  for (const [name, val] of Object.entries(u)) {
    if (!name.startsWith("UBLK_U_")) continue;
    assert.ok(typeof val === "number" && Number.isInteger(val) && val >= 0 && val < 2 ** 32, name);
    assert.equal(_IOC_TYPE(val), 0x75, name);
    assert.equal(_IOC_SIZE(val), name.startsWith("UBLK_U_IO_") ? 16 : 32, name);
  }
  assert.equal(_IOC_NR(u.UBLK_U_CMD_SET_PARAMS), u.UBLK_CMD_SET_PARAMS);
  assert.equal(_IOC_DIR(u.UBLK_U_CMD_GET_PARAMS), 2);
});

test("offset helpers", () => {
  assert.equal(u.ublkQueueCmdBufOffset(0), 0);
  assert.equal(u.ublkQueueCmdBufOffset(1), 4096 * 24);
  assert.equal(u.ublkQueueCmdBufOffset(2, 65536), 2 * 131072);
  assert.equal(u.ublkQueueCmdBufSize(128), 4096);
  assert.equal(u.ublkQueueCmdBufSize(171), 8192); // 171 * 24 = 4104
  assert.equal(u.ublkQueueCmdBufSize(128, 65536), 65536);
  assert.equal(u.ublkUserCopyPos(0, 0), 0x80000000);
  const maxPos = u.ublkUserCopyPos(4095, 4095, u.UBLK_IO_BUF_BITS_MASK);
  assert.ok(Number.isSafeInteger(maxPos));
  assert.equal(BigInt(maxPos), 0x80000000n + (4095n << 41n) + (4095n << 25n) + (1n << 25n) - 1n);
  assert.equal(u.UBLKSRV_IO_BUF_TOTAL_SIZE, 1n << 53n);
});

test("featureNames and devStateName", () => {
  assert.deepEqual(u.featureNames(0x1fe), [
    "UBLK_F_URING_CMD_COMP_IN_TASK",
    "UBLK_F_NEED_GET_DATA",
    "UBLK_F_USER_RECOVERY",
    "UBLK_F_USER_RECOVERY_REISSUE",
    "UBLK_F_UNPRIVILEGED_DEV",
    "UBLK_F_CMD_IOCTL_ENCODE",
    "UBLK_F_USER_COPY",
    "UBLK_F_ZONED",
  ]);
  assert.deepEqual(u.featureNames(0), []);
  assert.deepEqual(u.featureNames((1n << 40n) | 1n), ["UBLK_F_SUPPORT_ZERO_COPY", "UNKNOWN(1<<40)"]);
  assert.equal(u.devStateName(u.UBLK_S_DEV_QUIESCED), "UBLK_S_DEV_QUIESCED");
  assert.equal(u.devStateName(u.UBLK_S_DEV_FAIL_IO), "UBLK_S_DEV_FAIL_IO");
  assert.equal(u.devStateName(9), "UNKNOWN(9)");
});
