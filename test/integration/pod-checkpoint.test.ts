import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FAST_LOOPER, Host, assertCleanError, counts, countsOn, eventually, sleep, spawnFerry } from '../helpers/ferry.js';

// Two members of one pod: rx counts in its log and receives over localhost what tx sends, tx's
// own counter, through one TCP connection that must survive the pod's checkpoint and restore.
const RX = ['sh', '-c', '(sleep 100000 | nc -l -p 7000 >/tmp/recv) & i=0; while true; do echo $i; i=$(expr $i + 1); usleep 200000; done'];
const TX = ['sh', '-c', 'sleep 0.5; i=0; while true; do echo $i; i=$(expr $i + 1); usleep 200000; done | nc 127.0.0.1 7000'];

const h = new Host('podcp');
const h2 = new Host('podcp2');
before(async () => {
  await h.importBusybox();
  await h2.importBusybox();
});
after(async () => {
  await h.destroy();
  await h2.destroy();
});

/** tx's counter as rx received it: must be 0, 1, 2, ... with nothing lost or repeated. */
async function received(host: Host): Promise<number[]> {
  const r = await host.run(['exec', 'rx', 'cat', '/tmp/recv']);
  const nums = r.stdout.split('\n').filter((l) => /^[0-9]+$/.test(l)).map(Number);
  nums.forEach((n, i) => assert.equal(n, i, `tx's counter arrived in order without gaps: ${nums.join(',')}`));
  return nums;
}

/** Both counters go on from where they were: rx's log continues at last+1, tx's stream past `sent`. */
async function bothContinue(host: Host, lastRx: number, sent: number): Promise<void> {
  await eventually(async () => (await counts(host, 'rx')).at(-1)! >= lastRx + 3, 15_000, 200);
  const c = await counts(host, 'rx');
  assert.equal(c[c.lastIndexOf(lastRx) + 1], lastRx + 1, `rx's counter continued after ${lastRx}`);
  await eventually(async () => (await received(host)).length >= sent + 3, 15_000, 200);
  assert.match(await host.ok(['exec', 'rx', 'netstat', '-tn']), /127\.0\.0\.1:7000\s+ESTABLISHED/);
}

async function startPod(host: Host, name: string): Promise<void> {
  await host.ok(['pod', 'create', '--name', name, '--hostname', `${name}host`]);
  await host.ok(['run', '-d', '--pod', name, '--name', 'rx', 'busybox', ...RX]);
  await host.ok(['run', '-d', '--pod', name, '--name', 'tx', 'busybox', ...TX]);
  await eventually(async () => (await received(host)).length >= 3, 10_000, 200);
}

test('whole pod: a failed checkpoint leaves it running; checkpoint and restore keep both counters and the connection between members', async () => {
  await startPod(h, 'wp');
  const ids = { rx: (await h.inspect('rx')).Id as string, tx: (await h.inspect('tx')).Id as string };

  // Without --tcp-established the dump of the connected members fails: nothing changes.
  const r = await h.run(['pod', 'checkpoint', 'wp']);
  assertCleanError(r, /checkpoint of pod wp failed: .*--tcp-established.*every container of the pod is still running/);
  for (const n of ['rx', 'tx'] as const) {
    const ins = await h.inspect(n);
    assert.equal(ins.State.Running, true, `${n} still runs`);
    assert.equal(ins.State.Checkpointed, false);
    assert.equal(fs.existsSync(path.join(h.root, 'containers', ids[n], 'checkpoint')), false, 'no checkpoint left behind');
  }
  const got = (await received(h)).length;
  await eventually(async () => (await received(h)).length >= got + 2, 5000, 200);

  // The checkpoint: every member frozen together, dumped, stopped; the infra stops too.
  const stats = JSON.parse(await h.ok(['pod', 'checkpoint', 'wp', '--tcp-established', '--print-stats']));
  assert.deepEqual(stats.Containers.map((c: { Name: string }) => c.Name).sort(), ['rx', 'tx']);
  assert.ok(stats.FrozenMs > 0 && stats.FrozenMs <= stats.TotalMs);
  for (const n of ['rx', 'tx']) {
    const ins = await h.inspect(n);
    assert.equal(ins.State.Running, false);
    assert.equal(ins.State.Checkpointed, true);
  }
  assert.match(await h.ok(['pod', 'ps']), /wp\s+Stopped/);
  const lastRx = (await counts(h, 'rx')).at(-1)!;
  const podId = JSON.parse(await h.ok(['pod', 'inspect', 'wp'])).Id as string;
  assert.match((await h.fails(['pod', 'checkpoint', 'wp'])).stderr, /pod wp is not running/);

  assert.equal(await h.ok(['pod', 'restore', 'wp']), podId);
  assert.match(await h.ok(['pod', 'ps']), /wp\s+Running/);
  // Sent before the checkpoint, as far as rx had it then (the stream was stopped with rx).
  await bothContinue(h, lastRx, got + 2);
  assert.equal(await h.ok(['exec', 'tx', 'hostname']), 'wphost', 'the pod keeps its hostname');
  for (const n of ['rx', 'tx']) assert.equal(fs.existsSync(path.join(h.root, 'containers', ids[n as 'rx'], 'checkpoint')), false, 'checkpoints used up');

  assertCleanError(await h.run(['pod', 'restore', 'wp']), /pod wp has no checkpoint to restore: checkpoint it first/);
  assertCleanError(await h.run(['pod', 'checkpoint', 'nosuchpod']), /no pod with name or ID "nosuchpod"/);
});

test('whole pod exported, then restored on another root: refusals first, then both counters and the connection continue', async () => {
  const archive = path.join(h.dir, 'wp.tar.zst');
  try {
    await exportedPodMoves(archive);
  } finally {
    // Whatever failed, the tests after this one start from clean roots.
    for (const host of [h, h2]) await host.run(['pod', 'rm', '-f', 'wp']);
    await h.run(['rm', '-f', 'solo']);
    await h2.run(['rm', '-f', 'rx']);
  }
});

async function exportedPodMoves(archive: string): Promise<void> {
  await h.ok(['pod', 'checkpoint', 'wp', '--tcp-established', '-e', archive]);
  const lastRx = (await counts(h, 'rx')).at(-1)!;

  // A container archive is not a pod archive and the other way round; a taken member name.
  await h.ok(['run', '-d', '--network', 'none', '--name', 'solo', 'busybox', 'sleep', '1000']);
  const solo = path.join(h.dir, 'solo.tar');
  await h.ok(['checkpoint', 'solo', '-e', solo, '-c', 'none']);
  await h2.ok(['create', '--name', 'rx', 'busybox', 'true']);
  for (const [args, re] of [
    [['restore', '--import', archive], /holds a whole pod: restore it with `ferry pod restore --import`/],
    [['pod', 'restore', '--import', solo], /holds one container's checkpoint, not a pod's/],
    [['pod', 'restore', '--import', archive], /container name "rx" is already in use on this host/],
    [['pod', 'restore', 'wp', '--import', archive], /either a pod or --import FILE, not both/],
  ] as const) {
    assertCleanError(await h2.run([...args]), re);
  }
  assert.equal(await h2.ok(['pod', 'ps', '-q']), '', 'no pod created');
  assert.equal(await h2.ok(['ps', '-a', '--format', '{{.Names}}']), 'rx', 'no container created');
  await h2.ok(['rm', 'rx']);

  // The pod's address was freed by the checkpoint, so the other root can take it (same IP).
  const stats = JSON.parse(await h2.ok(['pod', 'restore', '--import', archive, '--print-stats']));
  assert.equal(stats.Name, 'wp');
  const recvAtCheckpoint = Number((await h2.ok(['exec', 'rx', 'cat', '/tmp/recv'])).trim().split('\n').at(-1));
  await bothContinue(h2, lastRx, recvAtCheckpoint + 1);
  assert.equal(await h2.ok(['exec', 'rx', 'hostname']), 'wphost');
  // The source pod is still there, checkpointed; it can be removed.
  await h.ok(['pod', 'rm', '-f', 'wp']);
  await h2.ok(['pod', 'rm', '-f', 'wp']);
  await h.ok(['rm', '-f', 'solo']);
}

test('a CRIU or runc too old for pods is refused before anything is created', async () => {
  // A runc that reports an older version than pods need (and runs the real one otherwise).
  const wrapper = path.join(h.dir, 'old-runc');
  fs.writeFileSync(wrapper, '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "runc version 1.0.2"; echo "spec: 1.0.2-dev"; exit 0; fi\nexec runc "$@"\n', { mode: 0o755 });
  await h.ok(['pod', 'create', '--name', 'src']);
  await h.ok(['pod', 'create', '--name', 'dst']);
  await h.ok(['run', '-d', '--pod', 'src', '--name', 'member', 'busybox', 'sleep', '1000']);
  const member = path.join(h.dir, 'member.tar');
  await h.ok(['checkpoint', 'member', '-e', member, '-c', 'none']);
  const podArchive = path.join(h.dir, 'src.tar');
  await h.ok(['rm', 'member']);
  await h.ok(['run', '-d', '--pod', 'src', '--name', 'member2', 'busybox', 'sleep', '1000']);
  await h.ok(['pod', 'checkpoint', 'src', '-e', podArchive, '-c', 'none']);
  const before = await h.ok(['ps', '-a', '--format', '{{.Names}}']);
  for (const args of [
    ['restore', '--import', member, '-n', 'm2', '--pod', 'dst'],
    ['pod', 'restore', '--import', podArchive, '--name', 'src2'],
    ['pod', 'restore', 'src'],
  ]) {
    assertCleanError(await h.run(['--runtime', wrapper, ...args]), /restoring into a pod needs runc 1\.1 or newer .*this host has 1\.0\.2: upgrade runc/);
  }
  assert.equal(await h.ok(['ps', '-a', '--format', '{{.Names}}']), before, 'nothing created');
  assert.deepEqual((await h.ok(['pod', 'ps', '--format', '{{.Name}}'])).split('\n').sort(), ['dst', 'src']);
  assertCleanError(await h.run(['--runtime', path.join(h.dir, 'nonexistent'), 'ps']), /--runtime .*nonexistent: no such executable/);
  // With the real runc the same restore works.
  await h.ok(['pod', 'restore', 'src']);
  assert.equal((await h.inspect('member2')).State.Running, true);
  await h.ok(['pod', 'rm', '-f', 'src']);
  await h.ok(['pod', 'rm', '-f', 'dst']);
});

test('a member checkpointed out of a pod on one root is restored into a pod on another root; its new siblings reach it', async () => {
  const SERVER = ['sh', '-c', 'i=0; while true; do i=$(expr $i + 1); echo "reply $i" | nc -l -p 8000; done'];
  const ask = (host: Host, sibling: string): Promise<number> =>
    eventually(async () => {
      const r = await host.run(['exec', sibling, 'nc', '127.0.0.1', '8000']);
      return r.code === 0 && /^reply \d+/.test(r.stdout) ? Number(r.stdout.trim().split(' ')[1]) : 0;
    }, 10_000, 200);
  await h.ok(['pod', 'create', '--name', 'ma', '--hostname', 'ahost']);
  await h.ok(['run', '-d', '--pod', 'ma', '--name', 'srv', 'busybox', ...SERVER]);
  await h.ok(['run', '-d', '--pod', 'ma', '--name', 'sibA', 'busybox', 'sleep', '1000']);
  await ask(h, 'sibA');
  const first = await ask(h, 'sibA');
  const archive = path.join(h.dir, 'srv.tar.zst');
  await h.ok(['checkpoint', 'srv', '--export', archive]);

  await h2.ok(['pod', 'create', '--name', 'mb', '--hostname', 'bhost']);
  await h2.ok(['run', '-d', '--pod', 'mb', '--name', 'sibB', 'busybox', 'sleep', '1000']);
  await h2.ok(['restore', '--import', archive, '--pod', 'mb']);
  const next = await ask(h2, 'sibB');
  assert.ok(next > first && next <= first + 3, `the server goes on with its own counter (restored, not restarted): ${first} then ${next}`);
  assert.equal(await h2.ok(['exec', 'srv', 'hostname']), 'bhost', 'the restored member sees its new pod\'s hostname');
  await h.ok(['pod', 'rm', '-f', 'ma']);
  await h2.ok(['pod', 'rm', '-f', 'mb']);
});

test('a pod checkpoint killed at any moment: the next pod command leaves every member running, or the whole pod checkpointed', async () => {
  const outcomes: string[] = [];
  const runcStatus = (id: string): string | undefined => {
    const r = spawnSync('runc', ['--root', path.join(h.runroot, 'runc'), 'state', id], { encoding: 'utf8' });
    return r.status === 0 ? (JSON.parse(r.stdout) as { status: string }).status : undefined;
  };
  for (const delay of [80, 200, 320, 450, 650, 900]) {
    await h.ok(['pod', 'create', '--name', 'pk']);
    for (const n of ['k1', 'k2']) await h.ok(['run', '-d', '--pod', 'pk', '--name', n, 'busybox', ...FAST_LOOPER]);
    await eventually(async () => (await counts(h, 'k1')).length >= 2 && (await counts(h, 'k2')).length >= 2);
    const { child, done } = spawnFerry(h, ['pod', 'checkpoint', 'pk']);
    await sleep(delay);
    child.kill('SIGKILL');
    await done;
    await h.ok(['pod', 'ps']); // the next pod command repairs
    const states: string[] = [];
    for (const n of ['k1', 'k2']) {
      const ins = await h.inspect(n);
      assert.notEqual(runcStatus(ins.Id), 'paused', `${n} is not left frozen`);
      states.push(ins.State.Running ? 'running' : ins.State.Checkpointed ? 'checkpointed' : String(ins.State.Status));
    }
    assert.equal(states[0], states[1], `the pod is in one state, not half-checkpointed: ${states.join(', ')} (killed after ${delay} ms)`);
    if (states[0] === 'running') {
      for (const n of ['k1', 'k2']) await countsOn(h, n, 2);
    } else {
      assert.equal(states[0], 'checkpointed');
      const last = { k1: (await counts(h, 'k1')).at(-1)!, k2: (await counts(h, 'k2')).at(-1)! };
      await h.ok(['pod', 'restore', 'pk']);
      for (const n of ['k1', 'k2'] as const) {
        await countsOn(h, n, 2);
        const c = await counts(h, n);
        assert.equal(c[c.lastIndexOf(last[n]) + 1], last[n] + 1, `${n} continues where the pod's checkpoint cut it`);
      }
    }
    outcomes.push(`${delay}:${states[0]}`);
    await h.ok(['pod', 'rm', '-f', 'pk']);
  }
  process.stdout.write(`# pod checkpoint SIGKILL outcomes: ${outcomes.join(' ')}\n`);
});
