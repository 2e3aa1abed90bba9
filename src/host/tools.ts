// The one list of programs ublk-ts spawns on the host (or in the VM guest, which runs the host's root
// over 9p), each with the Debian package that provides it and what needs it. `npm run demo`,
// `npm test` and `npm run bench` install what is missing from here on first use (see ensure.ts), and
// a unit test scans the sources so that a newly spawned program cannot be left out of this list.

/** Who spawns a tool: the VM harness, the demo, the test suites, the benchmark. */
export type ToolUse = "vm" | "demo" | "test" | "bench";

export interface HostTool {
  /** Program name looked up on PATH (plus the sbin dirs), or an absolute path of a file. */
  readonly bin: string;
  /** The Debian package that provides it. */
  readonly pkg: string;
  readonly uses: readonly ToolUse[];
  /** Why it is needed, when the name does not say. */
  readonly why?: string;
  /** Never installed for it: what uses it skips (saying why) without it. */
  readonly optional?: boolean;
}

const ALL: readonly ToolUse[] = ["vm", "demo", "test", "bench"];
const RUN: readonly ToolUse[] = ["demo", "test", "bench"];

export const HOST_TOOLS: readonly HostTool[] = [
  // The VM harness (src/vm): boots Debian's 6.12 kernel under qemu with an initramfs it builds.
  { bin: "qemu-system-x86_64", pkg: "qemu-system-x86", uses: ["vm"] },
  { bin: "busybox", pkg: "busybox-static", uses: ["vm"], why: "the initramfs's /init (must be static)" },
  { bin: "cpio", pkg: "cpio", uses: ["vm"] },
  { bin: "xz", pkg: "xz-utils", uses: ["vm"] },
  { bin: "zstd", pkg: "zstd", uses: ["vm"], why: "unpacks vmlinux from the zstd bzImage (PVH boot)" },
  { bin: "depmod", pkg: "kmod", uses: ["vm"], why: "module indexes (the kernel .deb ships none)" },
  { bin: "modprobe", pkg: "kmod", uses: ALL, why: "ublk_drv, ext4, brd, null_blk in the guest" },
  { bin: "apt-get", pkg: "apt", uses: ["vm", "test"], why: "downloads the kernel and header packages" },
  { bin: "apt-cache", pkg: "apt", uses: ["vm", "test"] },
  { bin: "dpkg-deb", pkg: "dpkg", uses: ["vm", "test"] },
  {
    bin: "setpriv",
    pkg: "util-linux",
    uses: ["vm", "test"],
    why: "kills qemu with its parent; runs tests as other users",
  },
  { bin: "bash", pkg: "bash", uses: ALL },
  { bin: "sh", pkg: "dash", uses: ["vm", "test", "bench"] },
  // Filesystems, block devices and IO load.
  { bin: "fio", pkg: "fio", uses: RUN },
  { bin: "mkfs.ext4", pkg: "e2fsprogs", uses: RUN },
  { bin: "fsck.ext4", pkg: "e2fsprogs", uses: RUN },
  { bin: "mount", pkg: "mount", uses: RUN },
  { bin: "umount", pkg: "mount", uses: RUN },
  { bin: "losetup", pkg: "mount", uses: RUN, why: "the kernel loop driver, for comparison" },
  { bin: "blockdev", pkg: "util-linux", uses: ["test"] },
  { bin: "blkdiscard", pkg: "util-linux", uses: ["test"] },
  { bin: "fallocate", pkg: "util-linux", uses: ["test"], why: "the hugetlbfs file of --shmem_zc --htlb" },
  { bin: "taskset", pkg: "util-linux", uses: ["test"], why: "IO through a chosen queue" },
  { bin: "sfdisk", pkg: "fdisk", uses: ["test"], why: "partitions on a device" },
  { bin: "blkzone", pkg: "util-linux", uses: ["test"], why: "zone reports and resets of the zoned target" },
  { bin: "mkfs.f2fs", pkg: "f2fs-tools", uses: ["test"], why: "a zoned filesystem on the zoned target" },
  { bin: "grep", pkg: "grep", uses: ["test"] },
  { bin: "seq", pkg: "coreutils", uses: ["test"] },
  { bin: "ip", pkg: "iproute2", uses: ["test"], why: "loopback up for the NBD servers" },
  // Network and image targets: real servers to talk to, and the kernel's own client to compare with.
  {
    bin: "nbdkit",
    pkg: "nbdkit",
    uses: ["test", "bench"],
    why: "NBD server (memory, file; error, delay filters)",
  },
  { bin: "qemu-nbd", pkg: "qemu-utils", uses: ["test", "bench"] },
  { bin: "qemu-img", pkg: "qemu-utils", uses: ["test", "bench"], why: "makes and checks qcow2 images" },
  { bin: "qemu-io", pkg: "qemu-utils", uses: ["test"], why: "writes qcow2 images the way QEMU does" },
  { bin: "nbd-client", pkg: "nbd-client", uses: ["bench"], why: "the kernel nbd driver's client" },
  {
    bin: "dmsetup",
    pkg: "dmsetup",
    uses: ["bench"],
    why: "dm-stripe, the kernel reference for the stripe target",
  },
  // Plain file tools (Debian's essential set; listed so that nothing spawned is unaccounted for).
  { bin: "truncate", pkg: "coreutils", uses: RUN },
  { bin: "sync", pkg: "coreutils", uses: RUN },
  { bin: "dd", pkg: "coreutils", uses: ["test", "bench"] },
  { bin: "head", pkg: "coreutils", uses: ["test", "bench"] },
  { bin: "od", pkg: "coreutils", uses: ["test"] },
  { bin: "sort", pkg: "coreutils", uses: ["test"] },
  { bin: "cut", pkg: "coreutils", uses: ["test"] },
  { bin: "cat", pkg: "coreutils", uses: ["test"] },
  { bin: "cp", pkg: "coreutils", uses: ["test"] },
  { bin: "ls", pkg: "coreutils", uses: ["test"] },
  { bin: "mkdir", pkg: "coreutils", uses: ["test"] },
  { bin: "mkfifo", pkg: "coreutils", uses: ["test"] },
  { bin: "sha256sum", pkg: "coreutils", uses: ["test"] },
  { bin: "sleep", pkg: "coreutils", uses: ["test"] },
  { bin: "tr", pkg: "coreutils", uses: ["test"] },
  { bin: "touch", pkg: "coreutils", uses: ["test"] },
  { bin: "rm", pkg: "coreutils", uses: ["test"] },
  { bin: "stat", pkg: "coreutils", uses: ["test"] },
  { bin: "timeout", pkg: "coreutils", uses: ["test"] },
  { bin: "cmp", pkg: "diffutils", uses: ["test"] },
  { bin: "find", pkg: "findutils", uses: ["test"] },
  { bin: "xargs", pkg: "findutils", uses: ["test"] },
  { bin: "getconf", pkg: "libc-bin", uses: ["bench"], why: "CLK_TCK, for daemon CPU time" },
  // The UAPI layout test compiles a C probe against the 6.12 header (not needed to build ublk-ts).
  { bin: "cc", pkg: "gcc", uses: ["test"], why: "the UAPI layout probe" },
  { bin: "/usr/include/stdio.h", pkg: "libc6-dev", uses: ["test"], why: "the UAPI layout probe" },
  { bin: "/usr/include/linux/ioctl.h", pkg: "linux-libc-dev", uses: ["test"], why: "the UAPI layout probe" },
  // Checks the shipped unit file where systemd is present; not worth installing systemd for.
  { bin: "systemd-analyze", pkg: "systemd", uses: ["test"], optional: true },
];

/** The tools one or more uses need. */
export function toolsFor(uses: readonly ToolUse[]): HostTool[] {
  return HOST_TOOLS.filter((t) => t.uses.some((u) => uses.includes(u)));
}

/** Looks a program up in the list by name (the basename of a path). */
export function hostTool(name: string): HostTool | undefined {
  const base = name.slice(name.lastIndexOf("/") + 1);
  return HOST_TOOLS.find((t) => t.bin === name || t.bin === base);
}
