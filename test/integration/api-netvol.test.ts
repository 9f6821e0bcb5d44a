/**
 * Volumes and networks over the Docker API with the real docker CLI: create, ls, inspect, rm in
 * Docker's shapes; a volume in use is kept; bad input gets one Docker-shaped error.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Host, skipWith } from '../helpers/ferry.js';
import { DOCKER, Service } from '../helpers/api.js';

const h = new Host('apinv');
let svc: Service | undefined;
const NET = `fyapi${process.pid % 10000}`;

before(async () => {
  if (!DOCKER) return;
  await h.importBusybox();
  svc = await Service.start(h);
});

after(async () => {
  await h.run(['rm', '-a', '-f']);
  await h.run(['network', 'rm', NET]);
  await svc?.stop(5000);
  await h.destroy();
  assert.ok(!svc || !fs.existsSync(svc.sock), 'the socket is gone with the service');
});

test('docker volume create, ls, inspect, use, rm (refused while used)', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  assert.equal(await svc.dockerOk(['volume', 'create', '--label', 'app=web', 'data1']), 'data1');
  assert.ok((await svc.dockerOk(['volume', 'ls', '-q'])).split('\n').includes('data1'));
  const v = JSON.parse(await svc.dockerOk(['volume', 'inspect', 'data1']))[0];
  assert.equal(v.Name, 'data1');
  assert.equal(v.Driver, 'local');
  assert.equal(v.Scope, 'local');
  assert.deepEqual(v.Labels, { app: 'web' });
  assert.ok(fs.existsSync(v.Mountpoint), 'the mountpoint exists');
  assert.equal(await svc.dockerOk(['run', '--rm', '--network', 'none', '-v', 'data1:/data', 'busybox', 'sh', '-c', 'echo kept > /data/f; cat /data/f']), 'kept');
  await svc.dockerOk(['create', '--name', 'user1', '--network', 'none', '-v', 'data1:/data', 'busybox', 'true']);
  const used = await svc.docker(['volume', 'rm', 'data1']);
  assert.notEqual(used.code, 0);
  assert.match(used.stderr, /in use/);
  assert.equal(fs.readFileSync(`${v.Mountpoint}/f`, 'utf8'), 'kept\n', 'nothing lost');
  await svc.dockerOk(['rm', 'user1']);
  await svc.dockerOk(['volume', 'rm', 'data1']);
  assert.ok(!(await svc.dockerOk(['volume', 'ls', '-q'])).split('\n').includes('data1'));
  const gone = await svc.docker(['volume', 'inspect', 'data1']);
  assert.notEqual(gone.code, 0);
  // Refusals: a driver Ferry has not, options, a bad name.
  assert.match((await svc.docker(['volume', 'create', '-d', 'nfs', 'x'])).stderr, /unsupported volume driver/);
  assert.match((await svc.docker(['volume', 'create', '-o', 'type=tmpfs', 'x'])).stderr, /DriverOpts/);
  const r = await svc.request('POST', '/v1.41/volumes/create', JSON.stringify({ Name: '../escape' }));
  assert.equal(r.status, 400);
  assert.match(JSON.parse(r.body).message, /invalid volume name/);
  assert.ok(!(await svc.dockerOk(['volume', 'ls', '-q'])).split('\n').includes('x'), 'nothing created');
});

test('docker network create, ls, inspect, rm in Docker\'s shapes', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const id = await svc.dockerOk(['network', 'create', '--subnet', '10.231.7.0/24', '--gateway', '10.231.7.1', NET]);
  assert.match(id, /^[0-9a-f]{12,64}$/);
  assert.ok((await svc.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').includes(NET));
  const n = JSON.parse(await svc.dockerOk(['network', 'inspect', NET]))[0];
  assert.equal(n.Name, NET);
  assert.equal(n.Driver, 'bridge');
  assert.deepEqual(n.IPAM.Config, [{ Subnet: '10.231.7.0/24', Gateway: '10.231.7.1' }]);
  assert.deepEqual(n.Containers, {});
  assert.equal(JSON.parse(await svc.dockerOk(['network', 'inspect', id.slice(0, 12)]))[0].Name, NET, 'found by ID prefix');
  const dup = await svc.docker(['network', 'create', NET]);
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /already exists/);
  assert.match((await svc.docker(['network', 'create', '-d', 'overlay', 'other'])).stderr, /only bridge/);
  assert.match((await svc.docker(['network', 'create', '--internal', 'other'])).stderr, /not supported/);
  // Labels are kept (compose labels its networks) and filtered on; a user network has no Options, as Docker's.
  await svc.dockerOk(['network', 'create', '--subnet', '10.231.8.0/24', '--label', 'a=b', `${NET}-l`]);
  const l = JSON.parse(await svc.dockerOk(['network', 'inspect', `${NET}-l`]))[0];
  assert.deepEqual(l.Labels, { a: 'b' });
  assert.deepEqual(l.Options, {});
  assert.equal(await svc.dockerOk(['network', 'ls', '--filter', 'label=a=b', '--format', '{{.Name}}']), `${NET}-l`);
  await svc.dockerOk(['network', 'rm', `${NET}-l`]);
  assert.match((await svc.docker(['network', 'create', '-o', 'com.docker.network.bridge.name=x', 'other'])).stderr, /Options are not supported/);
  assert.ok(!(await svc.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').includes('other'), 'nothing created');
  await svc.dockerOk(['network', 'rm', NET]);
  assert.ok(!(await svc.dockerOk(['network', 'ls', '--format', '{{.Name}}'])).split('\n').includes(NET));
  assert.match((await svc.docker(['network', 'inspect', NET])).stderr, /not found/);
  assert.match((await svc.docker(['network', 'rm', 'ferry'])).stderr, /cannot be removed/);
});

test('GET /events: create, start, die (with the exit code) and destroy of a container, as docker events shows them', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const since = Math.floor(Date.now() / 1000);
  const events = svc.docker(['events', '--format', '{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}', '--filter', 'container=ev1', '--until', String(since + 12)], { timeoutMs: 30_000 });
  await new Promise((r) => setTimeout(r, 1500)); // the stream is open
  assert.equal((await svc.docker(['run', '--name', 'ev1', '--network', 'none', 'busybox', 'sh', '-c', 'exit 3'])).code, 3);
  await svc.dockerOk(['rm', 'ev1']);
  const r = await events;
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => l.replace(/ <no value>$/, '').trim());
  assert.deepEqual(lines, ['create ev1', 'start ev1', 'die ev1 3', 'destroy ev1']);
  // Bad filters: one Docker-shaped error.
  const bad = await svc.request('GET', '/v1.41/events?filters=%7B%22nosuch%22%3A%5B%22x%22%5D%7D');
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body).message, /unsupported events filter/);
});
