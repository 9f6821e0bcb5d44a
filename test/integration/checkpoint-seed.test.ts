import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, LOOPER, eventually, lastCount, sleep } from '../helpers/ferry.js';

const h = new Host('seed');
before(() => h.importBusybox());
after(() => h.destroy());

test('seed: checkpoint stops the looper, restore continues its count', async () => {
  await h.ok(['run', '-d', '--name', 'looper', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(h, 'looper')) >= 2);
  await h.ok(['container', 'checkpoint', 'looper']);
  const atCheckpoint = await lastCount(h, 'looper');
  assert.equal(await h.ok(['ps', '--format', '{{.Names}}']), '', 'a checkpointed container is not in ps');
  const ins = await h.inspect('looper');
  assert.equal(ins.State.Checkpointed, true);
  assert.equal(ins.State.Running, false);
  assert.match(await h.ok(['ps', '-a']), /Checkpointed/);
  await sleep(1500);
  assert.equal(await lastCount(h, 'looper'), atCheckpoint, 'nothing runs while checkpointed');

  await h.ok(['container', 'restore', 'looper']);
  await eventually(async () => (await lastCount(h, 'looper')) >= atCheckpoint + 2);
  const lines = (await h.logs('looper')).map(Number);
  // The count goes on from where it was: no restart from 0 after the checkpoint.
  const after = lines.slice(lines.indexOf(atCheckpoint) + 1);
  assert.ok(after.length >= 2 && after.every((n, i) => n === atCheckpoint + 1 + i), `continued: ${lines.join(',')}`);
  assert.equal(await h.ok(['ps', '--format', '{{.Names}}']), 'looper');
  const r = await h.inspect('looper');
  assert.equal(r.State.Restored, true);
  assert.equal(r.State.Checkpointed, false);
});
