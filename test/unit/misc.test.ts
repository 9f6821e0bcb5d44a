import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeEnv } from '../../src/engine/engine.js';
import { DEFAULT_PATH } from '../../src/drivers/storage/images.js';
import { newId, randomName, shortId, validName } from '../../src/lib/ids.js';
import { FerryError } from '../../src/lib/errors.js';

test('mergeEnv: later values win, order of first appearance kept', () => {
  assert.deepEqual(mergeEnv(['PATH=/bin', 'A=1', 'B=2'], ['A=3', 'C=4']), ['PATH=/bin', 'A=3', 'B=2', 'C=4']);
  assert.deepEqual(mergeEnv(['PATH=/bin'], ['PATH=/x']), ['PATH=/x']);
});

test('mergeEnv: values may hold "=" and be empty', () => {
  assert.deepEqual(mergeEnv(['PATH=/bin'], ['Q=a=b', 'E=']), ['PATH=/bin', 'Q=a=b', 'E=']);
});

test('mergeEnv: PATH defaults when the image has none', () => {
  assert.deepEqual(mergeEnv([], []), [`PATH=${DEFAULT_PATH}`]);
  assert.deepEqual(mergeEnv(['A=1'], []), ['A=1', `PATH=${DEFAULT_PATH}`]);
  assert.deepEqual(mergeEnv([], ['PATH=/only']), ['PATH=/only']);
});

test('mergeEnv rejects entries without KEY=', () => {
  for (const bad of ['FOO', '=x', '']) {
    assert.throws(() => mergeEnv([], [bad]), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && e.message.includes('KEY=VALUE'), JSON.stringify(bad));
  }
});

test('validName follows Podman\'s name rule', () => {
  for (const ok of ['a', 'A', '0', 'abc', 'a-b', 'a_b', 'a.b', 'web-1.prod_x', 'x'.repeat(253)]) assert.equal(validName(ok), true, ok);
  for (const bad of ['', '-a', '_a', '.a', 'a b', 'a/b', 'a:b', 'a@b', 'é', 'x'.repeat(254), 'a\n']) assert.equal(validName(bad), false, JSON.stringify(bad));
});

test('ids: 64 hex, short ID is the 12-char prefix, random names are valid', () => {
  const id = newId();
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.notEqual(newId(), id);
  assert.equal(shortId(id), id.slice(0, 12));
  for (let i = 0; i < 50; i++) {
    const n = randomName();
    assert.match(n, /^[a-z]+_[a-z]+$/);
    assert.ok(validName(n));
  }
});
