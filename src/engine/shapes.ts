/**
 * The JSON shapes Ferry shows the world, in Podman's field names. Defined once here so the
 * CLI (`ps --format json`, `inspect`) and the future REST API print the same thing.
 */
import { goDuration, type StatsSample } from './everyday.js';
import * as os from 'node:os';
import type { ContainerRecord, MountSpec } from './types.js';
import type { ContainerFacts } from './facts.js';
import { DEFAULT_CAPS } from '../drivers/runtime/spec.js';
import type { ImageRecord, OciImageConfig } from '../drivers/storage/images.js';
import { DEFAULT_NETWORK } from '../drivers/network/cni.js';
import type { Paths } from './paths.js';
import type { PodView } from './pods.js';
import type { CheckpointReport } from './checkpoint.js';
import type { RestoreReport } from './restore.js';

const ZERO_TIME = '0001-01-01T00:00:00Z';

/** What `ps --format json` adds from outside the record: the pod's name, sizes when asked (`--size`). */
export interface PsExtras {
  podName?: string;
  size?: { rootFsSize: number; rwSize: number };
}

/** The pod a container belongs to (an infra container's too), or ''. */
const podOf = (c: ContainerRecord['config']): string => c.pod ?? c.infraOf ?? '';

export function psEntry(r: ContainerRecord, x: PsExtras = {}, now = Date.now()): Record<string, unknown> {
  const c = r.config;
  const s = r.state;
  const running = s.status === 'running' || s.status === 'paused';
  return {
    AutoRemove: c.autoRemove,
    Command: c.command.length ? c.command : null,
    // Podman 4.3.1's JSON words CreatedAt and Status as its table does ("5 minutes ago", "Up 5 minutes ago").
    CreatedAt: `${humanDuration(now - Date.parse(c.created))} ago`,
    Exited: s.status === 'exited' || s.status === 'stopped',
    ExitedAt: s.finishedAt ? Math.floor(Date.parse(s.finishedAt) / 1000) : -62135596800,
    ExitCode: s.exitCode,
    Id: c.id,
    Image: c.imageName,
    ImageID: c.imageId,
    IsInfra: !!c.infraOf,
    Labels: Object.keys(c.labels).length ? c.labels : null,
    Mounts: c.mounts.map((m) => m.destination),
    Names: [c.name],
    Namespaces: {},
    Networks: c.network?.mode === 'bridge' ? [c.network.name ?? 'ferry'] : [],
    Pid: running ? s.pid : 0,
    Pod: podOf(c),
    PodName: x.podName ?? '',
    Ports: c.network?.ports.length ? c.network.ports.map((p) => ({ host_ip: p.hostIP ?? '', container_port: p.containerPort, host_port: p.hostPort, range: 1, protocol: p.protocol })) : null,
    Size: x.size ?? null,
    StartedAt: s.startedAt ? Math.floor(Date.parse(s.startedAt) / 1000) : -62135596800,
    State: s.status,
    Status: psStatusText(r, now),
    Created: Math.floor(Date.parse(c.created) / 1000),
    Checkpointed: s.checkpointed,
  };
}

/** Podman 4.3.1's ps JSON Status: "Up 5 minutes ago", "Exited (0) 3 seconds ago", "Created". */
function psStatusText(r: ContainerRecord, now: number): string {
  const t = statusText(r, now);
  return r.state.status === 'running' ? `${t} ago` : t;
}

/** `inspect`'s facts when the caller has none (a record only): what can be told from the record. */
function recordFacts(r: ContainerRecord, paths?: Paths): ContainerFacts {
  return {
    podName: '',
    podInfraId: '',
    podShare: [],
    imageDigest: '',
    lowerDirs: [],
    effectiveCaps: DEFAULT_CAPS,
    boundingCaps: DEFAULT_CAPS,
    execIds: [],
    env: r.config.env,
    specMounts: new Map(),
    volumePaths: new Map(),
    rlimits: [],
    annotations: {},
    ociVersion: '1.0.2',
    cgroupPath: paths?.cgroup(r.config.id) ?? '',
  };
}

/** Mount options as the spec has them, without rw/ro and the propagation (shown apart). */
const PROPAGATIONS = ['rprivate', 'private', 'rshared', 'shared', 'rslave', 'slave'];
function mountView(m: MountSpec, f: ContainerFacts): { source: string; options: string[]; rw: boolean; propagation: string; all: string[] } {
  const spec = f.specMounts.get(m.destination);
  const all = spec?.options ?? (m.type === 'tmpfs' ? ['rw', 'nosuid', 'nodev', ...m.options] : ['rbind', 'rprivate', m.options.includes('ro') ? 'ro' : 'rw']);
  const rw = !all.includes('ro') && !m.options.includes('ro');
  return {
    source: m.type === 'volume' ? f.volumePaths.get(m.source) ?? m.source : m.type === 'tmpfs' ? 'tmpfs' : m.source,
    options: all.filter((o) => o !== 'rw' && o !== 'ro' && !PROPAGATIONS.includes(o)),
    rw,
    propagation: all.find((o) => PROPAGATIONS.includes(o)) ?? (m.type === 'tmpfs' ? '' : 'rprivate'),
    all,
  };
}

/** Podman's namespace modes: another container's ("container:ID"), or its own. */
function nsMode(f: ContainerFacts, ns: string, own: string): string {
  return f.podShare.includes(ns) && f.podInfraId ? `container:${f.podInfraId}` : own;
}

function podmanNetworkMode(r: ContainerRecord, f: ContainerFacts): string {
  if (f.podShare.includes('net') && f.podInfraId) return `container:${f.podInfraId}`;
  const n = r.config.network;
  if (!n || n.mode === 'none') return 'none';
  return n.mode === 'host' ? 'host' : 'bridge';
}

function portBindings(r: ContainerRecord): Record<string, { HostIp: string; HostPort: string }[]> {
  const ports: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of r.config.network?.ports ?? []) (ports[`${p.containerPort}/${p.protocol}`] ??= []).push({ HostIp: p.hostIP ?? '', HostPort: String(p.hostPort) });
  return ports;
}

/**
 * `podman inspect` of a container (Podman 4.3.1's InspectContainerData), for the CLI and the
 * libpod API: facts (containerFacts) give what the record does not hold.
 */
export function inspectEntry(r: ContainerRecord, paths: Paths, facts?: ContainerFacts): Record<string, unknown> {
  const c = r.config;
  const s = r.state;
  const f = facts ?? recordFacts(r, paths);
  const cp = paths.conmon(c.id);
  const live = s.status === 'running' || s.status === 'paused';
  const layer = paths.layer(c.id);
  const mounts = c.mounts.map((m) => ({ m, v: mountView(m, f) }));
  const sig = (os.constants.signals as Record<string, number | undefined>)[`SIG${c.stopSignal}`] ?? (/^[0-9]+$/.test(c.stopSignal) ? Number(c.stopSignal) : 15);
  return {
    Id: c.id,
    Created: c.created,
    Path: c.command[0] ?? '',
    Args: c.command.slice(1),
    State: {
      OciVersion: f.ociVersion,
      Status: s.status,
      Running: s.status === 'running',
      Paused: s.status === 'paused',
      Restarting: !!s.restarting,
      OOMKilled: !!s.oomKilled,
      Dead: false,
      Pid: live ? s.pid : 0,
      ConmonPid: live ? s.conmonPid : 0,
      ExitCode: s.exitCode,
      Error: s.error ?? '',
      StartedAt: s.startedAt ?? ZERO_TIME,
      FinishedAt: s.finishedAt ?? ZERO_TIME,
      // No health checks in Ferry: Podman's value for a container without one.
      Health: { Status: '', FailingStreak: 0, Log: null },
      CgroupPath: f.cgroupPath,
      Checkpointed: s.checkpointed,
      CheckpointedAt: s.checkpointedAt ?? ZERO_TIME,
      CheckpointPath: s.checkpointPath ?? '',
      CheckpointLog: s.checkpointLog ?? '',
      Restored: s.restored,
      RestoredAt: s.restoredAt ?? ZERO_TIME,
      RestoreLog: s.restoreLog ?? '',
    },
    Image: c.imageId,
    ImageDigest: f.imageDigest,
    ImageName: c.imageName,
    Rootfs: '',
    Pod: podOf(c),
    ResolvConfPath: `${paths.bundle(c.id)}/resolv.conf`,
    HostnamePath: `${paths.bundle(c.id)}/hostname`,
    HostsPath: `${paths.bundle(c.id)}/hosts`,
    StaticDir: paths.bundle(c.id),
    OCIConfigPath: `${paths.bundle(c.id)}/config.json`,
    OCIRuntime: 'runc',
    ConmonPidFile: cp.conmonPidFile,
    PidFile: cp.pidFile,
    Name: c.name,
    RestartCount: s.restartCount ?? 0,
    Driver: 'overlay',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    EffectiveCaps: f.effectiveCaps,
    BoundingCaps: f.boundingCaps,
    ExecIDs: f.execIds,
    GraphDriver: {
      Name: 'overlay',
      Data: { ...(f.lowerDirs.length ? { LowerDir: f.lowerDirs.join(':') } : {}), MergedDir: layer.merged, UpperDir: layer.upper, WorkDir: layer.work },
    },
    Mounts: mounts.map(({ m, v }) => ({
      Type: m.type,
      ...(m.type === 'volume' ? { Name: m.source } : {}),
      Source: v.source,
      Destination: m.destination,
      Driver: m.type === 'volume' ? 'local' : '',
      Mode: '',
      Options: v.options,
      RW: v.rw,
      Propagation: v.propagation,
    })),
    Dependencies: f.podInfraId ? [f.podInfraId] : [],
    NetworkSettings: networkSettings(r),
    Namespace: '',
    IsInfra: !!c.infraOf,
    IsService: false,
    ...(f.size ? { SizeRw: f.size.rwSize, SizeRootFs: f.size.rootFsSize } : {}),
    Config: {
      ...configCommon(c),
      Env: f.env,
      // Podman 4.3.1 shows the entrypoint as one string, the stop signal as a number.
      Entrypoint: entrypoint(c).join(' '),
      OnBuild: null,
      Labels: Object.keys(c.labels).length ? c.labels : null,
      Annotations: f.annotations,
      StopSignal: sig,
      HealthcheckOnFailureAction: 'none',
      CreateCommand: c.createCommand ?? [],
      Umask: '0022',
      Timeout: 0,
      StopTimeout: c.stopTimeout,
      // Ferry adds no user to the image's /etc/passwd, and passes no sd-notify socket.
      Passwd: false,
      sdNotifyMode: 'ignore',
    },
    HostConfig: {
      Binds: mounts.filter(({ m }) => m.type !== 'tmpfs').map(({ m, v }) => `${m.source}:${m.destination}:${[v.rw ? 'rw' : 'ro', v.propagation, ...v.options].filter(Boolean).join(',')}`),
      CgroupManager: 'cgroupfs',
      CgroupMode: 'host',
      ContainerIDFile: '',
      LogConfig: { Type: 'k8s-file', Config: null, Path: paths.logPath(c.id), Tag: '', Size: '0B' },
      NetworkMode: podmanNetworkMode(r, f),
      PortBindings: portBindings(r),
      RestartPolicy: { Name: c.restartPolicy?.Name ?? '', MaximumRetryCount: c.restartPolicy?.MaximumRetryCount ?? 0 },
      AutoRemove: c.autoRemove,
      VolumeDriver: '',
      VolumesFrom: null,
      CapAdd: [],
      CapDrop: [],
      Dns: [],
      DnsOptions: [],
      DnsSearch: [],
      ExtraHosts: [],
      GroupAdd: [],
      IpcMode: nsMode(f, 'ipc', 'shareable'),
      Cgroup: '',
      Cgroups: 'default',
      Links: null,
      OomScoreAdj: 0,
      PidMode: 'private',
      Privileged: false,
      PublishAllPorts: false,
      ReadonlyRootfs: false,
      SecurityOpt: c.securityOpt ?? [],
      Tmpfs: Object.fromEntries(mounts.filter(({ m }) => m.type === 'tmpfs').map(({ m, v }) => [m.destination, v.all.join(',')])),
      UTSMode: nsMode(f, 'uts', 'private'),
      UsernsMode: '',
      ShmSize: c.resources?.shmSize ?? 65536 * 1024,
      Runtime: 'oci',
      ConsoleSize: [0, 0],
      Isolation: '',
      ...podmanLimits(c, f),
    },
  };
}

/** Podman's HostConfig resource fields (after ShmSize/Runtime), from the container's settings. */
function podmanLimits(c: ContainerRecord['config'], f: ContainerFacts): Record<string, unknown> {
  const l = hostConfigLimits(c);
  return {
    CpuShares: l.CpuShares,
    Memory: l.Memory,
    NanoCpus: l.NanoCpus,
    CgroupParent: '',
    BlkioWeight: 0,
    BlkioWeightDevice: null,
    BlkioDeviceReadBps: null,
    BlkioDeviceWriteBps: null,
    BlkioDeviceReadIOps: null,
    BlkioDeviceWriteIOps: null,
    CpuPeriod: l.CpuPeriod,
    CpuQuota: l.CpuQuota,
    CpuRealtimePeriod: 0,
    CpuRealtimeRuntime: 0,
    CpusetCpus: '',
    CpusetMems: '',
    Devices: [],
    DiskQuota: 0,
    KernelMemory: 0,
    MemoryReservation: 0,
    MemorySwap: l.MemorySwap,
    MemorySwappiness: -1,
    OomKillDisable: false,
    PidsLimit: l.PidsLimit,
    // The settings in Podman's units (-1: unlimited); else what the spec gives the process.
    Ulimits: c.resources?.ulimits?.length ? c.resources.ulimits : f.rlimits,
    CpuCount: 0,
    CpuPercent: 0,
    IOMaximumIOps: 0,
    IOMaximumBandwidth: 0,
    CgroupConf: null,
  };
}

/** Podman's HostConfig fields for resource limits and the restart policy (0: none). */
export function hostConfigLimits(c: ContainerRecord['config']): Record<string, unknown> {
  const r = c.resources ?? {};
  return {
    Memory: r.memory ?? 0,
    MemorySwap: r.memorySwap ?? 0,
    NanoCpus: r.nanoCpus ?? 0,
    CpuShares: r.cpuShares ?? 0,
    CpuQuota: r.nanoCpus !== undefined ? Math.round(r.nanoCpus / 1e4) : 0,
    CpuPeriod: r.nanoCpus !== undefined ? 100000 : 0,
    PidsLimit: r.pidsLimit ?? 0,
    Ulimits: r.ulimits ?? [],
    ShmSize: r.shmSize ?? 65536 * 1024,
    RestartPolicy: { Name: c.restartPolicy?.Name ?? '', MaximumRetryCount: c.restartPolicy?.MaximumRetryCount ?? 0 },
  };
}

/** What Podman's and Docker's inspect both have in Config, alike. */
function configCommon(c: ContainerRecord['config']) {
  return {
    Hostname: c.hostname,
    Domainname: '',
    User: c.user ?? '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: !!c.tty,
    OpenStdin: !!c.stdin,
    StdinOnce: false,
    Env: c.env,
    // The arguments after the image's (or --entrypoint's) entrypoint.
    Cmd: c.command.slice(c.entrypointLength ?? 0),
    Image: c.imageName,
    Volumes: null,
    WorkingDir: c.workdir,
  };
}

/** The entrypoint part of the container's command. */
const entrypoint = (c: ContainerRecord['config']): string[] => c.command.slice(0, c.entrypointLength ?? 0);

/** Podman's NetworkSettings: the address while the container has one. */
function networkSettings(r: ContainerRecord): Record<string, unknown> {
  const n = r.state.net;
  const settings = {
    EndpointID: '',
    Gateway: n?.gateway ?? '',
    IPAddress: n?.ip ?? '',
    IPPrefixLen: n?.prefixLength ?? 0,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    MacAddress: n?.mac ?? '',
  };
  return {
    ...settings,
    Bridge: '',
    SandboxID: '',
    HairpinMode: false,
    LinkLocalIPv6Address: '',
    LinkLocalIPv6PrefixLen: 0,
    Ports: portBindings(r),
    SandboxKey: n?.netnsPath ?? '',
    ...(n ? { Networks: { [n.network]: { ...settings, NetworkID: n.network, DriverOpts: null, IPAMConfig: null, Links: null, Aliases: null } } } : {}),
  };
}

/** NAME@DIGEST for each of the image's names (Podman's RepoDigests), with any it was pulled by. */
function repoDigests(i: ImageRecord): string[] {
  const out = new Set(i.RepoDigests);
  if (i.Digest) for (const n of i.Names) out.add(`${n.replace(/:[^:/]*$/, '')}@${i.Digest}`);
  return [...out];
}

/** An image as `podman images --format json` shows it. */
export function imageEntry(i: ImageRecord, containers = 0): Record<string, unknown> {
  return {
    Id: i.Id,
    ParentId: '',
    RepoTags: null,
    RepoDigests: repoDigests(i),
    Size: i.Size,
    SharedSize: 0,
    VirtualSize: i.Size,
    Labels: i.Config.Labels && Object.keys(i.Config.Labels).length ? i.Config.Labels : null,
    Containers: containers,
    Names: i.Names,
    Digest: i.Digest,
    History: i.Names,
    Created: Math.floor(Date.parse(i.Created) / 1000),
    CreatedAt: i.Created,
  };
}

/** An image as `podman image inspect` shows it (config blob and overlay dirs from the store). */
export function imageInspectEntry(i: ImageRecord, cfg: OciImageConfig, layerDirs: string[], annotations: Record<string, string> = {}): Record<string, unknown> {
  const dirs = [...layerDirs].reverse(); // top first
  return {
    Id: i.Id,
    Digest: i.Digest,
    RepoTags: i.Names,
    RepoDigests: repoDigests(i),
    Parent: '',
    Comment: cfg.history?.length ? cfg.history[cfg.history.length - 1]!.comment ?? '' : '',
    Created: i.Created,
    Config: cfg.config ?? {},
    Version: '',
    Author: cfg.author ?? '',
    Architecture: i.Architecture,
    Os: i.Os,
    Size: i.Size,
    VirtualSize: i.Size,
    GraphDriver: { Name: 'overlay', Data: { ...(dirs.length > 1 ? { LowerDir: dirs.slice(1).join(':') } : {}), ...(dirs.length ? { UpperDir: dirs[0] } : {}) } },
    RootFS: { Type: 'layers', Layers: cfg.rootfs.diff_ids },
    Labels: cfg.config?.Labels ?? null,
    Annotations: annotations,
    ManifestType: i.ManifestType,
    User: cfg.config?.User ?? '',
    History: cfg.history ?? [],
    NamesHistory: i.Names,
  };
}

export interface HistoryRow {
  id: string;
  created: string;
  createdBy: string;
  size: number;
  comment: string;
}

/** `podman image history`: the config's history, newest first, each non-empty step with its layer's size. */
export function imageHistory(i: ImageRecord, cfg: OciImageConfig, layerSize: (diffId: string) => number): HistoryRow[] {
  const rows: HistoryRow[] = [];
  let layer = 0;
  const hist = cfg.history?.length ? cfg.history : cfg.rootfs.diff_ids.map(() => ({}) as NonNullable<OciImageConfig['history']>[number]);
  for (const h of hist) {
    const empty = !!h.empty_layer;
    const diff = empty ? undefined : cfg.rootfs.diff_ids[layer++];
    rows.push({ id: '<missing>', created: h.created ?? i.Created, createdBy: h.created_by ?? '', size: diff ? layerSize(diff) : 0, comment: h.comment ?? '' });
  }
  rows.reverse();
  if (rows[0]) rows[0].id = i.Id;
  return rows;
}

/** Podman's STATUS column: "Up 5 minutes", "Exited (0) 3 seconds ago", "Created". */
export function statusText(r: ContainerRecord, now = Date.now()): string {
  const s = r.state;
  switch (s.status) {
    case 'running':
      return `Up ${humanDuration(now - Date.parse(s.startedAt ?? r.config.created))}`;
    case 'paused':
      return 'Paused';
    case 'created':
      return 'Created';
    default: {
      const ago = humanDuration(now - Date.parse(s.finishedAt ?? s.checkpointedAt ?? r.config.created));
      if (s.checkpointed) return `Checkpointed ${ago} ago`;
      return `Exited (${s.exitCode}) ${ago} ago`;
    }
  }
}

/** go-units' HumanDuration, which Podman uses. */
export function humanDuration(ms: number): string {
  const sec = Math.round(ms / 1000);
  if (sec < 1) return 'Less than a second';
  if (sec === 1) return '1 second';
  if (sec < 60) return `${sec} seconds`;
  const min = Math.floor(sec / 60);
  if (min === 1) return 'About a minute';
  if (min < 60) return `${min} minutes`;
  const h = Math.round(min / 60);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

/** A pod's containers as Podman lists them: the members, then the infra. */
const podContainers = (v: PodView): ContainerRecord[] => [...v.members, ...(v.infra ? [v.infra] : [])];

/** The networks of a pod (its infra's), or null when it has none of its own. */
function podNetworks(v: PodView): string[] | null {
  const n = v.infra?.config.network;
  return n?.mode === 'bridge' ? [n.name ?? 'ferry'] : null;
}

/** A pod in `pod ps --format json` (Podman's ListPodsReport fields). */
export function podPsEntry(v: PodView): Record<string, unknown> {
  const p = v.pod;
  return {
    Cgroup: '',
    Containers: podContainers(v).map((m) => ({ Id: m.config.id, Names: m.config.name, Status: m.state.status })),
    Created: p.created,
    Id: p.id,
    InfraId: p.infraId,
    Name: p.name,
    Namespace: '',
    Networks: podNetworks(v) ?? [],
    Status: v.status,
    Labels: {},
    Share: p.share,
    Hostname: p.hostname,
    NumberOfContainers: v.containers,
  };
}

/** A pod in `pod inspect` (Podman 4.3.1's InspectPodData). */
export function podInspectEntry(v: PodView): Record<string, unknown> {
  const p = v.pod;
  const net = v.infra?.config.network;
  const ports: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const x of net?.ports ?? []) (ports[`${x.containerPort}/${x.protocol}`] ??= []).push({ HostIp: x.hostIP ?? '', HostPort: String(x.hostPort) });
  return {
    Id: p.id,
    Name: p.name,
    Created: p.created,
    CreateCommand: p.createCommand ?? [],
    ExitPolicy: 'continue',
    State: v.status,
    Hostname: p.hostname,
    // Ferry's pods have no cgroup of their own: each container has its own.
    CreateCgroup: false,
    CgroupParent: '',
    CgroupPath: '',
    CreateInfra: true,
    InfraContainerID: p.infraId,
    InfraConfig: {
      PortBindings: ports,
      HostNetwork: net?.mode === 'host',
      StaticIP: net?.ip ?? '',
      StaticMAC: net?.mac ?? '',
      NoManageResolvConf: false,
      DNSServer: null,
      DNSSearch: null,
      DNSOption: null,
      NoManageHosts: false,
      HostAdd: null,
      Networks: podNetworks(v),
      NetworkOptions: null,
      pid_ns: 'private',
      userns: 'host',
      uts_ns: 'private',
    },
    SharedNamespaces: p.share,
    NumContainers: v.containers,
    Containers: podContainers(v).map((m) => ({ Id: m.config.id, Name: m.config.name, State: m.state.status })),
  };
}

/** Podman's --print-stats document of a checkpoint or restore: durations in microseconds, CRIU's figures by CRIU's names. */
export function checkpointStats(kind: 'checkpoint' | 'restore', reports: (CheckpointReport | RestoreReport)[]): Record<string, unknown> {
  const us = (ms: number): number => Math.round(ms * 1000);
  const snake = (o: object | undefined): Record<string, number> | null =>
    o ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/Us$/, '').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v as number])) : null;
  return {
    [`podman_${kind}_duration`]: us(reports.reduce((a, r) => a + r.totalMs, 0)),
    container_statistics: reports.map((r) => ({
      Id: r.id,
      [`runtime_${kind}_duration`]: us(r.runtimeMs),
      engine_duration: us(r.totalMs),
      criu_statistics: snake(r.criu),
    })),
  };
}

// ------------------------------------------------------------------------- Docker's shapes

/** Docker's container states: Ferry's `stopped` is Docker's `exited`. */
export function dockerStatus(r: ContainerRecord): string {
  return r.state.status === 'stopped' ? 'exited' : r.state.status;
}

/** Docker's STATUS text: "Up 5 minutes", "Exited (0) 3 seconds ago", "Created". */
function dockerStatusText(r: ContainerRecord, now = Date.now()): string {
  const s = r.state;
  if (s.status === 'paused') return `Up ${humanDuration(now - Date.parse(s.startedAt ?? r.config.created))} (Paused)`;
  if (s.status === 'exited' || s.status === 'stopped') return `Exited (${s.exitCode}) ${humanDuration(now - Date.parse(s.finishedAt ?? s.checkpointedAt ?? r.config.created))} ago`;
  return statusText(r, now);
}

function dockerNetworkMode(r: ContainerRecord): string {
  const n = r.config.network;
  if (!n) return 'none';
  return n.mode === 'bridge' ? n.name ?? 'bridge' : n.mode;
}

function dockerPorts(r: ContainerRecord): Record<string, unknown>[] {
  return (r.config.network?.ports ?? []).map((p) => ({ IP: p.hostIP || '0.0.0.0', PrivatePort: p.containerPort, PublicPort: p.hostPort, Type: p.protocol }));
}

function dockerMounts(r: ContainerRecord, f: ContainerFacts): Record<string, unknown>[] {
  return r.config.mounts.map((m) => {
    const v = mountView(m, f);
    return {
      Type: m.type,
      ...(m.type === 'volume' ? { Name: m.source } : {}),
      Source: m.type === 'tmpfs' ? '' : v.source,
      Destination: m.destination,
      Driver: m.type === 'volume' ? 'local' : '',
      Mode: m.options.filter((o) => o !== 'rw' && o !== 'ro').join(','),
      RW: v.rw,
      Propagation: m.type === 'bind' ? v.propagation : '',
    };
  });
}

/**
 * Docker's NetworkSettings.Networks: the network a container is on, from its creation (the
 * address while it has one). On a user-defined network its aliases end with its short ID, as Docker's.
 */
function dockerNetworks(r: ContainerRecord): Record<string, unknown> {
  const c = r.config.network;
  const n = r.state.net;
  const name = n?.network ?? (c?.mode === 'bridge' ? c.name ?? DEFAULT_NETWORK : undefined);
  if (!name) return {};
  return {
    [name]: {
      IPAMConfig: c?.ip ? { IPv4Address: c.ip } : null,
      Links: null,
      Aliases: name === DEFAULT_NETWORK ? null : [...(c?.aliases ?? []), r.config.id.slice(0, 12)],
      NetworkID: name,
      EndpointID: '',
      Gateway: n?.gateway ?? '',
      IPAddress: n?.ip ?? '',
      IPPrefixLen: n?.prefixLength ?? 0,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      MacAddress: n?.mac ?? '',
      DriverOpts: null,
    },
  };
}

/** One container of Docker's `GET /containers/json` (moby's types.Container); sizes with `size=1`. */
export function dockerPsEntry(r: ContainerRecord, f?: ContainerFacts): Record<string, unknown> {
  const c = r.config;
  return {
    Id: c.id,
    Names: [`/${c.name}`],
    Image: c.imageName,
    ImageID: `sha256:${c.imageId}`,
    Command: c.command.join(' '),
    Created: Math.floor(Date.parse(c.created) / 1000),
    Ports: dockerPorts(r),
    ...(f?.size ? { SizeRw: f.size.rwSize, SizeRootFs: f.size.rootFsSize } : {}),
    Labels: c.labels,
    State: dockerStatus(r),
    Status: dockerStatusText(r),
    HostConfig: { NetworkMode: dockerNetworkMode(r) },
    NetworkSettings: { Networks: dockerNetworks(r) },
    Mounts: dockerMounts(r, f ?? recordFacts(r)),
  };
}

/**
 * Docker's `GET /containers/{id}/json` (moby's types.ContainerJSON, API v1.41): Docker's State
 * (Status in Docker's words), HostConfig, NetworkSettings.Networks, Mounts, Config. Not Podman's.
 */
export function dockerInspectEntry(r: ContainerRecord, paths: Paths, facts?: ContainerFacts): Record<string, unknown> {
  const c = r.config;
  const s = r.state;
  const f = facts ?? recordFacts(r, paths);
  const live = s.status === 'running' || s.status === 'paused';
  const ports: Record<string, { HostIp: string; HostPort: string }[] | null> = portBindings(r);
  const n = s.net;
  const layer = paths.layer(c.id);
  const l = hostConfigLimits(c);
  const exposed = Object.fromEntries(Object.keys(ports).map((k) => [k, {}]));
  return {
    Id: c.id,
    Created: c.created,
    Path: c.command[0] ?? '',
    Args: c.command.slice(1),
    State: {
      Status: dockerStatus(r),
      Running: live,
      Paused: s.status === 'paused',
      Restarting: !!s.restarting,
      OOMKilled: !!s.oomKilled,
      Dead: false,
      Pid: live ? s.pid : 0,
      ExitCode: s.exitCode,
      Error: s.error ?? '',
      StartedAt: s.startedAt ?? ZERO_TIME,
      FinishedAt: s.finishedAt ?? ZERO_TIME,
    },
    Image: `sha256:${c.imageId}`,
    ResolvConfPath: `${paths.bundle(c.id)}/resolv.conf`,
    HostnamePath: `${paths.bundle(c.id)}/hostname`,
    HostsPath: `${paths.bundle(c.id)}/hosts`,
    LogPath: paths.logPath(c.id),
    Name: `/${c.name}`,
    RestartCount: s.restartCount ?? 0,
    Driver: 'overlay',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: f.execIds.length ? f.execIds : null,
    HostConfig: {
      Binds: c.mounts.filter((m) => m.type !== 'tmpfs').map((m) => `${m.source}:${m.destination}${m.options.length ? `:${m.options.join(',')}` : ''}`),
      ContainerIDFile: '',
      LogConfig: { Type: 'k8s-file', Config: {} },
      NetworkMode: dockerNetworkMode(r),
      PortBindings: ports,
      RestartPolicy: { Name: c.restartPolicy?.Name ?? 'no', MaximumRetryCount: c.restartPolicy?.MaximumRetryCount ?? 0 },
      AutoRemove: c.autoRemove,
      VolumeDriver: '',
      VolumesFrom: null,
      CapAdd: null,
      CapDrop: null,
      CgroupnsMode: 'host',
      Dns: [],
      DnsOptions: [],
      DnsSearch: [],
      ExtraHosts: null,
      GroupAdd: null,
      IpcMode: f.podShare.includes('ipc') && f.podInfraId ? `container:${f.podInfraId}` : 'private',
      Cgroup: '',
      Links: null,
      OomScoreAdj: 0,
      PidMode: '',
      Privileged: false,
      PublishAllPorts: false,
      ReadonlyRootfs: false,
      SecurityOpt: c.securityOpt?.length ? c.securityOpt : null,
      Tmpfs: Object.fromEntries(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => [m.destination, m.options.join(',')])),
      UTSMode: f.podShare.includes('uts') && f.podInfraId ? `container:${f.podInfraId}` : '',
      UsernsMode: '',
      ShmSize: c.resources?.shmSize ?? 65536 * 1024,
      Runtime: 'runc',
      ConsoleSize: [0, 0],
      Isolation: '',
      CpuShares: l.CpuShares,
      Memory: l.Memory,
      NanoCpus: l.NanoCpus,
      CgroupParent: '',
      BlkioWeight: 0,
      BlkioWeightDevice: [],
      BlkioDeviceReadBps: null,
      BlkioDeviceWriteBps: null,
      BlkioDeviceReadIOps: null,
      BlkioDeviceWriteIOps: null,
      CpuPeriod: l.CpuPeriod,
      CpuQuota: l.CpuQuota,
      CpuRealtimePeriod: 0,
      CpuRealtimeRuntime: 0,
      CpusetCpus: '',
      CpusetMems: '',
      Devices: [],
      DeviceCgroupRules: null,
      DeviceRequests: null,
      KernelMemory: 0,
      KernelMemoryTCP: 0,
      MemoryReservation: 0,
      MemorySwap: l.MemorySwap,
      MemorySwappiness: null,
      OomKillDisable: false,
      PidsLimit: c.resources?.pidsLimit ?? null,
      Ulimits: (c.resources?.ulimits?.length ? c.resources.ulimits : f.rlimits.length ? f.rlimits : null)?.map((u) => ({ ...u, Name: u.Name.replace(/^RLIMIT_/, '').toLowerCase() })) ?? null,
      CpuCount: 0,
      CpuPercent: 0,
      IOMaximumIOps: 0,
      IOMaximumBandwidth: 0,
      MaskedPaths: null,
      ReadonlyPaths: null,
    },
    GraphDriver: {
      Name: 'overlay',
      Data: { ...(f.lowerDirs.length ? { LowerDir: f.lowerDirs.join(':') } : {}), MergedDir: layer.merged, UpperDir: layer.upper, WorkDir: layer.work },
    },
    ...(f.size ? { SizeRw: f.size.rwSize, SizeRootFs: f.size.rootFsSize } : {}),
    Mounts: dockerMounts(r, f),
    Config: {
      ...configCommon(c),
      Env: f.env,
      ...(Object.keys(exposed).length ? { ExposedPorts: exposed } : {}),
      Entrypoint: c.entrypointLength ? entrypoint(c) : null,
      OnBuild: null,
      Labels: c.labels,
      StopSignal: /^[0-9]+$/.test(c.stopSignal) ? c.stopSignal : `SIG${c.stopSignal}`,
      StopTimeout: c.stopTimeout,
    },
    NetworkSettings: {
      Bridge: '',
      SandboxID: '',
      HairpinMode: false,
      LinkLocalIPv6Address: '',
      LinkLocalIPv6PrefixLen: 0,
      Ports: ports,
      SandboxKey: n?.netnsPath ?? '',
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: '',
      Gateway: n?.gateway ?? '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      IPAddress: n?.ip ?? '',
      IPPrefixLen: n?.prefixLength ?? 0,
      IPv6Gateway: '',
      MacAddress: n?.mac ?? '',
      Networks: dockerNetworks(r),
    },
  };
}

/** One image of Docker's `GET /images/json` (moby's types.ImageSummary). */
export function dockerImageEntry(i: ImageRecord, containers = 0): Record<string, unknown> {
  return {
    Containers: containers,
    Created: Math.floor(Date.parse(i.Created) / 1000),
    Id: `sha256:${i.Id}`,
    Labels: i.Config.Labels ?? {},
    ParentId: '',
    RepoDigests: repoDigests(i),
    RepoTags: i.Names,
    SharedSize: -1,
    Size: i.Size,
    VirtualSize: i.Size,
  };
}

/** Docker's `GET /images/{name}/json` (moby's types.ImageInspect): the config in Docker's container.Config shape. */
export function dockerImageInspectEntry(i: ImageRecord, cfg: OciImageConfig, layerDirs: string[]): Record<string, unknown> {
  const c = cfg.config ?? {};
  const dirs = [...layerDirs].reverse(); // top first
  const config = {
    Hostname: '',
    Domainname: '',
    User: c.User ?? '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    ...(c.ExposedPorts ? { ExposedPorts: c.ExposedPorts } : {}),
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: c.Env ?? null,
    Cmd: c.Cmd ?? null,
    Image: '',
    Volumes: c.Volumes ?? null,
    WorkingDir: c.WorkingDir ?? '',
    Entrypoint: c.Entrypoint ?? null,
    OnBuild: null,
    Labels: c.Labels ?? null,
    ...(c.StopSignal ? { StopSignal: c.StopSignal } : {}),
  };
  const last = cfg.history?.length ? cfg.history[cfg.history.length - 1] : undefined;
  return {
    Id: `sha256:${i.Id}`,
    RepoTags: i.Names,
    RepoDigests: repoDigests(i),
    Parent: '',
    Comment: last?.comment ?? '',
    Created: i.Created,
    Container: '',
    ContainerConfig: config,
    DockerVersion: '',
    Author: cfg.author ?? '',
    Config: config,
    Architecture: i.Architecture,
    Os: i.Os,
    Size: i.Size,
    VirtualSize: i.Size,
    GraphDriver: { Name: 'overlay', Data: { ...(dirs.length > 1 ? { LowerDir: dirs.slice(1).join(':') } : {}), ...(dirs.length ? { UpperDir: dirs[0] } : {}) } },
    RootFS: { Type: 'layers', Layers: cfg.rootfs.diff_ids },
    Metadata: { LastTagTime: ZERO_TIME },
  };
}

// ------------------------------------------------------------------------- libpod API shapes

/**
 * A container of libpod's `GET /libpod/containers/json` (Podman 4.3.1's ListContainer):
 * Created is a time there, where `ps --format json` prints Unix seconds.
 */
export function libpodPsEntry(r: ContainerRecord, x: PsExtras = {}): Record<string, unknown> {
  // Status is the health check's there (none: empty); the client words the state itself.
  return { ...psEntry(r, x), Created: r.config.created, Status: '' };
}

/** libpod's `GET /libpod/containers/{name}/json`: Podman's InspectContainerData, as `inspect` prints it. */
export function libpodInspectEntry(r: ContainerRecord, paths: Paths, facts?: ContainerFacts): Record<string, unknown> {
  return inspectEntry(r, paths, facts);
}

/** A size as Podman's stats prints it (decimal units, four significant digits): 626.7kB, 67.11MB, 0B. */
export function statsSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

/** Podman's `stats --format json` entry. */
export function podmanStats(s: StatsSample): Record<string, string> {
  return {
    id: s.id.slice(0, 12),
    name: s.name,
    cpu_time: goDuration(s.cpuNs),
    cpu_percent: `${s.cpuPercent.toFixed(2)}%`,
    avg_cpu: `${s.avgCpu.toFixed(2)}%`,
    mem_usage: `${statsSize(s.memUsage)} / ${statsSize(s.memLimit)}`,
    mem_percent: `${s.memPercent.toFixed(2)}%`,
    net_io: `${statsSize(s.netIn)} / ${statsSize(s.netOut)}`,
    block_io: `${statsSize(s.blockRead)} / ${statsSize(s.blockWrite)}`,
    pids: String(s.pids),
  };
}
