import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDetachKeys, DEFAULT_DETACH_KEYS } from '../../src/drivers/runtime/attach.js';
import { FerryError } from '../../src/lib/errors.js';

test('parseDetachKeys: Docker and Podman key names to bytes', () => {
  assert.deepEqual([...parseDetachKeys(DEFAULT_DETACH_KEYS)], [16, 17]);
  assert.deepEqual([...parseDetachKeys('ctrl-a,d')], [1, 100]);
  assert.deepEqual([...parseDetachKeys('ctrl-X,ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_')], [24, 0, 27, 28, 29, 30, 31]);
});

test('parseDetachKeys: empty disables detaching; anything else unknown is one clear error', () => {
  assert.equal(parseDetachKeys('').length, 0);
  for (const bad of ['ctrl-', 'ctrl-1', 'ctrl-ab', 'shift-a', 'ab', 'a,,b', 'a,b,']) {
    assert.throws(() => parseDetachKeys(bad), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && /^invalid detach keys ".*": use keys such as ctrl-p,ctrl-q/.test(e.message), bad);
  }
});
