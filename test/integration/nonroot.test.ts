// A container whose process runs as a user other than root: CRIU reads every task's rlimits,
// which for another user's task needs CAP_SYS_RESOURCE; hosts that withhold it from root (as
// these machines do) could not checkpoint such a container at all. Ferry's CRIU answers those
// reads from /proc/PID/limits (scripts/criu-rlimits.c, preloaded by setup's wrapper).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Host, buildFixture, eventually, lastCount } from '../helpers/ferry.js';

const h = new Host('nonroot');
let bin = '';
before(async () => {
  await h.importBusybox();
  bin = path.dirname(buildFixture('asuser', path.join(h.dir, 'bin')));
});
after(() => h.destroy());

const COUNTER = ['/bin/sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'];

/** The users of the container's processes, as its own ps reports them. */
async function users(name: string): Promise<string[]> {
  const out = await h.ok(['exec', name, 'ps', '-o', 'user,args']);
  return out.split('\n').slice(1).filter((l) => l && !/ps -o/.test(l)).map((l) => l.trim().split(/\s+/)[0]!);
}

test('a process running as uid 33 checkpoints and restores in place, and through an archive', async () => {
  await h.ok(['run', '-d', '--name', 'www', '-v', `${bin}:/opt:ro`, 'busybox', '/opt/asuser', '33', ...COUNTER]);
  await eventually(async () => (await lastCount(h, 'www')) >= 2);
  assert.deepEqual([...new Set(await users('www'))], ['33'], 'every process of the container runs as uid 33');

  await h.ok(['container', 'checkpoint', 'www']);
  const at = await lastCount(h, 'www');
  await h.ok(['container', 'restore', 'www']);
  await eventually(async () => (await lastCount(h, 'www')) >= at + 2);
  const lines = (await h.logs('www')).map(Number);
  const after = lines.slice(lines.indexOf(at) + 1);
  assert.ok(after.length >= 2 && after.every((n, i) => n === at + 1 + i), `the count continued: ${lines.join(',')}`);
  assert.deepEqual([...new Set(await users('www'))], ['33'], 'still uid 33 after the restore');

  const archive = path.join(h.dir, 'www.tar.zst');
  await h.ok(['container', 'checkpoint', 'www', '--export', archive]);
  await h.ok(['container', 'restore', '--import', archive, '-n', 'www2', '--allow-host-mounts']);
  const at2 = await lastCount(h, 'www2');
  await eventually(async () => (await lastCount(h, 'www2')) >= at2 + 2);
  await h.ok(['rm', '-f', 'www', 'www2']);
});
