/**
 * Portable checkpoint archives (issue 4), the working paths: export on one host, import on
 * another (a second Host with its own --root/--runroot), as many copies as wanted; what travels
 * (log, rootfs diff with whiteouts and opaque dirs, named volumes); each compression and format
 * sniffing; `-e -` piped into `-i -`; --ignore-rootfs/--ignore-volumes; --print-stats;
 * `ferry checkpoint ls|rm`; --rm containers; exports that cannot be written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FAST_LOOPER, FERRY_BIN, Host, LOOPER, assertCleanError, counts, eventually, lastCount, runcIds } from '../helpers/ferry.js';

const A = new Host('arcA');
const B = new Host('arcB');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-arc-'));
const fullFs = path.join(tmp, 'full');

before(async () => {
  await Promise.all([A.importBusybox(), B.importBusybox()]);
});
after(async () => {
  spawnSync('umount', ['-l', fullFs]);
  await A.destroy();
  await B.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The looper, after some setup commands. */
const looperAfter = (setup: string): string[] => ['sh', '-c', `${setup}; ${FAST_LOOPER[2]}`];

/**
 * Starts a looper on A (the fast one, after setup commands, unless `slow`) and waits until it
 * has counted a little. Without a network unless `extra` asks for one: both "hosts" share this
 * machine, where a same-name import keeps the container's IP address, which another ferry root
 * (another test running) may hold; networking has its own tests.
 */
async function startLooper(name: string, extra: string[] = [], setup?: string, slow = false): Promise<void> {
  const net = extra.includes('--network') ? [] : ['--network', 'none'];
  await A.ok(['run', '-d', '--name', name, ...net, ...extra, 'busybox', ...(setup ? looperAfter(setup) : slow ? LOOPER : FAST_LOOPER)]);
  await eventually(async () => (await lastCount(A, name)) >= 2, 15_000);
}

/**
 * Asserts the log of `name` on host h holds 0..n (travelled in the archive) and then goes on
 * from n+1 (the process continued) for at least two more numbers.
 */
async function assertContinues(h: Host, name: string, n: number): Promise<void> {
  await eventually(async () => {
    const c = await counts(h, name);
    return c.length && c[c.length - 1]! >= n + 2;
  }, 15_000);
  const c = await counts(h, name);
  assert.ok(c.every((v, i) => v === i), `${name}: one unbroken count from 0 (no restart after import): ${c.join(',')}`);
  assert.ok(c.includes(n) && c.includes(n + 1), `${name}: goes on from the checkpointed ${n}: ${c.join(',')}`);
}

const exec = (h: Host, name: string, script: string): Promise<string> => h.ok(['exec', name, 'sh', '-c', script]);

test('seed: export on A, import on B three times (same name, -n looper1, -n looper2), all continue the count', async () => {
  await startLooper('looper', [], undefined, true);
  const file = path.join(tmp, 'seed.tar.zst');
  await A.ok(['container', 'checkpoint', 'looper', '--export', file]);
  const n = await lastCount(A, 'looper');
  assert.ok(fs.statSync(file).size > 0);
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.includes('.tmp')), [], 'no temporary file left beside the archive');
  assert.equal((await A.inspect('looper')).State.Checkpointed, true, 'A keeps its checkpoint');

  const id = (await B.ok(['container', 'restore', '--import', file])).trim();
  await B.ok(['container', 'restore', '--import', file, '-n', 'looper1']);
  await B.ok(['container', 'restore', '--import', file, '-n', 'looper2']);
  assert.deepEqual(await B.names(false), ['looper', 'looper1', 'looper2'], 'three copies running at once');
  assert.equal((await B.inspect('looper')).Id, id, 'the same-name import keeps the container ID');
  const ids = new Set([(await B.inspect('looper')).Id, (await B.inspect('looper1')).Id, (await B.inspect('looper2')).Id]);
  assert.equal(ids.size, 3, '-n gives each copy its own ID');
  for (const name of ['looper', 'looper1', 'looper2']) {
    const ins = await B.inspect(name);
    assert.equal(ins.State.Running, true);
    assert.equal(ins.State.Restored, true);
    await assertContinues(B, name, n);
  }
  // Without --keep the imported checkpoint is used up; B holds no checkpoints.
  assert.equal((await B.ok(['checkpoint', 'ls', '--format', 'json'])).trim().startsWith('['), true);
  assert.deepEqual(JSON.parse(await B.ok(['checkpoint', 'ls', '--format', 'json'])), []);
  // A still holds its checkpoint and restores in place (once B's same-name copy is gone: on
  // one machine the two would share the container's IP address).
  await B.ok(['rm', '-f', 'looper', 'looper1', 'looper2']);
  await A.ok(['container', 'restore', 'looper']);
  await assertContinues(A, 'looper', n);
});

test('rootfs diff travels: new file, whiteout of an image file, opaque dir', async () => {
  await startLooper('fsl', [], 'echo written > /written; rm /etc/group; rm -rf /var; mkdir /var; echo x > /var/only');
  // The opaque dir really is one on A (else this test would prove nothing about it).
  const upperVar = path.join(A.root, 'overlay', (await A.inspect('fsl')).Id, 'upper', 'var');
  const xa = spawnSync('getfattr', ['--absolute-names', '-n', 'trusted.overlay.opaque', upperVar], { encoding: 'utf8' });
  if (xa.status === 0) assert.match(xa.stdout, /opaque="y"/);
  const file = path.join(tmp, 'fs.tar.zst');
  await A.ok(['container', 'checkpoint', 'fsl', '-e', file]);
  const n = await lastCount(A, 'fsl');
  await B.ok(['container', 'restore', '-i', file]);
  await assertContinues(B, 'fsl', n);
  assert.equal(await exec(B, 'fsl', 'cat /written'), 'written');
  assert.equal((await B.run(['exec', 'fsl', 'ls', '/etc/group'])).code !== 0, true, 'the deleted image file stays deleted');
  assert.equal(await exec(B, 'fsl', 'ls -A /var'), 'only', 'the replaced dir holds only its new contents (no var/tmp from the image)');
  assert.equal(await exec(B, 'fsl', 'cat /var/only'), 'x');
  // --ignore-rootfs on import: the image's files, without the changes.
  await B.ok(['container', 'restore', '-i', file, '-n', 'fsl-norootfs', '--ignore-rootfs']);
  await assertContinues(B, 'fsl-norootfs', n);
  assert.notEqual((await B.run(['exec', 'fsl-norootfs', 'cat', '/written'])).code, 0, '--ignore-rootfs: no /written');
  assert.equal(await exec(B, 'fsl-norootfs', 'cat /etc/group').then((s) => s.length > 0), true, '--ignore-rootfs: the image file is back');
  assert.match(await exec(B, 'fsl-norootfs', 'ls -A /var'), /tmp/);
  await B.ok(['rm', '-f', 'fsl', 'fsl-norootfs']);
  await A.ok(['rm', '-f', 'fsl']);
});

test('--ignore-rootfs on export: the archive has no rootfs, the import lacks the written file', async () => {
  await startLooper('nofs', [], 'echo written > /written');
  const file = path.join(tmp, 'nofs.tar');
  await A.ok(['container', 'checkpoint', 'nofs', '-e', file, '-c', 'none', '--ignore-rootfs']);
  const n = await lastCount(A, 'nofs');
  const members = spawnSync('tar', ['-tf', file], { encoding: 'utf8' }).stdout.split('\n');
  assert.ok(!members.some((m) => m.startsWith('rootfs')), `no rootfs/ members: ${members.join(' ')}`);
  assert.ok(members.some((m) => m.startsWith('checkpoint/')));
  await B.ok(['container', 'restore', '-i', file]);
  await assertContinues(B, 'nofs', n);
  assert.notEqual((await B.run(['exec', 'nofs', 'cat', '/written'])).code, 0);
  await B.ok(['rm', '-f', 'nofs']);
  await A.ok(['rm', '-f', 'nofs']);
});

test('a named volume travels; importing it again is refused unless --ignore-volumes', async () => {
  await startLooper('vol', ['-v', 'data:/data'], 'echo in-volume > /data/f');
  const file = path.join(tmp, 'vol.tar.gz');
  await A.ok(['container', 'checkpoint', 'vol', '-e', file, '-c', 'gzip']);
  const n = await lastCount(A, 'vol');
  await B.ok(['container', 'restore', '-i', file]);
  await assertContinues(B, 'vol', n);
  assert.match(await B.ok(['volume', 'ls']), /\bdata\b/);
  assert.equal(fs.readFileSync(path.join(B.root, 'volumes', 'data', '_data', 'f'), 'utf8'), 'in-volume\n');
  assert.equal(await exec(B, 'vol', 'cat /data/f'), 'in-volume');

  const before = { names: await B.names(), dirs: B.containerDirs(), vols: fs.readdirSync(path.join(B.root, 'volumes')).sort() };
  const r = await B.fails(['container', 'restore', '-i', file, '-n', 'vol2']);
  assertCleanError(r, /volume "data" already exists.*--ignore-volumes/);
  assert.deepEqual(await B.names(), before.names);
  assert.deepEqual(B.containerDirs(), before.dirs);
  assert.deepEqual(fs.readdirSync(path.join(B.root, 'volumes')).sort(), before.vols);
  assert.equal(fs.readFileSync(path.join(B.root, 'volumes', 'data', '_data', 'f'), 'utf8'), 'in-volume\n', 'the existing volume is untouched');

  // With --ignore-volumes the copy uses the volume B has, as it is.
  await exec(B, 'vol', 'echo changed-on-b > /data/f');
  await B.ok(['container', 'restore', '-i', file, '-n', 'vol2', '--ignore-volumes']);
  await assertContinues(B, 'vol2', n);
  assert.equal(await exec(B, 'vol2', 'cat /data/f'), 'changed-on-b');
  await B.ok(['rm', '-f', 'vol', 'vol2']);
  await A.ok(['rm', '-f', 'vol']);
});

test('--ignore-volumes on export: the archive has no volume contents; the import gets an empty volume', async () => {
  await startLooper('novol', ['-v', 'data2:/data'], 'echo in-volume > /data/f');
  const file = path.join(tmp, 'novol.tar');
  await A.ok(['container', 'checkpoint', 'novol', '-e', file, '-c', 'none', '--ignore-volumes']);
  const n = await lastCount(A, 'novol');
  const members = spawnSync('tar', ['-tf', file], { encoding: 'utf8' }).stdout.split('\n');
  assert.ok(!members.some((m) => m.startsWith('volumes')), `no volumes/ members: ${members.join(' ')}`);
  await B.ok(['container', 'restore', '-i', file]);
  await assertContinues(B, 'novol', n);
  assert.equal((await B.run(['exec', 'novol', 'cat', '/data/f'])).code !== 0, true, 'the volume content did not travel');
  await B.ok(['rm', '-f', 'novol']);
  await A.ok(['rm', '-f', 'novol']);
});

test('each compression; the format is sniffed from the data, not the file name', async () => {
  await startLooper('comp');
  const magic: Record<string, (b: Buffer) => boolean> = {
    zstd: (b) => b.readUInt32LE(0) === 0xfd2fb528,
    gzip: (b) => b[0] === 0x1f && b[1] === 0x8b,
    none: (b) => b.subarray(0, 18).toString() === 'ferry-archive.json',
  };
  const files: Record<string, string> = {};
  for (const c of ['zstd', 'gzip', 'none']) {
    files[c] = path.join(tmp, `comp-${c}.bin`);
    await A.ok(['container', 'checkpoint', 'comp', '-R', '-e', files[c]!, '-c', c]);
    const head = Buffer.alloc(32);
    const fd = fs.openSync(files[c]!, 'r');
    fs.readSync(fd, head, 0, 32, 0);
    fs.closeSync(fd);
    assert.ok(magic[c]!(head), `${c} archive starts with ${c}'s magic: ${head.toString('hex')}`);
  }
  assert.equal((await A.inspect('comp')).State.Running, true, '-R leaves the container running');
  // Misleading names: gzip data in .zst, zstd data in .tar, plain tar in .gz.
  const misnamed: [string, string][] = [
    ['gzip', path.join(tmp, 'really-gzip.tar.zst')],
    ['zstd', path.join(tmp, 'really-zstd.tar')],
    ['none', path.join(tmp, 'really-tar.tar.gz')],
  ];
  for (const [c, f] of misnamed) fs.copyFileSync(files[c]!, f);
  for (const [c, f] of misnamed) {
    const r = JSON.parse(await B.ok(['container', 'restore', '-i', f, '-n', `comp-${c}`, '--print-stats']));
    assert.equal(typeof r.podman_restore_duration, 'number');
    assert.equal((await B.inspect(`comp-${c}`)).State.Running, true);
  }
  for (const [c] of misnamed) await eventually(async () => (await lastCount(B, `comp-${c}`)) >= 3, 15_000);
  await B.ok(['rm', '-f', 'comp-gzip', 'comp-zstd', 'comp-none']);
  await A.ok(['rm', '-f', 'comp']);
});

test('`-e -` piped straight into `-i -` on the other host, no file in between', async () => {
  // On the default bridge network: the copy under a new name gets a new address.
  await startLooper('piped', ['--network', 'bridge']);
  const filesBefore = fs.readdirSync(tmp).sort();
  const exp = spawn(FERRY_BIN, [...A.args(), 'container', 'checkpoint', 'piped', '-e', '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const imp = spawn(FERRY_BIN, [...B.args(), 'container', 'restore', '-i', '-', '-n', 'piped-b'], { stdio: ['pipe', 'pipe', 'pipe'] });
  exp.stdout!.pipe(imp.stdin!);
  const collect = (c: ReturnType<typeof spawn>): Promise<{ code: number | null; out: string; err: string }> =>
    new Promise((resolve) => {
      let out = '';
      let err = '';
      c.stdout?.on('data', (b: Buffer) => (out += b.toString()));
      c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      c.on('close', (code) => resolve({ code, out, err }));
    });
  const [e, i] = await Promise.all([collect(exp), collect(imp)]);
  assert.equal(e.code, 0, `export: ${e.err}`);
  assert.equal(i.code, 0, `import: ${i.err}`);
  assert.match(e.err, /piped/, 'with -e - the export says its messages on stderr');
  const n = await lastCount(A, 'piped');
  await assertContinues(B, 'piped-b', n);
  assert.deepEqual(fs.readdirSync(tmp).sort(), filesBefore, 'no file written');
  await B.ok(['rm', '-f', 'piped-b']);
  await A.ok(['rm', '-f', 'piped']);
});

test('--print-stats on import gives plausible JSON', async () => {
  await startLooper('stats');
  const file = path.join(tmp, 'stats.tar.zst');
  await A.ok(['container', 'checkpoint', 'stats', '-e', file]);
  const doc = JSON.parse(await B.ok(['container', 'restore', '-i', file, '-n', 'stats-b', '--print-stats']));
  const id = (await B.inspect('stats-b')).Id;
  assert.ok(doc.podman_restore_duration > 0 && doc.podman_restore_duration < 60e6, `total µs: ${doc.podman_restore_duration}`);
  assert.equal(doc.container_statistics.length, 1);
  const s = doc.container_statistics[0];
  assert.equal(s.Id, id);
  assert.ok(s.runtime_restore_duration > 0 && s.runtime_restore_duration <= doc.podman_restore_duration, JSON.stringify(s));
  assert.ok(s.criu_statistics && s.criu_statistics.pages_restored > 0, JSON.stringify(s.criu_statistics));
  assert.ok(s.criu_statistics.restore_time > 0 && s.criu_statistics.restore_time <= s.runtime_restore_duration, JSON.stringify(s));
  await B.ok(['rm', '-f', 'stats-b']);
  await A.ok(['rm', '-f', 'stats']);
});

test('`ferry checkpoint ls` lists in-place checkpoints; `checkpoint rm` deletes one, the container stays', async () => {
  await startLooper('ls1');
  await startLooper('ls2');
  await A.ok(['container', 'checkpoint', 'ls1']);
  await A.ok(['container', 'checkpoint', 'ls2']);
  const table = await A.ok(['checkpoint', 'ls']);
  for (const name of ['ls1', 'ls2']) assert.match(table, new RegExp(`\\b${name}\\b.*\\d+(\\.\\d+)? ?[kMG]?B`), table);
  const list = JSON.parse(await A.ok(['checkpoint', 'ls', '--format', 'json'])) as { name: string; size: number }[];
  const mine = list.filter((c) => c.name === 'ls1' || c.name === 'ls2');
  assert.equal(mine.length, 2, JSON.stringify(list));
  for (const c of mine) assert.ok(c.size > 4096, `plausible size: ${c.size}`);

  assert.equal((await A.ok(['checkpoint', 'rm', 'ls1'])).trim(), 'ls1');
  assert.ok(!(await A.ok(['checkpoint', 'ls'])).includes('ls1'));
  assert.ok((await A.names()).includes('ls1'), 'the container stays');
  assertCleanError(await A.fails(['container', 'restore', 'ls1']), /ls1 has no checkpoint/);
  assertCleanError(await A.fails(['checkpoint', 'rm', 'ls1']), /ls1 has no checkpoint/);
  // ls2's checkpoint is untouched and restores.
  await A.ok(['container', 'restore', 'ls2']);
  await A.ok(['rm', '-f', 'ls1', 'ls2']);
});

test('--export of a --rm container works and removes the container', async () => {
  await startLooper('gone', ['--rm']);
  const id = (await A.inspect('gone')).Id;
  assertCleanError(await A.fails(['container', 'checkpoint', 'gone']), /--rm.*--export/);
  const file = path.join(tmp, 'gone.tar.zst');
  await A.ok(['container', 'checkpoint', 'gone', '-e', file]);
  assert.ok(!(await A.names()).includes('gone'), 'removed after the export');
  assert.ok(!A.containerDirs().includes(id));
  assert.ok(!fs.existsSync(path.join(A.root, 'overlay', id)));
  assert.ok(!runcIds(A).includes(id));
  await B.ok(['container', 'restore', '-i', file]);
  await eventually(async () => (await lastCount(B, 'gone')) >= 3, 15_000);
  await B.ok(['rm', '-f', 'gone']);
});

test('an export that cannot be written: missing directory refused up front; a full disk keeps the checkpoint', async () => {
  await startLooper('full');
  const r = await A.fails(['container', 'checkpoint', 'full', '-e', path.join(tmp, 'no-such-dir', 'x.tar')]);
  assertCleanError(r, /no-such-dir.*does not exist/);
  const ins = await A.inspect('full');
  assert.equal(ins.State.Running, true, 'still running');
  assert.equal(ins.State.Checkpointed, false);
  const c = await lastCount(A, 'full');
  await eventually(async () => (await lastCount(A, 'full')) > c, 5000);

  fs.mkdirSync(fullFs);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8k', 'tmpfs', fullFs], { encoding: 'utf8' });
  assert.equal(m.status, 0, m.stderr);
  const r2 = await A.fails(['container', 'checkpoint', 'full', '-e', path.join(fullFs, 'x.tar'), '-c', 'none']);
  assertCleanError(r2, /exporting full failed.*no space left.*checkpoint is kept/i);
  assert.deepEqual(fs.readdirSync(fullFs), [], 'no partial archive left');
  const n = await lastCount(A, 'full');
  const ins2 = await A.inspect('full');
  assert.equal(ins2.State.Checkpointed, true, 'the checkpoint stays on the host');
  assert.match(await A.ok(['checkpoint', 'ls']), /\bfull\b/);
  await A.ok(['container', 'restore', 'full']);
  await assertContinues(A, 'full', n);
  await A.ok(['rm', '-f', 'full']);
});

test('checkpoint -R --export of a container that logs fast: the growing log does not break the archive', async () => {
  await A.ok(['run', '-d', '--name', 'chatty', '--network', 'none', 'busybox', 'sh', '-c', 'i=0; while true; do echo line-$i; i=$(expr $i + 1); done']);
  await eventually(async () => (await A.logs('chatty')).length > 200);
  for (let i = 0; i < 3; i++) {
    await A.ok(['container', 'checkpoint', 'chatty', '-R', '-e', path.join(tmp, `chatty-${i}.tar`), '-c', 'none']);
  }
  assert.equal((await A.inspect('chatty')).State.Running, true);
  await A.ok(['rm', '-f', 'chatty']);
  await B.ok(['container', 'restore', '-i', path.join(tmp, 'chatty-2.tar'), '-n', 'chatty-b']);
  const before = (await B.logs('chatty-b')).length;
  await eventually(async () => (await B.logs('chatty-b')).length > before + 50);
  await B.ok(['rm', '-f', 'chatty-b']);
});
