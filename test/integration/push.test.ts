/**
 * push, login and logout against real registries (Debian's docker-registry), with skopeo and
 * Podman as the independent clients that check what Ferry pushed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Host, assertCleanError, busyboxTarball } from '../helpers/ferry.js';
import { layerTar, writeLayout } from '../helpers/oci.js';
import { Registry, hasRegistryTools } from '../helpers/registry.js';

const missing = hasRegistryTools();
const h = new Host('push');
const B = new Host('pushb');
const reg = new Registry();
const secure = new Registry();

before(async () => {
  if (missing) return;
  await reg.start();
  await secure.start({ auth: { user: 'alice', password: 's3cret' }, tls: true });
  await h.importBusybox();
});

after(async () => {
  await h.destroy();
  await B.destroy();
  await reg.stop();
  await secure.stop();
});

const skopeo = (...args: string[]): string => {
  const r = spawnSync('skopeo', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`skopeo ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

test('push: skopeo sees the same digests; another root pulls the same image ID and runs it', { skip: missing }, async () => {
  const dest = `${reg.addr}/app/bb:1`;
  const local = JSON.parse(await h.ok(['image', 'inspect', 'busybox']))[0];
  const digestFile = path.join(h.dir, 'digest');
  assert.equal(await h.ok(['push', '--tls-verify=false', '--digestfile', digestFile, 'busybox', dest]), '');
  assert.equal(fs.readFileSync(digestFile, 'utf8'), local.Digest);
  const ins = JSON.parse(skopeo('inspect', '--tls-verify=false', `docker://${dest}`));
  assert.equal(ins.Digest, local.Digest, 'the manifest went as it is stored');
  assert.deepEqual(ins.Layers.length, 1);
  const raw = JSON.parse(skopeo('inspect', '--tls-verify=false', '--config', `docker://${dest}`));
  assert.deepEqual(raw.rootfs.diff_ids, local.RootFS.Layers);
  // skopeo copies it back out into an OCI layout (it checks every digest on the way).
  skopeo('copy', '--quiet', '--src-tls-verify=false', `docker://${dest}`, `oci:${path.join(h.dir, 'back')}:x`);
  assert.equal(await B.ok(['pull', '-q', '--tls-verify=false', dest]), local.Id, 'the same image ID on another root');
  assert.equal(await B.ok(['run', '--rm', dest, 'echo', 'pulled']), 'pulled');
  // Pushed again: every blob is already there.
  await h.ok(['push', '--tls-verify=false', 'busybox', dest]);
  // An image named by a registry pushes to its own name; a local name needs a destination.
  await h.ok(['tag', 'busybox', `${reg.addr}/app/self:2`]);
  await h.ok(['push', '--tls-verify=false', `${reg.addr}/app/self:2`]);
  assert.equal(JSON.parse(skopeo('inspect', '--tls-verify=false', `docker://${reg.addr}/app/self:2`)).Digest, local.Digest);
  assertCleanError(await h.fails(['push', '--tls-verify=false', 'busybox']), /image busybox names no registry: give a destination/);
  assertCleanError(await h.fails(['push', '--tls-verify=false', 'nope', dest]), /image "nope" not found/);
});

test('a pulled image whose layer this root has from an import (another blob) pushes as its manifest says', { skip: missing }, async () => {
  const layout = path.join(h.dir, 'gzlayout');
  writeLayout(layout, 'gz', { layers: [fs.readFileSync(busyboxTarball()), layerTar([{ name: 'top', type: 'file', data: 't' }], h.dir)], architecture: process.arch === 'x64' ? 'amd64' : process.arch });
  reg.push(layout, 'gz', 'app/gz:1');
  const layersBefore = fs.readdirSync(path.join(h.root, 'images', 'layers')).filter((d) => /^[0-9a-f]{64}$/.test(d)).length;
  await h.ok(['pull', '-q', '--tls-verify=false', `${reg.addr}/app/gz:1`]);
  const layersAfter = fs.readdirSync(path.join(h.root, 'images', 'layers')).filter((d) => /^[0-9a-f]{64}$/.test(d)).length;
  assert.equal(layersAfter, layersBefore + 1, 'the busybox layer is not unpacked again');
  await h.ok(['push', '--tls-verify=false', `${reg.addr}/app/gz:1`, `${reg.addr}/copy/gz:1`]);
  const a = JSON.parse(skopeo('inspect', '--tls-verify=false', `docker://${reg.addr}/app/gz:1`));
  const b = JSON.parse(skopeo('inspect', '--tls-verify=false', `docker://${reg.addr}/copy/gz:1`));
  assert.equal(b.Digest, a.Digest);
});

test('Podman pulls what Ferry pushed: the same image ID', { skip: missing || (spawnSync('sh', ['-c', 'command -v podman']).status !== 0 && 'podman is not installed') }, async () => {
  const pd = fs.mkdtempSync(path.join(h.dir, 'podman-'));
  const hadVarLib = fs.existsSync('/var/lib/containers');
  try {
    const r = spawnSync('podman', ['--root', path.join(pd, 'root'), '--runroot', path.join(pd, 'run'), '--storage-driver', 'vfs', 'pull', '-q', '--tls-verify=false', `${reg.addr}/app/bb:1`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), JSON.parse(await h.ok(['image', 'inspect', 'busybox']))[0].Id);
  } finally {
    spawnSync('podman', ['--root', path.join(pd, 'root'), '--runroot', path.join(pd, 'run'), '--storage-driver', 'vfs', 'rmi', '-a', '-f'], { stdio: 'ignore' });
    fs.rmSync(pd, { recursive: true, force: true });
    if (!hadVarLib) fs.rmSync('/var/lib/containers', { recursive: true, force: true });
  }
});

test('login and logout: credentials checked first, then kept in the auth file for pull and push', { skip: missing }, async () => {
  const authfile = path.join(h.dir, 'auth', 'auth.json');
  const login = (...args: string[]): string[] => ['login', '--tls-verify=false', '--authfile', authfile, ...args, secure.addr];
  assertCleanError(await h.fails(login('-u', 'alice', '-p', 'wrong')), /refused the credentials/);
  assert.ok(!fs.existsSync(authfile), 'nothing written for a failed login');
  assertCleanError(await h.fails(login('-u', 'alice')), /give the password with -p\/--password or --password-stdin/);
  assert.equal(await h.ok(login('-u', 'alice', '--password-stdin'), { input: 's3cret\n' }), 'Login Succeeded!');
  assert.equal(fs.statSync(authfile).mode & 0o777, 0o600);
  const saved = JSON.parse(fs.readFileSync(authfile, 'utf8'));
  assert.equal(Buffer.from(saved.auths[secure.addr].auth, 'base64').toString(), 'alice:s3cret');
  const dest = `${secure.addr}/private/bb:1`;
  await h.ok(['push', '--tls-verify=false', '--authfile', authfile, 'busybox', dest]);
  assert.match(await B.ok(['pull', '-q', '--tls-verify=false', '--authfile', authfile, dest]), /^[0-9a-f]{64}$/);
  fs.writeFileSync(path.join(h.dir, 'empty.json'), '{"auths":{}}');
  assertCleanError(await B.fails(['pull', '--tls-verify=false', '--authfile', path.join(h.dir, 'empty.json'), dest]), /needs credentials/);
  assert.equal(await h.ok(['logout', '--authfile', authfile, secure.addr]), `Removed login credentials for ${secure.addr}`);
  assertCleanError(await h.fails(['logout', '--authfile', authfile, secure.addr]), new RegExp(`not logged into ${secure.addr}`));
  assertCleanError(await h.fails(['push', '--tls-verify=false', '--authfile', authfile, 'busybox', dest]), /needs credentials/);
});
