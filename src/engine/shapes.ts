/**
 * The JSON shapes Ferry shows the world, in Podman's field names. Defined once here so the
 * CLI (`ps --format json`, `inspect`) and the future REST API print the same thing.
 */
import type { ContainerRecord } from './types.js';
import type { ImageRecord } from '../drivers/storage/images.js';
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
      Restarting: false,
      OOMKilled: false,
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
    RestartCount: 0,
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
      Hostname: c.hostname,
      Domainname: '',
      User: '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: c.env,
      Cmd: c.command,
      Image: c.imageName,
      Volumes: null,
      WorkingDir: c.workdir,
      Entrypoint: [],
      Labels: c.labels,
      Annotations: {},
      StopSignal: c.stopSignal,
      StopTimeout: c.stopTimeout,
      CreateCommand: c.createCommand ?? [],
    },
    HostConfig: { SecurityOpt: c.securityOpt ?? [], AutoRemove: c.autoRemove, Binds: c.mounts.filter((m) => m.type !== 'tmpfs').map((m) => `${m.source}:${m.destination}`), Tmpfs: Object.fromEntries(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => [m.destination, m.options.join(',')])) },
  };
}

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

export function imageEntry(i: ImageRecord): Record<string, unknown> {
  return {
    Id: i.Id,
    RepoTags: i.Names,
    Names: i.Names,
    Created: Math.floor(Date.parse(i.Created) / 1000),
    CreatedAt: i.Created,
    Size: i.Size,
    VirtualSize: i.Size,
    Config: i.Config,
  };
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
    Containers: v.members.map((m) => ({ Id: m.config.id, Names: m.config.name, Status: m.state.status })),
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
