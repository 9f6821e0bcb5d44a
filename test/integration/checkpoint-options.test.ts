// Checkpoint/restore flags on the real stack: -R/--leave-running, -k/--keep (both commands),
// -a/--all, -l/--latest, --manage-cgroups-mode and --print-stats.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CRIU_DEFAULTS } from '../../src/drivers/criu/criu.js';
import { readImage } from '../../src/drivers/criu/image.js';
import { Host, FAST_LOOPER, containerDir, counts, countsOn, eventually, skipWith, sleep } from '../helpers/ferry.js';

const h = new Host('cpopt');
before(() => h.importBusybox());
after(() => h.destroy());

async function names(all = false): Promise<string[]> {
  return (await h.ok(['ps', ...(all ? ['-a'] : []), '--format', '{{.Names}}'])).split('\n').filter(Boolean).sort();
}

/** The values a restored container printed after the log's first `skip` counter lines. */
async function countsAfter(ref: string, skip: number): Promise<number[]> {
  return (await counts(h, ref)).slice(skip);
}

test('-R/--leave-running: keeps running; after a stop, restore continues from the checkpointed count', async () => {
  const id = await h.ok(['run', '-d', '--name', 'lr', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'lr', 3);
  const before = (await counts(h, 'lr')).at(-1)!;
  assert.equal(await h.ok(['container', 'checkpoint', '-R', 'lr']), 'lr');
  const atCheckpoint = (await counts(h, 'lr')).at(-1)!;
  // Still running and still counting, checkpoint committed.
  assert.deepEqual(await names(), ['lr']);
  let ins = await h.inspect('lr');
  assert.equal(ins.State.Running, true);
  assert.equal(ins.State.Checkpointed, true);
  assert.ok(fs.existsSync(path.join(containerDir(h, id), 'checkpoint', 'inventory.img')));
  await countsOn(h, 'lr', 10);
  await h.ok(['stop', '-t', '0', 'lr']);
  const seen = await counts(h, 'lr');
  const stoppedAt = seen.at(-1)!;
  assert.ok(stoppedAt >= atCheckpoint + 10, `kept counting after -R: ${atCheckpoint} -> ${stoppedAt}`);
  ins = await h.inspect('lr');
  assert.equal(ins.State.Running, false);

  await h.ok(['container', 'restore', 'lr']);
  await eventually(async () => (await countsAfter('lr', seen.length)).length >= 3);
  const resumed = await countsAfter('lr', seen.length);
  assert.ok(resumed[0]! > before && resumed[0]! <= atCheckpoint + 1, `restored from the checkpoint (${before}..${atCheckpoint}), got ${resumed.join(',')}`);
  assert.ok(resumed[0]! < stoppedAt, 'the restored counter is the checkpointed one, not the later one');
  assert.ok(resumed.every((n, i) => n === resumed[0]! + i), `consecutive after restore: ${resumed.join(',')}`);
  assert.deepEqual(await names(), ['lr']);
  // Without --keep, a successful restore uses the checkpoint up.
  assert.equal(fs.existsSync(path.join(containerDir(h, id), 'checkpoint')), false);
  ins = await h.inspect('lr');
  assert.equal(ins.State.Restored, true);
  assert.equal(ins.State.Checkpointed, false);
  await h.ok(['rm', '-f', 'lr']);
});

test('--manage-cgroups-mode ignore (which runc checkpoint refused): dumped and restored, the counter goes on', async () => {
  await h.ok(['run', '-d', '--name', 'cgi', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'cgi', 3);
  assert.equal(await h.ok(['container', 'checkpoint', '--manage-cgroups-mode', 'ignore', 'cgi']), 'cgi');
  const seen = await counts(h, 'cgi');
  await h.ok(['container', 'restore', '--manage-cgroups-mode', 'ignore', 'cgi']);
  await eventually(async () => (await countsAfter('cgi', seen.length)).length >= 2);
  const resumed = await countsAfter('cgi', seen.length);
  assert.ok(resumed[0]! > seen.at(-1)! - 3 && resumed[0]! <= seen.at(-1)! + 1, `went on from ${seen.at(-1)}: ${resumed.join(',')}`);
  await h.ok(['rm', '-f', 'cgi']);
});

test('--keep: checkpoint keeps dump.log; restore --keep keeps the checkpoint for a second restore', async () => {
  const id = await h.ok(['run', '-d', '--name', 'keep', 'busybox', ...FAST_LOOPER]);
  const userdata = path.join(containerDir(h, id), 'userdata');
  const cpDir = path.join(containerDir(h, id), 'checkpoint');
  await countsOn(h, 'keep', 2);

  // Without --keep CRIU's log is cleaned up.
  await h.ok(['container', 'checkpoint', 'keep']);
  assert.equal(fs.existsSync(path.join(userdata, 'dump.log')), false, 'dump.log removed without --keep');
  assert.equal((await h.inspect('keep')).State.CheckpointLog, '');
  await h.ok(['container', 'restore', 'keep']);
  assert.equal(fs.existsSync(cpDir), false);
  await countsOn(h, 'keep', 2);

  // With --keep it stays, and inspect points at it.
  await h.ok(['container', 'checkpoint', '--keep', 'keep']);
  const log = path.join(userdata, 'dump.log');
  assert.ok(fs.existsSync(log), 'dump.log kept with --keep');
  assert.match(fs.readFileSync(log, 'utf8'), /Dumping finished successfully/);
  assert.equal((await h.inspect('keep')).State.CheckpointLog, log);
  const atCheckpoint = (await counts(h, 'keep')).at(-1)!;

  // restore --keep: the checkpoint stays; the container counts on from the checkpoint.
  let skip = (await counts(h, 'keep')).length;
  await h.ok(['container', 'restore', '--keep', 'keep']);
  assert.ok(fs.existsSync(path.join(cpDir, 'inventory.img')), 'checkpoint kept with restore --keep');
  await countsOn(h, 'keep', 5);
  let resumed = (await counts(h, 'keep')).slice(skip);
  assert.equal(resumed[0], atCheckpoint + 1, `first restore continues: ${resumed.join(',')}`);
  const firstRunEnd = resumed.at(-1)!;

  // Stop it and restore the same checkpoint again: it goes back to the checkpointed count.
  await h.ok(['stop', '-t', '0', 'keep']);
  skip = (await counts(h, 'keep')).length;
  await h.ok(['container', 'restore', 'keep']);
  await eventually(async () => (await counts(h, 'keep')).length >= skip + 2);
  resumed = (await counts(h, 'keep')).slice(skip);
  assert.equal(resumed[0], atCheckpoint + 1, `second restore starts again from the checkpoint: ${resumed.join(',')}`);
  assert.ok(resumed[0]! < firstRunEnd);
  // That restore had no --keep: now the checkpoint is gone.
  assert.equal(fs.existsSync(cpDir), false);

  // And a further checkpoint/restore cycle works as usual.
  await countsOn(h, 'keep', 2);
  await h.ok(['container', 'checkpoint', 'keep']);
  const at2 = (await counts(h, 'keep')).at(-1)!;
  await h.ok(['container', 'restore', 'keep']);
  await eventually(async () => (await counts(h, 'keep')).at(-1)! >= at2 + 2);
  const all = await counts(h, 'keep');
  assert.deepEqual(all.slice(all.lastIndexOf(at2), all.lastIndexOf(at2) + 3), [at2, at2 + 1, at2 + 2]);
  await h.ok(['rm', '-f', 'keep']);
});

test('-l/--latest and -a/--all', async () => {
  const a = await h.ok(['run', '-d', '--name', 'all-a', 'busybox', ...FAST_LOOPER]);
  await sleep(20); // distinct creation times
  const b = await h.ok(['run', '-d', '--name', 'all-b', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'all-a', 2);
  await countsOn(h, 'all-b', 2);

  // -l acts on the latest container only.
  await h.ok(['container', 'checkpoint', '-l']);
  assert.equal((await h.inspect('all-b')).State.Checkpointed, true);
  assert.equal((await h.inspect('all-a')).State.Running, true);
  assert.deepEqual(await names(), ['all-a']);
  await h.ok(['container', 'restore', '-l']);
  assert.deepEqual(await names(), ['all-a', 'all-b']);
  assert.equal((await h.inspect('all-b')).State.Restored, true);

  // A created (never started) container is left alone by -a on both sides.
  await sleep(20);
  const c = await h.ok(['create', '--name', 'all-c', 'busybox', ...FAST_LOOPER]);
  const out = (await h.ok(['container', 'checkpoint', '-a'])).split('\n').sort();
  assert.deepEqual(out, [a, b].sort(), 'checkpoint -a prints the IDs of the running containers');
  assert.deepEqual(await names(), []);
  for (const n of ['all-a', 'all-b']) assert.equal((await h.inspect(n)).State.Checkpointed, true);
  assert.equal((await h.inspect('all-c')).State.Status, 'created');
  const at = { a: (await counts(h, 'all-a')).at(-1)!, b: (await counts(h, 'all-b')).at(-1)! };

  const out2 = (await h.ok(['container', 'restore', '-a'])).split('\n').sort();
  assert.deepEqual(out2, [a, b].sort(), 'restore -a prints the IDs of the checkpointed containers');
  assert.deepEqual(await names(), ['all-a', 'all-b']);
  assert.equal((await h.inspect('all-c')).State.Status, 'created');
  void c;
  for (const [n, v] of [['all-a', at.a], ['all-b', at.b]] as const) {
    await eventually(async () => (await counts(h, n)).at(-1)! >= v + 2);
    const all = await counts(h, n);
    assert.equal(all[all.lastIndexOf(v) + 1], v + 1, `${n} continues from ${v}`);
  }
  // Nothing left to restore: restore -a is a no-op that succeeds.
  assert.equal(await h.ok(['container', 'restore', '-a']), '');
  await h.ok(['rm', '-f', 'all-a', 'all-b', 'all-c']);
});

test('--print-stats: Podman-shaped JSON with plausible figures', async () => {
  const id = await h.ok(['run', '-d', '--name', 'stats', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'stats', 2);
  const cp = JSON.parse(await h.ok(['container', 'checkpoint', '--print-stats', 'stats']));
  assert.equal(typeof cp.podman_checkpoint_duration, 'number');
  assert.equal(cp.container_statistics.length, 1);
  const c0 = cp.container_statistics[0];
  assert.equal(c0.Id, id);
  assert.ok(c0.runtime_checkpoint_duration > 0, 'runtime_checkpoint_duration > 0');
  assert.ok(cp.podman_checkpoint_duration > c0.runtime_checkpoint_duration, 'whole operation takes longer than the runtime call');
  assert.ok(cp.podman_checkpoint_duration < 60e6, 'durations are microseconds');
  const cs = c0.criu_statistics;
  for (const k of ['freezing_time', 'frozen_time', 'memdump_time', 'memwrite_time', 'pages_written']) {
    assert.equal(typeof cs[k], 'number', `criu_statistics.${k}`);
    assert.ok(cs[k] > 0, `criu_statistics.${k} > 0 (${cs[k]})`);
  }
  assert.ok(cs.frozen_time >= cs.memdump_time, 'frozen for at least the memory dump');
  assert.ok(cs.frozen_time < c0.runtime_checkpoint_duration, 'frozen within the runtime call');
  assert.equal((await h.inspect('stats')).State.Checkpointed, true);

  const rs = JSON.parse(await h.ok(['container', 'restore', '--print-stats', 'stats']));
  assert.equal(typeof rs.podman_restore_duration, 'number');
  const r0 = rs.container_statistics[0];
  assert.equal(r0.Id, id);
  assert.ok(r0.runtime_restore_duration > 0);
  assert.ok(rs.podman_restore_duration > r0.runtime_restore_duration);
  assert.ok(rs.podman_restore_duration < 60e6);
  assert.ok(r0.criu_statistics.restore_time > 0, 'criu_statistics.restore_time > 0');
  assert.ok(r0.criu_statistics.restore_time < r0.runtime_restore_duration);
  assert.ok(r0.criu_statistics.pages_restored > 0, 'criu_statistics.pages_restored > 0');
  assert.ok(r0.criu_statistics.pages_restored <= cs.pages_written * 2, 'restored about what was written');
  assert.equal((await h.inspect('stats')).State.Running, true);
  await h.ok(['rm', '-f', 'stats']);
});

test('a checkpointed container keeps its rootfs mounted (no sync in the checkpoint); restore reuses it; rm unmounts', async () => {
  const id = await h.ok(['run', '-d', '--network', 'none', '--name', 'mnt', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'mnt', 2);
  const merged = path.join(h.root, 'overlay', id, 'merged');
  await h.ok(['container', 'checkpoint', 'mnt']);
  assert.deepEqual(h.mounts(), [merged], 'only the checkpointed container\'s rootfs');
  const at = (await counts(h, 'mnt')).at(-1)!;
  await h.ok(['container', 'restore', 'mnt']);
  await countsOn(h, 'mnt', 2);
  const c = await counts(h, 'mnt');
  assert.equal(c[c.lastIndexOf(at) + 1], at + 1, 'restored where it stopped');
  assert.deepEqual(h.mounts(), [merged]);
  await h.ok(['container', 'checkpoint', 'mnt']);
  await h.ok(['rm', 'mnt']);
  assert.deepEqual(h.mounts(), [], 'nothing left mounted');
});

test("CRIU's kernel facts are kept between runs (the private CRIU keeps them in /dev, a tmpfs): dump and restore load them", async (t) => {
  const wrapper = fs.readFileSync('/usr/local/lib/ferry/bin/criu', 'utf8');
  if (!wrapper.includes('/usr/local/lib/ferry/criu/')) return skipWith(t, "the host's own CRIU runs here: its cache stays where its build puts it");
  if (fs.statfsSync('/dev').type !== 0x01021994) return skipWith(t, '/dev is not a tmpfs here: CRIU keeps no cache there');
  const id = await h.ok(['run', '-d', '--name', 'kd', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'kd', 2);
  const userdata = path.join(containerDir(h, id), 'userdata');
  const loaded = (log: string) => assert.match(fs.readFileSync(path.join(userdata, log), 'utf8'), /Loaded kdat cache from \/dev\/criu\.kdat/, `${log}: CRIU used the cache`);
  await h.ok(['container', 'checkpoint', '--keep', 'kd']); // --keep: the dump's log stays
  loaded('dump.log');
  await h.ok(['container', 'restore', 'kd']);
  loaded('restore.log');
  assert.equal(fs.statSync('/dev/criu.kdat').mode & 0o777, 0o600);
  await h.ok(['rm', '-f', 'kd']);
});

test('CRIU locks the network by nftables where setup found it (no iptables-restore processes), and the restore follows the dump', async (t) => {
  if (!fs.existsSync(CRIU_DEFAULTS)) return skipWith(t, 'setup found no nftables network lock in this CRIU and kernel: CRIU uses iptables');
  const id = await h.ok(['run', '-d', '--name', 'nf', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'nf', 2);
  await h.ok(['container', 'checkpoint', 'nf']);
  const [inv] = readImage(path.join(containerDir(h, id), 'checkpoint', 'inventory.img'), 'InventoryEntry');
  assert.equal(inv?.networkLockMethod, 1, 'the dump recorded the nftables lock (CRIU: 0 iptables, 1 nftables)');
  await h.ok(['container', 'restore', 'nf']);
  const before = (await counts(h, 'nf')).at(-1)!;
  await countsOn(h, 'nf', 2); // the counter goes on
  assert.ok((await counts(h, 'nf')).at(-1)! >= before + 2);
  await h.ok(['rm', '-f', 'nf']);
});

test("an export in Podman's layout locks the network the way any CRIU can undo (iptables), and imports again", async (t) => {
  if (!fs.existsSync(CRIU_DEFAULTS)) return skipWith(t, 'setup found no nftables network lock here: every dump uses iptables already');
  await h.ok(['run', '-d', '--name', 'pf', 'busybox', ...FAST_LOOPER]); // Ferry's bridge network
  await countsOn(h, 'pf', 2);
  const dir = fs.mkdtempSync(path.join(h.dir, 'pf-'));
  const archive = path.join(dir, 'pf.tar');
  await h.ok(['container', 'checkpoint', '--export', archive, '-c', 'none', '--format', 'podman', 'pf']);
  execFileSync('tar', ['-xf', archive, '-C', dir, 'checkpoint/inventory.img']);
  const [inv] = readImage(path.join(dir, 'checkpoint', 'inventory.img'), 'InventoryEntry');
  assert.equal(inv?.networkLockMethod, 0, "the dump recorded CRIU's default lock (0: iptables), which Podman's CRIU restores without nftables");
  await h.ok(['rm', '-f', 'pf']);
  await h.ok(['container', 'restore', '--import', archive]);
  await countsOn(h, 'pf', 2);
  await h.ok(['rm', '-f', 'pf']);
});

test("CRIU's network lock is skipped for a container with no network of its own, kept with --tcp-established", async () => {
  const id = await h.ok(['run', '-d', '--network', 'none', '--name', 'nl', 'busybox', ...FAST_LOOPER]);
  await countsOn(h, 'nl', 2);
  const userdata = path.join(containerDir(h, id), 'userdata');
  const conf = path.join(userdata, 'criu.conf');
  const read = (log: string) => fs.readFileSync(path.join(userdata, log), 'utf8');
  const usesConf = new RegExp(`Would overwrite RPC settings with values from ${conf.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
  // Ferry's own annotation naming the file is not part of what inspect shows.
  const ann = JSON.parse(await h.ok(['inspect', '--format', '{{json .Config.Annotations}}', 'nl'])) as Record<string, string>;
  assert.equal(ann['org.criu.config'], undefined, JSON.stringify(ann));

  await h.ok(['container', 'checkpoint', '--keep', 'nl']);
  assert.equal(fs.readFileSync(conf, 'utf8'), 'network-lock skip\n', 'the dump was told to skip the lock');
  assert.match(read('dump.log'), usesConf, 'CRIU read the options file');
  assert.equal(readImage(path.join(containerDir(h, id), 'checkpoint', 'inventory.img'), 'InventoryEntry')[0]?.networkLockMethod, 2, 'the dump recorded no lock (2: skip)');
  await h.ok(['container', 'restore', 'nl']);
  assert.match(read('restore.log'), usesConf);
  assert.equal(fs.existsSync(conf), false, 'the restore options do not outlive the restore');
  await countsOn(h, 'nl', 2);

  // Established connections want CRIU's lock: no options file (CRIU names the file it was
  // given whether or not it exists, and a missing one leaves Ferry's default: nftables where
  // setup found it, else CRIU's, iptables).
  await h.ok(['container', 'checkpoint', '--keep', '--tcp-established', 'nl']);
  assert.equal(fs.existsSync(conf), false);
  const [inv] = readImage(path.join(containerDir(h, id), 'checkpoint', 'inventory.img'), 'InventoryEntry');
  assert.equal(inv?.networkLockMethod, fs.existsSync(CRIU_DEFAULTS) ? 1 : 0, 'the dump locked the network (CRIU: 0 iptables, 1 nftables, 2 skip)');
  await h.ok(['container', 'restore', 'nl']);
  await countsOn(h, 'nl', 2);
  await h.ok(['rm', '-f', 'nl']);
});
