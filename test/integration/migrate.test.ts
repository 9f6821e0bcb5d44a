import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { LOOPER, skipWith, buildFixture, eventually, lastCount, busyboxTarball } from '../helpers/ferry.js';
import { layerTar, writeLayout } from '../helpers/oci.js';
import { HostPair, assertContinues, assertHostClean, bytesArrived, hasSshd, names, runcContainers, type NetHost } from '../helpers/hosts.js';

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
  if (!criu.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${criu.host.notes.join('; ')}`);
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
  if (info.host.checkpointModes.preCopy) return skipWith(t, 'this kernel has soft-dirty tracking');
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

test('--with-image sends only the layers the destination lacks: a shared base layer stays home', { skip }, async () => {
  // app:1 is busybox's layer (B has it: the same tarball imported there) plus a layer of its own.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-layers-'));
  try {
    writeLayout(path.join(work, 'layout'), 'app:1', {
      layers: [fs.readFileSync(busyboxTarball()), layerTar([{ name: 'opt/', type: 'dir' }, { name: 'opt/app/', type: 'dir' }, { name: 'opt/app/hello.txt', type: 'file', data: 'hello from layer 2\n' }], work)],
      config: { Cmd: LOOPER },
    });
    await a.ok(['load', '-i', path.join(work, 'layout')]);
    await a.ok(['run', '-d', '--name', 'layered', 'localhost/app:1']);
    await eventually(async () => (await lastCount(a, 'layered')) >= 1);
    const layersOf = (h: NetHost): string[] => fs.readdirSync(path.join(h.root, 'images', 'layers')).filter((l) => /^[0-9a-f]{64}$/.test(l)).sort();
    const before = layersOf(b);
    assert.equal(before.length, 1, 'B has busybox\'s layer only');
    const r = await a.run(['--log-level', 'debug', ...migrateArgs(a, b, 'layered', ['--with-image'])]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /migrate layered: sending image [0-9a-f]{12}: 1 of 2 layers/);
    assert.deepEqual(layersOf(b), layersOf(a), 'B now has both layers, the base one stored once');
    assert.equal(layersOf(b).length, 2);
    assert.equal((await b.ok(['exec', 'layered', 'cat', '/opt/app/hello.txt'])).trim(), 'hello from layer 2');
    await assertContinues(b, 'layered', await lastCount(b, 'layered'));
  } finally {
    await b.run(['rm', '-f', 'layered']);
    await b.run(['rmi', 'localhost/app:1']);
    await a.run(['rm', '-f', 'layered']);
    await a.run(['rmi', 'localhost/app:1']);
    fs.rmSync(work, { recursive: true, force: true });
  }
});

/** A container holding `mib` MiB of memory it checks itself (test/fixtures/memhog.c), its binary in a volume. */
async function startMemhog(h: NetHost, name: string, mib: number): Promise<void> {
  await h.ok(['volume', 'create', `${name}-bin`]);
  const mp = JSON.parse(await h.ok(['volume', 'inspect', `${name}-bin`]))[0].Mountpoint;
  buildFixture('memhog', mp);
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
  // Memory is flowing into the destination (the container is frozen by now).
  await eventually(() => bytesArrived(b) > 16 << 20, 60_000, 10);
  const pids = victim();
  assert.ok(pids.length > 0, 'found the process to kill');
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  return running;
}


const noDirtyTracking = 'this kernel lacks soft-dirty memory tracking (`criu check --feature mem_dirty_track`), which pre-copy needs';

test('pre-copy migration A -> B and back: rounds while running, then only the rest; memory intact', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!info.host.checkpointModes.preCopy) return skipWith(t, noDirtyTracking);
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
  if (!info.host.checkpointModes.preCopy) return skipWith(t, noDirtyTracking);
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

test('the source ferry killed while the container is frozen: the next command thaws it there, the destination rolls back', { skip }, async () => {
  await startMemhog(a, 'frz', 192);
  try {
    const running = a.run(migrateArgs(a, b, 'frz'), { timeoutMs: 180_000 });
    await eventually(() => bytesArrived(b) > 16 << 20, 60_000, 10);
    const src = pidsMatching(/ migrate frz ssh:/).filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(a.root));
    assert.equal(src.length, 1, 'found the migrating ferry');
    process.kill(src[0]!, 'SIGKILL');
    assert.notEqual((await running).code, 0);
    // The next command repairs: the frozen container runs on here, its memory unharmed.
    const st = await a.inspect('frz');
    assert.equal(st.State.Status, 'running');
    assert.match(st.State.Error, /a ferry migrate was interrupted; state repaired/);
    await memhogHealthy(a, 'frz');
    // The receiver lost its channel before any commit and removed what it made.
    await eventually(() => pidsMatching(/migrate-receive/).filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(b.root)).length === 0, 20_000);
    await assertHostClean(b);
  } finally {
    await a.run(['rm', '-f', 'frz']);
    await a.run(['volume', 'rm', '-f', 'frz-bin']);
  }
});

test('the destination fails after a --lazy dump: the source takes the container back from CRIU, memory intact', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!info.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${info.host.notes.join('; ')}`);
  await startMemhog(a, 'lzf', 64);
  // B's ferry runs a runc that refuses to restore: the archive arrives, the restore fails.
  const wrapper = `${b.dir}/runc-no-restore`;
  fs.writeFileSync(wrapper, '#!/bin/sh\nfor a in "$@"; do [ "$a" = restore ] && { echo "restore refused by the test" >&2; exit 1; }; done\nexec runc "$@"\n', { mode: 0o755 });
  try {
    const r = await a.run(['migrate', 'lzf', b.url(), '--remote-command', `${b.remoteCommand()} --runtime ${wrapper}`, ...pair.sshArgs(), '--lazy'], { timeoutMs: 180_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /migration of lzf failed: .*lzf is running here again/);
    const st = await a.inspect('lzf');
    assert.equal(st.State.Status, 'running');
    assert.equal(runcContainers(a).length, 1);
    await memhogHealthy(a, 'lzf');
    await assertHostClean(b);
  } finally {
    await a.run(['rm', '-f', 'lzf']);
    await a.run(['volume', 'rm', '-f', 'lzf-bin']);
  }
});

test('the source ferry killed during a --lazy dump: the container ends up running on exactly one host', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!info.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${info.host.notes.join('; ')}`);
  await startMemhog(a, 'lzk', 64);
  const id: string = (await a.inspect('lzk')).Id;
  const record = (): { state: { op?: { name: string; helperPid?: number; args?: { mode?: string } } } } =>
    JSON.parse(fs.readFileSync(`${a.root}/containers/${id}/container.json`, 'utf8'));
  try {
    const running = a.run([...migrateArgs(a, b, 'lzk'), '--lazy'], { timeoutMs: 180_000 });
    // The lazy dump has begun: its op and runc's PID are recorded.
    await eventually(() => {
      const op = record().state.op;
      return op?.name === 'migrate' && op.args?.mode === 'lazy' && !!op.helperPid;
    }, 60_000, 2);
    const src = pidsMatching(/ migrate lzk ssh:/).filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(a.root));
    assert.equal(src.length, 1, 'found the migrating ferry');
    process.kill(src[0]!, 'SIGKILL');
    assert.notEqual((await running).code, 0);
    // The next command repairs the source; the destination rolls back or keeps it, never both.
    await a.run(['ps', '-a']);
    assert.equal(record().state.op, undefined, 'the interrupted migration was repaired');
    let where: NetHost | undefined;
    await eventually(async () => {
      const onA = (await names(a, false)).includes('lzk');
      const onB = (await names(b, false)).includes('lzk');
      assert.ok(!(onA && onB), 'running on both hosts');
      where = onA ? a : onB ? b : undefined;
      return !!where && pidsMatching(/migrate-receive/).filter((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(b.root)).length === 0;
    }, 30_000, 100);
    assert.ok(where, 'running on neither host');
    await memhogHealthy(where!, 'lzk');
    if (where === a) await assertHostClean(b);
    else assert.deepEqual(await names(a), [], 'gone from the source');
  } finally {
    for (const h of [a, b]) {
      await h.run(['rm', '-f', 'lzk']);
      await h.run(['volume', 'rm', '-f', 'lzk-bin']);
    }
  }
});

/**
 * A TCP client in a host's network namespace, from that host's own address (not its bridge's),
 * so that the container can answer it from either host once the network routes it there.
 */
class Peer {
  private out = '';
  private ended: string | undefined;
  private readonly child: ChildProcess;

  constructor(h: NetHost, ip: string, port: number) {
    const js = [
      "const net = require('net');",
      'let tries = 0;',
      'const go = () => {',
      '  const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]), localAddress: process.argv[3] });',
      "  s.once('connect', () => { process.stdin.pipe(s); s.pipe(process.stdout); s.once('close', () => process.exit(3)); });",
      "  s.once('error', (e) => { if (s.connecting && ++tries < 100) setTimeout(go, 100); else { process.stderr.write(String(e)); process.exit(2); } });",
      '};',
      'go();',
    ].join('\n');
    this.child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, process.execPath, '-e', js, ip, String(port), h.ip], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (b: Buffer) => (this.out += b.toString()));
    this.child.stderr!.on('data', (b: Buffer) => (this.ended = (this.ended ?? '') + b.toString()));
    this.child.on('close', (code) => (this.ended = `${this.ended ?? ''} (client exited ${code})`));
  }

  /** Sends a line and waits for it to come back on the same connection. */
  async echo(line: string): Promise<void> {
    this.child.stdin!.write(`${line}\n`);
    await eventually(() => {
      if (this.ended) throw new Error(`the connection broke before "${line}" came back: ${this.ended}`);
      return this.out.includes(`${line}\n`);
    }, 10_000, 20);
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

test('--tcp-established: a connection from outside survives the move, and the source closes nothing', { skip }, async () => {
  await a.ok(['run', '-d', '--name', 'echo', 'busybox', 'nc', '-ll', '-p', '7000', '-e', 'cat']);
  const ip = (await a.inspect('echo')).NetworkSettings.IPAddress as string;
  const peer = new Peer(a, ip, 7000);
  let routed = false;
  try {
    await peer.echo('on-a');
    // B forwards between the peer and its bridge and, as a routed network does, does not
    // masquerade what the container sends the peer (the restored socket speaks first, and B's
    // conntrack has never seen the connection).
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'iptables', '-w', '-t', 'nat', '-I', 'POSTROUTING', '-d', `${a.ip}/32`, '-j', 'ACCEPT']);
    const st = JSON.parse(await a.ok([...migrateArgs(a, b, 'echo'), '--tcp-established', '--print-stats']));
    assert.equal(st.mode, 'stop-and-copy');
    assert.deepEqual(await names(a), []);
    // The network now routes the container's address to B.
    execFileSync('ip', ['-n', a.netns, 'route', 'add', `${ip}/32`, 'via', b.ip]);
    routed = true;
    // Had the source's frozen copy sent a FIN or a reset when it was taken down, this breaks.
    await peer.echo('on-b');
    await peer.echo('on-b-again');
    assert.equal((await b.inspect('echo')).NetworkSettings.IPAddress, ip);
  } finally {
    peer.close();
    if (routed) execFileSync('ip', ['-n', a.netns, 'route', 'del', `${ip}/32`]);
    await a.run(['rm', '-f', 'echo']);
    await b.run(['rm', '-f', 'echo']);
  }
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
