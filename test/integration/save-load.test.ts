/**
 * save and load: Podman's archives load, Ferry's load into Podman, round trips between roots
 * in every format, and hostile or corrupt archives refused with nothing stored.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FERRY_BIN, Host, assertCleanError, busyboxTarball } from '../helpers/ferry.js';
import { layerTar, writeLayout, type Member } from '../helpers/oci.js';

const hasPodman = spawnSync('sh', ['-c', 'command -v podman']).status === 0;
const A = new Host('sva');
const B = new Host('svb');
let work = '';
let pd = '';
const hadVarLib = fs.existsSync('/var/lib/containers');
const arch = process.arch === 'x64' ? 'amd64' : process.arch;

const podman = (...args: string[]): string => {
  const r = spawnSync('podman', ['--root', path.join(pd, 'root'), '--runroot', path.join(pd, 'run'), '--storage-driver', 'vfs', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`podman ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
};

const stored = (h: Host): string[] => {
  const ls = (d: string): string[] => {
    try {
      return fs.readdirSync(path.join(h.root, 'images', d)).map((x) => `${d}/${x}`);
    } catch {
      return [];
    }
  };
  return [...ls('.').filter((x) => /[0-9a-f]{64}$/.test(x)), ...ls('layers'), ...ls('l'), ...ls('blobs/sha256')].sort();
};

const layered: Member[][] = [
  [
    { name: 'opt', type: 'dir' },
    { name: 'opt/old', type: 'dir' },
    { name: 'opt/old/a', type: 'file', data: 'a\n' },
    { name: 'etc/gone', type: 'file', data: 'x\n' },
  ],
  [
    { name: 'etc', type: 'dir' },
    { name: 'etc/.wh.gone', type: 'file' },
    { name: 'opt', type: 'dir' },
    { name: 'opt/old', type: 'dir' },
    { name: 'opt/old/.wh..wh..opq', type: 'file' },
    { name: 'opt/old/b', type: 'file', data: 'b\n' },
  ],
];

before(() => {
  work = fs.mkdtempSync(path.join(A.dir, 'work-'));
  pd = path.join(work, 'podman');
  const layout = path.join(work, 'layout');
  writeLayout(layout, 'app:1', { layers: [fs.readFileSync(busyboxTarball()), ...layered.map((m) => layerTar(m, work))], architecture: arch, config: { Cmd: ['cat', '/opt/old/b'], Volumes: { '/opt/old': {} } } });
});

after(async () => {
  // Podman's state lives below A's dir: emptied before A goes (a podman run afterwards would make it again).
  if (hasPodman && fs.existsSync(pd)) spawnSync('podman', ['--root', path.join(pd, 'root'), '--runroot', path.join(pd, 'run'), '--storage-driver', 'vfs', 'rmi', '-a', '-f'], { stdio: 'ignore' });
  await A.destroy();
  await B.destroy();
  if (!hadVarLib) fs.rmSync('/var/lib/containers', { recursive: true, force: true });
});

test('an OCI layout dir loads; save in every format loads on another root as the same image', async () => {
  assert.equal(await A.ok(['load', '-i', path.join(work, 'layout')]), 'Loaded image: localhost/app:1', 'a short ref.name is a local name');
  const id = JSON.parse(await A.ok(['images', '--format', 'json']))[0].Id as string;
  await A.ok(['tag', id, 'example.com/app:1']);
  await A.ok(['rmi', 'app:1']);
  // The image's VOLUME /opt/old: an anonymous volume holding the image's files (copy-up),
  // removed with a --rm container, kept by `rm` and removed by `rm -v`.
  assert.equal(await A.ok(['run', '--rm', 'example.com/app:1']), 'b');
  assert.equal(await A.ok(['volume', 'ls', '-q']), '', '--rm removed its anonymous volume');
  await A.ok(['run', '-d', '--name', 'v1', 'example.com/app:1', 'sh', '-c', 'echo new > /opt/old/new; sleep 100']);
  const vol = await A.ok(['volume', 'ls', '-q']);
  assert.match(vol, /^[0-9a-f]{64}$/);
  assert.equal(await A.ok(['exec', 'v1', 'sh', '-c', 'ls /opt/old; grep " /opt/old " /proc/mounts | wc -l']), 'b\nnew\n1');
  await A.ok(['rm', '-f', 'v1']);
  assert.equal(await A.ok(['volume', 'ls', '-q']), vol, 'rm without -v keeps it');
  await A.ok(['volume', 'rm', vol]);
  await A.ok(['create', '--name', 'v2', '-v', 'mine:/opt/old', 'example.com/app:1']);
  assert.equal(await A.ok(['volume', 'ls', '-q']), 'mine', '-v over the VOLUME path: no anonymous one');
  await A.ok(['rm', 'v2']);
  await A.ok(['volume', 'rm', 'mine']);
  await A.ok(['create', '--name', 'v3', 'example.com/app:1']);
  assert.match(await A.ok(['volume', 'ls', '-q']), /^[0-9a-f]{64}$/);
  await A.ok(['rm', '-v', 'v3']);
  assert.equal(await A.ok(['volume', 'ls', '-q']), '', 'rm -v removed it');
  for (const format of ['docker-archive', 'oci-archive', 'oci-dir']) {
    const out = path.join(work, `save-${format}`);
    assert.equal(await A.ok(['save', '--format', format, '-o', out, 'example.com/app:1']), '');
    assert.equal(await B.ok(['load', '-i', out]), 'Loaded image: example.com/app:1', format);
    assert.equal(JSON.parse(await B.ok(['image', 'inspect', 'example.com/app:1']))[0].Id, id, `${format}: the same image ID`);
    assert.equal(await B.ok(['run', '--rm', 'example.com/app:1', 'sh', '-c', 'ls /opt/old; test -e /etc/gone || echo no-gone']), 'b\nno-gone', format);
    await B.ok(['rmi', 'example.com/app:1']);
    assert.deepEqual(stored(B), [], `${format}: all freed`);
  }
  // save to stdout, load from stdin
  const saved = spawnSync(FERRY_BIN, [...A.args(), 'save', 'example.com/app:1'], { maxBuffer: 1 << 28 });
  assert.equal(saved.status, 0, saved.stderr.toString());
  const viaStdin = spawnSync(FERRY_BIN, [...B.args(), 'load'], { input: saved.stdout });
  assert.equal(viaStdin.stdout.toString().trim(), 'Loaded image: example.com/app:1', viaStdin.stderr.toString());
  await B.ok(['rmi', 'example.com/app:1']);
});

test("Podman's archives load (docker-archive, oci-archive, oci-dir), and Podman loads Ferry's", { skip: !hasPodman && 'podman is not installed' }, async () => {
  podman('import', '-q', busyboxTarball(), 'localhost/pbox:1');
  const pid = podman('image', 'inspect', '--format', '{{.Id}}', 'localhost/pbox:1');
  for (const format of ['docker-archive', 'oci-archive', 'oci-dir']) {
    const out = path.join(work, `podman-${format}`);
    podman('save', '-q', '--format', format, '-o', out, 'localhost/pbox:1');
    assert.equal(await B.ok(['load', '-i', out]), 'Loaded image: localhost/pbox:1', format);
    assert.equal(JSON.parse(await B.ok(['image', 'inspect', 'pbox:1']))[0].Id, pid, `${format}: Podman's image ID`);
    assert.equal(await B.ok(['run', '--rm', 'pbox:1', 'echo', 'ok']), 'ok');
    await B.ok(['rmi', 'pbox:1']);
  }
  // The other way: Ferry's archives load into Podman as the same image.
  const id = JSON.parse(await A.ok(['image', 'inspect', 'example.com/app:1']))[0].Id as string;
  for (const format of ['docker-archive', 'oci-archive']) {
    const out = path.join(work, `for-podman-${format}`);
    await A.ok(['save', '--format', format, '-o', out, 'example.com/app:1']);
    podman('load', '-q', '-i', out);
    assert.equal(podman('image', 'inspect', '--format', '{{.Id}}', 'example.com/app:1'), id, format);
    podman('rmi', '-f', 'example.com/app:1');
  }
});

test('hostile and corrupt archives are refused in one line, nothing stored', async () => {
  const before = stored(B);
  const junk = path.join(work, 'junk.tar');
  fs.writeFileSync(junk, 'not an archive at all'.repeat(50));
  assertCleanError(await B.fails(['load', '-i', junk]), /^Error: cannot load the archive: it is not a tar archive; nothing was stored$/);
  const escape = path.join(work, 'escape.tar');
  fs.writeFileSync(escape, layerTar([{ name: '../../escaped-by-load', type: 'file', data: 'x' }], work));
  assertCleanError(await B.fails(['load', '-i', escape]), /^Error: cannot load the archive: member "\.\.\/\.\.\/escaped-by-load" leads out of the layer/);
  assert.ok(!fs.existsSync(path.join(B.root, 'escaped-by-load')) && !fs.existsSync(path.join(B.root, 'images', 'escaped-by-load')));
  // A symlink in the archive pointing out of it is not followed for its files.
  const linky = path.join(work, 'linky.tar');
  fs.writeFileSync(linky, layerTar([{ name: 'manifest.json', type: 'symlink', target: '/etc/hostname' }], work));
  assertCleanError(await B.fails(['load', '-i', linky]), /manifest\.json .*leads out of the archive|manifest.json is missing/);
  // An OCI layout whose layer blob was changed.
  const bad = path.join(work, 'tampered');
  fs.cpSync(path.join(work, 'save-oci-dir'), bad, { recursive: true });
  const blobs = path.join(bad, 'blobs', 'sha256');
  const biggest = fs.readdirSync(blobs).sort((x, y) => fs.statSync(path.join(blobs, y)).size - fs.statSync(path.join(blobs, x)).size)[0]!;
  const b = fs.readFileSync(path.join(blobs, biggest));
  b[b.length >> 1] ^= 0xff;
  fs.writeFileSync(path.join(blobs, biggest), b);
  assertCleanError(await B.fails(['load', '-i', bad]), /does not match its digest .*nothing was stored$/);
  assertCleanError(await B.fails(['load', '-i', path.join(work, 'none.tar')]), /none\.tar: no such file/);
  assertCleanError(await A.fails(['save', '--format', 'zip', '-o', path.join(work, 'x'), 'example.com/app:1']), /invalid --format "zip"/);
  assert.ok(!fs.existsSync(path.join(work, 'x')));
  assert.deepEqual(stored(B), before);
});
