// The repair decisions for an operation whose ferry was killed half-way, from what the next
// command finds: the checkpoint's images and runc's view, a migration's recorded mode and phase.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideCheckpointRepair } from '../../src/engine/checkpoint.js';
import { decideMigrationRepair } from '../../src/engine/migrate/repair.js';

test('checkpoint repair: a dump committed before the ferry died is kept; the container is as runc says', () => {
  assert.deepEqual(decideCheckpointRepair({ committed: true, complete: false, runtime: 'gone', frozen: false }), { images: 'keep', thaw: false, exited: { exitCode: undefined } });
  assert.deepEqual(decideCheckpointRepair({ committed: true, complete: false, runtime: 'running', frozen: false }), { images: 'keep', thaw: false });
});

test('checkpoint repair: a complete dump in tmp is committed, as the user asked', () => {
  assert.deepEqual(decideCheckpointRepair({ committed: false, complete: true, runtime: 'gone', frozen: false }), { images: 'commit', thaw: false, exited: { exitCode: undefined } });
  // --leave-running (or a pre-dump): committed, and the container runs on.
  assert.deepEqual(decideCheckpointRepair({ committed: false, complete: true, runtime: 'running', frozen: false }), { images: 'commit', thaw: false });
});

test('checkpoint repair: an incomplete dump is discarded; a container the dump killed exited 137', () => {
  assert.deepEqual(decideCheckpointRepair({ committed: false, complete: false, runtime: 'running', frozen: false }), { images: 'discard', thaw: false });
  assert.deepEqual(decideCheckpointRepair({ committed: false, complete: false, runtime: 'gone', frozen: false }), { images: 'discard', thaw: false, exited: { exitCode: 137 } });
});

test('checkpoint repair: only a container the dead ferry froze for its dump is thawed', () => {
  assert.equal(decideCheckpointRepair({ committed: false, complete: false, runtime: 'paused', frozen: true }).thaw, true);
  // A container the user paused stays paused.
  assert.equal(decideCheckpointRepair({ committed: false, complete: false, runtime: 'paused', frozen: false }).thaw, false);
  assert.equal(decideCheckpointRepair({ committed: false, complete: true, runtime: 'running', frozen: true }).thaw, false);
});

test('migration repair before the commit: the container belongs to the source and is thawed', () => {
  assert.deepEqual(decideMigrationRepair({ mode: 'page-server', phase: 'freezing', destination: 'ssh://b' }), { stopCriu: false, dropLazyImages: false, thaw: true, ambiguous: false });
  // A lazy dump's CRIU waits for a destination that is gone: stopped, its images (no memory) dropped.
  assert.deepEqual(decideMigrationRepair({ mode: 'lazy', phase: 'freezing', destination: 'ssh://b' }), { stopCriu: true, dropLazyImages: true, thaw: true, ambiguous: false });
});

test('migration repair after the commit: nothing is undone, the container stays frozen, the error says so', () => {
  for (const mode of ['page-server', 'lazy'] as const) {
    assert.deepEqual(decideMigrationRepair({ mode, phase: 'committing', destination: 'ssh://b' }), { stopCriu: false, dropLazyImages: false, thaw: false, ambiguous: true });
  }
});
