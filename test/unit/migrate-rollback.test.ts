// What a failed migration does on the source before the commit, by the rollback its phase
// registered and how it finds the container then. (After the commit was sent nothing is
// undone here: the container stays stopped, or already runs on the destination.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localRollback, type Observed } from '../../src/engine/migrate/source.js';

const running: Observed = { status: 'running', checkpointed: false };
const paused: Observed = { status: 'paused', checkpointed: false };
const checkpointed: Observed = { status: 'exited', checkpointed: true };
const exited: Observed = { status: 'exited', checkpointed: false };

test('untouched: nothing to do here, whatever state the container is in', () => {
  for (const now of [running, checkpointed, exited, undefined]) {
    assert.deepEqual(localRollback({ kind: 'untouched' }, now), { action: 'nothing', runsHere: false });
  }
});

test('pre-copy rounds: dropped while the container runs on', () => {
  assert.deepEqual(localRollback({ kind: 'drop-rounds' }, running), { action: 'drop-rounds', runsHere: false });
  assert.deepEqual(localRollback({ kind: 'drop-rounds' }, exited), { action: 'nothing', runsHere: false });
  assert.deepEqual(localRollback({ kind: 'drop-rounds' }, undefined), { action: 'nothing', runsHere: false });
});

test('stop-and-copy: thawed by the freeze itself; it runs here again only if it does run', () => {
  assert.deepEqual(localRollback({ kind: 'thawed' }, running), { action: 'nothing', runsHere: true });
  assert.deepEqual(localRollback({ kind: 'thawed' }, paused), { action: 'nothing', runsHere: false });
  assert.deepEqual(localRollback({ kind: 'thawed' }, exited), { action: 'nothing', runsHere: false });
});

test('final dump: restored from the local checkpoint if the dump got that far, lazily after a lazy dump', () => {
  assert.deepEqual(localRollback({ kind: 'restore', lazy: false, rounds: true }, checkpointed), { action: 'restore', runsHere: true });
  assert.deepEqual(localRollback({ kind: 'restore', lazy: true, rounds: false }, checkpointed), { action: 'restore-lazy', runsHere: true });
  // The dump failed and CRIU left the container running: only the rounds go.
  assert.deepEqual(localRollback({ kind: 'restore', lazy: false, rounds: true }, running), { action: 'drop-rounds', runsHere: false });
  assert.deepEqual(localRollback({ kind: 'restore', lazy: true, rounds: false }, running), { action: 'nothing', runsHere: false });
  // Neither running nor checkpointed, or gone: nothing to restore from.
  assert.deepEqual(localRollback({ kind: 'restore', lazy: false, rounds: true }, exited), { action: 'nothing', runsHere: false });
  assert.deepEqual(localRollback({ kind: 'restore', lazy: true, rounds: true }, undefined), { action: 'nothing', runsHere: false });
});
