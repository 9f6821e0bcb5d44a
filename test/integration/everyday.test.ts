/**
 * The everyday commands (issue 18) against real containers: stats (numbers move when the
 * container burns CPU or allocates memory; Podman's columns and JSON keys), top (Podman's
 * descriptors and the container's own ps), diff (exact A/C/D lines, as Podman prints them for
 * the same changes), cp both ways (running and stopped, tar archives with `-`, symlinks resolved
 * inside the container), rename, restart, port for every running container.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FERRY_BIN, Host, assertCleanError, buildFixture, eventually } from '../helpers/ferry.js';
import { Podman, hasPodman } from '../helpers/podman.js';

const h = new Host('every');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-every-'));
const NONE = ['--network', 'none'];
const SLEEPER = ['sh', '-c', 'while true; do sleep 1; done'];
const CHANGES = 'echo x > /newf; rm /etc/passwd; echo y >> /etc/group; mkdir /d; touch /d/e; rm -r /var; rm -r /usr && mkdir /usr && echo > /usr/x';

before(async () => {
  buildFixture('memhog', path.join(tmp, 'bin'));
  await h.importBusybox();
});
after(async () => {
  await h.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** stats --no-stream --format json for one container. */
async function stats(ref: string): Promise<Record<string, string>> {
  const [s] = JSON.parse(await h.ok(['stats', '--no-stream', '--format', 'json', ref]));
  return s;
}

/** "626.7kB" -> bytes */
function bytes(s: string): number {
  const m = /^([\d.]+)([kMGT]?)B$/.exec(s.trim())!;
  return Number(m[1]) * ({ '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12 } as Record<string, number>)[m[2]!]!;
}

test('stats: CPU % and memory move with what the container does; PIDs counted', async () => {
  await h.ok(['run', '-d', '--name', 'idle', ...NONE, '--memory', '128m', 'busybox', 'sh', '-c', 'sleep 1000 & sleep 1000 & wait']);
  await h.ok(['run', '-d', '--name', 'burn', ...NONE, 'busybox', 'sh', '-c', 'while :; do :; done']);
  await new Promise((r) => setTimeout(r, 1500));
  const idle = await stats('idle');
  const burn = await stats('burn');
  assert.deepEqual(Object.keys(idle), ['id', 'name', 'cpu_time', 'cpu_percent', 'avg_cpu', 'mem_usage', 'mem_percent', 'net_io', 'block_io', 'pids']);
  assert.ok(parseFloat(burn.cpu_percent!) > 25, `a busy loop uses CPU: ${burn.cpu_percent}`);
  assert.ok(parseFloat(idle.cpu_percent!) < 5, `sleepers do not: ${idle.cpu_percent}`);
  assert.equal(idle.pids, '3');
  assert.equal(idle.net_io, '0B / 0B');
  assert.match(idle.mem_usage!, / \/ 134.2MB$/, 'the limit is --memory');
  // Memory: 48 MiB more once the hog has allocated and touched it.
  const before = bytes(idle.mem_usage!.split(' / ')[0]!);
  await h.ok(['cp', path.join(tmp, 'bin', 'memhog'), 'idle:/memhog']);
  await h.ok(['exec', 'idle', 'sh', '-c', '/memhog 48 >/dev/null 2>&1 &']);
  await eventually(async () => bytes((await stats('idle')).mem_usage!.split(' / ')[0]!) > before + 45e6, 15_000);
  assert.equal((await stats('idle')).pids, '4');
  // The table has Podman's columns; with no names, every running container.
  const table = await h.ok(['stats', '--no-stream']);
  assert.match(table.split('\n')[0]!, /^ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET IO\s+BLOCK IO\s+PIDS\s+CPU TIME\s+AVG CPU %$/);
  assert.equal(table.split('\n').length, 3);
  await h.ok(['rm', '-f', 'burn']);
  assertCleanError(await h.run(['stats', '--no-stream', 'nosuch']), /no container with name or ID "nosuch"/);
});

test('top: Podman\'s default columns, descriptors, and ps options through the container\'s ps', async () => {
  const rows = (await h.ok(['top', 'idle'])).split('\n');
  assert.match(rows[0]!, /^USER\s+PID\s+PPID\s+%CPU\s+ELAPSED\s+TTY\s+TIME\s+COMMAND$/);
  assert.match(rows[1]!, /^root\s+1\s+0\s+[\d.]+\s+\S+\s+\?\s+\S+\s+sh -c sleep 1000 & sleep 1000 & wait$/);
  assert.ok(rows.some((r) => /^root\s+\d+\s+1\s.*sleep 1000$/.test(r)), rows.join('\n'));
  const pa = (await h.ok(['top', 'idle', 'pid,args'])).split('\n');
  assert.match(pa[0]!, /^PID\s+COMMAND$/);
  assert.match(pa[1]!, /^1\s+sh -c sleep 1000/);
  const ps = (await h.ok(['top', 'idle', '-o', 'pid,comm'])).split('\n');
  assert.match(ps[0]!, /^PID\s+COMMAND$/);
  assert.ok(ps.some((r) => /^\d+\s+ps$/.test(r)), 'the container\'s own ps ran');
  assertCleanError(await h.run(['top', 'idle', 'bogus']), /unknown top descriptor "bogus"/);
});

test('diff: exact A/C/D lines, as Podman prints them for the same changes', async (t) => {
  await h.ok(['run', '-d', '--name', 'chg', ...NONE, 'busybox', ...SLEEPER]);
  await h.ok(['exec', 'chg', 'sh', '-c', CHANGES]);
  const lines = await h.ok(['diff', 'chg']);
  assert.equal(lines, ['A /d', 'A /d/e', 'C /etc', 'C /etc/group', 'D /etc/passwd', 'A /newf', 'D /usr', 'A /usr/x', 'D /var'].join('\n'));
  // The same once stopped (the upper dir is what a checkpoint's rootfs part carries).
  await h.ok(['stop', '-t', '0', 'chg']);
  assert.equal(await h.ok(['diff', 'chg']), lines);
  assert.deepEqual(JSON.parse(await h.ok(['diff', '--format', 'json', 'chg'])), { changed: ['/etc', '/etc/group'], added: ['/d', '/d/e', '/newf', '/usr/x'], deleted: ['/etc/passwd', '/usr', '/var'] });
  if (!hasPodman()) return t.skip('podman is not installed');
  const p = new Podman('evdiff');
  try {
    await p.importBusybox();
    await p.ok(['run', '-d', '--name', 'chg', 'localhost/busybox', ...SLEEPER]);
    await p.ok(['exec', 'chg', 'sh', '-c', CHANGES]);
    assert.equal((await p.ok(['diff', 'chg'])).trim(), lines);
  } finally {
    await p.destroy();
  }
});

test('cp: both ways, running and stopped, archives with -, symlinks resolved inside the container', async () => {
  const src = path.join(tmp, 'src');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
  fs.writeFileSync(path.join(src, 'sub', 'b.bin'), Buffer.from([0, 1, 2, 255]));
  fs.chmodSync(path.join(src, 'a.txt'), 0o640);
  // Into a running container: a directory lands under its own name in an existing one.
  await h.ok(['cp', src, 'idle:/tmp']);
  assert.equal(await h.ok(['exec', 'idle', 'cat', '/tmp/src/a.txt']), 'alpha');
  assert.equal(await h.ok(['exec', 'idle', 'stat', '-c', '%a', '/tmp/src/a.txt']), '640');
  // SRC/. copies a directory's contents, both ways.
  await h.ok(['cp', `${src}/.`, 'idle:/contents']);
  assert.equal(await h.ok(['exec', 'idle', 'ls', '/contents']), 'a.txt\nsub');
  const contents = path.join(tmp, 'contents');
  await h.ok(['cp', 'idle:/tmp/src/.', contents]);
  assert.deepEqual(fs.readdirSync(contents).sort(), ['a.txt', 'sub']);
  // A file to a new name; then back out to the host, byte for byte.
  await h.ok(['cp', path.join(src, 'sub', 'b.bin'), 'idle:/b.copy']);
  const back = path.join(tmp, 'back.bin');
  await h.ok(['cp', 'idle:/b.copy', back]);
  assert.deepEqual(fs.readFileSync(back), Buffer.from([0, 1, 2, 255]));
  // A symlink in the container that points "out" stays inside it: /esc -> ../../../../<tmp>
  await h.ok(['exec', 'idle', 'sh', '-c', `mkdir -p ${tmp} && ln -s ../../../../../..${tmp} /esc`]);
  await h.ok(['cp', path.join(src, 'a.txt'), 'idle:/esc/planted']);
  assert.ok(!fs.existsSync(path.join(tmp, 'planted')), 'nothing was written outside the container');
  assert.equal(await h.ok(['exec', 'idle', 'cat', `${tmp}/planted`]), 'alpha');
  await h.ok(['exec', 'idle', 'ln', '-s', '/etc', '/etclink']);
  const grp = path.join(tmp, 'group');
  await h.ok(['cp', 'idle:/etclink/group', grp]);
  assert.equal(fs.readFileSync(grp, 'utf8'), await h.ok(['exec', 'idle', 'cat', '/etc/group']).then((s) => `${s}\n`));
  // Archives: out to stdout, in from stdin.
  const tarOut = spawnSync(FERRY_BIN, [...h.args(), 'cp', 'idle:/tmp/src', '-'], { maxBuffer: 1 << 24 });
  assert.equal(tarOut.status, 0, tarOut.stderr.toString());
  const listed = spawnSync('tar', ['-tf', '-'], { input: tarOut.stdout }).stdout.toString().split('\n').filter(Boolean).sort();
  assert.deepEqual(listed, ['src/', 'src/a.txt', 'src/sub/', 'src/sub/b.bin']);
  const tarIn = spawnSync('tar', ['-C', src, '-cf', '-', 'a.txt', 'sub']).stdout;
  await h.ok(['exec', 'idle', 'mkdir', '/in']);
  const r = spawnSync(FERRY_BIN, [...h.args(), 'cp', '-', 'idle:/in'], { input: tarIn });
  assert.equal(r.status, 0, r.stderr.toString());
  assert.equal(await h.ok(['exec', 'idle', 'cat', '/in/a.txt']), 'alpha');
  // An archive that writes through its own symlink is refused, nothing copied.
  const evil = path.join(tmp, 'evil');
  fs.mkdirSync(evil);
  fs.symlinkSync('/etc', path.join(evil, 'l'));
  const bad = spawnSync('tar', ['-cf', '-', '-C', evil, 'l', '-C', src, '--transform=s,^a\\.txt$,l/evil,', 'a.txt']).stdout;
  assert.deepEqual(spawnSync('tar', ['-tf', '-'], { input: bad }).stdout.toString().split('\n').filter(Boolean), ['l', 'l/evil']);
  const rb = spawnSync(FERRY_BIN, [...h.args(), 'cp', '-', 'idle:/in'], { input: bad });
  assert.equal(rb.status, 125, rb.stderr.toString());
  assert.match(rb.stderr.toString(), /^Error: bad archive on stdin/);
  assert.equal((await h.run(['exec', 'idle', 'test', '-e', '/etc/evil'])).code, 1, 'nothing written through the link');
  // A stopped container: its rootfs is mounted for the copy and unmounted after.
  await h.ok(['cp', path.join(src, 'a.txt'), 'chg:/stopped.txt']);
  assert.match(await h.ok(['diff', 'chg']), /^A \/stopped.txt$/m);
  const out2 = path.join(tmp, 'out2');
  await h.ok(['cp', 'chg:/newf', out2]);
  assert.equal(fs.readFileSync(out2, 'utf8'), 'x\n');
  const chgId = (await h.inspect('chg')).Id;
  assert.ok(!h.mounts().some((m) => m.includes(chgId)), 'its rootfs is unmounted after the copy');
  // Bad input: one line each, nothing created.
  assertCleanError(await h.run(['cp', 'idle:/nonexist', path.join(tmp, 'zz')]), /"\/nonexist" could not be found on container idle/);
  assertCleanError(await h.run(['cp', path.join(tmp, 'nonexist'), 'idle:/x']), /could not be found on the host/);
  assertCleanError(await h.run(['cp', path.join(tmp, 'a'), path.join(tmp, 'b')]), /one of the paths must be in a container/);
  assertCleanError(await h.run(['cp', 'nosuch:/x', tmp]), /no container with name or ID "nosuch"/);
  assertCleanError(await h.run(['cp', path.join(src, 'a.txt'), 'idle:/no/such/dir/x']), /could not be found on container idle: create the directory first/);
  assert.ok(!fs.existsSync(path.join(tmp, 'zz')));
});

test('rename, restart, port for every running container', async () => {
  await h.ok(['rename', 'chg', 'changed']);
  assert.equal((await h.inspect('changed')).Name, 'changed');
  assertCleanError(await h.run(['inspect', 'chg']), /no container with name or ID "chg"/);
  assertCleanError(await h.run(['rename', 'changed', 'idle']), /the container name "idle" is already in use/);
  assertCleanError(await h.run(['rename', 'changed', 'bad/name']), /invalid container name "bad\/name"/);
  // restart: a running one gets a new process; a stopped one starts.
  const pid = (await h.inspect('idle')).State.Pid;
  await h.ok(['restart', '-t', '0', 'idle']);
  const after = (await h.inspect('idle')).State;
  assert.equal(after.Status, 'running');
  assert.notEqual(after.Pid, pid);
  await h.ok(['restart', 'changed']);
  assert.equal((await h.inspect('changed')).State.Status, 'running');
  // port: every running container's mappings, each under its short ID.
  const port = 20000 + Math.floor(Math.random() * 20000);
  const id1 = await h.ok(['run', '-d', '--name', 'web1', '-p', `127.0.0.1:${port}:80`, 'busybox', ...SLEEPER]);
  const id2 = await h.ok(['run', '-d', '--name', 'web2', '-p', `127.0.0.1:${port + 1}:81/udp`, 'busybox', ...SLEEPER]);
  const all = await h.ok(['port']);
  assert.match(all, new RegExp(`^${id1.slice(0, 12)}\\n80/tcp -> 127\\.0\\.0\\.1:\\d+$`, 'm'));
  assert.match(all, new RegExp(`^${id2.slice(0, 12)}\\n81/udp -> 127\\.0\\.0\\.1:\\d+$`, 'm'));
  assert.equal(await h.ok(['port', '--all']), all);
  assert.match(await h.ok(['port', 'web2']), /^81\/udp -> 127\.0\.0\.1:\d+$/);
  // stats' NET IO counts the container's own interfaces (its network namespace).
  const gw = (await h.inspect('web1')).NetworkSettings.Gateway;
  const sentBefore = bytes((await stats('web1')).net_io!.split(' / ')[1]!);
  await h.run(['exec', 'web1', 'sh', '-c', `for i in 1 2 3 4 5; do nc -w 1 ${gw} 9 </dev/null 2>/dev/null; done; true`]);
  const sentAfter = bytes((await stats('web1')).net_io!.split(' / ')[1]!);
  assert.ok(sentAfter > sentBefore, `sent bytes grew: ${sentBefore} -> ${sentAfter}`);
  await h.ok(['rm', '-fa']);
});

test('--restart: on-failure:2 runs three times; always restarts until stopped; stop, kill and checkpoint are not failures', async () => {
  await h.ok(['run', '-d', '--name', 'fails', ...NONE, '--restart', 'on-failure:2', 'busybox', 'sh', '-c', 'echo run; exit 1']);
  const settled = async (ref: string): Promise<any> => {
    const i = await h.inspect(ref);
    return i.State.Status === 'exited' && !i.State.Restarting ? i : undefined;
  };
  await eventually(async () => (await settled('fails'))?.RestartCount === 2, 20_000);
  await new Promise((r) => setTimeout(r, 1500)); // and no more
  assert.deepEqual(await h.logs('fails'), ['run', 'run', 'run']);
  const i = await h.inspect('fails');
  assert.deepEqual([i.RestartCount, i.State.ExitCode, i.HostConfig.RestartPolicy], [2, 1, { Name: 'on-failure', MaximumRetryCount: 2 }]);
  // Success ends on-failure at once.
  await h.ok(['run', '-d', '--name', 'succeeds', ...NONE, '--restart', 'on-failure', 'busybox', 'sh', '-c', 'echo run']);
  await eventually(async () => !!(await settled('succeeds')), 10_000);
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(await h.logs('succeeds'), ['run']);
  // always: a clean exit is restarted too; `ferry stop` ends it.
  await h.ok(['run', '-d', '--name', 'always', ...NONE, '--restart', 'always', 'busybox', 'sh', '-c', 'echo run; sleep 0.3']);
  await eventually(async () => (await h.logs('always')).length >= 3, 15_000);
  await h.ok(['stop', '-t', '0', 'always']);
  const n = (await h.logs('always')).length;
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await h.inspect('always')).State.Status, 'exited');
  assert.equal((await h.logs('always')).length, n, 'not restarted after stop');
  // kill: not restarted either.
  await h.ok(['run', '-d', '--name', 'killed', ...NONE, '--restart', 'always', 'busybox', ...SLEEPER]);
  await h.ok(['kill', 'killed']);
  await eventually(async () => (await h.inspect('killed')).State.Status === 'exited', 10_000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await h.inspect('killed')).State.Status, 'exited');
  // A checkpoint stops it without a restart; restore brings the same process back.
  await h.ok(['run', '-d', '--name', 'ckpt', ...NONE, '--restart', 'unless-stopped', 'busybox', ...SLEEPER]);
  await h.ok(['checkpoint', 'ckpt']);
  await new Promise((r) => setTimeout(r, 1500));
  const c = (await h.inspect('ckpt')).State;
  assert.deepEqual([c.Status, c.Checkpointed], ['exited', true]);
  await h.ok(['restore', 'ckpt']);
  assert.equal((await h.inspect('ckpt')).State.Status, 'running');
  assert.equal((await h.inspect('ckpt')).RestartCount, 0);
  await h.ok(['rm', '-fa']);
});

test('events: the journal of operations, filtered, as JSON, followed; system df; container prune; system prune', async () => {
  const since = new Date().toISOString();
  const id = await h.ok(['run', '-d', '--name', 'ev', ...NONE, 'busybox', ...SLEEPER]);
  await h.ok(['checkpoint', 'ev']);
  await h.ok(['restore', 'ev']);
  await h.ok(['stop', '-t', '0', 'ev']);
  const json = (await h.ok(['events', '--stream=false', '--since', since, '--format', 'json', '--filter', 'container=ev'])).split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(json.map((e) => e.Status), ['create', 'start', 'checkpoint', 'restore', 'died', 'stop']);
  assert.deepEqual(Object.keys(json[0]), ['ID', 'Image', 'Name', 'Status', 'Time', 'Type', 'Attributes']);
  assert.equal(json[0].ID, id);
  assert.equal(json[4].Attributes.containerExitCode, '137');
  const text = await h.ok(['events', '--stream=false', '--since', since, '--filter', 'event=checkpoint']);
  assert.match(text, new RegExp(`^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d+ \\+0000 UTC container checkpoint ${id} \\(image=localhost/busybox:latest, name=ev\\)$`));
  // Following: an event appended later arrives.
  const { spawn } = await import('node:child_process');
  const child = spawn(FERRY_BIN, [...h.args(), 'events', '--since', since, '--filter', 'event=remove', '--format', 'json']);
  let got = '';
  child.stdout.on('data', (b: Buffer) => (got += b.toString()));
  try {
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(got, '');
    // system df before: one stopped container with a written file, one volume in use.
    await h.ok(['run', '-d', '--name', 'up', ...NONE, '-v', 'vol1:/v', 'busybox', 'sh', '-c', 'head -c 100000 /dev/zero > /v/f; head -c 50000 /dev/zero > /big; sleep 1000']);
    await eventually(async () => (await h.run(['exec', 'up', 'test', '-s', '/big'])).code === 0, 5000);
    const df = JSON.parse(await h.ok(['system', 'df', '--format', 'json']));
    const row = (t: string): any => df.find((r: any) => r.Type === t);
    assert.deepEqual([row('Containers').Total, row('Containers').Active], [2, 1]);
    assert.ok(row('Containers').Size >= 50000, JSON.stringify(df));
    assert.deepEqual([row('Local Volumes').Total, row('Local Volumes').Active], [1, 1]);
    assert.ok(row('Local Volumes').Size >= 100000);
    assert.deepEqual([row('Images').Total, row('Images').Active, row('Images').Reclaimable], [1, 1, 0]);
    assert.match((await h.ok(['system', 'df'])).split('\n')[0]!, /^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE$/);
    // container prune: the stopped one goes, the running one stays.
    assert.equal(await h.ok(['container', 'prune', '-f']), id);
    assert.deepEqual((await h.ok(['ps', '-a', '--format', '{{.Names}}'])).split('\n'), ['up']);
    await eventually(() => got.includes('"Status":"remove"'), 5000);
    assert.equal(JSON.parse(got.trim()).ID, id);
  } finally {
    child.kill();
  }
  // system prune: without --volumes the volume stays; with -a --volumes, the unused image and volume go.
  await h.ok(['rm', '-f', 'up']);
  const p1 = await h.ok(['system', 'prune', '-f']);
  assert.match(p1, /^Total reclaimed space: /m);
  assert.equal(JSON.parse(await h.ok(['volume', 'inspect', 'vol1']))[0].Name, 'vol1');
  const p2 = await h.ok(['system', 'prune', '-f', '-a', '--volumes']);
  assert.match(p2, /^Deleted Volumes\nvol1\nDeleted Images\n[0-9a-f]{64}\nTotal reclaimed space: 2\.\d+MB$/);
  assert.equal((await h.ok(['images', '-q'])).trim(), '');
  // Answering no (or nothing) removes nothing.
  await h.importBusybox();
  await h.ok(['create', '--name', 'keep', ...NONE, 'busybox', 'true']);
  const r = await h.run(['container', 'prune'], { input: 'n\n' });
  assert.equal(r.code, 0);
  assert.equal(await h.ok(['ps', '-a', '-q']), (await h.inspect('keep')).Id.slice(0, 12));
  assertCleanError(await h.run(['events', '--stream=false', '--filter', 'colour=red']), /invalid --filter "colour=red"/);
});
