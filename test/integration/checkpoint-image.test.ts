/**
 * Checkpoint images: `ferry container checkpoint --create-image` makes a one-layer OCI image in
 * Podman's checkpoint-image layout; `ferry container restore IMAGE` and `ferry run IMAGE` restore
 * new containers from it (as many as wanted, with -n), pulling it and its base image when
 * missing. Across two Ferry roots through a local registry, and both ways with Debian's real
 * Podman (`podman container checkpoint --create-image` / `podman container restore IMAGE`).
 * Bad images (tampered, escaping paths, symlinked CRIU images, incomplete, not a checkpoint)
 * are refused with one line and nothing is created.
 *
 * Every container runs with --network none.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { spawn, spawnSync } from 'node:child_process';
import { FERRY_BIN, Host, LOOPER, assertCleanError, counts, eventually, continuous, importFootprint } from '../helpers/ferry.js';
import { pack } from '../helpers/tarcraft.js';
import { writeLayout } from '../helpers/oci.js';
import { Podman, hasPodman } from '../helpers/podman.js';
import { Registry, TamperProxy, hasRegistryTools } from '../helpers/registry.js';

const skip = hasRegistryTools() ?? false;
const skipPodman = skip || (!hasPodman() ? 'podman is not installed' : false);

const A = new Host('ciA'); // Ferry, with busybox
const B = new Host('ciB'); // Ferry, no image at all
const P = new Podman('ciP');
const reg = new Registry();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-cim-'));
const outside = path.join(tmp, 'outside');

const NONE = ['--network', 'none'];
const insecure = '--tls-verify=false';
const MARK = 'io.podman.annotations.checkpoint.runtime.name';

before(async () => {
  if (skip) return;
  fs.mkdirSync(outside);
  await reg.start();
  await Promise.all([A.importBusybox(), B.run(['images'])]);
  // The base image in the registry too, so that a root without it can pull it.
  await A.ok(['push', insecure, 'busybox', `${reg.addr}/base/busybox:1`]);
  await A.ok(['pull', '-q', insecure, `${reg.addr}/base/busybox:1`]);
});
after(async () => {
  await A.destroy();
  await B.destroy();
  await P.destroy();
  await reg.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});


async function looper(h: Host, name: string, image = 'busybox'): Promise<void> {
  await h.ok(['run', '-d', '--name', name, ...NONE, image, ...LOOPER]);
  await eventually(async () => (await counts(h, name)).length >= 3);
}

test('--create-image: a one-layer image in Podman\'s layout, with Podman\'s and org.criu annotations', { skip }, async () => {
  await looper(A, 'l1');
  assert.equal(await A.ok(['container', 'checkpoint', '--create-image', 'ckpt:1', 'l1']), 'l1');
  assert.equal((await A.inspect('l1')).State.Status, 'exited');
  const img = JSON.parse(await A.ok(['image', 'inspect', 'ckpt:1']))[0];
  assert.equal(img.RootFS.Layers.length, 1);
  const a = img.Annotations as Record<string, string>;
  assert.equal(a[MARK], 'runc');
  assert.equal(a['io.podman.annotations.checkpoint.name'], 'l1');
  assert.equal(a['io.podman.annotations.checkpoint.rootfsImageName'], 'localhost/busybox:latest');
  assert.match(a['io.podman.annotations.checkpoint.criu.version']!, /^[0-9]{5,}$/);
  assert.equal(a['org.criu.checkpoint.engine.name'], 'ferry');
  assert.equal(a['org.criu.checkpoint.container.name'], 'l1');
  assert.equal(a['org.criu.checkpoint.host.arch'], process.arch === 'x64' ? 'amd64' : process.arch);
  // The layer holds what Podman's export archive holds.
  const files = fs.readdirSync(img.GraphDriver.Data.UpperDir).sort();
  for (const f of ['checkpoint', 'config.dump', 'spec.dump', 'network.status', 'rootfs-diff.tar', 'deleted.files']) assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
  assert.ok(fs.existsSync(path.join(img.GraphDriver.Data.UpperDir, 'checkpoint', 'inventory.img')));
  // Refused before anything is done: a bad name, with --export. (A container on a bridge
  // network is checkpointed into an image too: podman-archive.test.ts has its network both ways.)
  await looper(A, 'l2');
  assertCleanError(await A.fails(['container', 'checkpoint', '--create-image', 'Bad Name', 'l2']), /invalid --create-image name.*still running/);
  assertCleanError(await A.fails(['container', 'checkpoint', '--create-image', 'x', '--export', path.join(tmp, 'x.tar'), 'l2']), /--create-image and --export cannot be used together/);
  assert.equal((await A.inspect('l2')).State.Status, 'running');
  await A.ok(['rm', '-f', 'l2']);
  assert.equal((await A.fails(['image', 'inspect', 'x'])).code, 125, 'no image made');
});

test('restore IMAGE -n, twice: two copies count on; run IMAGE makes a third', { skip }, async () => {
  const before = (await counts(A, 'l1')).length;
  const id1 = await A.ok(['container', 'restore', '-n', 'c1', 'ckpt:1']);
  const id2 = await A.ok(['container', 'restore', '-n', 'c2', 'ckpt:1']);
  assert.match(id1, /^[0-9a-f]{64}$/);
  assert.notEqual(id1, id2);
  assert.equal(id1, (await A.inspect('c1')).Id);
  await eventually(async () => continuous(await counts(A, 'c1'), before + 2) && continuous(await counts(A, 'c2'), before + 2), 15_000);
  const id3 = await A.ok(['run', '--name', 'r1', 'ckpt:1']);
  assert.equal(id3, (await A.inspect('r1')).Id);
  await eventually(async () => continuous(await counts(A, 'r1'), before + 2), 15_000);
  // The checkpoint image is unchanged, and the checkpointed original is still there.
  assert.equal((await A.inspect('l1')).State.Status, 'exited');
  // Its own name is taken by the original: refused, nothing made.
  const names = await A.names();
  assertCleanError(await A.fails(['container', 'restore', 'ckpt:1']), /the container name "l1" is already in use: pass -n\/--name/);
  assert.deepEqual(await A.names(), names);
  await A.ok(['rm', '-f', 'c1', 'c2', 'r1']);
});

test('push and pull across roots: another root restores the image, pulling it and then its base image', { skip }, async () => {
  const base = `${reg.addr}/base/busybox:1`;
  await looper(A, 'mv', base);
  const dest = `${reg.addr}/ckpt/mv:1`;
  await A.ok(['container', 'checkpoint', '--create-image', dest, 'mv']);
  await A.ok(['push', insecure, dest]);
  const before = (await counts(A, 'mv')).length;
  assert.equal(await B.ok(['images', '-q']), '', 'B starts without images');
  await B.ok(['container', 'restore', insecure, dest]);
  await eventually(async () => continuous(await counts(B, 'mv'), before + 2), 15_000);
  const tags = (JSON.parse(await B.ok(['image', 'inspect', base, dest])) as { RepoTags: string[] }[]).map((i) => i.RepoTags);
  assert.deepEqual(tags, [[base], [dest]]);
  assert.equal((await B.ok(['images', '-q'])).split('\n').length, 2, 'the checkpoint image and its base image, pulled');
  // And once more, by run, under another name.
  await B.ok(['run', '--name', 'mv2', dest]);
  await eventually(async () => continuous(await counts(B, 'mv2'), before + 2), 15_000);
  await B.ok(['rm', '-f', 'mv', 'mv2']);
});

test('Podman to Ferry: podman checkpoint --create-image, pushed, restores in Ferry and counts on', { skip: skipPodman }, async () => {
  await P.importBusybox();
  await P.ok(['run', '-d', '--name', 'pl', '--network', 'none', 'localhost/busybox:latest', ...LOOPER]);
  await eventually(async () => (await P.counts('pl')).length >= 3);
  const ref = `${reg.addr}/podman/pl:1`;
  await P.ok(['container', 'checkpoint', '--create-image', ref, 'pl']);
  await P.ok(['push', insecure, ref]);
  const before = (await P.counts('pl')).length;
  await A.ok(['container', 'restore', insecure, '-n', 'frompodman', ref]);
  await eventually(async () => continuous(await counts(A, 'frompodman'), before + 2), 15_000);
  // A second copy from the same image.
  await A.ok(['container', 'restore', '-n', 'frompodman2', ref]);
  await eventually(async () => continuous(await counts(A, 'frompodman2'), before + 2), 15_000);
  await A.ok(['rm', '-f', 'frompodman', 'frompodman2']);
});

test('Ferry to Podman: ferry --create-image, ferry push; podman pull and podman container restore IMAGE count on', { skip: skipPodman }, async () => {
  if ((await P.run(['image', 'exists', 'localhost/busybox:latest'])).code !== 0) await P.importBusybox();
  await looper(A, 'fp');
  const ref = `${reg.addr}/ferry/fp:1`;
  await A.ok(['container', 'checkpoint', '--create-image', ref, 'fp']);
  await A.ok(['push', insecure, ref]);
  const before = (await counts(A, 'fp')).length;
  await P.ok(['pull', '-q', insecure, ref]);
  await P.ok(['container', 'restore', ref]);
  // Podman does not copy the log out of a checkpoint image: its log starts where Ferry's stopped.
  await eventually(async () => {
    const seq = await P.counts('fp');
    return seq.length > 2 && seq[0] === before && seq.every((v, i) => v === before + i);
  }, 15_000);
  await P.ok(['rm', '-f', '-t', '0', 'fp']);
});

test('over the libpod API: podman --remote checkpoint --create-image, then restore IMAGE -n', { skip: skipPodman }, async () => {
  const sock = path.join(A.dir, 'api.sock');
  const service = spawn(FERRY_BIN, [...A.args(), 'system', 'service', '--listen', `unix://${sock}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  service.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const remote = async (args: string[]): Promise<string> => {
    const r = spawnSync('podman', ['--remote', '--url', `unix://${sock}`, ...args], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`podman --remote ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return r.stdout.trim();
  };
  try {
    await eventually(() => log.includes('listening on'), 15_000, 50);
    await looper(A, 'apil');
    await remote(['container', 'checkpoint', '--create-image', 'ckapi:1', 'apil']);
    const img = JSON.parse(await A.ok(['image', 'inspect', 'ckapi:1']))[0];
    assert.equal(img.Annotations[MARK], 'runc');
    const before = (await counts(A, 'apil')).length;
    await remote(['container', 'restore', '-n', 'apic', 'ckapi:1']);
    await eventually(async () => continuous(await counts(A, 'apic'), before + 2), 15_000);
    await A.ok(['rm', '-f', 'apic', 'apil']);
  } finally {
    service.kill('SIGTERM');
    await new Promise((r) => (service.exitCode !== null ? r(undefined) : service.once('close', r)));
  }
});

// ------------------------------------------------------------------------- refusals

const footprint = importFootprint;

async function refused(h: Host, args: string[], re: RegExp): Promise<void> {
  const before = await footprint(h);
  const r = await h.fails(args, { timeoutMs: 60_000 });
  assertCleanError(r, re);
  await eventually(async () => isDeepStrictEqual(await footprint(h), before), 10_000).catch(() => undefined);
  assert.deepEqual(await footprint(h), before, `nothing left behind after: ${r.stderr.trim()}`);
  assert.deepEqual(fs.readdirSync(outside), [], 'nothing written outside');
}

type Member = { name: string; type: 'file'; data: Buffer } | { name: string; type: 'dir' } | { name: string; type: 'symlink'; target: string };

/** A tar of exactly these members, in this order (names as given, however hostile). */
function packTar(list: Member[]): Promise<Buffer> {
  return pack(
    list.map((m) => {
      const h = { name: m.name, mode: m.type === 'dir' ? 0o755 : 0o600, uid: 0, gid: 0, mtime: new Date(1_700_000_000_000) };
      if (m.type === 'file') return { header: { ...h, type: 'file' as const }, data: m.data };
      if (m.type === 'dir') return { header: { ...h, type: 'directory' as const }, data: Buffer.alloc(0) };
      return { header: { ...h, type: 'symlink' as const, linkname: m.target }, data: Buffer.alloc(0) };
    }),
  );
}

const file = (name: string, data: string | Buffer = 'evil\n'): Member => ({ name, type: 'file', data: Buffer.from(data) });

/** The members of a real checkpoint image's layer (Ferry's, made above), read from its layer dir. */
function checkpointMembers(upper: string): Member[] {
  const out: Member[] = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(upper, rel), { withFileTypes: true }).sort((x, y) => x.name.localeCompare(y.name))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push({ name: r, type: 'dir' });
        walk(r);
      } else out.push({ name: r, type: 'file', data: fs.readFileSync(path.join(upper, r)) });
    }
  };
  walk('');
  return out;
}

let seq = 0;
/** A checkpoint image with the members given, pushed to the registry; returns its reference. */
async function badImage(members: Member[], annotations: Record<string, string> = { [MARK]: 'runc' }): Promise<string> {
  const layout = path.join(tmp, `layout-${++seq}`);
  writeLayout(layout, 'x', { layers: [await packTar(members)], annotations, architecture: process.arch === 'x64' ? 'amd64' : process.arch });
  reg.push(layout, 'x', `bad/img${seq}:1`);
  return `${reg.addr}/bad/img${seq}:1`;
}

test('refused: not a checkpoint image, or no such image; nothing created', { skip }, async () => {
  await refused(A, ['container', 'restore', 'busybox'], /image busybox is not a checkpoint image \(it has no io\.podman\.annotations\.checkpoint\.runtime\.name annotation\)/);
  await refused(A, ['container', 'restore', '-n', 'x', 'busybox'], /not a checkpoint image/);
  await refused(A, ['container', 'restore', 'nosuchthing'], /no container with name or ID "nosuchthing"/);
  await refused(A, ['container', 'restore', '-n', 'x', 'l1'], /only apply with --import or a checkpoint image/);
});

test('refused: checkpoint images whose layer is tampered, escapes, links its CRIU images out or is incomplete', { skip }, async () => {
  const upper = JSON.parse(await A.ok(['image', 'inspect', 'ckpt:1']))[0].GraphDriver.Data.UpperDir as string;
  const good = checkpointMembers(upper);
  const rel = path.relative(tmp, outside);
  // The registry's copy of a good image, served with a byte flipped: the digest check stops it.
  const ok = await badImage(good);
  const proxy = new TamperProxy(reg.port);
  await proxy.start();
  try {
    const man = (await (await fetch(`http://${reg.addr}/v2/${ok.slice(reg.addr.length + 1).replace(/:1$/, '')}/manifests/1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as { layers: { digest: string }[] };
    proxy.tamper.add(man.layers[0]!.digest);
    await refused(A, ['container', 'restore', insecure, '-n', 't1', ok.replace(reg.addr, proxy.addr)], /does not match its digest.*tampered/);
  } finally {
    await proxy.stop();
  }
  // rootfs-diff.tar with a member that leaves the container's tree.
  const inner = await packTar([file(`../../../${rel}/x`)]);
  const esc = await badImage(good.map((m) => (m.name === 'rootfs-diff.tar' ? { ...m, data: inner } : m)));
  await refused(A, ['container', 'restore', insecure, '-n', 't2', esc], /^Error: bad checkpoint image .*leaves the archive's directory.*nothing was created/);
  // A CRIU image that is a symbolic link out of the checkpoint.
  const linked = await badImage(good.map((m) => (m.name === 'checkpoint/inventory.img' ? { name: m.name, type: 'symlink', target: '/etc/passwd' } : m)));
  await refused(A, ['container', 'restore', insecure, '-n', 't3', linked], /bad checkpoint image .*CRIU images are regular files/);
  // No inventory: not a complete checkpoint.
  const cut = await badImage(good.filter((m) => m.name !== 'checkpoint/inventory.img'));
  await refused(A, ['container', 'restore', insecure, '-n', 't4', cut], /bad checkpoint image .*no complete CRIU checkpoint/);
  // Not Podman's layout at all (but annotated as a checkpoint).
  const junk = await badImage([file('hello.txt')]);
  await refused(A, ['container', 'restore', insecure, '-n', 't5', junk], /bad checkpoint image .*(unexpected member "hello\.txt"|not a Podman checkpoint)/);
  // An escaping member of the layer itself: refused by the pull.
  const outer = await badImage([...good, file(`../${rel}/x`)]);
  await refused(A, ['container', 'restore', insecure, '-n', 't6', outer], /leads out of the layer \('\.\.'\)/);
  // The images pulled for these refusals stay (as with Podman); no container was made of them.
  assert.deepEqual((await A.names()).filter((n) => /^t[0-9]$/.test(n)), []);
});
