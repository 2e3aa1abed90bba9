// nbd: the ublk-ts nbd target against the kernel's nbd driver (nbd-client), both talking to the same
// nbdkit memory export over the same Unix socket, one connection per queue (the kernel row has one).
import { existsSync, readFileSync, rmSync } from "node:fs";
import type { GuestKind } from "../device.js";
import { must, onTeardown, say, WORK_DIR, waitForNode } from "../exec.js";

export const NBD_SOCKET = `${WORK_DIR}/nbd.sock`;
const PID_FILE = `${WORK_DIR}/nbdkit.pid`;
export const NBD_EXPORT_MIB = 256;
const KERNEL_NBD = "/dev/nbd0";

/** One nbdkit for every nbd row, memory plugin (which allows several connections). */
function startServer(): void {
  rmSync(NBD_SOCKET, { force: true });
  rmSync(PID_FILE, { force: true });
  // nbdkit forks once it listens, leaving its pid behind.
  must("nbdkit", ["-P", PID_FILE, "-U", NBD_SOCKET, "memory", `${NBD_EXPORT_MIB}M`]);
  // Its parent can exit before the server child has written the pid file.
  must("sh", ["-c", `for i in $(seq 1 100); do [ -s ${PID_FILE} ] && exit 0; sleep 0.1; done; exit 1`]);
  const pid = Number(readFileSync(PID_FILE, "utf8").trim());
  onTeardown(`nbdkit ${pid}`, () => {
    process.kill(pid, "SIGTERM");
    rmSync(NBD_SOCKET, { force: true });
  });
  say(`nbdkit ${pid}: memory ${NBD_EXPORT_MIB}M on ${NBD_SOCKET}`);
}

export const nbdKind: GuestKind = {
  prepare: startServer,
  async setUpReference() {
    if (!existsSync("/sys/module/nbd")) must("modprobe", ["nbd"]);
    must("nbd-client", ["-unix", NBD_SOCKET, KERNEL_NBD, "-b", "512", "-C", "1"]);
    onTeardown(KERNEL_NBD, () => must("nbd-client", ["-d", KERNEL_NBD]));
    await waitForNode(KERNEL_NBD);
    const bytes = Number(readFileSync("/sys/block/nbd0/size", "utf8").trim()) * 512;
    if (bytes !== NBD_EXPORT_MIB * 2 ** 20) throw new Error(`${KERNEL_NBD} has ${bytes} bytes`);
    return {
      dev: KERNEL_NBD,
      note: `nbd-client -unix ${NBD_SOCKET} ${KERNEL_NBD} -b 512 -C 1 (nbdkit memory)`,
    };
  },
  ublkTarget: () => ["-t", "nbd", "--socket", NBD_SOCKET],
};
