import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, eventually } from '../helpers/ferry.js';

const h = new Host('pods');
before(() => h.importBusybox());
after(() => h.destroy());

const SERVER = ['sh', '-c', 'i=0; while true; do i=$(expr $i + 1); echo "reply $i" | nc -l -p 8000; done'];

/** What a sibling gets from the pod's localhost:8000. */
async function ask(sibling: string): Promise<string> {
  return eventually(async () => {
    const r = await h.run(['exec', sibling, 'nc', '127.0.0.1', '8000']);
    return r.code === 0 && r.stdout.startsWith('reply') ? r.stdout.trim() : '';
  }, 10_000, 200);
}

async function names(): Promise<string[]> {
  return (await h.ok(['ps', '-a', '--format', '{{.Names}}'])).split('\n').filter(Boolean).sort();
}

test('pods: members share the network and hostname; ps, inspect, stop, start, rm', async () => {
  const id = await h.ok(['pod', 'create', '--name', 'p1', '--hostname', 'p1host']);
  assert.match(id, /^[0-9a-f]{64}$/);
  await h.ok(['run', '-d', '--pod', 'p1', '--name', 'web', 'busybox', ...SERVER]);
  await h.ok(['run', '-d', '--pod', 'p1', '--name', 'cli', 'busybox', 'sleep', '1000']);
  assert.match(await ask('cli'), /^reply \d+$/);
  assert.equal(await h.ok(['exec', 'web', 'hostname']), 'p1host');
  const ins = JSON.parse(await h.ok(['pod', 'inspect', 'p1']));
  assert.deepEqual(ins.SharedNamespaces, ['ipc', 'net', 'uts']);
  assert.deepEqual(ins.Containers.map((c: { Name: string }) => c.Name).sort(), [`${ins.Id.slice(0, 12)}-infra`, 'cli', 'web'].sort(), 'the members and the infra, as Podman lists them');
  assert.match(await h.ok(['pod', 'ps']), /p1\s+Running/);
  assert.equal((await h.inspect('web')).State.Running, true);

  // The infra belongs to the pod: not checkpointed, not removed on its own.
  const infra = ins.InfraContainerID as string;
  assert.match((await h.fails(['checkpoint', infra])).stderr, /infra container of a pod/);
  assert.match((await h.fails(['rm', infra])).stderr, /infra container of a pod/);
  // A pod member uses the pod's network.
  assert.match((await h.fails(['run', '-d', '--pod', 'p1', '-p', '8080:80', 'busybox', 'true'])).stderr, /use the pod's network/);

  await h.ok(['pod', 'stop', '-t', '0', 'p1']);
  assert.match(await h.ok(['pod', 'ps']), /p1\s+Stopped/);
  await h.ok(['pod', 'start', 'p1']);
  assert.match(await ask('cli'), /^reply \d+$/);
  assert.match((await h.fails(['pod', 'rm', 'p1'])).stderr, /has containers/);
  await h.ok(['pod', 'rm', '-f', 'p1']);
  assert.deepEqual(await names(), []);
  assert.equal(await h.ok(['pod', 'ps', '-q']), '');
});

test('a member checkpointed out of pod A is restored into pod B: siblings reach it, B keeps its hostname', async () => {
  await h.ok(['pod', 'create', '--name', 'pa', '--hostname', 'ahost']);
  await h.ok(['pod', 'create', '--name', 'pb', '--hostname', 'bhost']);
  await h.ok(['run', '-d', '--pod', 'pa', '--name', 'srv', 'busybox', ...SERVER]);
  await h.ok(['run', '-d', '--pod', 'pa', '--name', 'sibA', 'busybox', 'sleep', '1000']);
  await h.ok(['run', '-d', '--pod', 'pb', '--name', 'sibB', 'busybox', 'sleep', '1000']);
  const first = Number((await ask('sibA')).split(' ')[1]);
  const archive = path.join(h.dir, 'srv.tar.zst');
  await h.ok(['checkpoint', 'srv', '--export', archive]);

  await h.ok(['restore', '--import', archive, '-n', 'srv2', '--pod', 'pb']);
  // The server goes on with its own counter: it was restored, not restarted.
  const next = Number((await ask('sibB')).split(' ')[1]);
  assert.ok(next > first, `counter continued: ${first} then ${next}`);
  assert.equal(await h.ok(['exec', 'sibB', 'hostname']), 'bhost', 'pod B keeps its hostname');
  assert.equal(await h.ok(['exec', 'srv2', 'hostname']), 'bhost', 'the restored member sees the pod\'s hostname');
  await h.ok(['pod', 'rm', '-f', 'pa']);
  await h.ok(['pod', 'rm', '-f', 'pb']);
});

test('pod refusals: each clear, nothing created', async () => {
  await h.ok(['pod', 'create', '--name', 'src']);
  await h.ok(['pod', 'create', '--name', 'netonly', '--share', 'net']);
  await h.ok(['run', '-d', '--pod', 'src', '--name', 'member', 'busybox', 'sleep', '1000']);
  await h.ok(['run', '-d', '--network', 'none', '--name', 'loner', 'busybox', 'sleep', '1000']);
  const memberTar = path.join(h.dir, 'member.tar');
  const lonerTar = path.join(h.dir, 'loner.tar');
  await h.ok(['checkpoint', 'member', '-e', memberTar, '-c', 'none']);
  await h.ok(['checkpoint', 'loner', '-e', lonerTar, '-c', 'none']);
  const before = await names();
  const dirs = fs.readdirSync(path.join(h.root, 'containers')).length;
  for (const [args, re] of [
    [['restore', '-i', memberTar, '-n', 'm2'], /checkpointed out of pod src: restore it into a pod with --pod/],
    [['restore', '-i', lonerTar, '-n', 'l2', '--pod', 'src'], /was not in a pod .* cannot be restored into one/],
    [['restore', '-i', memberTar, '-n', 'm3', '--pod', 'netonly'], /does not share the ipc, uts namespaces/],
    [['restore', '-i', memberTar, '-n', 'm4', '--pod', 'nosuchpod'], /no pod with name or ID "nosuchpod"/],
    [['pod', 'create', '--name', 'bad', '--share', 'pid,net'], /cannot share namespace "pid"/],
    [['pod', 'create', '--name', 'src'], /already in use/],
  ] as const) {
    const r = await h.fails([...args]);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  assert.deepEqual(await names(), before, 'no container created');
  assert.equal(fs.readdirSync(path.join(h.root, 'containers')).length, dirs);
  await h.ok(['pod', 'rm', '-f', 'src']);
  await h.ok(['pod', 'rm', '-f', 'netonly']);
  await h.ok(['rm', '-f', 'loner']);
});
