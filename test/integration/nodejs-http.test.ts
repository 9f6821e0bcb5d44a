/**
 * A real application: a Node.js HTTP service (Debian's nodejs, node:http) that keeps an
 * in-memory counter, running as `nobody` on the default bridge. Its counter is its own proof
 * that nothing was lost or repeated: checkpointed and restored in place while this test holds a
 * keep-alive connection, checkpointed with -R, exported then imported twice into a second root
 * (both copies go on from the same value, each on its own), and migrated to a second host
 * (stop-and-copy, then lazy back) while a client counts through one keep-alive connection.
 * Also io_uring, which CRIU cannot dump: Debian 12's nodejs (libuv 1.44) never uses it; Debian
 * 13's Node.js 20 (libuv 1.50) sets one up for every event loop whatever UV_USE_IO_URING says,
 * unless denied it, as Ferry's containers are by default. Traffic goes only to container IPs on Ferry's bridges and inside
 * the test's own namespaces.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import { Host, eventually, isRoot, sleep, timed } from '../helpers/ferry.js';
import { connectTcp, freeIp } from '../helpers/net.js';
import { describeHttpMigration, importApp, procUids as uids } from '../helpers/apps.js';

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
  if (process.env.AS_ROOT !== '1') {
    process.setgroups([]);
    process.setgid(${UID});
    process.setuid(${UID});
  }
  // One asynchronous file read before it says it serves: libuv has set up whatever it reads files with.
  fs.readFile('/etc/os-release', () => console.log('serving as uid ' + process.getuid()));
});
`;

/** `ferry run` arguments that start the service in a container named `name`. */
function nodeRunArgs(name: string, extra: string[] = [], image = 'nodejs'): string[] {
  return ['run', '-d', '--name', name, ...extra, image, 'node', '-e', APP];
}


interface Answer {
  status: number;
  body: string;
  /** The server's number of the connection the answer came on. */
  conn: number;
}

/**
 * One HTTP/1.1 keep-alive connection from this process that is never reopened (an HTTP agent
 * would quietly open another): requests go one at a time, and a broken connection fails them.
 */
class Conn {
  private buf = '';
  private broke: Error | undefined;

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.setNoDelay(true);
    sock.on('data', (d: string) => (this.buf += d));
    sock.on('error', (e) => (this.broke = e));
    sock.on('close', () => (this.broke ??= new Error('connection closed')));
  }

  static async open(host: string, timeoutMs = 5000): Promise<Conn> {
    return new Conn(await connectTcp(host, PORT, timeoutMs));
  }

  async get(urlPath: string, timeoutMs = 10_000): Promise<Answer> {
    if (this.broke) throw new Error(`connection broken before GET ${urlPath}: ${this.broke.message}`);
    this.buf = '';
    this.sock.write(`GET ${urlPath} HTTP/1.1\r\nHost: ferry-test\r\n\r\n`);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const he = this.buf.indexOf('\r\n\r\n');
      if (he >= 0) {
        const head = this.buf.slice(0, he);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (this.buf.length >= he + 4 + len) {
          const body = this.buf.slice(he + 4, he + 4 + len);
          this.buf = '';
          return { status: Number(head.split(' ')[1]), body, conn: Number(/x-conn: *(\d+)/i.exec(head)?.[1]) };
        }
      }
      const broke = this.broke as Error | undefined; // set by the socket's handlers meanwhile
      if (broke) throw new Error(`connection broke during GET ${urlPath}: ${broke.message}`);
      if (Date.now() > end) throw new Error(`no answer to GET ${urlPath} within ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  get isClosed(): boolean {
    return !!this.broke;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** One GET over a new connection (closed after). */
async function getOnce(host: string, urlPath: string): Promise<Answer> {
  const c = await Conn.open(host);
  try {
    return await c.get(urlPath);
  } finally {
    c.close();
  }
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
  const conns: Conn[] = [];
  let held: Conn; // one keep-alive connection from this process, held across the steps
  let heldConn = 0;
  let counter = 0; // the value the next GET /count must answer

  /** GET /count on the held connection: the expected value, on the very same connection. */
  async function countOnHeld(): Promise<void> {
    const r = await held.get('/count');
    assert.equal(r.status, 200);
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
    await eventually(async () => (await a.logs('nd1')).includes(`serving as uid ${UID}`), 20_000, 100);
    held = await Conn.open(ip);
    conns.push(held);
    const first = await held.get('/count');
    assert.equal(first.body, '0');
    counter = 1;
    heldConn = first.conn;
    assert.deepEqual(uids((await a.inspect('nd1')).State.Pid), Array(4).fill(String(UID)), 'the service runs as nobody, not root');
    for (let i = 0; i < 4; i++) await countOnHeld();
  });
  after(async () => {
    for (const c of conns) c.close();
    await a?.destroy();
    await b?.destroy();
  });

  it('checkpoint --tcp-established / restore in place: the held keep-alive connection answers, counter n+1', async (t) => {
    const pid = (await a.inspect('nd1')).State.Pid;
    const [, ckptMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', 'nd1']));
    assert.equal((await a.inspect('nd1')).State.Status, 'exited');
    assert.ok(!held.isClosed, 'the client saw no FIN or reset');
    const [, restoreMs] = await timed(() => a.ok(['container', 'restore', '--tcp-established', 'nd1']));
    const ins = await a.inspect('nd1');
    assert.equal(ins.State.Status, 'running');
    assert.notEqual(ins.State.Pid, pid, 'a restored process, not the old one');
    assert.equal(ins.NetworkSettings.IPAddress, ip);
    assert.deepEqual(uids(ins.State.Pid), Array(4).fill(String(UID)), 'still nobody after the restore');
    await countOnHeld();
    // Its event loop works whole: the thread pool (an async file read) and new connections.
    assert.ok(Number((await held.get('/file')).body) > 0);
    const c = await getOnce(ip, '/count');
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
    const [k2, k3] = await Promise.all(ips.map((x) => eventually(() => Conn.open(x), 20_000, 100)));
    conns.push(k2!, k3!);
    // Both serve at once, from the same value; then each counts on its own.
    const [c2, c3] = await Promise.all([k2!.get('/count'), k3!.get('/count')]);
    assert.deepEqual([Number(c2.body), Number(c3.body)], [counter, counter], 'both continue from the checkpointed counter');
    for (let i = 1; i <= 3; i++) assert.equal(Number((await k2!.get('/count')).body), counter + i);
    assert.equal(Number((await k3!.get('/count')).body), counter + 1, 'two copies, not one shared');
    t.diagnostic(`export ${exportMs} ms (${(size / 2 ** 20).toFixed(1)} MiB zstd), import+restore ${import2Ms} ms and ${import3Ms} ms`);
  });

  it("Debian 12's nodejs holds no io_uring, even asked to with UV_USE_IO_URING=1: it checkpoints", async () => {
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

describe('Node.js 20 (Debian 13, libuv 1.50) and io_uring', { skip: SKIP }, () => {
  let h: Host;
  const conns: Conn[] = [];

  before(async () => {
    h = new Host('nd20');
    await importApp(h, 'nodejs20');
  });
  after(async () => {
    for (const c of conns) c.close();
    await h?.destroy();
  });

  // Node.js 20 refuses setuid()/setgroups() where io_uring may be on (CVE-2024-22017): it stays root.
  const ROOT = ['-e', 'AS_ROOT=1'];

  it('denied io_uring by default, its libuv falls back to epoll: checkpointed and restored with a keep-alive connection held', async (t) => {
    const ip = freeIp();
    await h.ok(nodeRunArgs('nd20', ['--ip', ip, ...ROOT], 'nodejs20'));
    await eventually(async () => (await h.logs('nd20')).includes('serving as uid 0'), 20_000, 100);
    const held = await Conn.open(ip);
    conns.push(held);
    const first = await held.get('/count');
    assert.equal(first.body, '0');
    const who = JSON.parse((await held.get('/whoami')).body);
    const [major, minor] = String(who.uv).split('.').map(Number);
    assert.ok(major! > 1 || minor! >= 49, `a libuv that sets up io_uring for its event loops: ${JSON.stringify(who)}`);
    const pid = (await h.inspect('nd20')).State.Pid;
    const kinds = anonInodes(pid);
    assert.ok(kinds.includes('eventpoll') && !kinds.includes('io_uring'), kinds.join(' '));
    const [, ckptMs] = await timed(() => h.ok(['container', 'checkpoint', '--tcp-established', 'nd20']));
    const [, restoreMs] = await timed(() => h.ok(['container', 'restore', '--tcp-established', 'nd20']));
    const r = await held.get('/count');
    assert.equal(r.body, '1', 'the counter goes on');
    assert.equal(r.conn, first.conn, 'on the same connection');
    const again = (await h.inspect('nd20')).State.Pid;
    assert.notEqual(again, pid);
    assert.match(fs.readFileSync(`/proc/${again}/status`, 'utf8'), /^Seccomp:\s+2$/m, 'still filtered after the restore');
    assert.ok(Number((await held.get('/file')).body) > 0, 'file reads work (thread pool)');
    t.diagnostic(`node ${who.node}, libuv ${who.uv}: checkpoint ${ckptMs} ms, restore ${restoreMs} ms`);
    await h.ok(['rm', '-f', 'nd20']);
  });

  it('with --security-opt seccomp=unconfined it holds io_uring even with UV_USE_IO_URING=0: refused before freezing, naming the way out', async () => {
    await h.ok(nodeRunArgs('nd20u', ['--network', 'none', '--security-opt', 'seccomp=unconfined', '-e', 'UV_USE_IO_URING=0', ...ROOT], 'nodejs20'));
    await eventually(async () => (await h.logs('nd20u')).includes('serving as uid 0'), 20_000, 100);
    const pid = (await h.inspect('nd20u')).State.Pid;
    assert.ok(anonInodes(pid).includes('io_uring'), `libuv's epoll batching ring: ${anonInodes(pid).join(' ')}`);
    for (const args of [['container', 'checkpoint', 'nd20u'], ['container', 'checkpoint', '-R', 'nd20u']]) {
      const r = await h.run(args);
      assert.equal(r.code, 125, r.stderr);
      assert.match(
        r.stderr.trim(),
        /^Error: container nd20u cannot be checkpointed: its process \d+ \(node\) uses io_uring, which CRIU cannot dump; nothing was frozen and it keeps running\. To checkpoint it, recreate the container without --security-opt seccomp=unconfined: Ferry's filter then denies io_uring and programs fall back to other I\/O \(Node\.js falls back to epoll by itself\)$/,
      );
    }
    const ins = await h.inspect('nd20u');
    assert.equal(ins.State.Status, 'running');
    assert.equal(ins.State.Pid, pid);
    await h.ok(['rm', '-f', 'nd20u']);
  });
});

describeHttpMigration({ title: 'Node.js HTTP service migrated to a second host while a client counts', app: 'nodejs', name: 'nd', run: nodeRunArgs('nd'), port: PORT, uid: UID });
