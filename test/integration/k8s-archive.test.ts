/**
 * Kubernetes checkpoint archives (what CRI-O and containerd write for the kubelet's forensic
 * checkpointing) restored by `ferry container restore --import` and read by `ferry checkpoint
 * inspect|show`. No kubelet runs here: the archives are made from a real checkpoint (a Ferry
 * container exported with --format podman) rewritten into the layouts CRI-O's and containerd's
 * CheckpointContainer write: checkpointctl's reduced config.dump, spec.dump with their
 * annotations, and for containerd status.dump, status, dump.log, container.log, members in name
 * order and the rootfs diff as a gzip OCI layer with .wh. whiteouts (and an opaque directory). The looper's counter
 * continues, its changed and deleted files are there; bad archives are refused with one line
 * and nothing is created.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { isDeepStrictEqual } from 'node:util';
import { pack, readEntries, type Entry } from '../helpers/tarcraft.js';
import { Host, LOOPER, assertCleanError, eventually, counts, continuous, importFootprint } from '../helpers/ferry.js';

const K = new Host('k8A'); // Ferry, with the busybox image
const C = new Host('k8C'); // Ferry, without any image
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-k8a-'));
const outside = path.join(tmp, 'outside');
const BASE = path.join(tmp, 'base.tar');
const CRIO = path.join(tmp, 'crio.tar');
const CTRD = path.join(tmp, 'containerd.tar');

/** The looper, after changing /etc/motd and deleting /etc/group. */
const CHANGER = ['sh', '-c', `echo changed > /etc/motd; rm /etc/group; ${LOOPER[2]}`];
const CHECK = ['sh', '-c', 'cat /etc/motd; test -e /etc/group && echo group-present || echo group-gone'];
const CHANGED = 'changed\ngroup-gone\n';

let imageId = '';
let before0 = 0;
let base: Entry[] = [];

const json = (name: string, v: unknown): Entry => ({ header: { name, type: 'file', mode: 0o600, uid: 0, gid: 0, mtime: new Date() }, data: Buffer.from(JSON.stringify(v)) });
const file = (name: string, content: string | Buffer): Entry => ({ header: { name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: new Date() }, data: Buffer.from(content) });
const member = (list: Entry[], name: string): Entry => list.find((e) => e.header.name === name)!;
const doc = (list: Entry[], name: string): any => JSON.parse(member(list, name).data.toString());
const clone = (list: Entry[]): Entry[] => list.map((e) => ({ header: { ...e.header }, data: Buffer.from(e.data) }));

/** The pod's namespaces, joined by path (as the kubelet's containers join the pause container's). */
function podNamespaces(spec: any): void {
  spec.linux.namespaces = spec.linux.namespaces.map((n: any) => (['network', 'ipc', 'uts'].includes(n.type) ? { type: n.type, path: `/proc/4242/ns/${n.type === 'network' ? 'net' : n.type}` } : n));
}

/** checkpointctl's reduced ContainerConfig, as CRI-O and containerd write it. */
function reducedConfig(id: string, name: string, image: string, ref: string, runtime: string): unknown {
  return { id, name, rootfsImage: image, rootfsImageRef: ref, rootfsImageName: image, runtime, createdTime: new Date(Date.now() - 60_000).toISOString(), checkpointedTime: new Date().toISOString() };
}

/** CRI-O's archive: Podman's layout, CRI-O's config.dump and spec.dump annotations. */
function crioArchive(list: Entry[]): Entry[] {
  const l = clone(list).filter((e) => !['network.status', 'ctr.log'].includes(e.header.name));
  const config = doc(l, 'config.dump');
  const spec = doc(l, 'spec.dump');
  spec.annotations = {
    'io.container.manager': 'cri-o',
    'io.kubernetes.cri-o.Metadata': JSON.stringify({ name: 'counter', attempt: 0 }),
    'io.kubernetes.cri-o.Created': '2026-01-02T03:04:05.000000000Z',
    'io.kubernetes.cri-o.Annotations': '{}',
    'io.kubernetes.pod.name': 'counters',
    'io.kubernetes.pod.namespace': 'default',
  };
  podNamespaces(spec);
  member(l, 'config.dump').data = Buffer.from(JSON.stringify(reducedConfig(config.id, 'k8s_counter_counters_default_0123_0', 'localhost/busybox:latest', imageId, 'runc')));
  member(l, 'spec.dump').data = Buffer.from(JSON.stringify(spec));
  return [...l, file('dump.log', 'criu dump log\n')];
}

/** containerd's archive: its files in name order, status.dump, the rootfs diff as a gzip OCI layer. */
async function containerdArchive(list: Entry[]): Promise<Entry[]> {
  const l = clone(list);
  const config = doc(l, 'config.dump');
  const spec = doc(l, 'spec.dump');
  spec.annotations = {
    'io.kubernetes.cri.container-type': 'container',
    'io.kubernetes.cri.container-name': 'counter',
    'io.kubernetes.cri.sandbox-name': 'counters',
    'io.kubernetes.cri.sandbox-namespace': 'default',
    'io.kubernetes.cri.sandbox-id': 'f'.repeat(64),
  };
  podNamespaces(spec);
  // A base image name this host lacks, and its ID: found by rootfsImageRef.
  const cfg = reducedConfig(config.id, 'counter', 'localhost/not-here:1', `sha256:${imageId}`, 'io.containerd.runc.v2');
  const status = { id: config.id, metadata: { name: 'counter' }, state: 1, image: { image: 'localhost/not-here:1' }, image_ref: `sha256:${imageId}`, labels: {}, annotations: {}, log_path: '/var/log/pods/x/counter/0.log' };
  // deleted.files becomes whiteouts in the layer.
  const inner = await readEntries(await writeTmp(member(l, 'rootfs-diff.tar').data));
  const deleted: string[] = doc(l, 'deleted.files');
  const layer: Entry[] = [...inner, ...deleted.map((p) => file(path.posix.join(path.posix.dirname(p.slice(1)), `.wh.${path.posix.basename(p)}`), ''))];
  const members = [
    ...l.filter((e) => e.header.name.startsWith('checkpoint')),
    json('config.dump', cfg),
    // The container's log (the CRI log format is the one Ferry's ctr.log has).
    ...l.filter((e) => e.header.name === 'ctr.log').map((e) => ({ ...e, header: { ...e.header, name: 'container.log' } })),
    file('dump.log', 'criu dump log\n'),
    file('rootfs-diff.tar', zlib.gzipSync(await pack(layer))),
    json('spec.dump', spec),
    ...l.filter((e) => e.header.name === 'stats-dump'),
    json('status', { Pid: 4243, CreatedAt: 1, StartedAt: 2 }),
    json('status.dump', status),
  ];
  return members;
}

/** The looper restored: it counts on from where the checkpoint stopped it (its log was not carried). */
function countsOn(seq: number[], from: number): boolean {
  return seq.length >= 3 && Math.abs(seq[0]! - from) <= 1 && seq.every((v, i) => v === seq[0]! + i);
}

let n = 0;
async function writeTmp(data: Buffer): Promise<string> {
  const f = path.join(tmp, `t-${++n}.tar`);
  fs.writeFileSync(f, data);
  return f;
}

before(async () => {
  fs.mkdirSync(outside);
  await Promise.all([K.importBusybox(), C.run(['images'])]);
  imageId = JSON.parse(await K.ok(['image', 'inspect', 'localhost/busybox:latest']))[0].Id.replace(/^sha256:/, '');
  await K.ok(['run', '-d', '--name', 'src', '--network', 'none', 'busybox', ...CHANGER]);
  await eventually(async () => (await counts(K, 'src')).length >= 3);
  await K.ok(['container', 'checkpoint', '--export', BASE, '-c', 'none', '--format', 'podman', 'src']);
  before0 = (await counts(K, 'src')).length;
  await K.ok(['rm', '-f', 'src']);
  base = await readEntries(BASE);
  fs.writeFileSync(CRIO, await pack(crioArchive(base)));
  fs.writeFileSync(CTRD, await pack(await containerdArchive(base)));
});
after(async () => {
  await K.destroy();
  await C.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('CRI-O\'s archive restores under the Kubernetes container\'s name; the counter continues, file changes there', async () => {
  await K.ok(['container', 'restore', '--import', CRIO]);
  // CRI-O's archive carries no container log: the new log starts with the next number.
  await eventually(async () => countsOn(await counts(K, 'counter'), before0), 15_000);
  const r = await K.run(['exec', 'counter', ...CHECK]);
  assert.equal(r.stdout, CHANGED, r.stderr);
  const i = await K.inspect('counter');
  assert.equal(i.State.Status, 'running');
  assert.equal(i.ImageName, 'localhost/busybox:latest');
  await K.ok(['rm', '-f', 'counter']);
});

test('containerd\'s archive (name order, status.dump, gzip layer with whiteouts) restores with -n, its image found by ID', async () => {
  await K.ok(['container', 'restore', '--import', CTRD, '-n', 'ctrd']);
  await eventually(async () => continuous(await counts(K, 'ctrd'), before0 + 1), 15_000);
  const r = await K.run(['exec', 'ctrd', ...CHECK]);
  assert.equal(r.stdout, CHANGED, r.stderr);
  await K.ok(['rm', '-f', 'ctrd']);
});

test('containerd\'s layer with an opaque directory: what the image had there is gone, the layer\'s files are there', async () => {
  const list = await readEntries(CTRD);
  const dir: Entry = { header: { name: 'etc/', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: new Date() }, data: Buffer.alloc(0) };
  member(list, 'rootfs-diff.tar').data = zlib.gzipSync(await pack([dir, file('etc/.wh..wh..opq', ''), file('etc/motd', 'changed\n')]));
  await K.ok(['container', 'restore', '--import', await crafted(list), '-n', 'opq']);
  await eventually(async () => (await counts(K, 'opq')).length > before0 + 1, 15_000);
  const r = await K.run(['exec', 'opq', 'sh', '-c', 'cat /etc/motd; test -e /etc/passwd && echo passwd-present || echo passwd-gone']);
  assert.equal(r.stdout, 'changed\npasswd-gone\n', r.stderr);
  await K.ok(['rm', '-f', 'opq']);
});

test('checkpoint inspect and show name the engine as checkpointctl does (CRI-O, containerd), with the pod', async () => {
  const crio = JSON.parse(await K.ok(['checkpoint', 'inspect', '--format', 'json', '--ps-tree', CRIO]))[0];
  assert.equal(crio.engine, 'CRI-O');
  assert.equal(crio.container_name, 'counter');
  assert.equal(crio.image, 'localhost/busybox:latest');
  assert.equal(crio.runtime, 'runc');
  assert.equal(crio.created, '2026-01-02T03:04:05.000000000Z');
  assert.ok(crio.checkpointed);
  assert.deepEqual(crio.metadata, { pod_name: 'counters', kubernetes_namespace: 'default' });
  assert.equal(crio.process_tree.command, 'sh');
  const ctrd = JSON.parse(await K.ok(['checkpoint', 'inspect', '--format', 'json', CTRD]))[0];
  assert.equal(ctrd.engine, 'containerd');
  assert.equal(ctrd.container_name, 'counter');
  assert.equal(ctrd.runtime, 'io.containerd.runc.v2');
  assert.ok(ctrd.checkpoint_size.root_fs_diff_size > 0);
  const tree = await K.ok(['checkpoint', 'inspect', CTRD]);
  assert.match(tree, /Engine: containerd/);
  assert.match(tree, /Pod: counters \(namespace default\)/);
  const show = (await K.ok(['checkpoint', 'show', CRIO, CTRD])).split('\n');
  assert.match(show[1]!, /counter .*CRI-O/);
  assert.match(show[2]!, /counter .*containerd/);
});

// ------------------------------------------------------------------------- refusals

async function refused(h: Host, archive: string, re: RegExp, extra: string[] = []): Promise<void> {
  const before = await importFootprint(h);
  const r = await h.fails(['container', 'restore', '--import', archive, ...extra], { timeoutMs: 60_000 });
  const kept = /details: (\S+ferry-import-[0-9a-f]+-restore\.log)/.exec(r.stderr)?.[1];
  if (kept) fs.rmSync(kept, { force: true });
  assertCleanError(r, re);
  await eventually(async () => isDeepStrictEqual(await importFootprint(h), before), 10_000).catch(() => undefined);
  assert.deepEqual(await importFootprint(h), before, `nothing left behind after: ${r.stderr.trim()}`);
  assert.deepEqual(fs.readdirSync(outside), [], 'nothing written outside');
}

async function crafted(list: Entry[]): Promise<string> {
  return writeTmp(await pack(list));
}

test('refused: a Kubernetes archive whose base image is missing, naming it', async () => {
  await refused(C, CRIO, /needs image localhost\/busybox:latest \(\w+\), which this host does not have/);
  await refused(C, CTRD, /needs image localhost\/not-here:1 \(sha256:\w+\), which this host does not have/);
});

test('refused: containerd\'s archive without status.dump; a Kubernetes container with bind mounts', async () => {
  const ctrd = await readEntries(CTRD);
  await refused(K, await crafted(ctrd.filter((e) => e.header.name !== 'status.dump')), /no status\.dump, which containerd writes/, ['-n', 'r1']);
  const crio = await readEntries(CRIO);
  const spec = doc(crio, 'spec.dump');
  spec.mounts.push({ destination: '/var/run/secrets/kubernetes.io/serviceaccount', type: 'bind', source: '/etc', options: ['rbind', 'ro'] });
  member(crio, 'spec.dump').data = Buffer.from(JSON.stringify(spec));
  await refused(K, await crafted(crio), /has bind mounts \(\/var\/run\/secrets\/kubernetes\.io\/serviceaccount\), which ferry cannot recreate/, ['-n', 'r2']);
});

test('refused: containerd\'s layer with an escaping whiteout, a misplaced opaque marker, a device node, or cut short', async () => {
  const rel = path.relative(tmp, outside);
  const cases: [Entry[] | Buffer, RegExp][] = [
    [[file(`../../${rel}/.wh.x`, '')], /leaves the archive's directory/],
    [[file('etc/.wh..wh..opq', '')], /opaque marker "etc\/\.wh\.\.wh\.\.opq" does not follow its directory/],
    [[{ header: { name: 'dev/evil', type: 'character-device', devmajor: 1, devminor: 1, mode: 0o666, mtime: new Date() }, data: Buffer.alloc(0) }], /is a device node/],
    [zlib.gzipSync(await pack([file('etc/motd', 'x'.repeat(4096))])).subarray(0, 100), /corrupt or truncated/],
  ];
  for (const [i, [inner, re]] of cases.entries()) {
    const list = await readEntries(CTRD);
    member(list, 'rootfs-diff.tar').data = Buffer.isBuffer(inner) ? inner : zlib.gzipSync(await pack(inner));
    await refused(K, await crafted(list), re, ['-n', `lay${i}`]);
  }
});
