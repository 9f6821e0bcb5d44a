import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, assertCleanError } from '../helpers/ferry.js';

const h = new Host('vol');
const hostDir = path.join(h.dir, 'hostdir');
before(async () => {
  await h.importBusybox();
  fs.mkdirSync(hostDir);
  fs.writeFileSync(path.join(hostDir, 'from-host'), 'hello from host\n');
});
after(() => h.destroy());

test('a named volume keeps its content across containers', async () => {
  assert.equal(await h.ok(['volume', 'create', 'data']), 'data');
  assert.equal((await h.run(['run', '--rm', '-v', 'data:/data', 'busybox', 'sh', '-c', 'echo persisted > /data/f'])).code, 0);
  const r = await h.run(['run', '--rm', '-v', 'data:/mnt/other', 'busybox', 'cat', '/mnt/other/f']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'persisted\n');
  const v = (JSON.parse(await h.ok(['volume', 'inspect', 'data'])) as { Name: string; Mountpoint: string; Driver: string }[])[0]!;
  assert.equal(v.Name, 'data');
  assert.equal(v.Driver, 'local');
  assert.equal(fs.readFileSync(path.join(v.Mountpoint, 'f'), 'utf8'), 'persisted\n', 'the data is in the volume on the host');
  assert.match(await h.ok(['volume', 'ls']), /^local\s+data$/m);
  // A volume named in -v that does not exist yet is created (as Podman does).
  assert.equal((await h.run(['run', '--rm', '-v', 'auto:/a', 'busybox', 'touch', '/a/x'])).code, 0);
  assert.deepEqual((await h.ok(['volume', 'ls', '-q'])).split('\n').sort(), ['auto', 'data']);
  assert.equal(await h.ok(['run', '--rm', '-v', 'auto:/a', 'busybox', 'ls', '/a']), 'x');
});

test('volume rm is refused while a container uses it; -f removes the container too', async () => {
  await h.ok(['run', '-d', '--name', 'user', '-v', 'data:/data', 'busybox', 'sleep', '1000']);
  assertCleanError(await h.fails(['volume', 'rm', 'data']), /volume data is in use by container user/);
  assert.equal(await h.ok(['exec', 'user', 'cat', '/data/f']), 'persisted', 'untouched');
  await h.ok(['volume', 'rm', '-f', 'data']);
  assert.ok(!(await h.names()).includes('user'));
  assert.ok(!(await h.ok(['volume', 'ls', '-q'])).split('\n').includes('data'));
  assertCleanError(await h.fails(['volume', 'rm', 'data']), /no volume named "data"/);
  assertCleanError(await h.fails(['volume', 'create', 'auto']), /already exists/);
  assertCleanError(await h.fails(['volume', 'create', 'bad/name']), /invalid volume name/);
});

test('-v host path: read and write both ways', async () => {
  const r = await h.run(['run', '--rm', '-v', `${hostDir}:/hd`, 'busybox', 'sh', '-c', 'cat /hd/from-host && echo from-ctr > /hd/from-ctr']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hello from host\n');
  assert.equal(fs.readFileSync(path.join(hostDir, 'from-ctr'), 'utf8'), 'from-ctr\n');
  // A file bind works too.
  assert.equal(await h.ok(['run', '--rm', '-v', `${path.join(hostDir, 'from-host')}:/etc/motd`, 'busybox', 'cat', '/etc/motd']), 'hello from host');
});

test(':ro makes the mount read-only, :rw writable', async () => {
  const r = await h.run(['run', '--rm', '-v', `${hostDir}:/hd:ro`, 'busybox', 'sh', '-c', 'cat /hd/from-host; echo nope > /hd/ro-attempt']);
  assert.equal(r.stdout, 'hello from host\n', 'readable');
  assert.notEqual(r.code, 0, 'the write failed');
  assert.match(r.stderr, /Read-only file system/);
  assert.ok(!fs.existsSync(path.join(hostDir, 'ro-attempt')));
  await h.ok(['volume', 'create', 'rov']);
  const v = await h.run(['run', '--rm', '-v', 'rov:/v:ro', 'busybox', 'touch', '/v/x']);
  assert.notEqual(v.code, 0);
  assert.match(v.stderr, /Read-only file system/);
  assert.equal((await h.run(['run', '--rm', '-v', `${hostDir}:/hd:rw`, 'busybox', 'touch', '/hd/rw-ok'])).code, 0);
  assert.ok(fs.existsSync(path.join(hostDir, 'rw-ok')));
  const ins = await h.run(['create', '--name', 'roinspect', '-v', `${hostDir}:/hd:ro`, 'busybox', 'true']);
  assert.equal(ins.code, 0);
  const m = (await h.inspect('roinspect')).Mounts as { Destination: string; RW: boolean; Source: string; Type: string }[];
  assert.deepEqual(m.map((x) => [x.Type, x.Source, x.Destination, x.RW]), [['bind', hostDir, '/hd', false]]);
  await h.ok(['rm', 'roinspect']);
});

test('--tmpfs mounts a writable tmpfs that does not outlive the container', async () => {
  const r = await h.run(['run', '--name', 'tmp', '--tmpfs', '/scratch', '--tmpfs', '/small:size=1m', 'busybox', 'sh', '-c', 'grep -E " /(scratch|small) " /proc/mounts; echo x > /scratch/f && cat /scratch/f']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^tmpfs \/scratch tmpfs rw/m);
  assert.match(r.stdout, /^tmpfs \/small tmpfs .*size=1024k/m);
  assert.match(r.stdout, /^x$/m);
  await h.ok(['start', 'tmp']);
  await h.ok(['rm', '-f', 'tmp']);
  const again = await h.run(['run', '--rm', '--tmpfs', '/scratch', 'busybox', 'ls', '/scratch']);
  assert.equal(again.stdout, '', 'a new tmpfs is empty');
});
