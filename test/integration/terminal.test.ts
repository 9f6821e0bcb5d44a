/**
 * Interactive containers through a real terminal (tmux): run -it, the terminal's size, detach
 * and attach, exec -it, a terminal container checkpointed and restored (in place and through
 * an archive) then attached; stdin through a pipe with run -i; the refusals.
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { FERRY_BIN, Host, assertCleanError, busyboxTarball, eventually } from '../helpers/ferry.js';
import { HostPair, hasSshd } from '../helpers/hosts.js';
import { Terminal } from '../helpers/terminal.js';

const h = new Host('tty');
const terms: Terminal[] = [];
const term = (name: string): Terminal => {
  const t = new Terminal(name);
  terms.push(t);
  return t;
};

before(() => h.importBusybox());
afterEach(() => {
  for (const t of terms.splice(0)) t.kill();
});
after(async () => {
  for (const t of terms.splice(0)) t.kill();
  await h.destroy();
});

const PROMPT = /\/ #\s*$/; // the shell's prompt, last on the screen

test('run -it: typing into a shell, its terminal size at start and after a resize, its exit code', async () => {
  const t = term('run').ferry(h, ['run', '-it', '--name', 'it1', 'busybox', 'sh'], { width: 100, height: 30 });
  await t.waitFor(PROMPT);
  t.line('echo hello $((6*7)); tty; stty size');
  await t.waitFor(/^hello 42\n\/dev\/pts\/\d+\n30 100$/m);
  await t.resizeShell(120, 40);
  await t.resizeShell(80, 24);
  // Ctrl-C reaches the container's shell (raw terminal), not ferry.
  t.line('sleep 30');
  // Only once sleep runs: a ^C that the shell's line editor reads first is just a character.
  await eventually(async () => (await h.run(['exec', 'it1', 'pidof', 'sleep'])).code === 0, 10_000);
  t.keys('C-c');
  t.line('echo after-interrupt');
  await t.waitFor(/^after-interrupt$/m);
  t.line('exit 3');
  assert.equal(await t.exitStatus(), 3, 'the container\'s exit code is ferry\'s');
  const i = await h.inspect('it1');
  assert.equal(i.State.Status, 'exited');
  assert.equal(i.State.ExitCode, 3);
  assert.equal(i.Config.Tty, true);
  assert.equal(i.Config.OpenStdin, true);
  // logs of a terminal container: what the terminal showed.
  assert.match((await h.run(['logs', 'it1'])).stdout, /hello 42\r?\n/);
  await h.ok(['rm', 'it1']);
  // run -it --rm with a command: its code, and the container is gone.
  // (Read before it exits: tmux may not keep what a pane showed just before its command exits.)
  const q = term('rm').ferry(h, ['run', '-it', '--rm', 'busybox', 'sh', '-c', 'echo quick; sleep 2; exit 5']);
  await q.waitFor(/^quick$/m);
  assert.equal(await q.exitStatus(), 5);
  assert.deepEqual(await h.names(), [], 'the --rm container is gone');
});

test('detach with ctrl-p ctrl-q leaves it running; attach again, with its own detach keys', async () => {
  const t = term('det').ferry(h, ['run', '-it', '--name', 'dt', 'busybox', 'sh']);
  await t.waitFor(PROMPT);
  t.line('X=kept-$((40+2))');
  t.keys('C-p', 'C-q');
  assert.equal(await t.exitStatus(), 0, 'detaching is no error');
  assert.equal((await h.inspect('dt')).State.Status, 'running');
  const a = term('att').ferry(h, ['attach', '--detach-keys', 'ctrl-x,d', 'dt'], { width: 90, height: 20 });
  // The attach sets the size as it connects: a line typed before that sees the old one.
  await eventually(async () => {
    a.line('echo X=$X; stty size');
    return a.waitFor(/^X=kept-42\n20 90$/m, 1000).then(
      () => true,
      () => false,
    );
  }, 15_000);
  a.keys('C-p', 'C-q', 'C-u'); // not the detach keys of this attach: typed into the shell (then the line cleared)
  a.line('echo still-attached');
  await a.waitFor(/^still-attached$/m);
  a.keys('C-x', 'd');
  assert.equal(await a.exitStatus(), 0);
  assert.equal((await h.inspect('dt')).State.Status, 'running');
  // attach --no-stdin: output only; the container's exit ends it with the container's code.
  const o = term('out').ferry(h, ['attach', '--no-stdin', 'dt']);
  // (Written again until it shows: the attach may not be connected yet.)
  await eventually(async () => {
    await h.ok(['exec', 'dt', 'sh', '-c', 'echo from-exec > /proc/1/fd/1']);
    return o.waitFor(/from-exec$/m, 300).then(() => true, () => false);
  });
  await h.ok(['kill', 'dt']);
  assert.equal(await o.exitStatus(), 137);
  assert.equal((await h.inspect('dt')).State.ExitCode, 137);
  await h.ok(['rm', 'dt']);
  // create -it, then start -ai: attached before its shell starts, detached the same way.
  await h.ok(['create', '-it', '--name', 'st', 'busybox', 'sh']);
  const st = term('start').ferry(h, ['start', '-ai', 'st'], { width: 88, height: 26 });
  await st.waitFor(PROMPT);
  st.line('stty size');
  await st.waitFor(/^26 88$/m);
  st.keys('C-p', 'C-q');
  assert.equal(await st.exitStatus(), 0);
  assert.equal((await h.inspect('st')).State.Status, 'running');
  await h.ok(['rm', '-f', 'st']);
});

test('exec -it: a shell with its own terminal, its size, detach and exit code; exec -t without a terminal', async () => {
  await h.ok(['run', '-dit', '--name', 'ex', 'busybox', 'sh']);
  const t = term('exec').ferry(h, ['exec', '-it', 'ex', 'sh'], { width: 70, height: 25 });
  await t.waitFor(PROMPT);
  t.line('tty; stty size; echo pid1=$(cat /proc/1/comm)');
  await t.waitFor(/^\/dev\/pts\/\d+\n25 70\npid1=sh$/m);
  await t.resizeShell(75, 21);
  // A checkpoint would end the exec session unseen (CRIU dumps the container's init and its
  // descendants): refused before anything is frozen, and the session goes on.
  assertCleanError(await h.fails(['container', 'checkpoint', 'ex']), /cannot be checkpointed while an exec session runs in it \(process \d+, sh\): end it first; nothing was frozen/);
  assert.equal((await h.inspect('ex')).State.Status, 'running');
  t.line('echo session-alive');
  await t.waitFor(/^session-alive$/m);
  t.line('exit 4');
  assert.equal(await t.exitStatus(), 4);
  assert.equal((await h.inspect('ex')).State.Status, 'running', 'the container stays');
  // Detaching from an exec session leaves it running in the container.
  const d = term('exec2').ferry(h, ['exec', '-it', '--detach-keys', 'ctrl-x,d', 'ex', 'sh']);
  await d.waitFor(PROMPT);
  d.line('sleep 1234');
  d.keys('C-x', 'd');
  assert.equal(await d.exitStatus(), 0);
  // (the shell may start sleep just after the detach keys went by)
  await eventually(async () => /^sleep 1234$/m.test(await h.ok(['exec', 'ex', 'ps', '-o', 'args'])), 10_000);
  // -t without a terminal of ours: the command still gets one.
  const r = await h.run(['exec', '-t', 'ex', 'sh', '-c', 'tty; exit 3']);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stdout, /^\/dev\/pts\/\d+\r\n$/);
  assertCleanError(await h.fails(['exec', '-t', 'ex', 'no-such-cmd']), /no-such-cmd.*not found/, 127);
  await h.ok(['rm', '-f', 'ex']);
});

test('a run -dit container checkpointed and restored keeps its terminal; also through --export/--import', async () => {
  await h.ok(['run', '-dit', '--name', 'cr', 'busybox', 'sh']);
  const a = term('cr1').ferry(h, ['attach', 'cr']);
  a.line('Y=before-checkpoint; echo set');
  await a.waitFor(/^set$/m);
  a.keys('C-p', 'C-q');
  assert.equal(await a.exitStatus(), 0);
  await h.ok(['container', 'checkpoint', 'cr']);
  assert.equal((await h.inspect('cr')).State.Status, 'exited');
  await h.ok(['container', 'restore', 'cr']);
  const b = term('cr2').ferry(h, ['attach', 'cr'], { width: 66, height: 22 });
  b.line('echo Y=$Y; tty; stty size');
  await b.waitFor(/^Y=before-checkpoint\n\/dev\/pts\/\d+\n22 66$/m);
  b.keys('C-p', 'C-q');
  assert.equal(await b.exitStatus(), 0);
  // Through an archive: a new container made from it keeps the shell and its terminal.
  const archive = path.join(h.dir, 'cr.tar.gz');
  await h.ok(['container', 'checkpoint', '--export', archive, 'cr']);
  await h.ok(['rm', 'cr']);
  await h.ok(['container', 'restore', '--import', archive]);
  const c = term('cr3').ferry(h, ['attach', 'cr']);
  c.line('echo Y=$Y again');
  await c.waitFor(/^Y=before-checkpoint again$/m);
  c.line('exit 6');
  assert.equal(await c.exitStatus(), 6);
  await eventually(async () => (await h.inspect('cr')).State.Status === 'exited');
  assert.equal((await h.inspect('cr')).State.ExitCode, 6);
  await h.ok(['rm', 'cr']);
});

test('a terminal container migrated to another host keeps its shell and terminal there', { skip: hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)' }, async () => {
  const pair = new HostPair();
  const { a, b } = pair;
  try {
    await pair.setup();
    for (const x of [a, b]) await x.ok(['import', busyboxTarball(), 'busybox']);
    await a.ok(['run', '-dit', '--name', 'mig', 'busybox', 'sh']);
    await a.ok(['exec', 'mig', 'sh', '-c', 'echo Z=on-a > /tmp/z']);
    await a.ok(['migrate', 'mig', b.url(), '--remote-command', b.remoteCommand(), ...pair.sshArgs()]);
    const t = term('mig').start(['nsenter', `--net=/run/netns/${b.netns}`, FERRY_BIN, ...b.args(), 'attach', 'mig'], { width: 77, height: 21 });
    t.line('cat /tmp/z; tty; stty size');
    await t.waitFor(/^Z=on-a\n\/dev\/pts\/\d+\n21 77$/m);
    t.line('exit 9');
    assert.equal(await t.exitStatus(), 9);
  } finally {
    for (const t of terms.splice(0)) t.kill(); // its shell names B's directories: before B goes
    await pair.destroy();
  }
});

test('run -i without a terminal streams stdin: pipes work, stdout and stderr apart, exit code', async () => {
  const before = await h.names();
  const r = await h.run(['run', '-i', '--rm', 'busybox', 'cat'], { input: 'hi\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hi\n');
  const s = await h.run(['run', '-i', '--rm', 'busybox', 'sh', '-c', 'read a; read b; echo "out $a"; echo "err $b" >&2; wc -l; exit 3'], { input: 'one\ntwo\nx\ny\nz\n' });
  assert.equal(s.code, 3);
  assert.equal(s.stdout, 'out one\n3\n');
  assert.equal(s.stderr, 'err two\n');
  // Without -i the container's stdin is empty.
  assert.equal(await h.ok(['run', '--rm', 'busybox', 'sh', '-c', 'cat; echo end'], { input: 'ignored\n' }), 'end');
  // start -ai of a created -i container takes stdin the same way.
  await h.ok(['create', '-i', '--name', 'later', 'busybox', 'sh', '-c', 'cat; exit 2']);
  const l = await h.run(['start', '-ai', 'later'], { input: 'late input\n' });
  assert.equal(l.code, 2, l.stderr);
  assert.equal(l.stdout, 'late input\n');
  await h.ok(['rm', 'later']);
  // A -di container's open stdin survives a checkpoint and restore: attach feeds it afterwards.
  await h.ok(['run', '-di', '--name', 'reader', 'busybox', 'sh', '-c', 'while read l; do echo "got $l"; done; exit 7']);
  await h.ok(['container', 'checkpoint', 'reader']);
  await h.ok(['container', 'restore', 'reader']);
  const a = await h.run(['attach', 'reader'], { input: 'after restore\n' });
  assert.equal(a.code, 7, a.stderr);
  assert.equal(a.stdout, 'got after restore\n');
  await h.ok(['rm', 'reader']);
  assert.deepEqual(await h.names(), before, 'the --rm containers are gone');
});

test('-t -i without a terminal is refused before anything is made; bad detach keys too', async () => {
  const before = h.containerDirs();
  assertCleanError(await h.fails(['run', '-it', 'busybox', 'sh']), /^Error: the input device is not a TTY/);
  assertCleanError(await h.fails(['run', '-t', '-i', '--name', 'x', 'busybox', 'sh']), /the input device is not a TTY/);
  assertCleanError(await h.fails(['run', '-it', '--detach-keys', 'ctrl-', 'busybox', 'sh']), /invalid detach keys "ctrl-"/);
  // Without the attach helper (installed by setup): said at once, nothing made.
  assertCleanError(await h.fails(['run', '-i', 'busybox', 'cat'], { input: 'x\n', env: { FERRY_ATTACH: path.join(h.dir, 'no-such-helper') } }), /no-such-helper is missing .*run `npm run setup`/);
  assert.deepEqual(h.containerDirs(), before, 'nothing created');
  await h.ok(['run', '-dit', '--name', 'bg', 'busybox', 'sh']);
  assertCleanError(await h.fails(['exec', '-it', 'bg', 'sh']), /the input device is not a TTY/);
  assertCleanError(await h.fails(['attach', 'bg']), /the input device is not a TTY/);
  assertCleanError(await h.fails(['attach', '--no-stdin', '--detach-keys', 'ctrl-1', 'bg']), /invalid detach keys/);
  await h.ok(['stop', '-t', '0', 'bg']);
  assertCleanError(await h.fails(['attach', '--no-stdin', 'bg']), /container bg is not running/);
  await h.ok(['rm', 'bg']);
});
