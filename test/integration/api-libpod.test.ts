/**
 * The libpod API with the real `podman --remote` (4.3.1): run -d (create and start with
 * Podman's SpecGenerator, resource limits included), ps, inspect, kill/pause/unpause/restart/wait; pods (create, ps,
 * inspect, stop, start, rm); images (pull from a local registry, list); checkpoint --export and
 * restore --import over the API; and Ferry's own endpoints: pod checkpoint/restore and migrate
 * (to a second Ferry's service on loopback).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { FERRY_BIN, Host, LOOPER, ServiceProcess, eventually, lastCount, skipWith } from '../helpers/ferry.js';
import { Service, runTool } from '../helpers/api.js';
import { Registry, hasRegistryTools } from '../helpers/registry.js';
import { freePort } from '../../src/lib/net.js';

const PODMAN = ['/usr/bin/podman', '/usr/local/bin/podman'].find((f) => fs.existsSync(f));
const h = new Host('apilp');
const dest = new Host('apild');
let svc: Service | undefined;
let reg: Registry | undefined;

before(async () => {
  if (!PODMAN) return;
  await h.importBusybox();
  svc = await Service.start(h);
});

after(async () => {
  await h.run(['pod', 'rm', '-f', 'lp-pod']);
  await h.run(['rm', '-a', '-f', '-t', '0']);
  await dest.run(['rm', '-a', '-f', '-t', '0']);
  await svc?.stop(5000);
  await reg?.stop();
  await h.destroy();
  await dest.destroy();
});

const podman = (args: string[]) => runTool([PODMAN!, '--remote', '--url', `unix://${svc!.sock}`, ...args], {}, undefined, 120_000);
async function podmanOk(args: string[]): Promise<string> {
  const r = await podman(args);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

test('podman --remote run -d, ps, inspect, kill, pause, unpause, restart, wait', async (t) => {
  if (!svc) return skipWith(t, 'podman is not installed');
  const id = await podmanOk(['run', '-d', '--name', 'lp1', '--network', 'none', '-e', 'GREETING=hi', '-l', 'app=lp', '--stop-signal', 'SIGINT', 'busybox', 'sh', '-c', 'echo $GREETING; exec sleep 1000']);
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.match(await podmanOk(['ps', '--format', '{{.Names}} {{.Status}}']), /^lp1 Up/m);
  const ins = JSON.parse(await podmanOk(['inspect', 'lp1']))[0];
  assert.equal(ins.Id, id);
  assert.ok(ins.Config.Env.includes('GREETING=hi'));
  assert.equal(ins.Config.Labels.app, 'lp');
  assert.equal(await h.ok(['inspect', '--format', '{{.Config.StopSignal}}', 'lp1']), '2', 'the stop signal podman sent (SIGINT), a number as Podman 4.3.1 shows it');
  assert.equal(await h.ok(['inspect', '--format', '{{.State.Status}}', 'lp1']), 'running', 'the CLI sees it');
  assert.deepEqual(await h.logs('lp1'), ['hi']);
  await podmanOk(['pause', 'lp1']);
  assert.equal(await h.ok(['inspect', '--format', '{{.State.Status}}', 'lp1']), 'paused');
  await podmanOk(['unpause', 'lp1']);
  const pid1 = (await h.inspect('lp1')).State.Pid;
  await podmanOk(['restart', '-t', '1', 'lp1']);
  const pid2 = (await h.inspect('lp1')).State.Pid;
  assert.ok(pid2 > 0 && pid2 !== pid1, 'restarted: a new process');
  await podmanOk(['kill', '--signal', 'KILL', 'lp1']);
  assert.equal(await podmanOk(['wait', 'lp1']), '137');
  // Resource limits reach the container.
  await podmanOk(['run', '-d', '--name', 'lp-lim', '--network', 'none', '--memory', '64m', '--cpus', '0.5', '--pids-limit', '50', '--ulimit', 'nofile=100:200', 'busybox', 'sh', '-c', 'ulimit -n; exec sleep 1000']);
  const hc = (await h.inspect('lp-lim')).HostConfig;
  assert.equal(hc.Memory, 64 * 2 ** 20);
  assert.equal(hc.NanoCpus, 500_000_000);
  assert.equal(hc.PidsLimit, 50);
  await eventually(async () => (await h.logs('lp-lim'))[0] === '100', 10_000, 200);
  await podmanOk(['rm', '-f', '-t', '0', 'lp-lim']);
  // Refused, not dropped: what Ferry cannot do.
  const priv = await podman(['run', '-d', '--name', 'lp-priv', '--network', 'none', '--cap-add', 'SYS_ADMIN', 'busybox', 'true']);
  assert.notEqual(priv.code, 0);
  assert.match(priv.stderr, /cap_add is not supported/);
  assert.notEqual((await h.run(['inspect', 'lp-priv'])).code, 0, 'nothing created');
  // Attached run: the exit code comes back.
  const r = await podman(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'exit 3']);
  assert.equal(r.code, 3, r.stderr);
});

test('podman --remote pod create, ps, inspect, stop, start, rm; a member in the pod', async (t) => {
  if (!svc) return skipWith(t, 'podman is not installed');
  const podId = await podmanOk(['pod', 'create', '--name', 'lp-pod']);
  assert.match(podId, /^[0-9a-f]{64}$/);
  await podmanOk(['run', '-d', '--pod', 'lp-pod', '--name', 'lp-member', 'busybox', 'sleep', '1000']);
  const ps = await podmanOk(['pod', 'ps', '--format', '{{.Name}} {{.Status}} {{.NumberOfContainers}}']);
  assert.match(ps, /^lp-pod Running 2$/m);
  const ins = JSON.parse(await podmanOk(['pod', 'inspect', 'lp-pod']));
  assert.equal(ins.Id, podId);
  assert.deepEqual(ins.Containers.map((c: { Name: string }) => c.Name).sort(), ['lp-member', `${podId.slice(0, 12)}-infra`].sort(), 'the member and the infra, as Podman lists them');
  assert.equal(JSON.parse(await h.ok(['pod', 'inspect', 'lp-pod'])).Id, podId, 'the CLI sees the same pod (one pod: an object, as Podman prints it)');
  await podmanOk(['pod', 'stop', '-t', '1', 'lp-pod']);
  assert.equal(await h.ok(['inspect', '--format', '{{.State.Status}}', 'lp-member']), 'exited');
  await podmanOk(['pod', 'start', 'lp-pod']);
  assert.equal(await h.ok(['inspect', '--format', '{{.State.Status}}', 'lp-member']), 'running');
  const busy = await podman(['pod', 'rm', 'lp-pod']);
  assert.notEqual(busy.code, 0, 'a pod with containers needs -f');
  assert.match(busy.stderr, /has containers/);
  await podmanOk(['pod', 'rm', '-f', 'lp-pod']);
  assert.equal(await podmanOk(['pod', 'ps', '-q']), '');
  assert.notEqual((await h.run(['inspect', 'lp-member'])).code, 0, 'its member went with it');
  const none = await podman(['pod', 'inspect', 'nosuch']);
  assert.notEqual(none.code, 0);
});

test('podman --remote container checkpoint --export, restore --import: the counter continues', { timeout: 180_000 }, async (t) => {
  if (!svc) return skipWith(t, 'podman is not installed');
  await podmanOk(['run', '-d', '--name', 'lpc', '--network', 'none', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(h, 'lpc')) >= 2, 15_000, 200);
  const archive = path.join(h.dir, 'lpc.tar');
  await podmanOk(['container', 'checkpoint', '--export', archive, 'lpc']);
  const at = await lastCount(h, 'lpc');
  assert.ok(fs.statSync(archive).size > 0);
  await podmanOk(['rm', 'lpc']);
  await podmanOk(['container', 'restore', '--import', archive, '--name', 'lpc2']);
  await eventually(async () => (await lastCount(h, 'lpc2')) > at, 15_000, 200);
  await podmanOk(['rm', '-f', 'lpc2']);
});

test('podman --remote pull from a local registry; images', { timeout: 180_000 }, async (t) => {
  const missing = !PODMAN ? 'podman is not installed' : hasRegistryTools();
  if (missing || !svc) return skipWith(t, missing ?? 'not set up');
  reg = new Registry();
  await reg.start();
  const ref = `${reg.addr}/lp/busybox:1`;
  await h.ok(['push', '--tls-verify=false', 'busybox', ref]);
  await h.ok(['rmi', ref]).catch(() => undefined);
  const pulled = await podman(['pull', '--tls-verify=false', ref]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const id = pulled.stdout.trim().split('\n').pop()!;
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.match(await podmanOk(['images', '--format', '{{.Repository}}:{{.Tag}}']), new RegExp(`^${ref.replace(/[.]/g, '\\.')}$`, 'm'));
  const bad = await podman(['pull', '--tls-verify=false', `${reg.addr}/lp/nosuch:1`]);
  assert.notEqual(bad.code, 0);
});

test('Ferry\'s endpoints: pod checkpoint and restore; migrate to another Ferry\'s service', { timeout: 240_000 }, async (t) => {
  if (!svc) return skipWith(t, 'podman is not installed');
  // Pod checkpoint: every member at once; restore brings the counter back where it was.
  await h.ok(['pod', 'create', '--name', 'lp-cpod']);
  await h.ok(['run', '-d', '--pod', 'lp-cpod', '--name', 'lp-cm', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(h, 'lp-cm')) >= 1, 15_000, 200);
  const cp = await svc.request('POST', '/v4.3.1/libpod/pods/lp-cpod/checkpoint');
  assert.equal(cp.status, 200, cp.body);
  assert.equal(JSON.parse(cp.body).Containers[0].Name, 'lp-cm');
  assert.equal(await h.ok(['inspect', '--format', '{{.State.Status}}', 'lp-cm']), 'exited');
  const at = await lastCount(h, 'lp-cm');
  const rs = await svc.request('POST', '/v4.3.1/libpod/pods/lp-cpod/restore');
  assert.equal(rs.status, 200, rs.body);
  await eventually(async () => (await lastCount(h, 'lp-cm')) > at, 15_000, 200);
  assert.equal((await svc.request('POST', '/v4.3.1/libpod/pods/nosuch/checkpoint')).status, 404);
  await h.ok(['pod', 'rm', '-f', 'lp-cpod']);

  // Migrate: to a second root's migration service on loopback, with its secret.
  await dest.importBusybox();
  const secret = path.join(dest.dir, 'secret');
  fs.writeFileSync(secret, Buffer.alloc(32, 7).toString('base64'), { mode: 0o600 });
  const port = await freePort();
  const receiver = await new ServiceProcess(spawn(FERRY_BIN, [...dest.args(), 'system', 'service', '--listen', `tcp://127.0.0.1:${port}`, '--secret-file', secret], { stdio: ['ignore', 'ignore', 'pipe'] })).listening();
  try {
    await h.ok(['run', '-d', '--name', 'lp-mig', '--network', 'none', 'busybox', ...LOOPER]);
    await eventually(async () => (await lastCount(h, 'lp-mig')) >= 1, 15_000, 200);
    const bad = await svc.request('POST', '/v4.3.1/libpod/containers/lp-mig/migrate?destination=gopher://x');
    assert.equal(bad.status, 400, bad.body);
    const m = await svc.request('POST', `/v4.3.1/libpod/containers/lp-mig/migrate?destination=${encodeURIComponent(`ferry://127.0.0.1:${port}`)}&secretFile=${encodeURIComponent(secret)}`);
    assert.equal(m.status, 200, m.body);
    const report = JSON.parse(m.body);
    assert.equal(report.mode, 'stop-and-copy');
    assert.notEqual((await h.run(['inspect', 'lp-mig'])).code, 0, 'gone from the source');
    await eventually(async () => (await lastCount(dest, 'lp-mig')) >= 1, 15_000, 200);
  } finally {
    await receiver.stop(10_000);
  }
});
