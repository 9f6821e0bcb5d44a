import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkSelection, pickedByAll, type SelectPurpose } from '../../src/engine/select.js';
import type { ContainerStatus } from '../../src/engine/types.js';
import { fakeContainer, scratchEngine } from '../helpers/records.js';
import { FerryError } from '../../src/lib/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-select-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const einval = (re: RegExp) => (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && re.test(e.message);

test('checkSelection: exactly one of names, --all, --latest', () => {
  for (const s of [{ refs: ['a'] }, { refs: ['a', 'b'] }, { all: true }, { latest: true }, { refs: [], all: true }]) assert.doesNotThrow(() => checkSelection(s), JSON.stringify(s));
  for (const s of [{ refs: ['a'], all: true }, { refs: ['a'], latest: true }, { all: true, latest: true }]) {
    assert.throws(() => checkSelection(s), einval(/^--all, --latest and container names cannot be used together: pick one$/), JSON.stringify(s));
  }
  for (const s of [{}, { refs: [] }, { all: false, latest: false }]) {
    assert.throws(() => checkSelection(s), einval(/^give at least one container name or ID, or use --all or --latest$/), JSON.stringify(s));
  }
});

test('pickedByAll: which containers --all means for each operation', () => {
  const states: [ContainerStatus, boolean][] = [['created', false], ['running', false], ['paused', false], ['exited', false], ['exited', true], ['running', true], ['paused', true], ['stopped', true]];
  const want: Record<SelectPurpose, string[]> = {
    start: ['created', 'running', 'paused', 'exited', 'exited+cp', 'running+cp', 'paused+cp', 'stopped+cp'],
    rm: ['created', 'running', 'paused', 'exited', 'exited+cp', 'running+cp', 'paused+cp', 'stopped+cp'],
    stop: ['running', 'paused', 'running+cp', 'paused+cp'],
    kill: ['running', 'paused', 'running+cp', 'paused+cp'],
    checkpoint: ['running', 'paused', 'running+cp', 'paused+cp'],
    pause: ['running', 'running+cp'],
    unpause: ['paused', 'paused+cp'],
    restore: ['exited+cp', 'paused+cp', 'stopped+cp'],
    inspect: ['created', 'running', 'paused', 'exited', 'exited+cp', 'running+cp', 'paused+cp', 'stopped+cp'],
    logs: ['created', 'running', 'paused', 'exited', 'exited+cp', 'running+cp', 'paused+cp', 'stopped+cp'],
    wait: ['created', 'running', 'paused', 'exited', 'exited+cp', 'running+cp', 'paused+cp', 'stopped+cp'],
    port: ['running', 'paused', 'running+cp', 'paused+cp'], // as Podman's port --all: the live ones
  };
  for (const [purpose, picked] of Object.entries(want) as [SelectPurpose, string[]][]) {
    const got = states.filter(([status, checkpointed]) => pickedByAll(purpose, { status, checkpointed })).map(([s, c]) => (c ? `${s}+cp` : s));
    assert.deepEqual(got, picked, purpose);
  }
});

// ------------------------------------------------------------------ Engine.select on records

const e1 = scratchEngine(dir, 'sel');
const ids = {
  created: fakeContainer(e1, 'c-created', 'created'),
  running: fakeContainer(e1, 'c-running', 'running'),
  paused: fakeContainer(e1, 'c-paused', 'paused'),
  exited: fakeContainer(e1, 'c-exited', 'exited', { exitCode: 3 }),
  checkpointed: fakeContainer(e1, 'c-checkpointed', 'exited', { checkpointed: true }),
};
const sorted = (a: string[]): string[] => [...a].sort();

test('Engine.select: names are checked (all of them, first) and returned as given', async () => {
  assert.deepEqual(await e1.select({ refs: ['c-running', ids.exited.slice(0, 12)] }, 'stop'), ['c-running', ids.exited.slice(0, 12)]);
  await assert.rejects(e1.select({ refs: ['c-running', 'ghost'] }, 'stop'), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND' && /"ghost"/.test(e.message));
  await assert.rejects(e1.select({ refs: ['c-running'], all: true }, 'stop'), einval(/cannot be used together/));
  await assert.rejects(e1.select({}, 'logs'), einval(/give at least one container/));
});

test('Engine.select: --all picks by purpose, --latest the newest', async () => {
  assert.deepEqual(sorted(await e1.select({ all: true }, 'stop')), sorted([ids.running, ids.paused]));
  assert.deepEqual(sorted(await e1.select({ all: true }, 'checkpoint')), sorted([ids.running, ids.paused]));
  assert.deepEqual(await e1.select({ all: true }, 'pause'), [ids.running]);
  assert.deepEqual(await e1.select({ all: true }, 'unpause'), [ids.paused]);
  assert.deepEqual(await e1.select({ all: true }, 'restore'), [ids.checkpointed]);
  assert.deepEqual(sorted(await e1.select({ all: true }, 'rm')), sorted(Object.values(ids)));
  assert.deepEqual(await e1.select({ latest: true }, 'inspect'), [ids.checkpointed]);
});

test('Engine.select with ignoreMissing (rm --ignore): unknown names are dropped; only unknown names select nothing', async () => {
  assert.deepEqual(await e1.select({ refs: ['ghost', 'c-exited'], ignoreMissing: true }, 'rm'), ['c-exited']);
  assert.deepEqual(await e1.select({ refs: ['ghost'], ignoreMissing: true }, 'rm'), []);
  assert.deepEqual(await e1.select({ refs: ['ghost'], all: true, ignoreMissing: true }, 'rm'), []);
  await assert.rejects(e1.select({ refs: ['c-exited'], all: true, ignoreMissing: true }, 'rm'), einval(/cannot be used together/));
  await assert.rejects(e1.select({ refs: ['ghost'] }, 'rm'), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND');
});

test('Engine.listContainers: live ones, all, or only the newest even when it has stopped', async () => {
  assert.deepEqual(sorted((await e1.listContainers()).map((r) => r.config.id)), sorted([ids.running, ids.paused]));
  assert.equal((await e1.listContainers({ all: true })).length, 5);
  assert.deepEqual((await e1.listContainers({ latest: true })).map((r) => r.config.id), [ids.checkpointed]);
});

test('Engine.removeSelected: a container already gone is no error only when missing ones are ignored', async () => {
  const e = scratchEngine(dir, 'rmsel');
  await assert.rejects(e.removeSelected('ghost'), (x: unknown) => x instanceof FerryError && x.code === 'ENOTFOUND');
  assert.equal(await e.removeSelected('ghost', { ignoreMissing: true }), undefined);
});
