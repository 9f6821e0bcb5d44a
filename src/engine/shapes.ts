/**
 * The JSON shapes Ferry shows the world, in Podman's field names. Defined once here so the
 * CLI (`ps --format json`, `inspect`) and the future REST API print the same thing.
 */
import { goDuration, type StatsSample } from './everyday.js';
import * as os from 'node:os';
import type { ContainerRecord } from './types.js';
import type { ImageRecord, OciImageConfig } from '../drivers/storage/images.js';
import type { Paths } from './paths.js';
import type { PodView } from './pods.js';
import type { CheckpointReport } from './checkpoint.js';
import type { RestoreReport } from './restore.js';

const ZERO_TIME = '0001-01-01T00:00:00Z';

export function psEntry(r: ContainerRecord): Record<string, unknown> {
  const c = r.config;
  const s = r.state;
  const running = s.status === 'running' || s.status === 'paused';
  return {
    AutoRemove: c.autoRemove,
    Command: c.command,
    Created: Math.floor(Date.parse(c.created) / 1000),
    CreatedAt: c.created,
    Exited: s.status === 'exited' || s.status === 'stopped',
    ExitedAt: s.finishedAt ? Math.floor(Date.parse(s.finishedAt) / 1000) : -62135596800,
    ExitCode: s.exitCode,
    Id: c.id,
    Image: c.imageName,
    ImageID: c.imageId,
    IsInfra: false,
    Labels: Object.keys(c.labels).length ? c.labels : null,
    Mounts: c.mounts.map((m) => m.destination),
    Names: [c.name],
    Namespaces: {},
    Networks: c.network?.mode === 'bridge' ? [c.network.name ?? 'ferry'] : [],
    Pid: running ? s.pid : 0,
    Pod: c.pod && !c.infraOf ? c.pod : '',
    PodName: '',
    Ports: c.network?.ports.length ? c.network.ports.map((p) => ({ host_ip: p.hostIP ?? '', container_port: p.containerPort, host_port: p.hostPort, range: 1, protocol: p.protocol })) : null,
    StartedAt: s.startedAt ? Math.floor(Date.parse(s.startedAt) / 1000) : -62135596800,
    State: s.status,
    Status: statusText(r),
    Checkpointed: s.checkpointed,
  };
}

export function inspectEntry(r: ContainerRecord, paths: Paths): Record<string, unknown> {
  const c = r.config;
  const s = r.state;
  const cp = paths.conmon(c.id);
  return {
    Id: c.id,
    Created: c.created,
    Path: c.command[0] ?? '',
    Args: c.command.slice(1),
    State: {
      OciVersion: '1.0.2',
      Status: s.status,
      Running: s.status === 'running',
      Paused: s.status === 'paused',
      Restarting: !!s.restarting,
      OOMKilled: !!s.oomKilled,
      Dead: false,
      Pid: s.status === 'running' || s.status === 'paused' ? s.pid : 0,
      ConmonPid: s.status === 'running' || s.status === 'paused' ? s.conmonPid : 0,
      ExitCode: s.exitCode,
      Error: s.error ?? '',
      StartedAt: s.startedAt ?? ZERO_TIME,
      FinishedAt: s.finishedAt ?? ZERO_TIME,
      Checkpointed: s.checkpointed,
      CheckpointedAt: s.checkpointedAt ?? ZERO_TIME,
      CheckpointPath: s.checkpointPath ?? '',
      CheckpointLog: s.checkpointLog ?? '',
      Restored: s.restored,
      RestoredAt: s.restoredAt ?? ZERO_TIME,
      RestoreLog: s.restoreLog ?? '',
    },
    Image: c.imageId,
    ImageName: c.imageName,
    Rootfs: '',
    Pod: '',
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
    GraphDriver: { Name: 'overlay', Data: { UpperDir: paths.layer(c.id).upper, WorkDir: paths.layer(c.id).work, MergedDir: paths.layer(c.id).merged } },
    Mounts: c.mounts.map((m) => ({
      Type: m.type,
      Name: m.type === 'volume' ? m.source : undefined,
      Source: m.source,
      Destination: m.destination,
      Driver: m.type === 'volume' ? 'local' : '',
      Mode: '',
      Options: m.options,
      RW: !m.options.includes('ro'),
      Propagation: 'rprivate',
    })),
    Dependencies: [],
    NetworkSettings: networkSettings(r),
    IsInfra: false,
    Config: {
      ...configCommon(c),
      Entrypoint: entrypoint(c),
      Labels: c.labels,
      Annotations: {},
      StopSignal: c.stopSignal,
      StopTimeout: c.stopTimeout,
      CreateCommand: c.createCommand ?? [],
    },
    HostConfig: { ...hostConfigLimits(c), SecurityOpt: c.securityOpt ?? [], AutoRemove: c.autoRemove, Binds: c.mounts.filter((m) => m.type !== 'tmpfs').map((m) => `${m.source}:${m.destination}`), Tmpfs: Object.fromEntries(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => [m.destination, m.options.join(',')])) },
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
  const ports: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of r.config.network?.ports ?? []) (ports[`${p.containerPort}/${p.protocol}`] ??= []).push({ HostIp: p.hostIP ?? '', HostPort: String(p.hostPort) });
  const settings = {
    EndpointID: '',
    Gateway: n?.gateway ?? '',
    IPAddress: n?.ip ?? '',
    IPPrefixLen: n?.prefixLength ?? 0,
    MacAddress: n?.mac ?? '',
  };
  return {
    ...settings,
    Bridge: '',
    SandboxKey: n?.netnsPath ?? '',
    Ports: ports,
    Networks: n ? { [n.network]: { ...settings, NetworkID: n.network, IPAMConfig: null } } : {},
  };
}

/** An image as `podman images --format json` shows it. */
export function imageEntry(i: ImageRecord, containers = 0): Record<string, unknown> {
  return {
    Id: i.Id,
    ParentId: '',
    RepoTags: null,
    RepoDigests: i.RepoDigests,
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
    RepoDigests: i.RepoDigests,
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

/** A pod in `pod ps --format json` (Podman's ListPodsReport fields). */
export function podPsEntry(v: PodView): Record<string, unknown> {
  const p = v.pod;
  return {
    Id: p.id,
    Name: p.name,
    Status: v.status,
    Created: p.created,
    InfraId: p.infraId,
    Share: p.share,
    Hostname: p.hostname,
    NumberOfContainers: v.containers,
    // The infra container too, as Podman's (`podman --remote pod ps` counts these).
    Containers: [...(v.infra ? [v.infra] : []), ...v.members].map((m) => ({ Id: m.config.id, Names: m.config.name, Status: m.state.status })),
  };
}

/** A pod in `pod inspect` (Podman's field names). */
export function podInspectEntry(v: PodView): Record<string, unknown> {
  const p = v.pod;
  return {
    Id: p.id,
    Name: p.name,
    Created: p.created,
    Hostname: p.hostname,
    SharedNamespaces: p.share,
    InfraContainerID: p.infraId,
    Containers: v.members.map((m) => ({ Id: m.config.id, Name: m.config.name, State: m.state.status })),
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

function dockerMounts(r: ContainerRecord): Record<string, unknown>[] {
  return r.config.mounts.map((m) => ({
    Type: m.type,
    ...(m.type === 'volume' ? { Name: m.source, Driver: 'local' } : {}),
    Source: m.source,
    Destination: m.destination,
    Mode: m.options.filter((o) => o !== 'rw' && o !== 'ro').join(','),
    RW: !m.options.includes('ro'),
    Propagation: m.type === 'bind' ? 'rprivate' : '',
  }));
}

function dockerNetworks(r: ContainerRecord): Record<string, unknown> {
  const n = r.state.net;
  if (!n) return {};
  return {
    [n.network]: {
      IPAMConfig: null,
      Links: null,
      Aliases: null,
      NetworkID: n.network,
      EndpointID: '',
      Gateway: n.gateway ?? '',
      IPAddress: n.ip,
      IPPrefixLen: n.prefixLength ?? 0,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      MacAddress: n.mac,
      DriverOpts: null,
    },
  };
}

/** One container of Docker's `GET /containers/json`. */
export function dockerPsEntry(r: ContainerRecord): Record<string, unknown> {
  const c = r.config;
  return {
    Id: c.id,
    Names: [`/${c.name}`],
    Image: c.imageName,
    ImageID: `sha256:${c.imageId}`,
    Command: c.command.join(' '),
    Created: Math.floor(Date.parse(c.created) / 1000),
    Ports: dockerPorts(r),
    Labels: c.labels,
    State: dockerStatus(r),
    Status: dockerStatusText(r),
    HostConfig: { NetworkMode: dockerNetworkMode(r) },
    NetworkSettings: { Networks: dockerNetworks(r) },
    Mounts: dockerMounts(r),
  };
}

/** Docker's `GET /containers/{id}/json` (not Podman's: Docker's State, HostConfig, NetworkSettings). */
export function dockerInspectEntry(r: ContainerRecord, paths: Paths): Record<string, unknown> {
  const c = r.config;
  const s = r.state;
  const live = s.status === 'running' || s.status === 'paused';
  const ports: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  for (const p of c.network?.ports ?? []) (ports[`${p.containerPort}/${p.protocol}`] ??= []).push({ HostIp: p.hostIP ?? '', HostPort: String(p.hostPort) });
  const n = s.net;
  return {
    Id: c.id,
    Created: c.created,
    Path: c.command[0] ?? '',
    Args: c.command.slice(1),
    State: {
      Status: dockerStatus(r),
      Running: s.status === 'running' || s.status === 'paused',
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
    ExecIDs: null,
    HostConfig: {
      Binds: c.mounts.filter((m) => m.type !== 'tmpfs').map((m) => `${m.source}:${m.destination}${m.options.length ? `:${m.options.join(',')}` : ''}`),
      ContainerIDFile: '',
      LogConfig: { Type: 'k8s-file', Config: {} },
      NetworkMode: dockerNetworkMode(r),
      PortBindings: ports,
      ...hostConfigLimits(c),
      RestartPolicy: { Name: c.restartPolicy?.Name ?? 'no', MaximumRetryCount: c.restartPolicy?.MaximumRetryCount ?? 0 },
      AutoRemove: c.autoRemove,
      VolumeDriver: '',
      VolumesFrom: null,
      CapAdd: null,
      CapDrop: null,
      Dns: [],
      DnsOptions: [],
      DnsSearch: [],
      ExtraHosts: null,
      Privileged: false,
      PublishAllPorts: false,
      ReadonlyRootfs: false,
      Tmpfs: Object.fromEntries(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => [m.destination, m.options.join(',')])),
      Runtime: 'runc',
    },
    GraphDriver: { Name: 'overlay', Data: { UpperDir: paths.layer(c.id).upper, WorkDir: paths.layer(c.id).work, MergedDir: paths.layer(c.id).merged } },
    Mounts: dockerMounts(r),
    Config: {
      ...configCommon(c),
      Entrypoint: c.entrypointLength ? entrypoint(c) : null,
      OnBuild: null,
      Labels: c.labels,
      StopSignal: `SIG${c.stopSignal}`,
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

/** One image of Docker's `GET /images/json`. */
export function dockerImageEntry(i: ImageRecord): Record<string, unknown> {
  return {
    Id: `sha256:${i.Id}`,
    ParentId: '',
    RepoTags: i.Names,
    RepoDigests: [],
    Created: Math.floor(Date.parse(i.Created) / 1000),
    Size: i.Size,
    SharedSize: -1,
    VirtualSize: i.Size,
    Labels: {},
    Containers: -1,
  };
}

// ------------------------------------------------------------------------- libpod API shapes

/**
 * A container of libpod's `GET /libpod/containers/json` (Podman 4.3.1's ListContainer):
 * Created is a time there, where `ps --format json` prints Unix seconds.
 */
export function libpodPsEntry(r: ContainerRecord): Record<string, unknown> {
  // Status is the health check's there (none: empty); the client words the state itself.
  return { ...psEntry(r), Created: r.config.created, Status: '' };
}

/**
 * libpod's `GET /libpod/containers/{name}/json` (Podman 4.3.1's InspectContainerData): its
 * client reads Config.Entrypoint as a string and Config.StopSignal as a number.
 */
export function libpodInspectEntry(r: ContainerRecord, paths: Paths): Record<string, unknown> {
  const e = inspectEntry(r, paths);
  const config = e.Config as Record<string, unknown>;
  const sig = (os.constants.signals as Record<string, number | undefined>)[`SIG${r.config.stopSignal}`] ?? (/^[0-9]+$/.test(r.config.stopSignal) ? Number(r.config.stopSignal) : 15);
  return { ...e, Config: { ...config, Entrypoint: '', StopSignal: sig } };
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
