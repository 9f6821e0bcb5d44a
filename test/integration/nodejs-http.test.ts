/**
 * A real application: a Node.js HTTP service (Debian's nodejs, node:http) that keeps an
 * in-memory counter, running as `nobody` on the default bridge. Its counter is its own proof
 * that nothing was lost or repeated: checkpointed and restored in place while this test holds a
 * keep-alive connection, checkpointed with -R, exported then imported twice into a second root
 * (both copies go on from the same value, each on its own), and migrated to a second host
 * (stop-and-copy, then lazy back) while a client counts through one keep-alive connection.
 * Also: Debian's nodejs (libuv 1.44) holds no io_uring, even with UV_USE_IO_URING=1, so Ferry
 * has nothing to refuse there. Traffic goes only to container IPs on Ferry's bridges and inside
 * the test's own namespaces.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { Host, eventually, isRoot, skipWith } from '../helpers/ferry.js';
import { HostPair, hasSshd, names, type NetHost } from '../helpers/hosts.js';
import { freeIp } from '../helpers/net.js';
import { importApp } from '../helpers/apps.js';

const SKIP = !isRoot() ? 'needs root' : false;
const PORT = 80;
const UID = 65534;

/**
 * The service. GET /count answers the counter, then increments it (0, 1, 2, ...); GET /file
 * reads a file asynchronously (libuv's thread pool, or io_uring where libuv uses it); GET /whoami
 * answers the versions. Every answer carries X-Conn, the number of the connection it came on.
 * Idle keep-alive connections are never closed by the server. It binds port 80 as root, then
 * becomes `nobody` for good (libuv's docs warn against changing uid with io_uring on: Node
 * services that need UV_USE_IO_URING=1 are not this one).
 */
const APP = `
const http = require('http');
const fs = require('fs');
let count = 0;
let conns = 0;
const server = http.createServer((req, res) => {
  const reply = (body, code = 200) => {
    res.writeHead(code, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), 'X-Conn': String(req.socket.connId) });
    res.end(body);
  };
  if (req.url === '/count') reply(String(count++));
  else if (req.url === '/file') fs.readFile('/etc/os-release', 'utf8', (e, d) => reply(e ? String(e) : String(d.length)));
  else if (req.url === '/whoami') reply(JSON.stringify({ node: process.versions.node, uv: process.versions.uv, uid: process.getuid() }));
  else reply('not found', 404);
});
server.on('connection', (s) => { s.connId = ++conns; s.setNoDelay(true); });
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.headersTimeout = 0;
server.listen(${PORT}, '0.0.0.0', () => {
  process.setgroups([]);
  process.setgid(${UID});
  process.setuid(${UID});
  // One asynchronous file read before it says it serves: libuv has set up whatever it reads files with.
  fs.readFile('/etc/os-release', () => console.log('serving as uid ' + process.getuid()));
});
`;

/** `ferry run` arguments that start the service in a container named `name`. */
function nodeRunArgs(name: string, extra: string[] = []): string[] {
  return ['run', '-d', '--name', name, ...extra, 'nodejs', 'node', '-e', APP];
}

/** Milliseconds an async step took, and its result. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, Math.round(performance.now() - t0)];
}

interface Answer {
  status: number;
  body: string;
  conn: number;
  socket: net.Socket;
  reused: boolean;
}

/** One GET through `agent`; resolves with the answer and the socket it went over. */
function get(agent: http.Agent, host: string, urlPath: string, timeoutMs = 5000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket | undefined;
    const req = http.request({ host, port: PORT, method: 'GET', path: urlPath, agent }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (data += d));
      res.on('end', () => {
        clearTimeout(t);
        resolve({ status: res.statusCode ?? 0, body: data, conn: Number(res.headers['x-conn']), socket: socket!, reused: req.reusedSocket });
      });
      res.on('error', reject);
    });
    const t = setTimeout(() => req.destroy(new Error(`no answer to GET ${urlPath} within ${timeoutMs} ms`)), timeoutMs);
    req.on('socket', (s) => (socket = s));
    req.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    req.end();
  });
}

/** The uid line of a process (real, effective, saved, fs) as the host's /proc shows it. */
function uids(pid: number): string[] {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'))!;
  return line.split(/\s+/).slice(1, 5);
}

/** The kinds of anonymous inode a process holds open (eventpoll, eventfd, io_uring, ...). */
function anonInodes(pid: number): string[] {
  const kinds = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^anon_inode:\[?([^\]]+)\]?$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) kinds.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  return [...kinds].sort();
}

describe('Node.js HTTP service across checkpoint/restore', { skip: SKIP }, () => {
  let a: Host;
  let b: Host;
  let ip = '';
  const agents: http.Agent[] = [];
  let held: http.Agent; // one keep-alive connection from this process, held across the steps
  let heldSocket: net.Socket;
  let heldConn = 0;
  let counter = 0; // the value the next GET /count must answer

  /** GET /count on the held connection: the expected value, on the very same connection. */
  async function countOnHeld(): Promise<void> {
    const r = await get(held, ip, '/count');
    assert.equal(r.status, 200);
    assert.ok(r.socket === heldSocket, 'the same client socket');
    assert.ok(r.reused, 'a reused keep-alive connection');
    assert.equal(r.conn, heldConn, 'the same connection on the server side');
    assert.equal(Number(r.body), counter, 'the counter goes on');
    counter++;
  }

  before(async () => {
    a = new Host('nda');
    b = new Host('ndb');
    await Promise.all([importApp(a, 'nodejs'), importApp(b, 'nodejs')]);
    ip = freeIp();
    await a.ok(nodeRunArgs('nd1', ['--ip', ip]));
    held = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(held);
    const first = await eventually(() => get(held, ip, '/count'), 20_000, 100);
    assert.equal(first.body, '0');
    counter = 1;
    heldSocket = first.socket;
    heldConn = first.conn;
    await eventually(async () => (await a.logs('nd1')).includes(`serving as uid ${UID}`), 10_000, 100);
    assert.deepEqual(uids((await a.inspect('nd1')).State.Pid), Array(4).fill(String(UID)), 'the service runs as nobody, not root');
    for (let i = 0; i < 4; i++) await countOnHeld();
  });
  after(async () => {
    for (const ag of agents) ag.destroy();
    await a?.destroy();
    await b?.destroy();
  });

  it('checkpoint --tcp-established / restore in place: the held keep-alive connection answers, counter n+1', async (t) => {
    const pid = (await a.inspect('nd1')).State.Pid;
    const [, ckptMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', 'nd1']));
    assert.equal((await a.inspect('nd1')).State.Status, 'exited');
    assert.ok(!heldSocket.destroyed, 'the client saw no FIN or reset');
    const [, restoreMs] = await timed(() => a.ok(['container', 'restore', '--tcp-established', 'nd1']));
    const ins = await a.inspect('nd1');
    assert.equal(ins.State.Status, 'running');
    assert.notEqual(ins.State.Pid, pid, 'a restored process, not the old one');
    assert.equal(ins.NetworkSettings.IPAddress, ip);
    assert.deepEqual(uids(ins.State.Pid), Array(4).fill(String(UID)), 'still nobody after the restore');
    await countOnHeld();
    // Its event loop works whole: the thread pool (an async file read) and new connections.
    const f = await get(held, ip, '/file');
    assert.ok(Number(f.body) > 0, f.body);
    const fresh = new http.Agent({ keepAlive: false });
    agents.push(fresh);
    const c = await get(fresh, ip, '/count');
    assert.equal(Number(c.body), counter++);
    assert.ok(c.conn > heldConn, 'a new connection');
    await countOnHeld();
    t.diagnostic(`checkpoint ${ckptMs} ms, restore ${restoreMs} ms`);
  });

  it('checkpoint -R: it keeps serving, the same process, the counter goes on', async (t) => {
    const pid = (await a.inspect('nd1')).State.Pid;
    await countOnHeld();
    const [, ms] = await timed(() => a.ok(['container', 'checkpoint', '-R', '--tcp-established', 'nd1']));
    const ins = await a.inspect('nd1');
    assert.equal(ins.State.Status, 'running');
    assert.equal(ins.State.Pid, pid, 'never stopped');
    await countOnHeld();
    t.diagnostic(`checkpoint -R ${ms} ms`);
  });

  it('export, then import twice under new names into a second root: both go on from the checkpointed value, each on its own', async (t) => {
    await countOnHeld();
    const file = path.join(a.dir, 'nd1.tar.zst');
    const [, exportMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', '--export', file, 'nd1']));
    assert.equal((await a.inspect('nd1')).State.Status, 'exited');
    const size = fs.statSync(file).size;
    // New names mean new addresses: the held connection cannot follow, so it is closed there.
    const [, import2Ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', 'nd2', '--tcp-close']));
    const [, import3Ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', 'nd3', '--tcp-close']));
    const ips: string[] = [];
    for (const n of ['nd2', 'nd3']) {
      const ins = await b.inspect(n);
      assert.equal(ins.State.Status, 'running');
      assert.deepEqual(uids(ins.State.Pid), Array(4).fill(String(UID)), `${n} runs as nobody`);
      ips.push(ins.NetworkSettings.IPAddress as string);
    }
    assert.equal(new Set([ip, ...ips]).size, 3, `three addresses: ${[ip, ...ips].join(' ')}`);
    const [k2, k3] = ips.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    agents.push(k2!, k3!);
    // Both serve at once, from the same value; then each counts on its own.
    const [c2, c3] = await Promise.all([eventually(() => get(k2!, ips[0]!, '/count'), 20_000, 100), eventually(() => get(k3!, ips[1]!, '/count'), 20_000, 100)]);
    assert.deepEqual([Number(c2!.body), Number(c3!.body)], [counter, counter], 'both continue from the checkpointed counter');
    for (let i = 1; i <= 3; i++) assert.equal(Number((await get(k2!, ips[0]!, '/count')).body), counter + i);
    assert.equal(Number((await get(k3!, ips[1]!, '/count')).body), counter + 1, 'two copies, not one shared');
    t.diagnostic(`export ${exportMs} ms (${(size / 2 ** 20).toFixed(1)} MiB zstd), import+restore ${import2Ms} ms and ${import3Ms} ms`);
  });

  it("Debian's nodejs holds no io_uring, even asked to with UV_USE_IO_URING=1: it checkpoints", async () => {
    await a.ok(nodeRunArgs('nduring', ['--network', 'none', '-e', 'UV_USE_IO_URING=1']));
    const pid = (await a.inspect('nduring')).State.Pid;
    await eventually(async () => (await a.logs('nduring')).some((l) => l.startsWith('serving as uid')), 10_000, 100);
    // It has read a file asynchronously: with the thread pool (libuv 1.44 has no io_uring).
    const kinds = anonInodes(pid);
    assert.ok(kinds.includes('eventpoll'), kinds.join(' '));
    assert.ok(!kinds.includes('io_uring'), `no io_uring: ${kinds.join(' ')}`);
    await a.ok(['container', 'checkpoint', '-R', 'nduring']);
    assert.equal((await a.inspect('nduring')).State.Status, 'running');
    await a.ok(['rm', '-f', 'nduring']);
  });
});

/**
 * A client in a host's network namespace, from that host's own address, that GETs /count over
 * one keep-alive connection, one request at a time, and prints `ack N` for each answer. Each must
 * be the one before plus one, on the same server-side connection, so a lost or repeated request
 * stops it. A line on stdin makes it stop after the request in flight; it prints `done COUNT`.
 */
class Counter {
  out = '';
  err = '';
  exit: number | null | undefined;
  private readonly child: ChildProcess;

  constructor(h: NetHost, ip: string) {
    const js = [
      "const net = require('net');",
      'const [host, port, local] = process.argv.slice(1);',
      'let acks = 0, last = -1, conn = 0, buf = "", stop = false;',
      "process.stdin.on('data', () => (stop = true));",
      'const s = net.connect({ host, port: Number(port), localAddress: local });',
      's.setNoDelay(true);',
      'const send = () => {',
      "  if (stop) { process.stdout.write(`done ${acks}\\n`, () => process.exit(0)); return; }",
      "  s.write('GET /count HTTP/1.1\\r\\nHost: counter\\r\\n\\r\\n');",
      '};',
      "s.once('connect', send);",
      "s.on('data', (d) => {",
      '  buf += d;',
      '  for (;;) {',
      "    const end = buf.indexOf('\\r\\n\\r\\n');",
      '    if (end < 0) return;',
      '    const head = buf.slice(0, end);',
      '    const len = Number(/content-length: *(\\d+)/i.exec(head)[1]);',
      '    if (buf.length < end + 4 + len) return;',
      '    const n = Number(buf.slice(end + 4, end + 4 + len));',
      '    const c = Number(/x-conn: *(\\d+)/i.exec(head)[1]);',
      '    buf = buf.slice(end + 4 + len);',
      "    if (!/^HTTP\\/1.1 200/.test(head)) { process.stderr.write(head); process.exit(5); }",
      '    if (conn && c !== conn) { process.stderr.write(`answer on connection ${c}, not ${conn}`); process.exit(6); }',
      '    if (last >= 0 && n !== last + 1) { process.stderr.write(`counter ${n} after ${last}`); process.exit(4); }',
      '    conn = c; last = n; acks++;',
      '    process.stdout.write(`ack ${n}\\n`);',
      '    setTimeout(send, 2);',
      '  }',
      '});',
      "s.on('error', (e) => { process.stderr.write(String(e)); process.exit(2); });",
      "s.on('close', () => process.exit(3));",
    ].join('\n');
    this.child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, process.execPath, '-e', js, ip, String(PORT), h.ip], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (b: Buffer) => (this.out += b.toString()));
    this.child.stderr!.on('data', (b: Buffer) => (this.err += b.toString()));
    this.child.on('close', (code) => (this.exit = code));
  }

  /** The counter values answered so far. */
  values(): number[] {
    return [...this.out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
  }

  /** Waits until `n` more answers than now. */
  async progress(n: number, timeoutMs = 20_000): Promise<void> {
    const from = this.values().length;
    await eventually(() => {
      if (this.exit !== undefined) throw new Error(`the client exited ${this.exit}: ${this.err.trim()} (after ${this.values().length} answers)`);
      return this.values().length >= from + n;
    }, timeoutMs, 20);
  }

  /** Stops it; returns the counter values it was answered. */
  async stop(): Promise<number[]> {
    this.child.stdin!.write('stop\n');
    await eventually(() => this.exit !== undefined, 10_000, 20);
    const done = /^done (\d+)$/m.exec(this.out);
    assert.ok(done && this.exit === 0, `the client ended cleanly: exit ${this.exit}, ${this.err.trim()}`);
    assert.equal(Number(done[1]), this.values().length);
    return this.values();
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

describe('Node.js HTTP service migrated to a second host while a client counts', { skip: SKIP || (hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)') }, () => {
  let pair: HostPair;
  let a: NetHost;
  let b: NetHost;
  let ip = '';
  const clients: Counter[] = [];

  const migrate = (from: NetHost, to: NetHost, extra: string[]) =>
    from.ok(['migrate', 'nd', to.url(), '--remote-command', to.remoteCommand(), ...pair.sshArgs(), '--tcp-established', '--print-stats', ...extra], { timeoutMs: 180_000 });
  /** The next counter value, over a new connection from A. */
  const nextCount = async (): Promise<number> =>
    Number(execFileSync('nsenter', [`--net=/run/netns/${a.netns}`, process.execPath, '-e', `fetch('http://${ip}/count').then((r) => r.text()).then((t) => { console.log(t); process.exit(0); })`], { encoding: 'utf8', timeout: 20_000 }).trim());

  async function underLoad(from: NetHost, to: NetHost, extra: string[], route: () => void): Promise<{ st: any; answers: number }> {
    const start = await nextCount();
    const c = new Counter(a, ip);
    clients.push(c);
    await c.progress(100);
    const st = JSON.parse(await migrate(from, to, extra));
    assert.deepEqual(await names(from), []);
    assert.deepEqual(await names(to, false), ['nd']);
    assert.equal((await to.inspect('nd')).NetworkSettings.IPAddress, ip);
    route();
    await c.progress(100);
    const values = await c.stop();
    assert.deepEqual(values, Array.from({ length: values.length }, (_, i) => start + 1 + i), 'every answer the one before plus one: nothing lost or repeated');
    assert.equal(await nextCount(), start + 1 + values.length, 'a new connection gets the next value');
    assert.deepEqual(uids((await to.inspect('nd')).State.Pid), Array(4).fill(String(UID)));
    return { st, answers: values.length };
  }

  before(async () => {
    pair = new HostPair();
    a = pair.a;
    b = pair.b;
    await pair.setup();
    await Promise.all([importApp(a, 'nodejs'), importApp(b, 'nodejs')]);
    await a.ok(nodeRunArgs('nd'));
    ip = (await a.inspect('nd')).NetworkSettings.IPAddress as string;
    await eventually(async () => (await a.logs('nd')).includes(`serving as uid ${UID}`), 20_000, 100);
    // B forwards between A and its bridge and does not masquerade what the container sends A
    // (as a routed network would): the restored socket speaks first, unknown to B's conntrack.
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'iptables', '-w', '-t', 'nat', '-I', 'POSTROUTING', '-d', `${a.ip}/32`, '-j', 'ACCEPT']);
  });
  after(async () => {
    for (const c of clients) c.kill();
    // Routes, forwarding and rules live in the pair's namespaces and go with them.
    await pair?.destroy();
  });

  it('stop-and-copy A -> B: the counter goes on over the same keep-alive connection', async (t) => {
    const { st, answers } = await underLoad(a, b, [], () => execFileSync('ip', ['-n', a.netns, 'route', 'add', `${ip}/32`, 'via', b.ip]));
    assert.equal(st.mode, 'stop-and-copy');
    t.diagnostic(`stop-and-copy: downtime ${st.downtime_ms} ms, total ${st.total_ms} ms, ${(st.bytes_sent / 2 ** 20).toFixed(1)} MiB sent; ${answers} answers`);
  });

  it('lazy B -> A: the same, with memory following on demand', async (t) => {
    const info = JSON.parse(await a.ok(['info', '--format', 'json']));
    if (!info.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${info.host.notes.join('; ')}`);
    const { st, answers } = await underLoad(b, a, ['--lazy'], () => execFileSync('ip', ['-n', a.netns, 'route', 'del', `${ip}/32`]));
    assert.equal(st.mode, 'lazy');
    t.diagnostic(`lazy: downtime ${st.downtime_ms} ms, total ${st.total_ms} ms, ${(st.bytes_sent / 2 ** 20).toFixed(1)} MiB sent; ${answers} answers`);
  });
});
