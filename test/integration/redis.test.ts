/**
 * A real application: Redis 7 from Debian's packages (test/helpers/apps.ts), holding 1M keys
 * (~180 MiB), checkpointed and restored in place with a client's connection held open, left
 * running by `-R`, exported and imported twice into a second root, and migrated to a second
 * host (stop-and-copy and lazy) while a client keeps writing. `DEBUG DIGEST` compares datasets.
 * Traffic goes only to container IPs on Ferry's bridges and to the test's own namespaces.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { Host, eventually, isRoot, skipWith, timed } from '../helpers/ferry.js';
import { HostPair, hasSshd, names, type NetHost } from '../helpers/hosts.js';
import { freeIp } from '../helpers/net.js';
import { importApp } from '../helpers/apps.js';
import { RespClient } from '../helpers/resp.js';

const SKIP = !isRoot() ? 'needs root' : false;
const KEYS = 1_000_000; // DEBUG POPULATE with 100-byte values: ~177 MiB of Redis memory
const PORT = 6379;
const REDIS = ['redis-server', '--enable-debug-command', 'yes', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];


/**
 * A fresh connection to a Redis that answers PING (a restored copy may take a moment). Ferry
 * forgets the host's neighbour entry of an address it hands out again (a stale one, with an
 * earlier container's MAC, made the first connection wait ~8 s for the kernel's re-probe).
 */
async function connectRedis(ip: string): Promise<RespClient> {
  return eventually(async () => {
    const c = await RespClient.connect(ip, PORT, 2000);
    try {
      assert.equal(await c.command(['PING'], 2000), 'PONG');
      return c;
    } catch (e) {
      c.close();
      throw e;
    }
  }, 20_000, 100);
}

async function digest(c: RespClient): Promise<string> {
  const d = await c.command(['DEBUG', 'DIGEST']);
  assert.match(String(d), /^[0-9a-f]{40}$/);
  assert.notEqual(d, '0'.repeat(40), 'an empty dataset');
  return String(d);
}

describe('Redis with 1M keys across checkpoint/restore', { skip: SKIP }, () => {
  let a: Host;
  let b: Host;
  const clients: RespClient[] = [];
  let ip = '';
  let held: RespClient; // one connection from this process, held across the steps
  let heldId = 0;
  let dataDigest = '';

  before(async () => {
    a = new Host('redisa');
    b = new Host('redisb');
    await importApp(a, 'redis');
    await importApp(b, 'redis');
    ip = freeIp();
    await a.ok(['run', '-d', '--name', 'r1', '--ip', ip, 'redis', ...REDIS]);
    held = await connectRedis(ip);
    clients.push(held);
    heldId = Number(await held.command(['CLIENT', 'ID']));
    assert.equal(await held.command(['DEBUG', 'POPULATE', KEYS, 'key', 100], 60_000), 'OK');
    assert.equal(await held.command(['DBSIZE']), KEYS);
  });
  after(async () => {
    for (const c of clients) c.close();
    await a?.destroy();
    await b?.destroy();
  });

  it('checkpoint --tcp-established / restore in place: the held connection goes on, same data', async (t) => {
    assert.equal(await held.command(['SET', 'marker', 'before-checkpoint']), 'OK');
    const before = await digest(held);
    const pid = (await a.inspect('r1')).State.Pid;

    const [, ckptMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', 'r1']));
    assert.equal((await a.inspect('r1')).State.Status, 'exited');
    assert.ok(!held.isClosed, 'the client saw no FIN or reset');
    const [, restoreMs] = await timed(() => a.ok(['container', 'restore', '--tcp-established', 'r1']));
    const ins = await a.inspect('r1');
    assert.equal(ins.State.Status, 'running');
    assert.notEqual(ins.State.Pid, pid, 'a restored process, not the old one');
    assert.equal(ins.NetworkSettings.IPAddress, ip);

    // The same connection, on the server's side too: Redis numbers each connection it accepts.
    assert.equal(Number(await held.command(['CLIENT', 'ID'])), heldId);
    assert.equal(await digest(held), before);
    assert.equal(await held.command(['DBSIZE']), KEYS + 1);
    assert.equal(await held.command(['GET', 'marker']), 'before-checkpoint');
    assert.equal(await held.command(['SET', 'marker', 'after-restore']), 'OK');
    assert.equal(await held.command(['GET', 'marker']), 'after-restore');
    t.diagnostic(`checkpoint ${ckptMs} ms, restore ${restoreMs} ms (${KEYS} keys)`);
  });

  it('checkpoint -R: Redis keeps serving, the same process, data unchanged', async (t) => {
    const before = await digest(held);
    const pid = (await a.inspect('r1')).State.Pid;
    const [, ms] = await timed(() => a.ok(['container', 'checkpoint', '-R', '--tcp-established', 'r1']));
    const ins = await a.inspect('r1');
    assert.equal(ins.State.Status, 'running');
    assert.equal(ins.State.Pid, pid, 'never stopped');
    assert.equal(Number(await held.command(['CLIENT', 'ID'])), heldId);
    assert.equal(await digest(held), before);
    assert.equal(await held.command(['INCR', 'after-R']), 1, 'still takes writes');
    t.diagnostic(`checkpoint -R ${ms} ms`);
  });

  it('export, then import twice under new names into a second root: both copies serve at once', async (t) => {
    dataDigest = await digest(held);
    const file = path.join(a.dir, 'r1.tar.zst');
    const [, exportMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', '--export', file, 'r1']));
    const size = fs.statSync(file).size;
    assert.equal((await a.inspect('r1')).State.Status, 'exited');

    // New names mean new addresses: the held connection cannot follow, so it is closed there.
    const [, import2Ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', 'redis2', '--tcp-close']));
    const [, import3Ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', 'redis3', '--tcp-close']));
    const ips = [];
    for (const n of ['redis2', 'redis3']) {
      const ins = await b.inspect(n);
      assert.equal(ins.State.Status, 'running');
      ips.push(ins.NetworkSettings.IPAddress as string);
    }
    assert.equal(new Set([ip, ...ips]).size, 3, `three addresses: ${[ip, ...ips].join(' ')}`);
    const [c2, c3] = await Promise.all(ips.map(connectRedis));
    clients.push(c2!, c3!);
    // Both at once, each with the whole dataset.
    assert.deepEqual(await Promise.all([digest(c2!), digest(c3!)]), [dataDigest, dataDigest]);
    assert.deepEqual(await Promise.all([c2!.command(['DBSIZE']), c3!.command(['DBSIZE'])]), [KEYS + 2, KEYS + 2]);
    // Two copies, not one shared: a write to one is not in the other.
    assert.equal(await c2!.command(['SET', 'only-in', 'redis2']), 'OK');
    assert.equal(await c3!.command(['EXISTS', 'only-in']), 0);
    assert.equal(await digest(c3!), dataDigest);
    t.diagnostic(`export ${exportMs} ms (${(size / 2 ** 20).toFixed(1)} MiB zstd), import+restore ${import2Ms} ms and ${import3Ms} ms`);
  });
});

/**
 * A client in a host's network namespace, from that host's own address, that appends 0, 1, 2,
 * ... to a Redis list over one connection, one RPUSH at a time, and prints `ack N` for each
 * acknowledged one. Each reply must be the list's new length, so a lost or doubled write stops
 * it. A line on stdin makes it stop after the write in flight; it then prints `done COUNT`.
 */
class Writer {
  out = '';
  err = '';
  exit: number | null | undefined;
  private readonly child: ChildProcess;

  constructor(h: NetHost, ip: string, list: string, max: number) {
    const js = [
      "const net = require('net');",
      'const [host, port, local, list, max] = process.argv.slice(1);',
      'let i = 0, buf = "", stop = false;',
      "process.stdin.on('data', () => (stop = true));",
      'const s = net.connect({ host, port: Number(port), localAddress: local });',
      'const bulk = (x) => `$${Buffer.byteLength(x)}\\r\\n${x}\\r\\n`;',
      'const send = () => {',
      "  if (stop || i >= Number(max)) { process.stdout.write(`done ${i}\\n`, () => process.exit(0)); return; }",
      "  s.write('*3\\r\\n' + bulk('RPUSH') + bulk(list) + bulk(String(i)));",
      '};',
      "s.once('connect', send);",
      "s.on('data', (d) => {",
      '  buf += d;',
      '  for (let m; (m = /^:(\\d+)\\r\\n/.exec(buf)); ) {',
      '    buf = buf.slice(m[0].length);',
      '    if (Number(m[1]) !== i + 1) { process.stderr.write(`RPUSH ${i} answered length ${m[1]}`); process.exit(4); }',
      '    process.stdout.write(`ack ${i}\\n`);',
      '    i++;',
      '    setTimeout(send, 2);',
      '  }',
      "  if (buf.startsWith('-')) { process.stderr.write(buf); process.exit(5); }",
      '});',
      "s.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });",
      "s.on('close', () => process.exit(3));",
    ].join('\n');
    this.child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, process.execPath, '-e', js, ip, String(PORT), h.ip, list, String(max)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (b: Buffer) => (this.out += b.toString()));
    this.child.stderr!.on('data', (b: Buffer) => (this.err += b.toString()));
    this.child.on('close', (code) => (this.exit = code));
  }

  /** Acknowledged writes so far. */
  acked(): number {
    return (this.out.match(/^ack /gm) ?? []).length;
  }

  private alive(): void {
    if (this.exit !== undefined) throw new Error(`the writer exited ${this.exit}: ${this.err.trim()} (after ${this.acked()} acks)`);
  }

  /** Waits until `n` more writes than now are acknowledged. */
  async progress(n: number, timeoutMs = 20_000): Promise<void> {
    const from = this.acked();
    await eventually(() => {
      this.alive();
      return this.acked() >= from + n;
    }, timeoutMs, 20);
  }

  /** Stops it; returns how many writes were acknowledged in all. */
  async stop(): Promise<number> {
    this.child.stdin!.write('stop\n');
    await eventually(() => this.exit !== undefined, 10_000, 20);
    const done = /^done (\d+)$/m.exec(this.out);
    assert.ok(done && this.exit === 0, `the writer ended cleanly: exit ${this.exit}, ${this.err.trim()}`);
    assert.equal(Number(done[1]), this.acked());
    return this.acked();
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

describe('Redis with 1M keys migrated to a second host while a client writes', { skip: SKIP || (hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)') }, () => {
  let pair: HostPair;
  let a: NetHost;
  let b: NetHost;
  let ip = '';
  let populated = '';
  const writers: Writer[] = [];

  const redisCli = async (h: NetHost, args: string[]): Promise<string> => h.ok(['exec', 'r', 'redis-cli', ...args]);
  const migrate = (from: NetHost, to: NetHost, extra: string[]) =>
    from.ok(['migrate', 'r', to.url(), '--remote-command', to.remoteCommand(), ...pair.sshArgs(), '--tcp-established', '--print-stats', ...extra], { timeoutMs: 180_000 });

  /** Every acknowledged write is in the list once, in order, and nothing else; then the list goes. */
  async function assertWrites(h: NetHost, list: string, acked: number): Promise<void> {
    assert.equal(Number(await redisCli(h, ['LLEN', list])), acked);
    const items = (await redisCli(h, ['LRANGE', list, '0', '-1'])).split('\n').map(Number);
    assert.equal(items.length, acked);
    assert.ok(items.every((v, k) => v === k), 'the list is 0..N-1: nothing lost, doubled or reordered');
    assert.equal(await redisCli(h, ['DEL', list]), '1');
    assert.equal(await redisCli(h, ['DEBUG', 'DIGEST']), populated, 'the 1M keys came intact');
  }

  before(async () => {
    pair = new HostPair();
    a = pair.a;
    b = pair.b;
    await pair.setup();
    await importApp(a, 'redis');
    await importApp(b, 'redis');
    await a.ok(['run', '-d', '--name', 'r', 'redis', ...REDIS]);
    ip = (await a.inspect('r')).NetworkSettings.IPAddress as string;
    await eventually(async () => (await redisCli(a, ['PING'])) === 'PONG', 20_000, 200);
    assert.equal(await redisCli(a, ['DEBUG', 'POPULATE', String(KEYS), 'key', '100']), 'OK');
    populated = await redisCli(a, ['DEBUG', 'DIGEST']);
    assert.match(populated, /^[0-9a-f]{40}$/);
    // B forwards between A and its bridge and does not masquerade what the container sends A
    // (as a routed network would): the restored socket speaks first, unknown to B's conntrack.
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'iptables', '-w', '-t', 'nat', '-I', 'POSTROUTING', '-d', `${a.ip}/32`, '-j', 'ACCEPT']);
  });
  after(async () => {
    for (const w of writers) w.kill();
    // Routes, forwarding and rules live in the pair's namespaces and go with them.
    await pair?.destroy();
  });

  it('stop-and-copy A -> B: every acknowledged write is there once, the data intact', async (t) => {
    const w = new Writer(a, ip, 'log', 100_000);
    writers.push(w);
    await w.progress(300);
    const st = JSON.parse(await migrate(a, b, []));
    assert.equal(st.mode, 'stop-and-copy');
    assert.deepEqual(await names(a), []);
    assert.deepEqual(await names(b, false), ['r']);
    assert.equal((await b.inspect('r')).NetworkSettings.IPAddress, ip);
    // The network now routes the container's address to B; the writer's connection goes on.
    execFileSync('ip', ['-n', a.netns, 'route', 'add', `${ip}/32`, 'via', b.ip]);
    await w.progress(300);
    const acked = await w.stop();
    await assertWrites(b, 'log', acked);
    t.diagnostic(`stop-and-copy: downtime ${st.downtime_ms} ms, total ${st.total_ms} ms, ${(st.bytes_sent / 2 ** 20).toFixed(1)} MiB sent; ${acked} writes`);
  });

  it('lazy B -> A: the same, with memory following on demand', async (t) => {
    const info = JSON.parse(await a.ok(['info', '--format', 'json']));
    if (!info.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${info.host.notes.join('; ')}`);
    const w = new Writer(a, ip, 'log2', 100_000);
    writers.push(w);
    await w.progress(300);
    const st = JSON.parse(await migrate(b, a, ['--lazy']));
    assert.equal(st.mode, 'lazy');
    assert.deepEqual(await names(b), []);
    assert.deepEqual(await names(a, false), ['r']);
    // Back on A's own bridge.
    execFileSync('ip', ['-n', a.netns, 'route', 'del', `${ip}/32`]);
    await w.progress(300);
    const acked = await w.stop();
    await assertWrites(a, 'log2', acked);
    t.diagnostic(`lazy: downtime ${st.downtime_ms} ms, total ${st.total_ms} ms, ${(st.bytes_sent / 2 ** 20).toFixed(1)} MiB sent; ${acked} writes`);
  });
});
