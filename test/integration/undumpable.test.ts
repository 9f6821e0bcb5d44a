// What CRIU cannot dump is refused before anything is frozen, in plain words: a process holding
// an io_uring instance (CRIU 4.2 would freeze the container and fail with "send_fds failed").
// Ferry's containers are denied io_uring (ENOSYS, as on a kernel without it) unless created
// with --security-opt seccomp=unconfined, so only those can hold one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, assertCleanError, buildFixture, eventually, lastCount } from '../helpers/ferry.js';

const h = new Host('undumpable');
let bin = '';
before(async () => {
  await h.importBusybox();
  bin = path.dirname(buildFixture('uring', path.join(h.dir, 'bin')));
});
after(() => h.destroy());

test('a container is denied io_uring by default: io_uring_setup answers ENOSYS', async () => {
  await h.ok(['run', '-d', '--name', 'denied', '--network', 'none', '-v', `${bin}:/opt:ro`, 'busybox', '/opt/uring']);
  await eventually(async () => (await h.inspect('denied')).State.Status === 'exited');
  const ins = await h.inspect('denied');
  assert.equal(ins.State.ExitCode, 1);
  assert.deepEqual(ins.HostConfig.SecurityOpt, []);
  // Its stderr (`ferry logs` prints that to stderr).
  assert.equal((await h.run(['logs', 'denied'])).stderr.trim(), 'io_uring_setup: Function not implemented');
  await h.ok(['rm', 'denied']);
});

test('with --security-opt seccomp=unconfined it may use io_uring, and is refused before freezing: one line naming the way out, it runs on, no archive', async () => {
  await h.ok(['run', '-d', '--name', 'ur', '--security-opt', 'seccomp=unconfined', '--network', 'none', '-v', `${bin}:/opt:ro`, 'busybox', '/opt/uring']);
  await eventually(async () => (await lastCount(h, 'ur')) >= 1);
  assert.deepEqual((await h.inspect('ur')).HostConfig.SecurityOpt, ['seccomp=unconfined']);
  const archive = path.join(h.dir, 'ur.tar.zst');
  for (const args of [['container', 'checkpoint', 'ur'], ['container', 'checkpoint', 'ur', '--export', archive], ['container', 'checkpoint', '-R', 'ur']]) {
    const r = await h.run(args);
    assert.equal(r.code, 125, `${args.join(' ')}: ${r.stderr}`);
    assert.match(
      r.stderr,
      /^Error: container ur cannot be checkpointed: its process \d+ \(uring\) uses io_uring, which CRIU cannot dump; nothing was frozen and it keeps running\. To checkpoint it, recreate the container without --security-opt seccomp=unconfined/,
    );
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

test('--security-opt takes only seccomp=unconfined: anything else is refused, nothing created', async () => {
  for (const opt of ['label=disable', 'seccomp=/etc/profile.json', 'no-new-privileges']) {
    const r = await h.run(['run', '-d', '--name', 'bad', '--security-opt', opt, 'busybox', 'true']);
    assertCleanError(r, new RegExp(`unsupported --security-opt "${opt.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}": Ferry takes only seccomp=unconfined`));
  }
  assert.ok(!(await h.names()).includes('bad'), 'no container made');
});
