// What CRIU cannot dump is refused before anything is frozen, in plain words: a process holding
// an io_uring instance (CRIU 4.2 would freeze the container and fail with "send_fds failed").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, buildFixture, eventually, lastCount } from '../helpers/ferry.js';

const h = new Host('undumpable');
let bin = '';
before(async () => {
  await h.importBusybox();
  bin = path.dirname(buildFixture('uring', path.join(h.dir, 'bin')));
});
after(() => h.destroy());

test('a container using io_uring is refused before freezing: one line, it runs on, no archive', async () => {
  await h.ok(['run', '-d', '--name', 'ur', '--network', 'none', '-v', `${bin}:/opt:ro`, 'busybox', '/opt/uring']);
  await eventually(async () => (await lastCount(h, 'ur')) >= 1);
  const archive = path.join(h.dir, 'ur.tar.zst');
  for (const args of [['container', 'checkpoint', 'ur'], ['container', 'checkpoint', 'ur', '--export', archive], ['container', 'checkpoint', '-R', 'ur']]) {
    const r = await h.run(args);
    assert.equal(r.code, 125, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^Error: container ur cannot be checkpointed: its process \d+ \(uring\) uses io_uring, which CRIU cannot dump; nothing was frozen/);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  assert.ok(!fs.existsSync(archive), 'no archive was written');
  const ins = await h.inspect('ur');
  assert.equal(ins.State.Status, 'running');
  assert.equal(ins.State.Checkpointed, false);
  // It was never frozen: the count goes on without a gap.
  const at = await lastCount(h, 'ur');
  await eventually(async () => (await lastCount(h, 'ur')) >= at + 2);
  await h.ok(['rm', '-f', 'ur']);
});
