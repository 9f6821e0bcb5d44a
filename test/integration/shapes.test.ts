/**
 * Ferry's JSON against real Podman 4.3.1's, for the same scenario on both (Podman with a private
 * root of its own, test/helpers/podman.ts): a running container with a published port, an env,
 * a label, a named volume, a memory limit and ulimits; a pod with a member and its infra; the
 * busybox image imported from the same tarball. For `ps --format json` (with and without
 * --size), `inspect` (a plain container, a pod member, an infra container), `pod inspect`,
 * `pod ps --format json`, `images --format json` and `image inspect`, every key path Podman's
 * output has (nested; arrays by their elements, maps with data as keys by their values) must be
 * in Ferry's with the same JSON type (null stands for an empty list or map, as Go prints a nil
 * one), but for the short allow-list below. Then values: the pod, the infra, ports, memory, env,
 * mounts, capabilities and layer dirs must be real.
 *
 * Then the APIs of `ferry system service` on Ferry's root: libpod's answers (through `podman
 * --remote`) have Podman's shapes too; Docker's (v1.41, read by the docker CLI and the Docker SDK
 * for Python) have Docker's: every field of moby's types.ContainerJSON, types.Container,
 * types.ImageSummary and types.ImageInspect that Docker always sends, with its type.
 *
 * Podman's containers get no network (its default bridge is never set up next to Ferry's), so
 * its -p is ignored; Ferry's container publishes its port on 127.0.0.1 of its own bridge.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Host, busyboxTarball, eventually } from '../helpers/ferry.js';
import { Podman, hasPodman } from '../helpers/podman.js';
import { freePort } from '../helpers/net.js';
import { DOCKER, Service, runTool } from '../helpers/api.js';
import { spawnSync } from 'node:child_process';

const skip = !hasPodman() ? 'podman is not installed' : false;

const F = new Host('shapeF');
const P = new Podman('shapeP');
const IMG = 'localhost/busybox:latest';

/** Objects whose keys are data (labels, ports, networks ...): compared by the shape of their values. */
const MAPS = [
  'Labels',
  'Namespaces',
  'Config.Labels',
  'Config.Annotations',
  'Config.ExposedPorts',
  'Config.Volumes',
  'NetworkSettings.Ports',
  'NetworkSettings.Networks',
  'HostConfig.PortBindings',
  'HostConfig.Tmpfs',
  'HostConfig.LogConfig.Config',
  'InfraConfig.PortBindings',
];

/**
 * What Ferry may lack of Podman's keys, each with the reason. Nothing else may be missing.
 */
const NO_DEFAULT_ULIMITS =
  "Podman's ulimits come from the test's containers.conf (default_ulimits), which nothing can set for the infra Ferry makes; Ferry sets none by default, so its infra's list is empty (the elements' shape is checked on c1 and m1)";
const ALLOWED_MISSING: Record<string, Record<string, string>> = {
  inspectInfra: {
    'HostConfig.Ulimits[]': NO_DEFAULT_ULIMITS,
    'HostConfig.Ulimits[].Name': NO_DEFAULT_ULIMITS,
    'HostConfig.Ulimits[].Soft': NO_DEFAULT_ULIMITS,
    'HostConfig.Ulimits[].Hard': NO_DEFAULT_ULIMITS,
  },
  imageInspect: {
    'GraphDriver.Data.WorkDir':
      "Podman's image layers are overlay layers of containers/storage, each with a work dir; Ferry's are plain unpacked trees, only ever a read-only lower dir, so they have none",
    'History[].created':
      "Ferry's `import` writes no time into the image config, so the same tarball is the same image (same ID) on every host; the image's Created is when it was stored",
  },
};

type Shape = Map<string, Set<string>>;

const jsonType = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/** Every key path of v with the JSON types seen there. */
function shapeOf(items: unknown[]): Shape {
  const out: Shape = new Map();
  const walk = (v: unknown, p: string): void => {
    const t = jsonType(v);
    (out.get(p) ?? out.set(p, new Set()).get(p)!).add(t);
    if (t === 'array') for (const e of v as unknown[]) walk(e, `${p}[]`);
    else if (t === 'object') for (const [k, e] of Object.entries(v as object)) walk(e, MAPS.includes(p) ? `${p}{}` : p ? `${p}.${k}` : k);
  };
  for (const i of items) walk(i, '');
  return out;
}

/** The differences of Ferry's shape from Podman's: missing paths and type mismatches (null matches a list or map). */
function compare(what: string, podman: unknown, ferry: unknown): string[] {
  const ps = shapeOf([podman].flat());
  const fs_ = shapeOf([ferry].flat());
  const allowed = ALLOWED_MISSING[what] ?? {};
  const problems: string[] = [];
  for (const [p, types] of ps) {
    if (p === '') continue;
    const got = fs_.get(p);
    if (!got) {
      if (!(p in allowed)) problems.push(`${what}: ${p} (${[...types].join('|')}) is missing`);
      continue;
    }
    const want = [...types].filter((t) => t !== 'null');
    const have = [...got].filter((t) => t !== 'null');
    const nullable = (ts: string[]): boolean => ts.every((t) => t === 'array' || t === 'object');
    if (want.length && have.length && want.sort().join() !== have.sort().join()) problems.push(`${what}: ${p} is ${have.join('|')} where Podman has ${want.join('|')}`);
    else if (!want.length && have.length && !nullable(have)) problems.push(`${what}: ${p} is ${have.join('|')} where Podman has null`);
    else if (want.length && !have.length && !nullable(want)) problems.push(`${what}: ${p} is null where Podman has ${want.join('|')}`);
  }
  return problems;
}

/**
 * Where Podman has a value and Ferry only an empty one ('', 0, false, null, [] or {}), because
 * Ferry truly has no such thing: each with the reason. Any other empty value is a placeholder.
 */
const NO_POD_CGROUP = "Ferry's pods have no cgroup of their own (each container has its own), so there is no pod cgroup to name";
const ALLOWED_EMPTY: Record<string, Record<string, string>> = {
  inspect: {
    'Config.Passwd': "Ferry adds no entry for the user to the container's /etc/passwd",
    'HostConfig.PidsLimit': "Podman's 2048 is its containers.conf default; Ferry sets no PID limit unless --pids-limit is given",
  },
  inspectSize: {
    'Config.Passwd': "Ferry adds no entry for the user to the container's /etc/passwd",
    'HostConfig.PidsLimit': "Podman's 2048 is its containers.conf default; Ferry sets no PID limit unless --pids-limit is given",
  },
  inspectMember: {
    'Config.Passwd': "Ferry adds no entry for the user to the container's /etc/passwd",
    'HostConfig.PidsLimit': "Podman's 2048 is its containers.conf default; Ferry sets no PID limit unless --pids-limit is given",
    'HostConfig.CgroupParent': NO_POD_CGROUP,
  },
  inspectInfra: {
    'Config.Passwd': "Ferry adds no entry for the user to the container's /etc/passwd",
    'Config.Entrypoint': "Ferry's infra image has no entrypoint: its infra runs a command",
    'Config.StopTimeout': 'Ferry stops an infra container at once (SIGKILL, no timeout): it only holds namespaces',
    'HostConfig.CgroupParent': NO_POD_CGROUP,
    'HostConfig.Ulimits': NO_DEFAULT_ULIMITS,
  },
  podInspect: { CreateCgroup: NO_POD_CGROUP, CgroupParent: NO_POD_CGROUP, CgroupPath: NO_POD_CGROUP },
  podPs: { Cgroup: NO_POD_CGROUP },
};

const isEmpty = (v: unknown): boolean =>
  v === '' || v === 0 || v === false || v === null || (Array.isArray(v) && !v.length) || (typeof v === 'object' && v !== null && !Object.keys(v).length);

/** Every key path with whether any of its values is not empty. */
function filled(items: unknown[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  const walk = (v: unknown, p: string): void => {
    out.set(p, (out.get(p) ?? false) || !isEmpty(v));
    if (Array.isArray(v)) for (const e of v) walk(e, `${p}[]`);
    else if (v && typeof v === 'object') for (const [k, e] of Object.entries(v)) walk(e, MAPS.includes(p) ? `${p}{}` : p ? `${p}.${k}` : k);
  };
  for (const i of items) walk(i, '');
  return out;
}

/** Paths where Podman has a value and Ferry only empty ones (a placeholder), but for ALLOWED_EMPTY. */
function placeholders(what: string, podman: unknown, ferry: unknown): string[] {
  const pf = filled([podman].flat());
  const ff = filled([ferry].flat());
  const allowed = ALLOWED_EMPTY[what] ?? {};
  return [...pf].filter(([p, full]) => full && ff.get(p) === false && !(p in allowed)).map(([p]) => `${what}: ${p} is empty where Podman has a value`);
}

const p: Record<string, unknown> = {};
const f: Record<string, unknown> = {};
let port = 0;

before(async () => {
  if (skip) return;
  port = await freePort();
  const tar = busyboxTarball();
  // Podman's pods need an infra image: its catatonit is not installed here, so one that sleeps.
  await Promise.all([
    F.importBusybox(IMG),
    P.importBusybox().then(() => P.ok(['import', '--change', 'ENTRYPOINT ["sleep","100000"]', tar, 'localhost/pinfra:latest'])),
  ]);
  const ctr = ['--name', 'c1', '-e', 'FOO=bar', '--label', 'l1=v1', '-v', 'vol1:/data', '--memory', '64m', IMG, 'sh', '-c', 'echo written > /written; exec sleep 1000'];
  await P.ok(['volume', 'create', 'vol1']);
  await F.ok(['volume', 'create', 'vol1']);
  await P.ok(['run', '-d', '-p', `${port}:80`, ...ctr]);
  // Podman's test config gives every container ulimits (its default_ulimits); Ferry's have none unless asked.
  await F.ok(['run', '-d', '-p', `127.0.0.1:${port}:80`, '--ulimit', 'nofile=1024:1024', ...ctr]);
  await P.ok(['pod', 'create', '--name', 'p1', '--infra-image', 'localhost/pinfra:latest']);
  await F.ok(['pod', 'create', '--name', 'p1']);
  await P.ok(['run', '-d', '--pod', 'p1', '--name', 'm1', IMG, 'sleep', '1000']);
  await F.ok(['run', '-d', '--pod', 'p1', '--name', 'm1', '--ulimit', 'nofile=1024:1024', IMG, 'sleep', '1000']);

  // A file in the writable layer, so that its size is not 0 on either side.
  await eventually(async () => (await P.ok(['exec', 'c1', 'cat', '/written'])) === 'written' && (await F.ok(['exec', 'c1', 'cat', '/written'])) === 'written');

  const dump = async (run: (args: string[]) => Promise<string>, into: Record<string, unknown>): Promise<void> => {
    const j = async (args: string[]): Promise<unknown> => JSON.parse(await run(args));
    into.ps = await j(['ps', '-a', '--format', 'json']);
    into.psSize = await j(['ps', '-a', '--size', '--format', 'json']);
    into.inspect = await j(['inspect', 'c1']);
    into.inspectSize = await j(['inspect', '--size', 'c1']);
    into.inspectMember = await j(['inspect', 'm1']);
    into.podInspect = await j(['pod', 'inspect', 'p1']);
    into.inspectInfra = await j(['inspect', (into.podInspect as { InfraContainerID: string }).InfraContainerID]);
    into.podPs = await j(['pod', 'ps', '--format', 'json']);
    into.images = await j(['images', '--format', 'json']);
    into.imageInspect = await j(['image', 'inspect', IMG]);
  };
  await dump((a) => P.ok(a), p);
  await dump((a) => F.ok(a), f);
});

after(async () => {
  await svc?.stop();
  await F.destroy();
  await P.destroy();
});

test('the shape checker finds a missing key, a wrong type and a placeholder null', () => {
  assert.deepEqual(compare('x', { A: { B: 1 }, C: 'x', L: [{ D: true }], M: null }, { A: { B: 1 }, C: 'x', L: [{ D: true }], M: [] }), []);
  assert.deepEqual(compare('x', { A: { B: 1 } }, { A: {} }), ['x: A.B (number) is missing']);
  assert.deepEqual(compare('x', { C: 'x' }, { C: ['x'] }), ['x: C is array where Podman has string']);
  assert.deepEqual(compare('x', { L: [{ D: true }] }, { L: [{}] }), ['x: L[].D (boolean) is missing']);
  assert.deepEqual(compare('x', { S: 'sig' }, { S: null }), ['x: S is null where Podman has string']);
  assert.deepEqual(compare('x', { Labels: { a: 'b' } }, { Labels: { c: 'd' } }), [], 'labels are compared by their values');
  assert.deepEqual(placeholders('x', { Pod: 'abc', N: 3, E: '' }, { Pod: '', N: 3, E: '' }), ['x: Pod is empty where Podman has a value']);
  assert.deepEqual(placeholders('x', [{ IsInfra: true }, { IsInfra: false }], [{ IsInfra: false }]), ['x: IsInfra is empty where Podman has a value']);
});

for (const what of ['ps', 'psSize', 'inspect', 'inspectSize', 'inspectMember', 'inspectInfra', 'podInspect', 'podPs', 'images', 'imageInspect']) {
  test(`${what}: every key Podman 4.3.1 has, with its JSON type`, { skip }, () => {
    assert.ok(p[what] !== undefined && f[what] !== undefined, 'both engines answered');
    assert.deepEqual(compare(what, p[what], f[what]), []);
  });
  test(`${what}: a value wherever Podman 4.3.1 has one (no placeholders)`, { skip }, () => {
    assert.deepEqual(placeholders(what, p[what], f[what]), []);
  });
}

const one = (v: unknown): any => [v].flat()[0];
const byName = (list: unknown, name: string): any => (list as { Names: string[] }[]).find((x) => x.Names[0] === name);

test('inspect: real values for a container (ports, memory, env, label, volume, caps, layers, image)', { skip }, async () => {
  const c = one(f.inspect);
  assert.deepEqual(c.NetworkSettings.Ports[`80/tcp`], [{ HostIp: '127.0.0.1', HostPort: String(port) }]);
  assert.deepEqual(c.HostConfig.PortBindings[`80/tcp`], [{ HostIp: '127.0.0.1', HostPort: String(port) }]);
  assert.equal(c.HostConfig.Memory, 64 * 1024 * 1024);
  assert.equal(c.HostConfig.Memory, one(p.inspect).HostConfig.Memory, "Podman's figure for --memory 64m");
  assert.deepEqual(c.HostConfig.Ulimits, [{ Name: 'RLIMIT_NOFILE', Soft: 1024, Hard: 1024 }]);
  assert.ok(c.Config.Env.includes('FOO=bar'), 'Env has the variable');
  assert.deepEqual(c.Config.Labels, { l1: 'v1' });
  assert.equal(c.Config.Entrypoint, '', "no entrypoint: Podman's empty string");
  assert.equal(c.Config.StopSignal, 15);
  assert.equal(c.Pod, '');
  assert.equal(c.IsInfra, false);
  assert.deepEqual(c.ExecIDs, []);
  const volDir = [JSON.parse(await F.ok(['volume', 'inspect', 'vol1']))].flat()[0].Mountpoint;
  const m = c.Mounts.find((x: { Destination: string }) => x.Destination === '/data');
  assert.deepEqual([m.Type, m.Name, m.Source, m.RW], ['volume', 'vol1', volDir, true]);
  assert.ok(c.HostConfig.Binds.some((b: string) => b.startsWith('vol1:/data:rw')), 'Binds has the volume');
  const spec = JSON.parse(fs.readFileSync(c.OCIConfigPath, 'utf8'));
  assert.deepEqual(c.EffectiveCaps, spec.process.capabilities.effective, 'EffectiveCaps from the spec');
  assert.deepEqual(c.BoundingCaps, spec.process.capabilities.bounding, 'BoundingCaps from the spec');
  for (const k of ['LowerDir', 'UpperDir', 'WorkDir', 'MergedDir']) assert.ok(fs.existsSync(c.GraphDriver.Data[k]), `GraphDriver.Data.${k} exists`);
  assert.ok(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${c.GraphDriver.Data.MergedDir} `), 'MergedDir is mounted');
  const img = one(f.imageInspect);
  assert.equal(c.ImageDigest, img.Digest);
  assert.equal(c.Image, img.Id);
  assert.equal(c.State.CgroupPath, spec.linux.cgroupsPath);
});

test('inspect: a pod member names its pod, an infra container is one', { skip }, () => {
  const pod = one(f.podInspect);
  const m = one(f.inspectMember);
  const infra = one(f.inspectInfra);
  assert.equal(m.Pod, pod.Id);
  assert.equal(m.IsInfra, false);
  assert.deepEqual(m.Dependencies, [pod.InfraContainerID]);
  assert.equal(m.HostConfig.NetworkMode, `container:${pod.InfraContainerID}`);
  assert.equal(infra.Id, pod.InfraContainerID);
  assert.equal(infra.Pod, pod.Id);
  assert.equal(infra.IsInfra, true);
  assert.deepEqual(pod.Containers.map((x: { Id: string }) => x.Id).sort(), [m.Id, infra.Id].sort(), 'the pod lists its member and its infra');
  assert.equal(pod.NumContainers, 2);
  assert.equal(pod.State, 'Running');
  assert.ok(pod.CreateCommand.includes('create'), 'CreateCommand is the command line');
});

test('ps: pod and infra, ports, size when asked', { skip }, () => {
  const pod = one(f.podInspect);
  const c1 = byName(f.ps, 'c1');
  assert.deepEqual(c1.Ports, [{ host_ip: '127.0.0.1', container_port: 80, host_port: port, range: 1, protocol: 'tcp' }]);
  assert.equal(c1.Size, null, 'no size unless asked');
  assert.equal(byName(f.ps, 'm1').Pod, pod.Id);
  assert.equal(byName(f.ps, 'm1').PodName, 'p1');
  const infra = (f.ps as { Id: string }[]).find((x) => x.Id === pod.InfraContainerID) as any;
  assert.equal(infra.IsInfra, true);
  assert.equal(infra.Pod, pod.Id);
  const sized = byName(f.psSize, 'c1');
  assert.ok(sized.Size.rootFsSize >= one(f.imageInspect).Size, 'the rootfs is at least the image');
  assert.ok(sized.Size.rwSize >= 'written\n'.length, 'the writable layer holds the file c1 wrote');
  assert.equal(typeof one(f.inspectSize).SizeRw, 'number');
});

test('images: digest, repo digests, history, containers', { skip }, () => {
  const i = (f.images as { Names: string[] }[]).find((x) => x.Names.includes(IMG)) as any;
  const ins = one(f.imageInspect);
  assert.match(i.Digest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(i.Digest, ins.Digest);
  assert.deepEqual(i.RepoDigests, [`localhost/busybox@${i.Digest}`]);
  assert.deepEqual(ins.RepoDigests, i.RepoDigests);
  assert.deepEqual(i.History, [IMG]);
  assert.equal(i.Containers, 2, 'c1 and m1 use it');
  const pi = (p.images as { Names: string[] }[]).find((x) => x.Names.includes(IMG)) as any;
  assert.equal(i.Containers, pi.Containers, "Podman's count");
  assert.equal(i.SharedSize, 0);
  assert.equal(i.ParentId, '');
  assert.ok(fs.existsSync(ins.GraphDriver.Data.UpperDir), "the image's layer dir exists");
});

// ------------------------------------------------------------------------- the APIs

let svc: Service | undefined;
const HAS_PY_DOCKER = spawnSync('python3', ['-c', 'import docker'], { stdio: 'ignore' }).status === 0;

async function service(): Promise<Service> {
  svc ??= await Service.start(F);
  return svc;
}

async function getJson(path: string): Promise<any> {
  const r = await (await service()).request('GET', path);
  assert.equal(r.status, 200, `GET ${path}: ${r.body}`);
  return JSON.parse(r.body);
}

/**
 * Docker API v1.41's shapes (moby's api/types, swagger.yaml): a sample of each with every field
 * Docker always sends (not those it leaves out when empty), a value of the field's JSON type.
 */
const S = '';
const N = 0;
const B = false;
const DOCKER_STATE = { Status: S, Running: B, Paused: B, Restarting: B, OOMKilled: B, Dead: B, Pid: N, ExitCode: N, Error: S, StartedAt: S, FinishedAt: S };
const DOCKER_ENDPOINT = { IPAMConfig: null, Links: null, Aliases: null, NetworkID: S, EndpointID: S, Gateway: S, IPAddress: S, IPPrefixLen: N, IPv6Gateway: S, GlobalIPv6Address: S, GlobalIPv6PrefixLen: N, MacAddress: S, DriverOpts: null };
const DOCKER_MOUNT = { Type: S, Source: S, Destination: S, Driver: S, Mode: S, RW: B, Propagation: S };
const DOCKER_CONFIG = {
  Hostname: S, Domainname: S, User: S, AttachStdin: B, AttachStdout: B, AttachStderr: B, Tty: B, OpenStdin: B, StdinOnce: B,
  Env: [S], Cmd: [S], Image: S, Volumes: null, WorkingDir: S, Entrypoint: null, OnBuild: null, Labels: { k: S },
};
const DOCKER_INSPECT = {
  Id: S, Created: S, Path: S, Args: [S], State: DOCKER_STATE, Image: S, ResolvConfPath: S, HostnamePath: S, HostsPath: S, LogPath: S,
  Name: S, RestartCount: N, Driver: S, Platform: S, MountLabel: S, ProcessLabel: S, AppArmorProfile: S, ExecIDs: null,
  HostConfig: {
    Binds: [S], ContainerIDFile: S, LogConfig: { Type: S, Config: {} }, NetworkMode: S, PortBindings: { k: [{ HostIp: S, HostPort: S }] },
    RestartPolicy: { Name: S, MaximumRetryCount: N }, AutoRemove: B, VolumeDriver: S, VolumesFrom: null, CapAdd: null, CapDrop: null,
    CgroupnsMode: S, Dns: [], DnsOptions: [], DnsSearch: [], ExtraHosts: null, GroupAdd: null, IpcMode: S, Cgroup: S, Links: null,
    OomScoreAdj: N, PidMode: S, Privileged: B, PublishAllPorts: B, ReadonlyRootfs: B, SecurityOpt: null, UTSMode: S, UsernsMode: S,
    ShmSize: N, Runtime: S, ConsoleSize: [N], Isolation: S, CpuShares: N, Memory: N, NanoCpus: N, CgroupParent: S, BlkioWeight: N,
    BlkioWeightDevice: null, BlkioDeviceReadBps: null, BlkioDeviceWriteBps: null, BlkioDeviceReadIOps: null, BlkioDeviceWriteIOps: null,
    CpuPeriod: N, CpuQuota: N, CpuRealtimePeriod: N, CpuRealtimeRuntime: N, CpusetCpus: S, CpusetMems: S, Devices: null,
    DeviceCgroupRules: null, DeviceRequests: null, KernelMemory: N, KernelMemoryTCP: N, MemoryReservation: N, MemorySwap: N,
    MemorySwappiness: null, OomKillDisable: B, PidsLimit: null, Ulimits: null, CpuCount: N, CpuPercent: N, IOMaximumIOps: N,
    IOMaximumBandwidth: N, MaskedPaths: null, ReadonlyPaths: null,
  },
  GraphDriver: { Name: S, Data: { LowerDir: S, MergedDir: S, UpperDir: S, WorkDir: S } },
  Mounts: [{ ...DOCKER_MOUNT, Name: S }],
  Config: DOCKER_CONFIG,
  NetworkSettings: {
    Bridge: S, SandboxID: S, HairpinMode: B, LinkLocalIPv6Address: S, LinkLocalIPv6PrefixLen: N, Ports: { k: [{ HostIp: S, HostPort: S }] },
    SandboxKey: S, SecondaryIPAddresses: null, SecondaryIPv6Addresses: null, EndpointID: S, Gateway: S, GlobalIPv6Address: S,
    GlobalIPv6PrefixLen: N, IPAddress: S, IPPrefixLen: N, IPv6Gateway: S, MacAddress: S, Networks: { k: DOCKER_ENDPOINT },
  },
};
const DOCKER_PS = {
  Id: S, Names: [S], Image: S, ImageID: S, Command: S, Created: N, Ports: [{ IP: S, PrivatePort: N, PublicPort: N, Type: S }],
  Labels: { k: S }, State: S, Status: S, HostConfig: { NetworkMode: S }, NetworkSettings: { Networks: { k: DOCKER_ENDPOINT } }, Mounts: [DOCKER_MOUNT],
};
const DOCKER_IMAGE = { Containers: N, Created: N, Id: S, Labels: null, ParentId: S, RepoDigests: [S], RepoTags: [S], SharedSize: N, Size: N, VirtualSize: N };
const DOCKER_IMAGE_INSPECT = {
  Id: S, RepoTags: [S], RepoDigests: [S], Parent: S, Comment: S, Created: S, Container: S, ContainerConfig: { ...DOCKER_CONFIG, Labels: null }, DockerVersion: S,
  Author: S, Config: { ...DOCKER_CONFIG, Labels: null }, Architecture: S, Os: S, Size: N, VirtualSize: N, GraphDriver: { Name: S, Data: { UpperDir: S } },
  RootFS: { Type: S, Layers: [S] }, Metadata: { LastTagTime: S },
};

test("Docker API: the four shapes have every field of Docker's v1.41 types, with their types", { skip: skip || (!DOCKER && 'no docker CLI') }, async () => {
  const problems = [
    ...compare('docker inspect', DOCKER_INSPECT, await getJson('/v1.41/containers/c1/json')),
    ...compare('docker ps', DOCKER_PS, (await getJson('/v1.41/containers/json')).find((c: { Names: string[] }) => c.Names[0] === '/c1')),
    ...compare('docker images', DOCKER_IMAGE, await getJson('/v1.41/images/json')),
    ...compare('docker image inspect', DOCKER_IMAGE_INSPECT, await getJson(`/v1.41/images/${IMG}/json`)),
  ];
  assert.deepEqual(problems, []);
});

test('Docker API: what the docker CLI reads, with real values', { skip: skip || (!DOCKER && 'no docker CLI') }, async () => {
  const s = await service();
  const [status, memory, networks] = (await s.dockerOk(['inspect', '--format', '{{.State.Status}}|{{.HostConfig.Memory}}|{{json .NetworkSettings.Networks}}', 'c1'])).split('|');
  assert.equal(status, 'running');
  assert.equal(Number(memory), 64 * 1024 * 1024);
  const nets = JSON.parse(networks!);
  assert.deepEqual(Object.keys(nets), ['ferry']);
  assert.equal(nets.ferry.IPAddress, one(f.inspect).NetworkSettings.IPAddress);
  assert.equal(await s.dockerOk(['inspect', '--format', '{{.Name}} {{.State.Running}} {{.Config.StopSignal}} {{(index .Mounts 0).Name}} {{(index .HostConfig.PortBindings "80/tcp" 0).HostPort}}', 'c1']), `/c1 true SIGTERM vol1 ${port}`);
  assert.ok((await s.dockerOk(['inspect', '--format', '{{json .Config.Env}}', 'c1'])).includes('FOO=bar'));
  const ps = (await s.dockerOk(['ps', '--format', '{{.Names}}|{{.Status}}|{{.Ports}}|{{.Label "l1"}}'])).split('\n');
  const c1 = ps.find((l) => l.startsWith('c1|'));
  assert.match(c1 ?? '', new RegExp(`^c1\\|Up .*\\|127\\.0\\.0\\.1:${port}->80/tcp\\|v1$`), ps.join('\n'));
  assert.match(await s.dockerOk(['ps', '--size', '--filter', 'name=^c1$', '--format', '{{.Size}}']), /^[1-9][0-9.]*k?B \(virtual [0-9.]+MB\)$/, 'docker ps --size: the writable layer, and the rootfs');
  const img = one(f.imageInspect);
  assert.equal(await s.dockerOk(['image', 'inspect', '--format', '{{.Id}} {{index .RepoDigests 0}}', IMG]), `sha256:${img.Id} localhost/busybox@${img.Digest}`);
});

test('Docker API: the Docker SDK for Python reads the fields it needs, with their types', { skip: skip || (!HAS_PY_DOCKER && 'python3-docker is not installed') }, async () => {
  const s = await service();
  const script = `
import docker, json
c = docker.from_env().containers.get('c1')
a = c.attrs
i = docker.from_env().images.get('${IMG}')
print(json.dumps({
  'status': c.status, 'name': c.name, 'labels': c.labels, 'image': c.image.id, 'ports': c.ports,
  'state': a['State']['Status'], 'running': a['State']['Running'], 'memory': a['HostConfig']['Memory'],
  'networks': list(a['NetworkSettings']['Networks'].keys()), 'mounts': [m['Destination'] for m in a['Mounts']],
  'env': a['Config']['Env'], 'tags': i.tags, 'imageId': i.id,
  'listed': [x.name for x in docker.from_env().containers.list()],
}))
`;
  const r = await runTool(['python3', '-c', script], { DOCKER_HOST: `unix://${s.sock}` });
  assert.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  const img = one(f.imageInspect);
  assert.equal(got.status, 'running');
  assert.equal(got.name, 'c1');
  assert.deepEqual(got.labels, { l1: 'v1' });
  assert.equal(got.image, `sha256:${img.Id}`);
  assert.deepEqual(got.ports, { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] });
  assert.equal(got.state, 'running');
  assert.equal(got.running, true);
  assert.equal(got.memory, 64 * 1024 * 1024);
  assert.deepEqual(got.networks, ['ferry']);
  assert.deepEqual(got.mounts, ['/data']);
  assert.ok(got.env.includes('FOO=bar'));
  assert.equal(got.imageId, `sha256:${img.Id}`);
  assert.ok(got.listed.includes('c1') && got.listed.includes('m1'));
});

test("libpod API: podman --remote sees Podman's shapes (inspect, ps, images, image inspect)", { skip }, async () => {
  const s = await service();
  const remote = async (args: string[]): Promise<unknown> => {
    const r = await runTool(['podman', '--remote', '--url', `unix://${s.sock}`, ...args]);
    assert.equal(r.code, 0, `podman --remote ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const ins = await remote(['inspect', 'c1']);
  assert.deepEqual(compare('remote inspect', p.inspect, ins), []);
  assert.deepEqual(compare('remote inspect (member)', p.inspectMember, await remote(['inspect', 'm1'])), []);
  assert.equal(one(ins).HostConfig.Memory, 64 * 1024 * 1024);
  assert.equal(one(await remote(['inspect', 'm1'])).Pod, one(f.podInspect).Id);
  assert.deepEqual(compare('remote ps', p.ps, await remote(['ps', '-a', '--format', 'json'])), []);
  assert.deepEqual(compare('remote images', p.images, await remote(['images', '--format', 'json'])), []);
  assert.deepEqual(compare('imageInspect', p.imageInspect, await remote(['image', 'inspect', IMG])), [], 'image inspect through the API (the same allow-list as the CLI)');
});

test('ExecIDs: an exec session while it runs, none once it has ended', { skip: skip || (!DOCKER && 'no docker CLI') }, async () => {
  const s = await service();
  const execIds = async (): Promise<string[]> => one(JSON.parse(await F.ok(['inspect', 'c1']))).ExecIDs;
  assert.deepEqual(await execIds(), []);
  await s.dockerOk(['exec', '-d', '-t', 'c1', 'sleep', '3']);
  const ids = await eventually(async () => ((await execIds()).length ? execIds() : undefined), 5000);
  assert.equal(ids!.length, 1);
  assert.deepEqual(JSON.parse(await s.dockerOk(['inspect', '--format', '{{json .ExecIDs}}', 'c1'])), ids, 'Docker\'s inspect lists it too');
  await eventually(async () => (await execIds()).length === 0, 15_000, 250);
});
