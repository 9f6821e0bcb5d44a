import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { LOOPER, REPO, eventually, lastCount, busyboxTarball } from '../helpers/ferry.js';
import { HostPair, assertContinues, assertHostClean, hasSshd, names, runcContainers, type NetHost } from '../helpers/hosts.js';

const skip = hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)';
const pair = new HostPair();
const { a, b } = pair;

before(async () => {
  if (skip) return;
  await pair.setup();
  for (const h of [a, b]) await h.ok(['import', busyboxTarball(), 'busybox']);
});
after(() => pair.destroy());

function migrateArgs(from: NetHost, to: NetHost, ref: string, extra: string[] = []): string[] {
  void from;
  return ['migrate', ref, to.url(), '--remote-command', to.remoteCommand(), ...pair.sshArgs(), ...extra];
}




test('stop-and-copy migration A -> B and back: the counter continues, exactly one copy', { skip }, async () => {
  await a.ok(['run', '-d', '--name', 'looper', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(a, 'looper')) >= 2);
  const out = await a.ok(migrateArgs(a, b, 'looper'));
  assert.match(out, /migrated looper to ssh:\/\/.* downtime \d+ ms, total [0-9.]+ s, .* sent/);
  assert.deepEqual(await names(a), [], 'nothing left on the source');
  assert.deepEqual(runcContainers(a), []);
  assert.deepEqual(await names(b, false), ['looper']);
  const onB = await lastCount(b, 'looper');
  await assertContinues(b, 'looper', onB);

  const back = JSON.parse(await b.ok([...migrateArgs(b, a, 'looper'), '--print-stats']));
  assert.equal(back.mode, 'stop-and-copy');
  assert.ok(back.downtime_ms > 0 && back.downtime_ms < back.total_ms && back.bytes_sent > 0, JSON.stringify(back));
  assert.deepEqual(await names(b), []);
  assert.deepEqual(await names(a, false), ['looper']);
  await assertContinues(a, 'looper', await lastCount(a, 'looper'));
  await a.ok(['rm', '-f', 'looper']);
});

test('lazy (post-copy) migration A -> B and back', { skip }, async (t) => {
  const criu = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!criu.host.checkpointModes.lazyPages) return t.skip(`lazy pages unavailable here: ${criu.host.notes.join('; ')}`);
  await a.ok(['run', '-d', '--name', 'lazy', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(a, 'lazy')) >= 2);
  const st = JSON.parse(await a.ok([...migrateArgs(a, b, 'lazy'), '--lazy', '--print-stats']));
  assert.equal(st.mode, 'lazy');
  assert.deepEqual(await names(a), []);
  await assertContinues(b, 'lazy', await lastCount(b, 'lazy'));
  await b.ok([...migrateArgs(b, a, 'lazy'), '--lazy']);
  assert.deepEqual(await names(b), []);
  await assertContinues(a, 'lazy', await lastCount(a, 'lazy'));
  await a.ok(['rm', '-f', 'lazy']);
});

test('pre-copy is refused clearly where the kernel lacks soft-dirty tracking', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (info.host.checkpointModes.preCopy) return t.skip('this kernel has soft-dirty tracking');
  await a.ok(['run', '-d', '--name', 'pc', 'busybox', ...LOOPER]);
  const r = await a.fails(migrateArgs(a, b, 'pc', ['--pre-copy']));
  assert.match(r.stderr, /soft-dirty/);
  assert.equal((await a.inspect('pc')).State.Running, true, 'untouched');
  await a.ok(['rm', '-f', 'pc']);
});

test('destination without the image: refused before freezing, container untouched; --with-image sends it', { skip }, async () => {
  await b.ok(['rmi', 'busybox']);
  try {
    await a.ok(['run', '-d', '--name', 'noimg', 'busybox', ...LOOPER]);
    await eventually(async () => (await lastCount(a, 'noimg')) >= 1);
    const pid = (await a.inspect('noimg')).State.Pid;
    const r = await a.fails(migrateArgs(a, b, 'noimg'));
    assert.match(r.stderr, /image .*busybox.* is not on/);
    const ins = await a.inspect('noimg');
    assert.equal(ins.State.Running, true);
    assert.equal(ins.State.Pid, pid, 'the same process: never frozen');
    assert.deepEqual(await names(b), []);
    assert.match(r.stderr, /--with-image/, 'the error says how to send it');

    // --with-image sends it first, under the same ID, and the migration goes through.
    await a.ok(migrateArgs(a, b, 'noimg', ['--with-image']));
    const idA = (await a.ok(['images', '-q', '--no-trunc'])).trim();
    assert.equal((await b.ok(['images', '-q', '--no-trunc'])).trim(), idA);
    assert.match(await b.ok(['images']), /localhost\/busybox/);
    await assertContinues(b, 'noimg', await lastCount(b, 'noimg'));
    assert.deepEqual(await names(a), []);
  } finally {
    await b.run(['rm', '-f', 'noimg']);
    await b.ok(['import', busyboxTarball(), 'busybox']);
    await a.run(['rm', '-f', 'noimg']);
  }
});

/** A container holding `mib` MiB of memory it checks itself (test/fixtures/memhog.c), its binary in a volume. */
async function startMemhog(h: NetHost, name: string, mib: number): Promise<void> {
  await h.ok(['volume', 'create', `${name}-bin`]);
  const mp = JSON.parse(await h.ok(['volume', 'inspect', `${name}-bin`]))[0].Mountpoint;
  const r = spawnSync('gcc', ['-static', '-O2', '-o', `${mp}/memhog`, `${REPO}/test/fixtures/memhog.c`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `gcc: ${r.stderr}`);
  await h.ok(['run', '-d', '--name', name, '-v', `${name}-bin:/opt`, 'busybox', '/opt/memhog', String(mib)]);
  await eventually(async () => (await h.logs(name)).filter((l) => l.startsWith('ok')).length >= 2, 30_000);
}

async function memhogHealthy(h: NetHost, name: string): Promise<void> {
  const before = (await h.logs(name)).filter((l) => l.startsWith('ok')).length;
  await eventually(async () => (await h.logs(name)).filter((l) => l.startsWith('ok')).length >= before + 2, 30_000);
  assert.ok(!(await h.logs(name)).some((l) => l.includes('CORRUPT')), 'memory intact');
}

function pidsMatching(re: RegExp): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (re.test(fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' '))) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Starts a migration of a big container and kills `victim` once the archive is flowing. */
async function migrateAndKill(name: string, victim: () => number[]): Promise<{ code: number | null; stderr: string }> {
  const running = a.run([...migrateArgs(a, b, name), '--compress', 'none'], { timeoutMs: 180_000 });
  // The destination's staging dir appears when the archive starts to arrive.
  await eventually(() => fs.readdirSync(b.root).some((f) => f.startsWith('.import-')), 60_000, 10);
  const pids = victim();
  assert.ok(pids.length > 0, 'found the process to kill');
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  return running;
}


const noDirtyTracking = 'this kernel lacks soft-dirty memory tracking (`criu check --feature mem_dirty_track`), which pre-copy needs';

test('pre-copy migration A -> B and back: rounds while running, then only the rest; memory intact', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!info.host.checkpointModes.preCopy) return t.skip(noDirtyTracking);
  await startMemhog(a, 'pcm', 32);
  const st = JSON.parse(await a.ok([...migrateArgs(a, b, 'pcm'), '--pre-copy=3', '--print-stats']));
  assert.equal(st.mode, 'pre-copy');
  assert.ok(st.pre_copy_rounds.length >= 1 && st.pre_copy_rounds.length <= 3, JSON.stringify(st));
  assert.ok(st.pre_copy_rounds[0].pages >= 0.9 * 8192, 'the first round carries the 32 MiB');
  assert.deepEqual(await names(a), []);
  assert.deepEqual(runcContainers(a), []);
  await memhogHealthy(b, 'pcm');
  // Back again, combined with post-copy where this kernel has it too.
  const lazy = info.host.checkpointModes.lazyPages;
  const back = JSON.parse(await b.ok([...migrateArgs(b, a, 'pcm'), '--pre-copy', ...(lazy ? ['--lazy'] : []), '--print-stats']));
  assert.equal(back.mode, lazy ? 'pre-copy+lazy' : 'pre-copy');
  assert.deepEqual(await names(b), []);
  await memhogHealthy(a, 'pcm');
  await assertHostClean(b);
  await a.ok(['rm', '-f', 'pcm']);
  await a.ok(['volume', 'rm', 'pcm-bin']);
});

test('checkpoint --with-previous --export carries its pre-checkpoint: imported on B, memory intact', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!info.host.checkpointModes.preCopy) return t.skip(noDirtyTracking);
  await startMemhog(a, 'wp', 32);
  await a.ok(['container', 'checkpoint', '--pre-checkpoint', 'wp']);
  assert.equal((await a.inspect('wp')).State.Running, true);
  const file = `${b.root}/wp.tar.zst`;
  await a.ok(['container', 'checkpoint', '--with-previous', '--export', file, 'wp']);
  try {
    await b.ok(['container', 'restore', '--import', file]);
    await memhogHealthy(b, 'wp');
    await b.ok(['rm', '-f', 'wp']);
  } finally {
    fs.rmSync(file, { force: true });
    await b.run(['volume', 'rm', '-f', 'wp-bin']);
    await a.run(['rm', '-f', 'wp']);
    await a.run(['volume', 'rm', '-f', 'wp-bin']);
  }
});

test('destination killed during the transfer: the container runs again on the source, destination clean', { skip }, async () => {
  await startMemhog(a, 'cut', 192);
  const r = await migrateAndKill('cut', () => pidsMatching(new RegExp(`migrate-receive`)).filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(b.root)));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /migration of cut failed: .*cut is running here again/);
  assert.equal((await a.inspect('cut')).State.Running, true);
  await memhogHealthy(a, 'cut');
  await assertHostClean(b);
  await a.ok(['rm', '-f', 'cut']);
  await a.ok(['volume', 'rm', 'cut-bin']);
});

test('ssh connection cut mid-stream: the container runs again on the source, destination clean', { skip }, async () => {
  await startMemhog(a, 'sever', 192);
  const r = await migrateAndKill('sever', () => pidsMatching(new RegExp(`^ssh .*root@${b.ip.replace(/\./g, '\\.')}`)));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /migration of sever failed: .*sever is running here again/);
  await memhogHealthy(a, 'sever');
  // The receiver saw its input end mid-archive and removed what it made.
  await eventually(async () => pidsMatching(/migrate-receive/).filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(b.root)).length === 0, 20_000);
  await assertHostClean(b);
  await a.ok(['rm', '-f', 'sever']);
  await a.ok(['volume', 'rm', 'sever-bin']);
});

test('a named volume moves with the container, both ways; a volume in the way is refused before freezing', { skip }, async () => {
  await startMemhog(a, 'vol', 32);
  await a.ok(migrateArgs(a, b, 'vol'));
  assert.equal((await a.ok(['volume', 'ls', '-q'])).trim(), '', 'the volume left the source with its container');
  assert.equal((await b.ok(['volume', 'ls', '-q'])).trim(), 'vol-bin');
  await memhogHealthy(b, 'vol');
  // A volume of that name on the destination: refused at once, the container untouched.
  await a.ok(['volume', 'create', 'vol-bin']);
  const pid = (await b.inspect('vol')).State.Pid;
  const r = await b.fails(migrateArgs(b, a, 'vol', ['--lazy']));
  assert.match(r.stderr, /volume vol-bin already exists/);
  assert.equal((await b.inspect('vol')).State.Pid, pid, 'never frozen');
  await a.ok(['volume', 'rm', 'vol-bin']);
  await b.ok(migrateArgs(b, a, 'vol'));
  await memhogHealthy(a, 'vol');
  await a.ok(['rm', '-f', 'vol']);
  await a.ok(['volume', 'rm', 'vol-bin']);
});
