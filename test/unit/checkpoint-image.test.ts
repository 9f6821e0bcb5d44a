import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHECKPOINT_IMAGE_MARK, checkpointImageName, criuVersionNumber } from '../../src/engine/checkpoint-image.js';
import { CaseInsensitiveQuery, boolParam } from '../../src/api/http.js';
import { FerryError } from '../../src/lib/errors.js';

test('criuVersionNumber: CRIU\'s version as Podman records it (major*10000 + minor*100 + sublevel)', () => {
  assert.equal(criuVersionNumber('4.2'), '40200');
  assert.equal(criuVersionNumber('4.2.1'), '40201');
  assert.equal(criuVersionNumber('3.17.1'), '31701');
  assert.equal(criuVersionNumber(''), '0');
});

test('checkpointImageName: normalised as any image name; a bad one refused, saying the container still runs', () => {
  assert.equal(checkpointImageName('ckpt:1'), 'localhost/ckpt:1');
  assert.equal(checkpointImageName('127.0.0.1:5000/a/b'), '127.0.0.1:5000/a/b:latest');
  assert.throws(() => checkpointImageName('Bad Name'), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && /still running$/.test(e.message));
  assert.equal(CHECKPOINT_IMAGE_MARK, 'io.podman.annotations.checkpoint.runtime.name');
});

test('CaseInsensitiveQuery: libpod parameters in any case (Podman\'s bindings lowercase them); the exact name first', () => {
  const q = new CaseInsensitiveQuery('createimage=ck%3A1&leaverunning=true&publishports=1:2&publishports=3:4&Name=exact&name=lower');
  assert.equal(q.get('createImage'), 'ck:1');
  assert.equal(boolParam(q, 'leaveRunning'), true);
  assert.deepEqual(q.getAll('publishPorts'), ['1:2', '3:4']);
  assert.equal(q.get('name'), 'lower');
  assert.equal(q.get('NAME'), 'exact');
  assert.equal(q.get('missing'), null);
  assert.equal(q.has('CREATEIMAGE'), true);
  assert.equal(q.has('nope'), false);
});
