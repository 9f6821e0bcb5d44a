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
 * Podman's containers get no network (its default bridge is never set up next to Ferry's), so
 * its -p is ignored; Ferry's container publishes its port on 127.0.0.1 of its own bridge.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Host, busyboxTarball } from '../helpers/ferry.js';
import { Podman, hasPodman } from '../helpers/podman.js';
import { freePort } from '../helpers/net.js';

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
  const ctr = ['--name', 'c1', '-e', 'FOO=bar', '--label', 'l1=v1', '-v', 'vol1:/data', '--memory', '64m', IMG, 'sleep', '1000'];
  await P.ok(['volume', 'create', 'vol1']);
  await F.ok(['volume', 'create', 'vol1']);
  await P.ok(['run', '-d', '-p', `${port}:80`, ...ctr]);
  // Podman's test config gives every container ulimits (its default_ulimits); Ferry's have none unless asked.
  await F.ok(['run', '-d', '-p', `127.0.0.1:${port}:80`, '--ulimit', 'nofile=1024:1024', ...ctr]);
  await P.ok(['pod', 'create', '--name', 'p1', '--infra-image', 'localhost/pinfra:latest']);
  await F.ok(['pod', 'create', '--name', 'p1']);
  await P.ok(['run', '-d', '--pod', 'p1', '--name', 'm1', IMG, 'sleep', '1000']);
  await F.ok(['run', '-d', '--pod', 'p1', '--name', 'm1', '--ulimit', 'nofile=1024:1024', IMG, 'sleep', '1000']);

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
});

for (const what of ['ps', 'psSize', 'inspect', 'inspectSize', 'inspectMember', 'inspectInfra', 'podInspect', 'podPs', 'images', 'imageInspect']) {
  test(`${what}: every key Podman 4.3.1 has, with its JSON type`, { skip }, () => {
    assert.ok(p[what] !== undefined && f[what] !== undefined, 'both engines answered');
    assert.deepEqual(compare(what, p[what], f[what]), []);
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
  assert.equal(typeof sized.Size.rwSize, 'number');
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
