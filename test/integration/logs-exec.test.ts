import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, assertCleanError, eventually, spawnFerry } from '../helpers/ferry.js';

const h = new Host('logex');
before(async () => {
  await h.importBusybox();
  await h.ok(['run', '-d', '--name', 'box', 'busybox', 'sleep', '1000']);
});
after(() => h.destroy());

test('logs: stdout to stdout, stderr to stderr, in order; --tail; partial last line', async () => {
  await h.ok(['run', '-d', '--name', 'talk', 'busybox', 'sh', '-c', 'for i in 1 2 3 4 5; do echo out$i; done; echo oops >&2; printf tail-no-newline']);
  await eventually(async () => (await h.inspect('talk')).State.Status === 'exited');
  const r = await h.run(['logs', 'talk']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'out1\nout2\nout3\nout4\nout5\ntail-no-newline');
  assert.equal(r.stderr, 'oops\n');
  assert.equal((await h.run(['logs', '--tail', '2', 'talk'])).stderr, 'oops\n');
  assert.equal((await h.run(['logs', '--tail', '2', 'talk'])).stdout, 'tail-no-newline', 'last two entries: oops (stderr) and the partial line');
  assert.equal((await h.run(['logs', '-n', '3', 'talk'])).stdout, 'out5\ntail-no-newline');
  const zero = await h.run(['logs', '--tail', '0', 'talk']);
  assert.equal(zero.stdout + zero.stderr, '');
  assert.equal((await h.run(['logs', '--tail', '100', 'talk'])).stdout, r.stdout);
  const ts = (await h.ok(['logs', '-t', '--tail', '3', 'talk'])).split('\n');
  assert.match(ts[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+.* out5$/);
  assertCleanError(await h.fails(['logs', '--tail', 'x', 'talk']), /invalid --tail "x"/);
  assertCleanError(await h.fails(['logs', '--tail', '-1', 'talk']), /invalid --tail/);
  await h.ok(['rm', 'talk']);
});

test('logs -f follows a running container until it exits', async () => {
  await h.ok(['run', '-d', '--name', 'slow', 'busybox', 'sh', '-c', 'echo first; sleep 1; for i in 2 3 4; do echo line$i; sleep 0.3; done; exit 3']);
  const t0 = Date.now();
  const f = spawnFerry(h, ['logs', '-f', 'slow']);
  // While the container runs, logs -f is still going and has printed what exists so far.
  await eventually(async () => (await h.logs('slow')).includes('first'));
  assert.equal(f.child.exitCode, null, 'logs -f has not returned while the container runs');
  const r = await f.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'first\nline2\nline3\nline4\n');
  assert.ok(Date.now() - t0 >= 1500, 'it returned only after the container exited');
  assert.equal((await h.inspect('slow')).State.Status, 'exited');
  // -f on an exited container prints everything and returns at once.
  const again = await h.run(['logs', '-f', 'slow'], { timeoutMs: 10_000 });
  assert.equal(again.stdout, 'first\nline2\nline3\nline4\n');
  // --tail with -f
  assert.equal((await h.run(['logs', '-f', '--tail', '1', 'slow'])).stdout, 'line4\n');
  await h.ok(['rm', 'slow']);
});

test('exec passes the exit code through and streams output', async () => {
  const r = await h.run(['exec', 'box', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
  assert.equal(r.code, 7);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
  assert.equal((await h.run(['exec', 'box', 'true'])).code, 0);
  assert.equal((await h.run(['exec', 'box', 'false'])).code, 1);
  // The command runs inside the container: its hostname and PID namespace.
  assert.equal(await h.ok(['exec', 'box', 'hostname']), (await h.inspect('box')).Config.Hostname);
  assert.match(await h.ok(['exec', 'box', 'ps']), /^\s*1 .*sleep 1000/m);
});

test('exec -i passes stdin; without -i stdin is not connected', async () => {
  assert.equal(await h.ok(['exec', '-i', 'box', 'sh', '-c', 'cat; echo done'], { input: 'line one\nline two\n' }), 'line one\nline two\ndone');
  assert.equal(await h.ok(['exec', '-i', 'box', 'wc', '-l'], { input: 'a\nb\nc\n' }), '3');
  assert.equal(await h.ok(['exec', 'box', 'sh', '-c', 'cat; echo done'], { input: 'ignored\n' }), 'done');
});

test('exec -e sets variables, -w the directory; the container env is inherited', async () => {
  assert.equal(await h.ok(['exec', '-e', 'FOO=bar', '-e', 'X=a=b', 'box', 'sh', '-c', 'echo $FOO $X']), 'bar a=b');
  assert.match(await h.ok(['exec', 'box', 'sh', '-c', 'echo $PATH']), /\/bin/);
  assert.equal(await h.ok(['exec', '-w', '/etc', 'box', 'pwd']), '/etc');
  assertCleanError(await h.fails(['exec', '-e', 'NOEQ', 'box', 'true']), /invalid environment variable "NOEQ".*KEY=VALUE/);
});

test('exec errors: missing command 127, not executable 126, stopped container, no command', async () => {
  assertCleanError(await h.fails(['exec', 'box', 'no-such-cmd']), /no-such-cmd.*not found/, 127);
  assertCleanError(await h.fails(['exec', 'box', '/etc/passwd']), /permission denied/, 126);
  await h.ok(['create', '--name', 'idle', 'busybox', 'true']);
  assertCleanError(await h.fails(['exec', 'idle', 'true']), /idle is not running/);
  assertCleanError(await h.fails(['exec', 'box']), /needs a command/);
  assertCleanError(await h.fails(['exec', 'ghost', 'true']), /no container with name or ID "ghost"/);
  await h.ok(['rm', 'idle']);
});
