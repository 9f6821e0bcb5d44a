/**
 * `docker cp` over the Docker API (GET/HEAD/PUT /containers/{id}/archive) with the real docker
 * CLI: files and directories both ways, a directory's contents (/.), a stopped container; a
 * symlink or `..` that points out of the container stays inside it; a hostile archive and a
 * directory replaced by a file are refused with nothing written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Host, skipWith } from '../helpers/ferry.js';
import { DOCKER, Service } from '../helpers/api.js';
import { pack } from '../helpers/tarcraft.js';

const h = new Host('apicp');
const tmp = path.join(h.dir, 'files');
let svc: Service | undefined;

before(async () => {
  if (!DOCKER) return;
  fs.mkdirSync(tmp);
  await h.importBusybox();
  svc = await Service.start(h);
  await svc.dockerOk(['run', '-d', '--name', 'box', '--network', 'none', 'busybox', 'sleep', '1000']);
});

after(async () => {
  await h.run(['rm', '-a', '-f', '-t', '0']);
  await svc?.stop(5000);
  await h.destroy();
});

/** A raw PUT of a tar to the archive endpoint. */
function putArchive(sock: string, ctr: string, p: string, body: Buffer, extra = ''): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: sock, method: 'PUT', path: `/v1.41/containers/${ctr}/archive?path=${encodeURIComponent(p)}${extra}`, headers: { 'Content-Type': 'application/x-tar', 'Content-Length': body.length } },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const exec = (args: string[]): Promise<string> => svc!.dockerOk(['exec', 'box', ...args]);

test('docker cp both ways: a file, a directory, its contents (/.), a stopped container', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const src = path.join(tmp, 'src');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
  fs.writeFileSync(path.join(src, 'sub', 'b.bin'), Buffer.from([0, 1, 2, 255]));
  fs.chmodSync(path.join(src, 'a.txt'), 0o640);
  fs.symlinkSync('a.txt', path.join(src, 'link'));
  // In: a directory into an existing one lands under its own name; a file to a new name.
  await svc.dockerOk(['cp', src, 'box:/tmp']);
  assert.equal(await exec(['cat', '/tmp/src/a.txt']), 'alpha');
  assert.equal(await exec(['stat', '-c', '%a', '/tmp/src/a.txt']), '640');
  assert.equal(await exec(['readlink', '/tmp/src/link']), 'a.txt', 'a symlink stays a symlink');
  assert.equal(await exec(['od', '-An', '-tx1', '/tmp/src/sub/b.bin']), '00 01 02 ff');
  await svc.dockerOk(['cp', path.join(src, 'a.txt'), 'box:/renamed.txt']);
  assert.equal(await exec(['cat', '/renamed.txt']), 'alpha');
  await svc.dockerOk(['cp', `${src}/.`, 'box:/contents']);
  assert.equal(await exec(['ls', '/contents']), 'a.txt\nlink\nsub');
  // Out: a file, a directory, a directory's contents.
  await exec(['sh', '-c', 'mkdir -p /out/d && echo one > /out/d/f1 && echo two > /out/f2']);
  const f2 = path.join(tmp, 'f2.copy');
  await svc.dockerOk(['cp', 'box:/out/f2', f2]);
  assert.equal(fs.readFileSync(f2, 'utf8'), 'two\n');
  const outDir = path.join(tmp, 'outdir');
  fs.mkdirSync(outDir);
  await svc.dockerOk(['cp', 'box:/out', outDir]);
  assert.equal(fs.readFileSync(path.join(outDir, 'out', 'd', 'f1'), 'utf8'), 'one\n');
  const contents = path.join(tmp, 'contents');
  await svc.dockerOk(['cp', 'box:/out/.', contents]);
  assert.deepEqual(fs.readdirSync(contents).sort(), ['d', 'f2']);
  // To stdout: a tar named from the path.
  const tarOut = spawnSync(DOCKER!, ['cp', 'box:/out', '-'], { env: { ...process.env, ...svc.dockerEnv() }, maxBuffer: 1 << 24 });
  assert.equal(tarOut.status, 0, tarOut.stderr.toString());
  assert.deepEqual(spawnSync('tar', ['-tf', '-'], { input: tarOut.stdout }).stdout.toString().split('\n').filter(Boolean).sort(), ['out/', 'out/d/', 'out/d/f1', 'out/f2']);
  // Missing paths: Docker's one-line errors.
  const missing = await svc.docker(['cp', 'box:/nonexistent', tmp]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /Could not find the file \/nonexistent in container box/);
  const noDir = await svc.docker(['cp', path.join(src, 'a.txt'), 'box:/nodir/x/y']);
  assert.notEqual(noDir.code, 0);
  // A stopped container: its rootfs is mounted for the copy.
  await svc.dockerOk(['create', '--name', 'stopped', '--network', 'none', 'busybox', 'true']);
  await svc.dockerOk(['cp', path.join(src, 'a.txt'), 'stopped:/in-stopped.txt']);
  const back = path.join(tmp, 'back.txt');
  await svc.dockerOk(['cp', 'stopped:/in-stopped.txt', back]);
  assert.equal(fs.readFileSync(back, 'utf8'), 'alpha\n');
  assert.match(await svc.dockerOk(['diff', 'stopped']), /A \/in-stopped.txt/);
  await svc.dockerOk(['rm', 'stopped']);
});

test('docker cp: a symlink or .. leading out of the container stays inside; hostile archives refused, nothing written', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  // A host file the container must never reach, and the same path inside the container.
  const secret = path.join(tmp, 'secret');
  fs.writeFileSync(secret, 'host-only\n');
  await exec(['sh', '-c', `mkdir -p ${tmp} && echo container-side > ${secret} && ln -s ../../../../../../../..${secret} /esc && ln -s ../../../../../../../..${tmp} /escdir`]);
  const got = path.join(tmp, 'got');
  await svc.dockerOk(['cp', '-L', 'box:/esc', got]);
  assert.equal(fs.readFileSync(got, 'utf8'), 'container-side\n', 'the symlink resolves inside the container');
  await svc.dockerOk(['cp', `box:/../../../../..${secret}`, got]);
  assert.equal(fs.readFileSync(got, 'utf8'), 'container-side\n', '.. stops at the container root');
  // In through a symlinked directory: lands inside the container, never on the host.
  await svc.dockerOk(['cp', path.join(tmp, 'secret'), 'box:/escdir/planted']);
  assert.ok(!fs.existsSync(path.join(tmp, 'planted')), 'nothing written outside the container');
  assert.equal(await exec(['cat', `${tmp}/planted`]), 'host-only');
  // A raw archive with .. in a name, or writing through its own symlink: 400, nothing written.
  await exec(['mkdir', '-p', '/in']);
  const dotdot = await pack([{ header: { name: '../../../../etc/evil1', type: 'file', mode: 0o644 }, data: Buffer.from('x') }]);
  const r1 = await putArchive(svc.sock, 'box', '/in', dotdot);
  assert.equal(r1.status, 400, r1.body);
  assert.match(JSON.parse(r1.body).message, /bad archive in the request/);
  const through = await pack([
    { header: { name: 'l', type: 'symlink', linkname: '/etc', mode: 0o777 }, data: Buffer.alloc(0) },
    { header: { name: 'l/evil2', type: 'file', mode: 0o644 }, data: Buffer.from('x') },
  ]);
  const r2 = await putArchive(svc.sock, 'box', '/in', through);
  assert.equal(r2.status, 400, r2.body);
  assert.equal((await svc.docker(['exec', 'box', 'sh', '-c', 'ls /etc/evil1 /etc/evil2 /in/l'])).code, 1, 'nothing written');
  assert.ok(!fs.existsSync('/etc/evil1') && !fs.existsSync('/etc/evil2'));
  // noOverwriteDirNonDir (the CLI always sends it): a directory is not replaced by a file.
  await exec(['mkdir', '-p', '/in/dir/keep']);
  const fileOverDir = await pack([{ header: { name: 'dir', type: 'file', mode: 0o644 }, data: Buffer.from('x') }]);
  const r3 = await putArchive(svc.sock, 'box', '/in', fileOverDir, '&noOverwriteDirNonDir=true');
  assert.equal(r3.status, 400, r3.body);
  assert.match(JSON.parse(r3.body).message, /cannot overwrite directory \/in\/dir with non-directory/);
  assert.equal(await exec(['ls', '/in/dir']), 'keep', 'the directory is kept');
  // Not a directory to extract into; no such container; no path.
  assert.equal((await putArchive(svc.sock, 'box', '/renamed.txt', dotdot)).status, 400);
  assert.equal((await putArchive(svc.sock, 'nosuch', '/in', dotdot)).status, 404);
  const head = await svc.request('HEAD', '/v1.41/containers/box/archive?path=/in/dir');
  assert.equal(head.status, 200);
  const stat = JSON.parse(Buffer.from(String(head.headers['x-docker-container-path-stat']), 'base64').toString());
  assert.equal(stat.name, 'dir');
  assert.equal(stat.mode, (2 ** 31 + 0o755) >>> 0, 'Go FileMode: a directory, 0755');
  assert.equal((await svc.request('HEAD', '/v1.41/containers/box/archive?path=/none')).status, 404);
  assert.equal((await svc.request('GET', '/v1.41/containers/box/archive')).status, 400);
});

test('docker cp -a: the files belong to the container\'s user; without -a to root', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  await h.ok(['run', '-d', '--name', 'asuser', '--network', 'none', '--user', '1000:1001', 'busybox', 'sleep', '1000']);
  const f = path.join(tmp, 'owned.txt');
  fs.writeFileSync(f, 'mine\n');
  await svc.dockerOk(['cp', '-a', f, 'asuser:/tmp/a.txt']);
  await svc.dockerOk(['cp', f, 'asuser:/tmp/b.txt']);
  assert.equal(await svc.dockerOk(['exec', 'asuser', 'stat', '-c', '%u:%g', '/tmp/a.txt']), '1000:1001');
  assert.equal(await svc.dockerOk(['exec', 'asuser', 'stat', '-c', '%u:%g', '/tmp/b.txt']), '0:0');
  await h.ok(['rm', '-f', 'asuser']);
});

test('docker cp with Debian\'s docker CLI 20.10: a directory in, a file out', async (t) => {
  const bin = ['/usr/local/lib/ferry/docker-20.10/docker'].find((f) => fs.existsSync(f));
  if (!svc || !bin) return skipWith(t, 'no docker CLI 20.10 (npm run setup extracts it)');
  const env = { ...process.env, ...svc.dockerEnv() };
  const dir = path.join(tmp, 'd20');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'x.txt'), 'twenty\n');
  assert.equal(spawnSync(bin, ['cp', dir, 'box:/'], { env }).status, 0);
  assert.equal(await exec(['cat', '/d20/x.txt']), 'twenty');
  const out = path.join(tmp, 'x20.txt');
  const r = spawnSync(bin, ['cp', 'box:/d20/x.txt', out], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(out, 'utf8'), 'twenty\n');
});
