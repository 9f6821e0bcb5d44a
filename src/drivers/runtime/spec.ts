/** Builds an OCI runtime spec (config.json) for runc, close to what Podman generates. */
import * as fs from 'node:fs';

export interface Mount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface SpecOptions {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  /** The process's user (root when absent). */
  user?: { uid: number; gid: number; additionalGids?: number[] };
  hostname: string;
  /** Bind mounts (volumes, /etc/hosts ...) and tmpfs mounts from --tmpfs. */
  mounts: Mount[];
  /** Namespace paths to join instead of creating new ones (pods, CNI network namespaces). */
  namespacePaths?: Partial<Record<'network' | 'ipc' | 'uts' | 'pid', string>>;
  /** No network namespace at all: share the host's (--network host). */
  hostNetwork?: boolean;
  cgroupsPath: string;
  terminal?: boolean;
  /** The terminal's size at start (rows, columns), when known. */
  consoleSize?: { height: number; width: number };
  annotations?: Record<string, string>;
  /** linux.resources beyond the device rules: memory, cpu, pids (OCI's shapes). */
  resources?: Record<string, unknown>;
  /** process.rlimits (OCI's shape). */
  rlimits?: { type: string; soft: number | string; hard: number | string }[];
  /** The size of /dev/shm in bytes (default 64 MiB). */
  shmSize?: number;
  /** Let the container use io_uring (--security-opt seccomp=unconfined): it then cannot be checkpointed while it holds one. */
  allowIoUring?: boolean;
}

export const DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_NET_BIND_SERVICE',
  'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT',
];

const MASKED = [
  '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/fs/selinux', '/sys/dev/block',
];
const READONLY = ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Built by `npm run setup` (scripts/ferry-lo-up.c): sets lo up in the container's network namespace. */
export const LOOPBACK_UP_HELPER = '/usr/local/lib/ferry/bin/ferry-lo-up';

/**
 * OCI prestart hook: lo up in the container's own network namespace (PID from the state on
 * stdin). The small helper when it is installed, else a shell with sed, nsenter and ip.
 */
export function loopbackUpHook(helper = LOOPBACK_UP_HELPER): { path: string; args: string[]; env?: string[]; timeout: number } {
  if (fs.existsSync(helper)) return { path: helper, args: ['ferry-lo-up'], timeout: 10 };
  return {
    path: '/bin/sh',
    args: ['sh', '-c', 'pid=$(sed -n \'s/.*"pid": *\\([0-9][0-9]*\\).*/\\1/p\'); [ -n "$pid" ] && exec nsenter -t "$pid" -n ip link set lo up'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
    timeout: 10,
  };
}

/** The system calls of io_uring, which CRIU cannot checkpoint: blocked by default. */
export const IO_URING_SYSCALLS = ['io_uring_setup', 'io_uring_enter', 'io_uring_register'];
const ENOSYS = 38;
const SECCOMP_ARCHES: Record<string, string[]> = { x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] };

/**
 * The container's seccomp filter: everything allowed but io_uring, which answers ENOSYS as on
 * a kernel without it, so that programs fall back to epoll and threads (recent libuv, e.g. 1.50
 * in Debian 13's Node.js 20, otherwise holds an io_uring for every event loop, whatever
 * UV_USE_IO_URING says) and the container stays checkpointable. Docker's default profile blocks
 * io_uring too.
 */
function seccomp(): object {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    ...(SECCOMP_ARCHES[process.arch] ? { architectures: SECCOMP_ARCHES[process.arch] } : {}),
    syscalls: [{ names: IO_URING_SYSCALLS, action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS }],
  };
}

export function buildSpec(o: SpecOptions): object {
  const ns: { type: string; path?: string }[] = [];
  for (const type of ['pid', 'network', 'ipc', 'uts', 'mount'] as const) {
    if (type === 'network' && o.hostNetwork) continue;
    const p = type === 'mount' ? undefined : o.namespacePaths?.[type];
    ns.push(p ? { type, path: p } : { type });
  }
  const base: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${o.shmSize !== undefined ? Math.ceil(o.shmSize / 1024) : 65536}k`] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['rprivate', 'nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
  // A mount of the caller's at a standard place (a bind-mounted /dev/shm) replaces the standard one.
  const mounts: Mount[] = [...base.filter((b) => !o.mounts.some((m) => m.destination === b.destination)), ...o.mounts];
  // runc brings up lo in a network namespace it creates, but only when it starts the container:
  // on restore CRIU makes a fresh namespace with lo down (runc always passes --empty-ns network),
  // so connections over 127.0.0.1 fail to restore ("Network is unreachable"). runc runs prestart
  // hooks at CRIU's setup-namespaces step of a restore too, before sockets are restored.
  const ownNetns = !o.hostNetwork && !o.namespacePaths?.network;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: o.terminal ?? false,
      ...(o.terminal && o.consoleSize ? { consoleSize: o.consoleSize } : {}),
      user: o.user ? { uid: o.user.uid, gid: o.user.gid, ...(o.user.additionalGids?.length ? { additionalGids: o.user.additionalGids } : {}) } : { uid: 0, gid: 0 },
      args: o.args,
      env: o.env,
      cwd: o.cwd,
      capabilities: { bounding: DEFAULT_CAPS, effective: DEFAULT_CAPS, permitted: DEFAULT_CAPS },
      noNewPrivileges: false,
      ...(o.rlimits?.length ? { rlimits: o.rlimits } : {}),
    },
    root: { path: o.rootfs, readonly: false },
    hostname: o.hostname,
    mounts,
    annotations: o.annotations ?? {},
    ...(ownNetns ? { hooks: { prestart: [loopbackUpHook()] } } : {}),
    linux: {
      namespaces: ns,
      cgroupsPath: o.cgroupsPath,
      resources: { devices: [{ allow: false, access: 'rwm' }], ...(o.resources ?? {}) },
      maskedPaths: MASKED,
      readonlyPaths: READONLY,
      ...(o.allowIoUring ? {} : { seccomp: seccomp() }),
    },
  };
}
