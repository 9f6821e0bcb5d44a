// What CRIU cannot dump is refused before anything is frozen, in plain words: a process holding
// an io_uring instance (CRIU 4.2 would freeze the container and fail with "send_fds failed"), a
// file from outside the container's filesystems ("Can't lookup mount=N for fd=N"), a device CRIU
// has no dumper for ("Can't dump file N of that type [20600] (chr 10:232)"). Ferry's containers
// are denied io_uring (ENOSYS, as on a kernel without it) unless created with --security-opt
// seccomp=unconfined, so only those can hold one; files and devices are handed in over a unix
// socket (test/fixtures/holdfd.c), as a supervisor or socket activation would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Host, assertCleanError, buildFixture, eventually, lastCount, skipWith } from '../helpers/ferry.js';
import { chrDumpable } from '../../src/drivers/criu/criu.js';

const h = new Host('undumpable');
let bin = '';
before(async () => {
  await h.importBusybox();
  bin = path.dirname(buildFixture('uring', path.join(h.dir, 'bin')));
  buildFixture('holdfd', bin);
});

/**
 * A container holding `file`, handed to it over a unix socket in a bind-mounted dir (/sock), and
 * counting once it has it. The file is opened on the host, or with `inContainer` by a process
 * that `ferry exec` starts in the container (then `file` is a path in the container).
 */
async function holding(name: string, file: string, inContainer = false): Promise<void> {
  const sock = path.join(h.dir, `sock-${name}`);
  fs.mkdirSync(sock);
  fs.writeFileSync(path.join(sock, 'inside.txt'), 'in a bind mount\n');
  await h.ok(['run', '-d', '--name', name, '--network', 'none', '-v', `${bin}:/opt:ro`, '-v', `${sock}:/sock`, 'busybox', '/opt/holdfd', 'recv', '/sock/s']);
  await eventually(() => fs.existsSync(path.join(sock, 's')));
  if (inContainer) await h.ok(['exec', name, '/opt/holdfd', 'send', '/sock/s', file]);
  else execFileSync(path.join(bin, 'holdfd'), ['send', path.join(sock, 's'), file]);
  await eventually(async () => (await h.logs(name)).some((l) => /^got \d+$/.test(l)) && (await lastCount(h, name)) >= 1);
}

/** Every way to checkpoint it is refused with `re`, one line; it was never frozen and runs on. */
async function refused(name: string, re: RegExp): Promise<void> {
  const archive = path.join(h.dir, `${name}.tar.zst`);
  for (const args of [['container', 'checkpoint', name], ['container', 'checkpoint', name, '--export', archive], ['container', 'checkpoint', '-R', name]]) {
    const r = await h.run(args);
    assert.equal(r.code, 125, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  assert.ok(!fs.existsSync(archive), 'no archive was written');
  const ins = await h.inspect(name);
  assert.equal(ins.State.Status, 'running');
  assert.equal(ins.State.Checkpointed, false);
  const at = await lastCount(h, name);
  await eventually(async () => (await lastCount(h, name)) >= at + 2);
}
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

test('a file opened in the container (in a bind mount) and handed over checkpoints: the check is no broader than CRIU', async () => {
  await holding('inside', '/sock/inside.txt', true);
  await h.ok(['container', 'checkpoint', '-R', 'inside']);
  await h.ok(['container', 'checkpoint', 'inside']);
  await h.ok(['container', 'restore', 'inside']);
  const at = await lastCount(h, 'inside');
  await eventually(async () => (await lastCount(h, 'inside')) >= at + 1);
  await h.ok(['rm', '-f', 'inside']);
});

test('a file opened outside the container is refused before freezing, naming the file', async () => {
  // Even one the container can reach through its bind mount: opened on the host, it is on the
  // host's mount, which the container does not have (CRIU: "Can't lookup mount=N for fd=N").
  const outside = path.join(h.dir, 'sock-outside', 'inside.txt');
  await holding('outside', outside);
  await refused(
    'outside',
    new RegExp(`^Error: container outside cannot be checkpointed: its process \\d+ \\(holdfd\\) holds ${outside.replace(/[.]/g, '\\.')} open, a file opened outside the container \\(on a mount the container does not have\\), which CRIU cannot dump; nothing was frozen and it keeps running\\. To checkpoint it, the process must close it first, or open the file itself, inside the container`),
  );
  await h.ok(['rm', '-f', 'outside']);
});

test('a device CRIU cannot dump is refused before freezing, naming the device', async (t) => {
  const dev = ['/dev/kvm', '/dev/fuse', '/dev/userfaultfd', '/dev/hwrng'].find((d) => {
    const st = fs.statSync(d, { throwIfNoEntry: false });
    return st?.isCharacterDevice() && !chrDumpable(Math.floor(st.rdev / 256), st.rdev % 256);
  });
  if (!dev) return skipWith(t, 'no /dev/kvm, /dev/fuse, /dev/userfaultfd or /dev/hwrng on this host');
  await holding('device', dev);
  await refused('device', new RegExp(`^Error: container device cannot be checkpointed: its process \\d+ \\(holdfd\\) holds the device ${dev} \\(10:\\d+\\) open, which CRIU cannot dump; nothing was frozen and it keeps running`));
  await h.ok(['rm', '-f', 'device']);
});
