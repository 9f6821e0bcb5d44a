/**
 * Pulling OCI images from a real registry (Debian's docker-registry on 127.0.0.1, seeded by
 * skopeo from OCI layouts the test writes): layers, whiteouts, sharing, every refusal.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Terminal } from '../helpers/terminal.js';
import { Host, assertCleanError, busyboxTarball, sleep } from '../helpers/ferry.js';
import { layerTar, storedImageFiles, writeLayout, type Member } from '../helpers/oci.js';
import { Registry, TamperProxy, hasRegistryTools } from '../helpers/registry.js';
import { freeIp, waitEcho } from '../helpers/net.js';

const missing = hasRegistryTools();
const h = new Host('pull');
const reg = new Registry();
let proxy: TamperProxy | undefined;
let layout = '';
let base: Buffer;
const arch = process.arch === 'x64' ? 'amd64' : process.arch;

/** Layers: busybox; files; whiteouts and an opaque dir over them. */
const filesLayer: Member[] = [
  { name: 'opt', type: 'dir' },
  { name: 'opt/keep', type: 'dir' },
  { name: 'opt/keep/k', type: 'file', data: 'kept\n' },
  { name: 'opt/old', type: 'dir' },
  { name: 'opt/old/a', type: 'file', data: 'a\n' },
  { name: 'etc/gone', type: 'file', data: 'gone\n' },
];
const hidingLayer: Member[] = [
  { name: 'etc', type: 'dir' },
  { name: 'etc/.wh.gone', type: 'file' },
  { name: 'opt', type: 'dir' },
  { name: 'opt/old', type: 'dir', mode: 0o755 },
  { name: 'opt/old/.wh..wh..opq', type: 'file' },
  { name: 'opt/old/b', type: 'file', data: 'b\n' },
];

const storeContents = (): string[] => storedImageFiles(h.root);
const layerCount = (): number => {
  try {
    return fs.readdirSync(path.join(h.root, 'images', 'layers')).filter((d) => /^[0-9a-f]{64}$/.test(d)).length;
  } catch {
    return 0;
  }
};

before(async () => {
  if (missing) return;
  base = fs.readFileSync(busyboxTarball());
  await reg.start();
  layout = path.join(reg.dir, 'layout');
  const tmp = path.join(reg.dir, 'tars');
  writeLayout(layout, 'multi', { layers: [base, layerTar(filesLayer, tmp), layerTar(hidingLayer, tmp)], architecture: arch });
  writeLayout(layout, 'sibling', { layers: [base, layerTar([{ name: 'sibling', type: 'file', data: 'sib\n' }], tmp)], architecture: arch });
  writeLayout(layout, 'escape', { layers: [base, layerTar([{ name: '../../../escaped-by-layer', type: 'file', data: 'x' }], tmp)], architecture: arch });
  writeLayout(layout, 'plain', { layers: [layerTar([{ name: 'only', type: 'file', data: 'x' }], tmp)], architecture: arch, compression: 'none' });
  writeLayout(layout, 'config', {
    layers: [base],
    architecture: arch,
    config: { Entrypoint: ['/bin/echo', 'ep'], Cmd: ['default'], Env: ['PATH=/bin', 'GREETING=hi'], WorkingDir: '/tmp', User: 'nobody', Labels: { 'org.example': 'yes' }, StopSignal: 'SIGINT', ExposedPorts: { '7000/tcp': {}, '7001/udp': {} } },
  });
  for (const [tag, repo] of [['multi', 'app/multi:1'], ['escape', 'bad/escape:1'], ['plain', 'app/plain:1'], ['config', 'app/config:1']] as const) reg.push(layout, tag, repo);
  reg.push(layout, 'sibling', 'app/sibling:1', 'v2s2');
});

after(async () => {
  await h.destroy();
  await proxy?.stop();
  await reg.stop();
});

const pull = (ref: string, ...extra: string[]): string[] => ['pull', '--tls-verify=false', ...extra, ref];

test('pull a multi-layer image: its whiteouts and opaque dir hide what lower layers had', { skip: missing }, async () => {
  const r = await h.run(pull(`${reg.addr}/app/multi:1`));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'no progress when stderr is not a terminal');
  const id = r.stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.equal(layerCount(), 3);
  const img = `${reg.addr}/app/multi:1`;
  assert.equal(await h.ok(['run', '--rm', img, 'sh', '-c', 'cat /opt/keep/k; ls /opt/old; test -e /etc/gone || echo no-gone']), 'kept\nb\nno-gone');
  // Pulled again: nothing to do, same image.
  const again = await h.run(pull(img));
  assert.equal(again.stdout.trim(), id);
  assert.equal(layerCount(), 3);
  assert.equal(await h.ok(['pull', '-q', '--tls-verify=false', img]), id, '-q prints only the ID');
});

test('two images sharing a base layer store it once; Docker schema 2 and uncompressed layers pull', { skip: missing }, async () => {
  const before = layerCount();
  const r = await h.run(pull(`${reg.addr}/app/sibling:1`));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(layerCount(), before + 1, 'only the new layer is stored');
  assert.equal(await h.ok(['run', '--rm', `${reg.addr}/app/sibling:1`, 'cat', '/sibling']), 'sib');
  await h.ok(pull(`${reg.addr}/app/plain:1`));
  assert.equal(layerCount(), before + 2);
  // rmi frees only what no other image uses.
  await h.ok(['rmi', `${reg.addr}/app/sibling:1`]);
  assert.equal(layerCount(), before + 1);
  await h.ok(['rmi', `${reg.addr}/app/plain:1`]);
  assert.equal(layerCount(), before);
  assert.equal(await h.ok(['run', '--rm', `${reg.addr}/app/multi:1`, 'cat', '/opt/keep/k']), 'kept', 'the shared base is still there');
});

test('bad references and registries: one line each, nothing stored', { skip: missing }, async () => {
  const before = storeContents();
  assertCleanError(await h.fails(pull(`${reg.addr}/app/nope:1`)), new RegExp(`^Error: 127\\.0\\.0\\.1:\\d+/app/nope:1 not found in the registry: check the repository name and tag$`));
  assertCleanError(await h.fails(pull(`${reg.addr}/app/multi:nope`)), /app\/multi:nope not found in the registry/);
  assertCleanError(await h.fails(['pull', 'busybox']), /^Error: short-name "busybox" names no registry \(there are no search registries\): give a full reference/);
  assertCleanError(await h.fails(pull(`${reg.addr}/App/x`)), /invalid image reference/);
  assertCleanError(await h.fails(['pull', `${reg.addr}/app/multi:1`]), /over verified HTTPS.*--tls-verify=false/);
  assertCleanError(await h.fails(pull(`${reg.addr}/app/multi:1`, '--platform', 'linux/s390x')), /is an image for linux\/amd64, not linux\/s390x/);
  const r = await h.fails(pull(`${reg.addr}/bad/escape:1`));
  assertCleanError(r, /^Error: unpacking layer sha256:[0-9a-f]{12}… failed: member "\.\.\/\.\.\/\.\.\/escaped-by-layer" leads out of the layer \('\.\.'\); nothing was stored$/);
  assert.ok(!fs.existsSync(path.join(h.root, 'escaped-by-layer')) && !fs.existsSync(path.join(h.dir, 'escaped-by-layer')));
  assert.deepEqual(storeContents(), before, 'nothing stored by any of them');
});

test('a registry serving a tampered blob: refused by its digest, nothing stored', { skip: missing }, async () => {
  proxy = new TamperProxy(reg.port);
  await proxy.start();
  // The layer as the registry holds it (skopeo compressed it on the way in).
  const res = await fetch(`http://${reg.addr}/v2/app/plain/manifests/1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const layer = ((await res.json()) as { layers: { digest: string }[] }).layers[0]!.digest;
  proxy.tamper.add(layer);
  const before = storeContents();
  const r = await h.fails(pull(`${proxy.addr}/app/plain:1`));
  assertCleanError(r, new RegExp(`^Error: layer ${layer.slice(0, 19)}… does not match its digest \\(got sha256:[0-9a-f]{64}\\): the source is corrupt or tampered with; nothing was stored$`));
  assert.deepEqual(storeContents(), before);
  proxy.tamper.clear();
  // A download cut half-way: refused, nothing stored; the retry succeeds.
  proxy.cut.add(layer);
  assertCleanError(await h.fails(pull(`${proxy.addr}/app/plain:1`)), /^Error: downloading layer sha256:[0-9a-f]{12}… failed: .*; nothing was stored$/);
  assert.deepEqual(storeContents(), before);
  assert.match(await h.ok(pull(`${proxy.addr}/app/plain:1`)), /^[0-9a-f]{64}$/, 'through an honest proxy it pulls');
});

test('on a terminal, pull redraws each blob\'s row in place as its bytes arrive; -q prints only the ID', { skip: missing || (spawnSync('sh', ['-c', 'command -v tmux']).status !== 0 && 'tmux is not installed') }, async () => {
  // A layer of ~1.5 MiB that gzip cannot shrink much, served at 256 KiB/s: several seconds.
  const tmp = path.join(reg.dir, 'tars-slow');
  const noise = randomBytes(1200 << 10).toString('base64');
  const slowLayout = path.join(reg.dir, 'layout-slow');
  writeLayout(slowLayout, 'slow', { layers: [layerTar([{ name: 'noise', type: 'file', data: noise }], tmp)], architecture: arch });
  reg.push(slowLayout, 'slow', 'app/slow:1');
  const slow = new TamperProxy(reg.port);
  await slow.start();
  slow.bytesPerSecond = 256 << 10;
  const other = new Host('pulltty');
  const term = new Terminal('pull');
  try {
    term.ferry(other, pull(`${slow.addr}/app/slow:1`), { width: 120, height: 20 });
    const row = /^Copying blob ([0-9a-f]{12}) \[[=>-]+\] ([\d.]+)(?:b|KiB|MiB) \/ ([\d.]+)MiB$/m;
    const first = row.exec(await term.waitFor(row, 20_000))!;
    // The same row, further on: a byte count that changed, still on one line (redrawn, not appended).
    let later: RegExpExecArray | null = null;
    const end = Date.now() + 20_000;
    while (Date.now() < end) {
      const s = term.screen();
      later = row.exec(s);
      if (later && later[2] !== first[2]) {
        const rows = s.split('\n').filter((l) => l.startsWith(`Copying blob ${first[1]}`));
        assert.equal(rows.length, 1, `one row for the blob, redrawn in place; screen:\n${s}`);
        break;
      }
      await sleep(100);
    }
    assert.ok(later && later[2] !== first[2], `the byte count changed on the blob's row (first ${first[2]})`);
    assert.equal(await term.exitStatus(30_000), 0);
    const s = term.screen();
    assert.match(s, new RegExp(`^Copying blob ${first[1]} done$`, 'm'), s);
    assert.equal(s.split('\n').filter((l) => l.startsWith(`Copying blob ${first[1]}`)).length, 1, s);
    assert.match(s, /^Trying to pull .*\nGetting image source signatures\n/m);
    assert.match(s, /^Writing manifest to image destination\nStoring signatures\n[0-9a-f]{64}$/m);
    // -q on a terminal: only the image ID.
    term.kill();
    await other.ok(['rmi', '-a', '-f']);
    const q2 = new Terminal('pullq2');
    try {
      q2.ferry(other, pull(`${slow.addr}/app/slow:1`, '-q'), { width: 120, height: 20 });
      assert.equal(await q2.exitStatus(30_000), 0);
      assert.match(q2.screen(), /^[0-9a-f]{64}\n\n\[exited 0\]$/);
    } finally {
      q2.kill();
    }
  } finally {
    term.kill();
    await other.destroy();
    await slow.stop();
  }
});

test('a full disk: the pull fails in one line and leaves nothing stored', { skip: missing }, async () => {
  const small = new Host('pullfull');
  fs.mkdirSync(small.root, { recursive: true });
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small.root]);
  assert.equal(m.status, 0);
  try {
    const r = await small.fails(pull(`${reg.addr}/app/multi:1`));
    assertCleanError(r, /^Error: storing layer sha256:[0-9a-f]{12}… failed: the disk holding .*\/images is full; free some space and try again; nothing was stored$/);
    // Nothing stored: no layer, no blob (a store that never got as far as a blob has no blobs dir).
    const ls = (...p: string[]): string[] => (fs.existsSync(path.join(small.root, 'images', ...p)) ? fs.readdirSync(path.join(small.root, 'images', ...p)) : []);
    assert.deepEqual([...ls('layers'), ...ls('blobs', 'sha256')], []);
  } finally {
    spawnSync('umount', [small.root]);
    await small.destroy();
  }
});

test("run honours the image's config: Entrypoint + Cmd, Env, WorkingDir, User, Labels, StopSignal; --pull", { skip: missing }, async () => {
  const img = `${reg.addr}/app/config:1`;
  assertCleanError(await h.fails(['run', '--rm', '--pull', 'never', img]), /image ".*app\/config:1" not found/);
  // --pull missing (the default) pulls what is not here.
  assert.equal(await h.ok(['run', '--rm', '--tls-verify=false', img]), 'ep default');
  assert.equal(await h.ok(['run', '--rm', img, 'a', 'b']), 'ep a b', 'run arguments replace Cmd');
  const probe = 'echo $GREETING $(pwd) $(id -u) $(id -g) $HOME';
  assert.equal(await h.ok(['run', '--rm', '--entrypoint', '/bin/sh', img, '-c', probe]), 'hi /tmp 65534 65534 /', '--entrypoint replaces Entrypoint; Env, WorkingDir, User');
  assert.equal(await h.ok(['run', '--rm', '--entrypoint', '["/bin/echo","x"]', img]), 'x', '--entrypoint clears Cmd');
  assert.equal(await h.ok(['run', '--rm', '-e', 'GREETING=yo', '-w', '/', '-u', 'root', '--entrypoint', '/bin/sh', img, '-c', probe]), 'yo / 0 0 /root');
  assert.equal(await h.ok(['run', '--rm', '-u', '65534:0', '--entrypoint', '/bin/sh', img, '-c', 'id -u; id -g']), '65534\n0');
  assert.equal(await h.ok(['run', '--rm', '-u', '4242', '--entrypoint', '/bin/sh', img, '-c', 'id -u; id -g']), '4242\n0', 'a numeric UID needs no passwd entry');
  const bad = await h.fails(['run', '--rm', '-u', 'nosuch', img]);
  assertCleanError(bad, /unable to find user nosuch: no matching entries in the container's \/etc\/passwd/);
  await h.ok(['create', '--name', 'cfg', '-l', 'mine=1', img]);
  const ins = await h.inspect('cfg');
  assert.equal(ins.Config.Entrypoint, '/bin/echo ep', 'one string, as in Podman 4.3.1');
  assert.deepEqual(ins.Config.Cmd, ['default']);
  assert.equal(ins.Config.User, 'nobody');
  assert.equal(ins.Config.Labels['org.example'], 'yes');
  assert.equal(ins.Config.Labels.mine, '1');
  assert.equal(ins.Config.StopSignal, 2, 'SIGINT, a number as in Podman 4.3.1');
  await h.ok(['rm', 'cfg']);
  assert.deepEqual(await h.names(), [], 'the refused run left no container');
  // --pull always fetches again (the registry is reachable: the same image).
  assert.equal(await h.ok(['run', '--rm', '--pull', 'always', '--tls-verify=false', img, 'again']), 'ep again');
});

test('-P publishes the ports the image exposes on free host ports; -p keeps its own', { skip: missing }, async () => {
  const img = `${reg.addr}/app/config:1`;
  const echo = ['--entrypoint', 'nc', '-u', 'root', img, '-ll', '-p', '7000', '-e', 'cat'];
  try {
    await h.ok(['run', '-d', '--name', 'web', '--ip', freeIp(), '-P', ...echo]);
    const ports = (await h.ok(['port', 'web'])).split('\n').sort();
    assert.equal(ports.length, 2, ports.join('; '));
    const tcp = /^7000\/tcp -> 0\.0\.0\.0:(\d+)$/.exec(ports[0]!);
    assert.ok(tcp, ports[0]);
    assert.match(ports[1]!, /^7001\/udp -> 0\.0\.0\.0:\d+$/);
    await waitEcho('127.0.0.1', Number(tcp[1]));
    await h.ok(['rm', '-f', 'web']);
    await h.ok(['create', '--name', 'web2', '-P', '-p', '7100:7000', ...echo]);
    assert.match(await h.ok(['ps', '-a', '--format', '{{.Names}} {{.Ports}}']), /^web2 0\.0\.0\.0:7100->7000\/tcp, 0\.0\.0\.0:\d+->7001\/udp$/m);
  } finally {
    await h.run(['rm', '-f', '-i', 'web', 'web2']);
  }
});

test('a container of a pulled image checkpoints and restores, and moves to another root with --export/--import', { skip: missing }, async () => {
  const img = `${reg.addr}/app/multi:1`;
  const B = new Host('pullb');
  try {
    await h.ok(['run', '-d', '--name', 'pl', img, 'sh', '-c', 'i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done']);
    await new Promise((r) => setTimeout(r, 800));
    await h.ok(['container', 'checkpoint', 'pl']);
    await h.ok(['container', 'restore', 'pl']);
    assert.equal((await h.inspect('pl')).State.Status, 'running');
    const file = path.join(h.dir, 'pl.tar.zst');
    await h.ok(['container', 'checkpoint', 'pl', '--export', file]);
    const n = Number((await h.logs('pl')).pop());
    // A root without the image pulls it (as Podman does); when it cannot, it refuses naming it.
    assertCleanError(await B.fails(['container', 'restore', '--import', file]), new RegExp(`needs image ${img.replace(/[./]/g, '\\$&')} .*, and pulling it failed \\(cannot reach .* over verified HTTPS`));
    assert.equal(await B.ok(['images', '-q']), '', 'nothing stored');
    await B.ok(['container', 'restore', '--import', file, '--tls-verify=false']);
    assert.equal(JSON.parse(await B.ok(['image', 'inspect', img]))[0].Id, JSON.parse(await h.ok(['image', 'inspect', img]))[0].Id);
    await new Promise((r) => setTimeout(r, 800));
    const counts = (await B.logs('pl')).map(Number);
    assert.ok(counts.includes(n) && counts[counts.length - 1]! > n, `the count goes on from ${n}: ${counts.slice(-5).join(',')}`);
    assert.equal(await B.ok(['exec', 'pl', 'sh', '-c', 'ls /opt/old; test -e /etc/gone || echo no-gone']), 'b\nno-gone');
  } finally {
    await B.destroy();
    await h.run(['rm', '-f', 'pl']);
  }
});

test('image inspect, images --format json and image history match Podman\'s for the same pulled image', { skip: missing || (spawnSync('sh', ['-c', 'command -v podman']).status !== 0 && 'podman is not installed') }, async () => {
  const img = `${reg.addr}/app/config:1`;
  const pd = fs.mkdtempSync(path.join(h.dir, 'podman-'));
  const hadVarLib = fs.existsSync('/var/lib/containers');
  const podman = (...args: string[]): string => {
    const r = spawnSync('podman', ['--root', path.join(pd, 'root'), '--runroot', path.join(pd, 'run'), '--storage-driver', 'vfs', ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`podman ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  try {
    podman('pull', '-q', '--tls-verify=false', img);
    await h.ok(['pull', '-q', '--tls-verify=false', img]);
    const p = JSON.parse(podman('image', 'inspect', img))[0];
    const f = JSON.parse(await h.ok(['image', 'inspect', img]))[0];
    assert.deepEqual(Object.keys(f), Object.keys(p), 'the same fields in the same order');
    for (const k of Object.keys(p)) if (k !== 'GraphDriver') assert.deepEqual(f[k], p[k], `image inspect .${k}`);
    assert.equal(f.GraphDriver.Name, 'overlay');
    const pi = (JSON.parse(podman('images', '--format', 'json')) as Record<string, unknown>[])[0]!;
    const fi = (JSON.parse(await h.ok(['images', '--format', 'json', img])) as Record<string, unknown>[])[0]!;
    assert.deepEqual(Object.keys(fi), Object.keys(pi));
    for (const k of Object.keys(pi)) assert.deepEqual(fi[k], pi[k], `images --format json .${k}`);
    assert.deepEqual(JSON.parse(await h.ok(['image', 'history', '--format', 'json', img])), JSON.parse(podman('image', 'history', '--format', 'json', img)));
    assert.equal(await h.ok(['image', 'history', '-q', '--no-trunc', img]), podman('image', 'history', '-q', '--no-trunc', img).trim());
  } finally {
    spawnSync('podman', ['--root', path.join(pd, 'root'), '--runroot', path.join(pd, 'run'), '--storage-driver', 'vfs', 'rmi', '-a', '-f'], { stdio: 'ignore' });
    fs.rmSync(pd, { recursive: true, force: true });
    // Podman keeps a blob-info cache below /var/lib/containers whatever --root says.
    if (!hadVarLib) fs.rmSync('/var/lib/containers', { recursive: true, force: true });
  }
});
