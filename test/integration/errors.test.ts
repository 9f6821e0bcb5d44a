import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Host, assertCleanError } from '../helpers/ferry.js';

const h = new Host('err');
before(async () => {
  await h.importBusybox();
  await h.ok(['create', '--name', 'taken', 'busybox', 'true']);
  await h.ok(['run', '-d', '--name', 'up', 'busybox', 'sleep', '1000']);
});
after(() => h.destroy());

/** Everything a failed command must leave as it was. */
function snapshot(): string {
  const ls = (d: string): string[] => {
    try {
      return fs.readdirSync(d).sort();
    } catch {
      return [];
    }
  };
  return JSON.stringify({
    containers: h.containerDirs(),
    overlay: ls(path.join(h.root, 'overlay')),
    volumes: ls(path.join(h.root, 'volumes')),
    images: ls(path.join(h.root, 'images')),
    mounts: h.mounts().sort(),
  });
}

const CASES: [string[], RegExp][] = [
  [['stop', 'ghost'], /no container with name or ID "ghost" found/],
  [['start', 'ghost'], /no container with name or ID "ghost" found/],
  [['rm', 'ghost'], /no container with name or ID "ghost" found/],
  [['inspect', 'ghost'], /no container with name or ID "ghost" found/],
  [['logs', 'ghost'], /no container with name or ID "ghost" found/],
  [['kill', 'ghost'], /no container with name or ID "ghost" found/],
  [['stop', 'up', 'ghost'], /no container with name or ID "ghost" found/],
  [['run', 'nosuchimage', 'true'], /image "nosuchimage" not found/],
  [['create', 'nosuchimage:1', 'true'], /image "nosuchimage:1" not found/],
  [['run', '--name', 'taken', 'busybox', 'true'], /the container name "taken" is already in use/],
  [['create', '--name', 'up', 'busybox', 'true'], /the container name "up" is already in use/],
  [['run', '--name', '-bad', 'busybox', 'true'], /invalid container name "-bad"/],
  [['run', '--name', 'a/b', 'busybox', 'true'], /invalid container name "a\/b"/],
  [['run', '--name', 'sp ace', 'busybox', 'true'], /invalid container name/],
  [['stop', '-t', 'abc', 'up'], /invalid --time "abc"/],
  [['stop', '-t', '-1', 'up'], /invalid --time/],
  [['run', '--stop-timeout', 'x', 'busybox', 'true'], /invalid --stop-timeout "x"/],
  [['run', '-e', 'NOEQ', 'busybox', 'true'], /invalid environment variable "NOEQ"/],
  [['run', '-e', '=v', 'busybox', 'true'], /invalid environment variable "=v"/],
  [['run', '-v', 'bad', 'busybox', 'true'], /invalid volume "bad"/],
  [['run', '-v', 'a:b:c:d', 'busybox', 'true'], /invalid volume "a:b:c:d"/],
  [['run', '-v', 'vol1:relative', 'busybox', 'true'], /container path must be absolute/],
  [['run', '-v', 'vol1:/x:bogus', 'busybox', 'true'], /invalid volume option "bogus"/],
  [['run', '-v', '/no/such/dir:/x', 'busybox', 'true'], /bind mount source \/no\/such\/dir does not exist/],
  [['run', '-v', 'bad@name:/x', 'busybox', 'true'], /invalid volume name "bad@name"/],
  [['run', '--tmpfs', 'rel', 'busybox', 'true'], /invalid --tmpfs "rel"/],
  [['kill', '-s', 'NOPE!', 'up'], /invalid signal "NOPE!"/],
  [['kill', 'taken'], /taken is not running/],
  [['rm', 'up'], /up is running: stop it first or use --force/],
  [['logs'], /give at least one container/],
  [['ps', '--bogus'], /unknown option '--bogus'/],
  [['rmi', 'nosuchimage'], /image "nosuchimage" not found/],
  [['import', '/no/such.tar', 'x'], /\/no\/such.tar: no such file/],
  [['import', '/dev/null', 'Bad Name'], /invalid image name "Bad Name"/],
  [['run', '-it', 'busybox', 'true'], /the input device is not a TTY/],
];

test('bad input: one `Error: ...` line, exit 125, nothing created or changed', async () => {
  for (const [args, re] of CASES) {
    const before = snapshot();
    const r = await h.fails(args);
    try {
      assertCleanError(r, re);
    } catch (e) {
      throw new Error(`ferry ${args.join(' ')}: ${(e as Error).message}`);
    }
    assert.equal(r.stdout, '', `ferry ${args.join(' ')} printed nothing on stdout`);
    assert.equal(snapshot(), before, `ferry ${args.join(' ')} left something behind`);
  }
  // The refusals did not disturb the containers they named.
  assert.equal((await h.inspect('up')).State.Status, 'running');
  assert.equal((await h.inspect('taken')).State.Status, 'created');
  assert.deepEqual(await h.names(), ['taken', 'up']);
});

test('non-root: a clear root-privileges error, nothing touched', async () => {
  const before = snapshot();
  const wrap = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
  for (const args of [['ps'], ['run', '-d', 'busybox', 'true'], ['images']]) {
    const r = await h.fails(args, { wrap });
    assertCleanError(r, /ferry needs root privileges: run it as root/);
  }
  assert.equal(snapshot(), before);
});

/** Runs ferry in a private mount namespace where `file` is hidden (a non-executable /dev/null). */
const hiding = (file: string): string[] => ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount --bind /dev/null ${file} && exec "$@"`, 'sh'];

test('missing host dependency: the error names runc (or conmon) and `npm run setup`, creates nothing', async () => {
  const runc = fs.realpathSync(spawnSync('sh', ['-c', 'command -v runc || echo /usr/sbin/runc'], { encoding: 'utf8', env: { PATH: `${process.env.PATH}:/usr/sbin:/sbin` } }).stdout.trim());
  const before = snapshot();
  for (const args of [['run', '-d', '--name', 'norunc', 'busybox', 'true'], ['run', '--name', 'norunc', 'busybox', 'true'], ['create', '--name', 'norunc', 'busybox', 'true'], ['start', 'taken']]) {
    assertCleanError(await h.fails(args, { wrap: hiding(runc) }), /runc is not installed.*npm run setup/);
  }
  // Even with PATH lacking every sbin dir.
  assertCleanError(await h.fails(['run', '-d', 'busybox', 'true'], { wrap: hiding(runc), env: { PATH: '/usr/bin:/bin' } }), /runc is not installed.*npm run setup/);
  assert.equal(snapshot(), before, 'no half-created container');
  assert.ok(!(await h.names()).includes('norunc'));
  assert.equal((await h.inspect('taken')).State.Status, 'created');
  const conmon = fs.realpathSync(spawnSync('sh', ['-c', 'command -v conmon || echo /usr/bin/conmon'], { encoding: 'utf8' }).stdout.trim());
  assertCleanError(await h.fails(['run', '-d', 'busybox', 'true'], { wrap: hiding(conmon) }), /conmon is not installed.*npm run setup/);
  assert.equal(snapshot(), before);
  // The hiding was private to those commands.
  assert.equal((await h.run(['run', '--rm', 'busybox', 'true'])).code, 0);
});
