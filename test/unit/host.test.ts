import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkpointSupport, goArch } from '../../src/engine/host.js';

test('checkpointSupport: each mode from the CRIU feature it needs, and a note for each that is missing', () => {
  const all = checkpointSupport({ check: true, memDirtyTrack: true, uffdNoncoop: true, lazyPipeSize: true });
  assert.deepEqual(all.modes, { stopAndCopy: true, tcpEstablished: true, preCopy: true, lazyPages: true });
  assert.deepEqual(all.notes, []);
  const none = checkpointSupport({ check: false, memDirtyTrack: false, uffdNoncoop: false, lazyPipeSize: false });
  assert.deepEqual(none.modes, { stopAndCopy: false, tcpEstablished: false, preCopy: false, lazyPages: false });
  assert.equal(none.notes.length, 2);
  assert.match(none.notes[0]!, /^pre-copy .* soft-dirty/);
  assert.match(none.notes[1]!, /^lazy pages .* userfaultfd/);
  const pipe = checkpointSupport({ check: true, memDirtyTrack: true, uffdNoncoop: true, lazyPipeSize: false });
  assert.equal(pipe.modes.lazyPages, false);
  assert.deepEqual(pipe.notes, ['lazy pages (--lazy) are unavailable: they need fs.pipe-max-size >= 4194304 (`npm run setup` sets it)']);
});

test('goArch: Go\'s names', () => {
  assert.equal(goArch('x64'), 'amd64');
  assert.equal(goArch('arm64'), 'arm64');
});
