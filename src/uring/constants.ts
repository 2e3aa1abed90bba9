// io_uring ABI values used by this project (include/uapi/linux/io_uring.h). Only what is used.

export const IORING_SETUP_CQSIZE = 1 << 3;
export const IORING_SETUP_CLAMP = 1 << 4;
export const IORING_SETUP_SUBMIT_ALL = 1 << 7;
export const IORING_SETUP_COOP_TASKRUN = 1 << 8;
export const IORING_SETUP_TASKRUN_FLAG = 1 << 9;
export const IORING_SETUP_SQE128 = 1 << 10;
export const IORING_SETUP_CQE32 = 1 << 11;
export const IORING_SETUP_SINGLE_ISSUER = 1 << 12;
export const IORING_SETUP_DEFER_TASKRUN = 1 << 13;

export const IORING_ENTER_GETEVENTS = 1 << 0;
export const IORING_TIMEOUT_MULTISHOT = 1 << 6;

export const IORING_OP_NOP = 0;
export const IORING_OP_READV = 1;
export const IORING_OP_WRITEV = 2;
export const IORING_OP_FSYNC = 3;
export const IORING_OP_TIMEOUT = 11;
export const IORING_OP_READ_FIXED = 4;
export const IORING_OP_WRITE_FIXED = 5;
export const IORING_OP_ASYNC_CANCEL = 14;
export const IORING_OP_FALLOCATE = 17;
export const IORING_OP_READ = 22;
export const IORING_OP_WRITE = 23;
export const IORING_OP_URING_CMD = 46;
// Sockets (BIND and LISTEN need Linux 6.11)
export const IORING_OP_SENDMSG = 9;
export const IORING_OP_RECVMSG = 10;
export const IORING_OP_ACCEPT = 13;
export const IORING_OP_CONNECT = 16;
export const IORING_OP_CLOSE = 19;
export const IORING_OP_SEND = 26;
export const IORING_OP_RECV = 27;
export const IORING_OP_SOCKET = 45;
export const IORING_OP_BIND = 56;
export const IORING_OP_LISTEN = 57;

export const IOSQE_FIXED_FILE = 1 << 0;
export const IOSQE_IO_LINK = 1 << 2;
export const IOSQE_ASYNC = 1 << 4;
/** Take the operation's buffer from a provided buffer ring (sqe->buf_group). */
export const IOSQE_BUFFER_SELECT = 1 << 5;
/** No CQE when the operation succeeds (failures still post one). */
export const IOSQE_CQE_SKIP_SUCCESS = 1 << 6;

// io_uring_register(2) opcodes and arguments
export const IORING_REGISTER_FILES = 2;
export const IORING_REGISTER_BUFFERS2 = 15;
/** struct io_uring_rsrc_register.flags: a table of empty slots. */
export const IORING_RSRC_REGISTER_SPARSE = 1 << 0;
/** struct io_uring_buf_reg: a ring of provided buffers, `bgid` being its group. */
export const IORING_REGISTER_PBUF_RING = 22;
export const IORING_UNREGISTER_PBUF_RING = 23;

/** sqe->uring_cmd_flags: the command posts a CQE per event into provided buffers (Linux 6.18). */
export const IORING_URING_CMD_MULTISHOT = 1 << 1;

// cqe->flags
/** The CQE used a provided buffer; its id is flags >> IORING_CQE_BUFFER_SHIFT. */
export const IORING_CQE_F_BUFFER = 1 << 0;
/** A multishot operation stays armed: more CQEs follow. */
export const IORING_CQE_F_MORE = 1 << 1;
export const IORING_CQE_BUFFER_SHIFT = 16;

export const IORING_FSYNC_DATASYNC = 1 << 0;
/** rw_flags: per-IO O_DSYNC, used to honour FUA. */
export const RWF_DSYNC = 0x2;

/** fallocate(2) modes */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** SQE field offsets (struct io_uring_sqe). */
export const SQE_OPCODE = 0;
export const SQE_FLAGS = 1;
export const SQE_IOPRIO = 2;
export const SQE_FD = 4;
export const SQE_OFF = 8; // also cmd_op (u32) for IORING_OP_URING_CMD
export const SQE_ADDR = 16;
export const SQE_LEN = 24;
export const SQE_OP_FLAGS = 28; // rw_flags, fsync_flags, ...
export const SQE_USER_DATA = 32;
export const SQE_BUF_INDEX = 40;
export const SQE_CMD = 48; // uring_cmd payload: 16 bytes (64-byte SQE) or 80 bytes (SQE128)
