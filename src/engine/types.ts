import type { Attachment, PortMapping } from '../drivers/network/cni.js';

/** The container record Ferry keeps (ROOT/containers/ID/container.json), written atomically. */

export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped' | 'exited';

export interface MountSpec {
  type: 'volume' | 'bind' | 'tmpfs';
  /** Volume name, host path, or '' for tmpfs. */
  source: string;
  destination: string;
  options: string[];
  /** A volume made for one of the image's Volumes (a random name; `rm -v` and --rm remove it). */
  anonymous?: boolean;
}

export interface NetworkConfig {
  /** bridge: a network namespace of its own on a CNI bridge network; none: only lo; host: the host's. */
  mode: 'bridge' | 'none' | 'host';
  /** Network name for bridge mode. */
  name?: string;
  /** Requested static address (--ip, --mac-address). */
  ip?: string;
  mac?: string;
  ports: PortMapping[];
  /** --network-alias: other names the network's DNS server gives the container's address. */
  aliases?: string[];
}

export interface ContainerConfig {
  id: string;
  name: string;
  created: string; // ISO
  imageId: string;
  imageName: string;
  /** Full argv of the container's process (its Entrypoint, then its Cmd). */
  command: string[];
  /** How many of command's first words are the Entrypoint (absent: none). */
  entrypointLength?: number;
  env: string[];
  workdir: string;
  /** USER[:GROUP] as --user or the image gave it; resolved in the rootfs at each start. Absent: root. */
  user?: string;
  hostname: string;
  mounts: MountSpec[];
  autoRemove: boolean;
  labels: Record<string, string>;
  stopSignal: string;
  stopTimeout: number;
  /** The ferry command line that created it (Podman's CreateCommand). */
  createCommand?: string[];
  /** Absent in records made before networking: those have mode none. */
  network?: NetworkConfig;
  /** The pod (ID) the container belongs to; it joins the pod infra's shared namespaces. */
  pod?: string;
  /** Set on a pod's infra container: the pod (ID) whose namespaces it holds. */
  infraOf?: string;
  /**
   * Files and directories of the container's own (kept in its bundle) bind-mounted at these
   * paths: what a container imported from Podman had there (/dev/shm, /run/.containerenv), so
   * that its checkpoint's mount table is matched on restore.
   */
  engineMounts?: EngineMount[];
  /** The mode of the root directory (one imported from another engine keeps its own: CRIU checks it on restore). */
  rootMode?: number;
  /** -t: the process gets a terminal (conmon holds its master end). */
  tty?: boolean;
  /** -i: stdin is kept open for attaching (conmon holds a pipe, or the terminal's input). */
  stdin?: boolean;
  /** --security-opt options given (only `seccomp=unconfined`: no filter, io_uring allowed). */
  securityOpt?: string[];
  /** --memory, --cpus, --ulimit ...: applied at every start and restore. */
  resources?: Resources;
  /** --restart (absent: none given, Podman's ""). */
  restartPolicy?: RestartPolicy;
}

/** Resource limits, in Podman's HostConfig units (bytes, nano-CPUs). */
export interface Resources {
  memory?: number;
  /** Memory plus swap; -1: unlimited swap. */
  memorySwap?: number;
  nanoCpus?: number;
  cpuShares?: number;
  /** -1: unlimited. */
  pidsLimit?: number;
  ulimits?: Ulimit[];
  shmSize?: number;
}

/** One --ulimit, as Podman's HostConfig.Ulimits shows it (-1: unlimited). */
export interface Ulimit {
  Name: string;
  Soft: number;
  Hard: number;
}

export interface RestartPolicy {
  Name: 'no' | 'on-failure' | 'always' | 'unless-stopped';
  MaximumRetryCount: number;
}

/** Where a bind mount of the container's own may go, and what it is. */
export const ENGINE_MOUNTS = { '/dev/shm': 'dir', '/run/.containerenv': 'file', '/run/secrets': 'dir' } as const;
export type EngineMount = keyof typeof ENGINE_MOUNTS;

/** The file in a container's bundle that an engine mount binds (/dev/shm -> shm, /run/.containerenv -> .containerenv). */
export function engineMountFile(dest: EngineMount): string {
  return dest.slice(dest.lastIndexOf('/') + 1);
}

/**
 * The operation journal: a multi-step operation records itself in the container's state before
 * it changes anything, with what a repair needs to know; if its process dies, the next command
 * hands the record to the repair handler of the module that owns the operation.
 */
export interface OpArgs {
  start: Record<string, never>;
  stop: Record<string, never>;
  remove: Record<string, never>;
  restore: Record<string, never>;
  checkpoint: CheckpointOpArgs;
  migrate: MigrateOpArgs;
}

export type OpKind = keyof OpArgs;

/** A CRIU dump into imageDir.tmp, committed by renaming it to imageDir. */
export interface CheckpointOpArgs {
  /** The directory the dump becomes: checkpoint/, or a pre-dump (pre-checkpoint, pre-N). */
  imageDir: string;
  /** A memory-only pre-dump (pre-copy round): no metadata, the container runs on. */
  preDump: boolean;
  /** The container is frozen for the dump (by the dump, or by its pod's checkpoint): a repair thaws what it left frozen. */
  frozen: boolean;
  /** What the checkpoint's metadata records (a repair that commits the dump writes it). */
  meta: CheckpointMetaOptions;
}

/** The CRIU options a checkpoint records in its metadata (a restore reuses them). */
export interface CheckpointMetaOptions {
  tcpEstablished: boolean;
  fileLocks: boolean;
  extUnixSk: boolean;
  shellJob: boolean;
  withPrevious: boolean;
  /** The name the checkpoint was given (Docker's checkpoint ID), if any. */
  label?: string;
}

/** The source side of a migration whose dump froze the container or holds its memory. */
export interface MigrateOpArgs {
  /** page-server: frozen, memory sent while dumping; lazy: CRIU serves the memory until the destination has it all. */
  mode: 'page-server' | 'lazy';
  /** Before `committing`, the destination rolls back when the channel goes: the container belongs here. */
  phase: 'freezing' | 'committing';
  destination: string;
}

interface OpBase {
  pid: number;
  startTime?: number;
  since: string;
  /** A helper the operation started (the dump's CRIU) that may outlive a killed ferry. */
  helperPid?: number;
}

/** A multi-step operation in flight; if its process dies, the next command repairs the state. */
export type PendingOp = { [K in OpKind]: OpBase & { name: K; args: OpArgs[K] } }[OpKind];

/** The op record of one kind. */
export type OpOf<K extends OpKind> = Extract<PendingOp, { name: K }>;

export interface ContainerState {
  status: ContainerStatus;
  pid: number;
  conmonPid: number;
  conmonStartTime?: number;
  exitCode: number;
  error?: string;
  startedAt?: string;
  finishedAt?: string;
  checkpointed: boolean;
  checkpointedAt?: string;
  checkpointPath?: string;
  checkpointLog?: string;
  restored: boolean;
  restoredAt?: string;
  restoreLog?: string;
  op?: PendingOp;
  /** The network attachment while the container has one (running, or being set up). */
  net?: Attachment;
  /** The last address it had, kept for restore (same IP, so TCP connections continue). */
  address?: { ip: string; mac: string };
  /** Every packet in and out of its network namespace is dropped (a migration's frozen copy). */
  trafficHeld?: boolean;
  /** The kernel's OOM killer ended its last run (conmon saw it in the memory cgroup). */
  oomKilled?: boolean;
  /** Its restart policy is starting it again (between its exit and the new start). */
  restarting?: boolean;
  /** How many times its restart policy has started it again since it was last started by hand. */
  restartCount?: number;
  /** Stopped by `ferry stop` (or kill): unless-stopped and on-failure do not restart it. */
  stoppedByUser?: boolean;
}

export interface ContainerRecord {
  config: ContainerConfig;
  state: ContainerState;
}

export function initialState(): ContainerState {
  return { status: 'created', pid: 0, conmonPid: 0, exitCode: 0, checkpointed: false, restored: false };
}
