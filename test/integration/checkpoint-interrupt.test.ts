// A ferry interrupted during checkpoint or restore: killed outright (SIGKILL) the next command
// repairs the state from what is true; Ctrl-C (SIGINT) lets the operation finish and exits 130.
// Whatever the timing, the state is consistent: checkpointed with a restorable checkpoint, or
// running and counting; never "running" while dead, never a half-written checkpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, FAST_LOOPER, containerDir, counts, eventually, runcIds, sleep, spawnFerry } from '../helpers/ferry.js';

const h = new Host('cpint');
before(() => h.importBusybox());
after(() => h.destroy());

function record(id: string): any {
  return JSON.parse(fs.readFileSync(path.join(containerDir(h, id), 'container.json'), 'utf8'));
}

/** Waits until `ferry checkpoint` has started runc (the dump is under way). */
async function dumping(id: string): Promise<void> {
  await eventually(() => !!record(id).state.op?.helperPid, 10_000, 5);
}

/** Starts a counting container and waits until it has counted a little. */
async function looper(name: string): Promise<string> {
  const id = await h.ok(['run', '-d', '--name', name, 'busybox', ...FAST_LOOPER]);
  await eventually(async () => (await counts(h, name)).length >= 3);
  return id;
}

/** Runs `body` on a fresh counting container, which is removed afterwards even when `body` fails. */
async function withLooper<T>(name: string, body: (id: string) => Promise<T>): Promise<T> {
  const id = await looper(name);
  try {
    return await body(id);
  } finally {
    await h.run(['rm', '-f', name]).catch(() => undefined);
  }
}

/** Asserts the counter goes on (consecutively) from the last value it printed before `skip`. */
async function continuesFrom(name: string, skip: number): Promise<void> {
  await eventually(async () => (await counts(h, name)).length >= skip + 3);
  const all = await counts(h, name);
  const tail = all.slice(skip - 1);
  assert.ok(tail.every((n, i) => n === tail[0]! + i), `${name} continues: ${tail.join(',')}`);
}

/**
 * The state after an interruption is one of the two consistent ones; returns which. Checkpointed:
 * not running, nothing mounted or left in runc, a complete checkpoint, and restore continues the
 * count. Running: it really runs and counts, and no checkpoint debris is left.
 */
async function consistent(name: string, id: string): Promise<'checkpointed' | 'running'> {
  const ps = await h.ok(['ps', '-a', '--format', 'json']);
  const entry = JSON.parse(ps).find((e: any) => e.Id === id);
  assert.ok(entry, 'listed by ps -a');
  const ins = await h.inspect(name);
  assert.equal(entry.State, ins.State.Status, 'ps and inspect agree');
  assert.equal(record(id).state.op, undefined, 'the interrupted operation was repaired');
  const dir = containerDir(h, id);
  assert.equal(fs.existsSync(path.join(dir, 'checkpoint.tmp')), false, 'no half-written checkpoint');
  if (ins.State.Running) {
    assert.deepEqual(runcIds(h), [id]);
    const n = (await counts(h, name)).length;
    await eventually(async () => (await counts(h, name)).length >= n + 3, 5000);
    return 'running';
  }
  assert.equal(ins.State.Status, 'exited');
  assert.equal(ins.State.Checkpointed, true, `not running, so checkpointed: ${JSON.stringify(ins.State)}`);
  assert.ok(fs.existsSync(path.join(dir, 'checkpoint', 'inventory.img')));
  assert.ok(fs.existsSync(path.join(dir, 'checkpoint', 'ferry-checkpoint.json')));
  assert.deepEqual(runcIds(h), []);
  const n = (await counts(h, name)).length;
  await sleep(600);
  assert.equal((await counts(h, name)).length, n, 'nothing runs while checkpointed');
  await h.ok(['container', 'restore', name]);
  await continuesFrom(name, n);
  return 'checkpointed';
}

test('SIGKILL during checkpoint: the next command finds a consistent state', async () => {
  const outcomes: string[] = [];
  // Once while runc/CRIU is dumping for sure, once just after the operation is recorded, and at
  // a few fixed delays around them.
  for (const [i, delay] of [[0, 'dumping'], [1, 'op'], [2, 100], [3, 150], [4, 300]] as const) {
    const name = `kc${i}`;
    await withLooper(name, async (id) => {
      const { child, done } = spawnFerry(h, ['container', 'checkpoint', name]);
      if (delay === 'dumping') await dumping(id);
      else if (delay === 'op') await eventually(() => record(id).state.op?.name === 'checkpoint', 10_000, 2);
      else await sleep(delay);
      child.kill('SIGKILL');
      const r = await done;
      outcomes.push(`${delay}:${r.code === 0 ? 'finished' : 'killed'}->${await consistent(name, id)}`);
    });
  }
  console.log(`# checkpoint SIGKILL outcomes: ${outcomes.join(' ')}`);
});

test('SIGINT during checkpoint: the checkpoint completes, exit code 130', async () => {
  const name = 'intc';
  await withLooper(name, async (id) => {
    const { child, done } = spawnFerry(h, ['container', 'checkpoint', name]);
    await dumping(id);
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 130, `exit code: ${r.stderr}`);
    assert.match(r.stderr, /interrupted; finishing the checkpoint/);
    const ins = await h.inspect(name);
    assert.equal(ins.State.Checkpointed, true);
    assert.equal(ins.State.Running, false);
    assert.equal(ins.State.Error, '');
    assert.equal(record(id).state.op, undefined);
    assert.equal(await consistent(name, id), 'checkpointed');
  });
});

test('SIGKILL during restore: running and counting, or still checkpointed and restorable', async () => {
  const outcomes: string[] = [];
  for (const [i, delay] of [[0, 'op'], [1, 150], [2, 300], [3, 400]] as const) {
    const name = `kr${i}`;
    await withLooper(name, async (id) => {
      await h.ok(['container', 'checkpoint', name]);
      const { child, done } = spawnFerry(h, ['container', 'restore', name]);
      if (delay === 'op') await eventually(() => record(id).state.op?.name === 'restore', 10_000, 5);
      else await sleep(delay);
      child.kill('SIGKILL');
      const r = await done;
      const state = await consistent(name, id);
      if (state === 'running') {
        const ins = await h.inspect(name);
        assert.equal(ins.State.Restored, true);
        assert.equal(ins.State.Checkpointed, false);
      }
      outcomes.push(`${delay}:${r.code === 0 ? 'finished' : 'killed'}->${state}`);
      // Whatever happened, the container still checkpoints and restores normally.
      await h.ok(['container', 'checkpoint', name]);
      const n = (await counts(h, name)).length;
      await h.ok(['container', 'restore', name]);
      await continuesFrom(name, n);
    });
  }
  console.log(`# restore SIGKILL outcomes: ${outcomes.join(' ')}`);
});

test('SIGINT during restore: the restore completes, exit code 130', async () => {
  const name = 'intr';
  await withLooper(name, async (id) => {
    await h.ok(['container', 'checkpoint', name]);
    const n = (await counts(h, name)).length;
    const { child, done } = spawnFerry(h, ['container', 'restore', name]);
    await eventually(() => record(id).state.op?.name === 'restore', 10_000, 5);
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 130, `exit code: ${r.stderr}`);
    const ins = await h.inspect(name);
    assert.equal(ins.State.Running, true);
    assert.equal(ins.State.Restored, true);
    await continuesFrom(name, n);
  });
});
