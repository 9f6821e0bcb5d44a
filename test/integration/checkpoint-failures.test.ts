// Refusals (one clear line, non-zero exit, nothing changed), a dump that fails and leaves the
// container running (an established TCP connection without --tcp-established), and a restore
// that fails and leaves the checkpoint intact with nothing running or mounted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Host, FAST_LOOPER, assertCleanError, containerDir, counts, countsOn, eventually, overlayMounted, runcIds, sleep, stateSnapshot,
} from '../helpers/ferry.js';

const h = new Host('cpfail');
before(() => h.importBusybox());
after(() => h.destroy());

const CRIU = '/usr/local/lib/ferry/bin/criu';

/** Whether this kernel has soft-dirty memory tracking, as CRIU itself says. */
function hasDirtyTracking(): boolean {
  const r = spawnSync(CRIU, ['check', '--feature', 'mem_dirty_track'], { encoding: 'utf8' });
  return r.status === 0 && !/is off|not supported|missing/i.test(r.stdout + r.stderr);
}

/** Runs a command that must be refused: one `Error:` line, exit 125, no state or file changed. */
async function refused(args: string[], re: RegExp): Promise<void> {
  const before = stateSnapshot(h);
  const r = await h.run(args);
  assertCleanError(r, re);
  assert.equal(stateSnapshot(h), before, `ferry ${args.join(' ')} changed state`);
}

test('refusals: one clear line, non-zero exit, nothing changed', async () => {
  const created = await h.ok(['create', '--name', 'r-created', 'busybox', ...FAST_LOOPER]);
  await h.ok(['run', '-d', '--name', 'r-exited', 'busybox', 'true']);
  await h.ok(['run', '-d', '--name', 'r-run', 'busybox', ...FAST_LOOPER]);
  await h.ok(['run', '-d', '--rm', '--name', 'r-rm', 'busybox', ...FAST_LOOPER]);
  await h.ok(['run', '-d', '--name', 'r-cp', 'busybox', ...FAST_LOOPER]);
  await eventually(async () => (await h.inspect('r-exited')).State.Status === 'exited');
  await countsOn(h, 'r-cp', 2);
  await h.ok(['container', 'checkpoint', 'r-cp']);

  await refused(['container', 'checkpoint', 'r-created'], /r-created is not running \(created\)/);
  await refused(['container', 'checkpoint', 'r-exited'], /r-exited is not running \(exited\)/);
  await refused(['container', 'checkpoint', 'r-cp'], /r-cp is not running/);
  await refused(['container', 'restore', 'r-run'], /r-run is running/);
  await refused(['container', 'restore', 'r-exited'], /r-exited has no checkpoint/);
  await refused(['container', 'restore', 'r-created'], /r-created has no checkpoint/);
  await refused(['container', 'checkpoint', 'r-rm'], /--rm.*--export/);
  await refused(['container', 'checkpoint', '-R', 'r-rm'], /--rm.*--export/);
  await refused(['container', 'restore', '--tcp-close', '--tcp-established', 'r-cp'], /--tcp-close and --tcp-established/);
  await refused(['container', 'checkpoint', '--manage-cgroups-mode', 'bogus', 'r-run'], /invalid --manage-cgroups-mode "bogus"/);
  await refused(['container', 'restore', '--manage-cgroups-mode', 'bogus', 'r-cp'], /invalid --manage-cgroups-mode "bogus"/);
  await refused(['container', 'checkpoint', 'no-such'], /no container with name or ID "no-such"/);

  if (hasDirtyTracking()) {
    // Pre-copy works here: pre-checkpoint (keeps running), then the final diff, then restore.
    await h.ok(['container', 'checkpoint', '--pre-checkpoint', 'r-run']);
    assert.equal((await h.inspect('r-run')).State.Running, true);
    await countsOn(h, 'r-run', 2);
    await h.ok(['container', 'checkpoint', '--with-previous', 'r-run']);
    const at = (await counts(h, 'r-run')).at(-1)!;
    await h.ok(['container', 'restore', 'r-run']);
    await eventually(async () => (await counts(h, 'r-run')).at(-1)! >= at + 2);
    const all = await counts(h, 'r-run');
    assert.equal(all[all.lastIndexOf(at) + 1], at + 1);
  } else {
    await refused(['container', 'checkpoint', '--pre-checkpoint', 'r-run'], /soft-dirty/);
    await refused(['container', 'checkpoint', '-P', 'r-run'], /soft-dirty/);
    await refused(['container', 'checkpoint', '--with-previous', 'r-run'], /soft-dirty/);
  }

  // The refusals touched nothing: each container is as it was.
  assert.equal((await h.inspect(created)).State.Status, 'created');
  assert.equal((await h.inspect('r-run')).State.Running, true);
  assert.equal((await h.inspect('r-rm')).State.Running, true);
  await countsOn(h, 'r-run', 2);
  const cpAt = (await counts(h, 'r-cp')).at(-1)!;
  await h.ok(['container', 'restore', 'r-cp']);
  await eventually(async () => (await counts(h, 'r-cp')).at(-1)! >= cpAt + 2);
  await h.ok(['rm', '-a', '-f']);
});

// Server and client of one TCP connection over the container's own loopback; the client sends a
// line a second, the server appends them to /tmp/recv.
const TCP_PAIR = [
  'sh', '-c',
  '(sleep 100000 | nc -l -p 7000 >/tmp/recv) & sleep 0.5; ' +
  '(while true; do echo x; sleep 0.3; done) | nc 127.0.0.1 7000 & ' +
  'i=0; while true; do echo $i; i=$(expr $i + 1); usleep 200000; done',
];

async function received(ref: string): Promise<number> {
  const out = await h.ok(['exec', ref, 'sh', '-c', 'wc -l < /tmp/recv']);
  return Number(out.trim());
}

test('a dump that fails leaves the container running; --tcp-established then works both ways', async () => {
  const id = await h.ok(['run', '-d', '--name', 'tcp', 'busybox', ...TCP_PAIR]);
  const dir = containerDir(h, id);
  await eventually(async () => (await received('tcp')) >= 2);

  const before = stateSnapshot(h);
  const r = await h.run(['container', 'checkpoint', 'tcp']);
  assertCleanError(r, /checkpoint of tcp failed: .*add --tcp-established; the container is still running \(details: \S+dump\.log\)/);
  assert.doesNotMatch(r.stderr, /RLIMIT|rlimit/, 'the harmless RLIMIT_NOFILE line is never the cause');
  const logPath = r.stderr.match(/details: (\S+dump\.log)\)/)![1]!;
  assert.ok(fs.existsSync(logPath), 'the CRIU log named in the error exists');
  assert.equal(logPath, path.join(dir, 'userdata', 'dump.log'));
  // Nothing half-written, state as before; the container still counts and still talks.
  assert.equal(fs.existsSync(path.join(dir, 'checkpoint')), false);
  assert.equal(fs.existsSync(path.join(dir, 'checkpoint.tmp')), false);
  assert.equal(stateSnapshot(h).replace(/\n[^\n]*dump\.log[^\n]*/g, ''), before, 'only the CRIU log was added');
  const ins = await h.inspect('tcp');
  assert.equal(ins.State.Running, true);
  assert.equal(ins.State.Checkpointed, false);
  assert.deepEqual(runcIds(h), [id]);
  await countsOn(h, 'tcp', 3);
  const got = await received('tcp');
  await eventually(async () => (await received('tcp')) >= got + 2, 5000);

  // With --tcp-established the dump succeeds; restore applies it from the checkpoint's metadata.
  await h.ok(['container', 'checkpoint', '--tcp-established', 'tcp']);
  assert.equal((await h.inspect('tcp')).State.Checkpointed, true);
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint', 'ferry-checkpoint.json'), 'utf8'));
  assert.equal(meta.options.tcpEstablished, true);
  const at = (await counts(h, 'tcp')).at(-1)!;
  await sleep(500);
  await h.ok(['container', 'restore', 'tcp']);
  assert.equal((await h.inspect('tcp')).State.Running, true);
  await eventually(async () => (await counts(h, 'tcp')).at(-1)! >= at + 3);
  const all = await counts(h, 'tcp');
  assert.equal(all[all.lastIndexOf(at) + 1], at + 1, 'the counter continues');
  // The same connection still delivers: the client's lines keep arriving at the server.
  const afterRestore = await received('tcp');
  await eventually(async () => (await received('tcp')) >= afterRestore + 3, 5000);
  const conns = await h.ok(['exec', 'tcp', 'netstat', '-tn']);
  assert.match(conns, /127\.0\.0\.1:7000\s+ESTABLISHED/);
  await h.ok(['rm', '-f', 'tcp']);
});

test('a restore that fails keeps the checkpoint and leaves nothing running or mounted', async () => {
  const id = await h.ok(['run', '-d', '--name', 'badimg', 'busybox', ...FAST_LOOPER]);
  const cpDir = path.join(containerDir(h, id), 'checkpoint');
  await countsOn(h, 'badimg', 3);
  await h.ok(['container', 'checkpoint', 'badimg']);
  const at = (await counts(h, 'badimg')).at(-1)!;
  const files = fs.readdirSync(cpDir).sort();

  // Truncate the first task's core image: CRIU fails once it starts restoring tasks.
  const victim = path.join(cpDir, 'core-1.img');
  const good = fs.readFileSync(victim);
  fs.writeFileSync(victim, good.subarray(0, 16));
  try {
    const r = await h.run(['container', 'restore', 'badimg']);
    assertCleanError(r, /restore of badimg failed: .*the checkpoint is kept, so you can retry \(details: \S+restore\.log\)/);
    assert.doesNotMatch(r.stderr, /RLIMIT|rlimit/);
  } finally {
    fs.writeFileSync(victim, good);
  }
  const ins = await h.inspect('badimg');
  assert.equal(ins.State.Running, false);
  assert.equal(ins.State.Status, 'exited');
  assert.equal(ins.State.Checkpointed, true);
  assert.deepEqual(await h.ok(['ps', '--format', '{{.Names}}']), '');
  assert.equal(overlayMounted(h, id), false, 'rootfs unmounted');
  assert.deepEqual(runcIds(h), [], 'no runc container left');
  assert.deepEqual(fs.readdirSync(cpDir).sort(), files, 'checkpoint intact');
  const logsBefore = (await counts(h, 'badimg')).length;

  // With the file back, the same checkpoint restores and the count goes on.
  await h.ok(['container', 'restore', 'badimg']);
  await eventually(async () => (await counts(h, 'badimg')).length >= logsBefore + 2);
  const resumed = (await counts(h, 'badimg')).slice(logsBefore);
  assert.equal(resumed[0], at + 1, `continues from ${at}: ${resumed.join(',')}`);
  assert.equal((await h.inspect('badimg')).State.Running, true);
  assert.equal((await h.inspect('badimg')).State.Error, '');
  await h.ok(['rm', '-f', 'badimg']);
});
