/**
 * A real application: a small Python 3 HTTP service (Debian's python3, standard library only:
 * http.server's ThreadingHTTPServer) that keeps an in-memory counter and a list of POSTed items,
 * running as uid 33 on the default bridge. Its counter and list are its own proof that nothing
 * was lost: checkpointed and restored in place while this test holds a keep-alive connection,
 * checkpointed with -R while a writer posts items one at a time, exported then imported twice
 * into a second root (two copies serving at once), and migrated to a second host (stop-and-copy,
 * then lazy back) while a client counts through one keep-alive connection. Traffic goes only to
 * the containers' addresses on Ferry's bridges and inside the test's own namespaces.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as path from 'node:path';
import { Host, eventually, isRoot, timed } from '../helpers/ferry.js';
import { describeHttpMigration, importApp, procUids as uids } from '../helpers/apps.js';
import { freeIp } from '../helpers/net.js';

const SKIP = !isRoot() ? 'needs root' : false;
const PORT = 80;
const UID = 33;

/**
 * The service. GET /count answers the counter, then increments it (0, 1, 2, ...); POST /item
 * appends the body and answers the list's new length; GET /items answers the list as JSON.
 * Every answer carries X-Conn, the number of the connection it came on (the server numbers each
 * connection it accepts), so the test can tell that a connection is the very same one. It binds
 * port 80 as root, then gives up root for good.
 */
const APP = `
import json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
count = 0
items = []
conns = 0

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True  # headers and body go out as two writes

    def setup(self):
        global conns
        super().setup()
        with lock:
            conns += 1
            self.conn = conns

    def reply(self, body, ctype='text/plain', code=200):
        data = body.encode()
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('X-Conn', str(self.conn))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global count
        if self.path == '/count':
            with lock:
                n = count
                count += 1
            self.reply(str(n))
        elif self.path == '/items':
            with lock:
                body = json.dumps(items)
            self.reply(body, 'application/json')
        else:
            self.reply('not found', code=404)

    def do_POST(self):
        if self.path != '/item':
            return self.reply('not found', code=404)
        body = self.rfile.read(int(self.headers.get('Content-Length', '0'))).decode()
        with lock:
            items.append(body)
            n = len(items)
        self.reply(str(n))

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(('0.0.0.0', ${PORT}), Handler)
server.daemon_threads = True
os.setgroups([])
os.setgid(${UID})
os.setuid(${UID})
print('serving as uid', os.getuid(), flush=True)
server.serve_forever()
`;


interface Answer {
  status: number;
  body: string;
  conn: number;
  socket: net.Socket;
  reused: boolean;
}

/** One request through `agent`; resolves with the answer and the socket it went over. */
function request(agent: http.Agent, host: string, method: string, urlPath: string, body?: string, timeoutMs = 5000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket | undefined;
    const req = http.request({ host, port: PORT, method, path: urlPath, agent, headers: body !== undefined ? { 'Content-Length': Buffer.byteLength(body) } : {} }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (data += d));
      res.on('end', () => {
        clearTimeout(t);
        resolve({ status: res.statusCode ?? 0, body: data, conn: Number(res.headers['x-conn']), socket: socket!, reused: req.reusedSocket });
      });
      res.on('error', reject);
    });
    const t = setTimeout(() => req.destroy(new Error(`no answer to ${method} ${urlPath} within ${timeoutMs} ms`)), timeoutMs);
    req.on('socket', (s) => (socket = s));
    req.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    req.end(body);
  });
}

describe('Python HTTP service across checkpoint/restore', { skip: SKIP }, () => {
  let a: Host;
  let b: Host;
  let ip = '';
  const agents: http.Agent[] = [];
  let held: http.Agent; // one keep-alive connection from this process, held across the steps
  let heldSocket: net.Socket;
  let heldConn = 0;
  let counter = 0; // the value the next GET /count must answer
  const expected: string[] = []; // the list the service must hold

  const get = (p: string) => request(held, ip, 'GET', p);
  /** GET /count on the held connection: the expected value, on the very same connection. */
  async function countOnHeld(): Promise<void> {
    const r = await get('/count');
    assert.equal(r.status, 200);
    assert.ok(r.socket === heldSocket, 'the same client socket');
    assert.ok(r.reused, 'a reused keep-alive connection');
    assert.equal(r.conn, heldConn, 'the same connection on the server side');
    assert.equal(Number(r.body), counter, 'the counter goes on');
    counter++;
  }
  async function itemsOn(agent: http.Agent, host: string): Promise<string[]> {
    const r = await request(agent, host, 'GET', '/items');
    assert.equal(r.status, 200);
    return JSON.parse(r.body) as string[];
  }

  before(async () => {
    a = new Host('pya');
    b = new Host('pyb');
    await importApp(a, 'python');
    await importApp(b, 'python');
    const opt = path.join(a.dir, 'opt');
    fs.mkdirSync(opt);
    fs.writeFileSync(path.join(opt, 'app.py'), APP);
    // Away from where each root's allocation starts: the second root's copy gets an address of its own.
    ip = freeIp();
    await a.ok(['run', '-d', '--name', 'py1', '--ip', ip, '-v', `${opt}:/opt:ro`, 'python', 'python3', '/opt/app.py']);
    assert.equal((await a.inspect('py1')).NetworkSettings.IPAddress, ip);
    held = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(held);
    const first = await eventually(() => get('/items'), 20_000, 100);
    assert.equal(first.body, '[]');
    heldSocket = first.socket;
    heldConn = first.conn;
    await eventually(async () => (await a.logs('py1')).includes(`serving as uid ${UID}`), 10_000, 100);
    assert.deepEqual(uids((await a.inspect('py1')).State.Pid), Array(4).fill(String(UID)), 'the service runs as uid 33, not root');
    for (let i = 0; i < 5; i++) await countOnHeld();
    for (const item of ['alpha', 'beta', 'gamma']) {
      const r = await request(held, ip, 'POST', '/item', item);
      expected.push(item);
      assert.equal(Number(r.body), expected.length);
    }
  });
  after(async () => {
    for (const ag of agents) ag.destroy();
    await a?.destroy();
    await b?.destroy();
  });

  it('checkpoint --tcp-established / restore in place: the held connection answers, counter n+1, items intact', async (t) => {
    await countOnHeld();
    const pid = (await a.inspect('py1')).State.Pid;
    const [, ckptMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', 'py1']));
    assert.equal((await a.inspect('py1')).State.Status, 'exited');
    assert.ok(!heldSocket.destroyed, 'the client saw no FIN or reset');
    const [, restoreMs] = await timed(() => a.ok(['container', 'restore', '--tcp-established', 'py1']));
    const ins = await a.inspect('py1');
    assert.equal(ins.State.Status, 'running');
    assert.notEqual(ins.State.Pid, pid, 'a restored process, not the old one');
    assert.equal(ins.NetworkSettings.IPAddress, ip);
    assert.deepEqual(uids(ins.State.Pid), Array(4).fill(String(UID)), 'still uid 33 after the restore');

    await countOnHeld(); // n+1, on the same connection
    assert.deepEqual(await itemsOn(held, ip), expected);
    const r = await request(held, ip, 'POST', '/item', 'after-restore');
    expected.push('after-restore');
    assert.equal(Number(r.body), expected.length);
    assert.equal(r.conn, heldConn);
    t.diagnostic(`checkpoint ${ckptMs} ms, restore ${restoreMs} ms`);
  });

  it('checkpoint -R while a writer posts 200 items: every acknowledged item is there exactly once', async (t) => {
    const N = 200;
    const pid = (await a.inspect('py1')).State.Pid;
    let acked = 0;
    const writer = (async () => {
      for (let i = 0; i < N; i++) {
        const item = `w-${i}`;
        const r = await request(held, ip, 'POST', '/item', item);
        assert.equal(r.status, 200);
        assert.equal(r.conn, heldConn, 'every write on the held connection');
        assert.equal(Number(r.body), expected.length + 1, `POST ${item}: the new length`);
        expected.push(item);
        acked++;
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    let settled = false;
    writer.then(
      () => (settled = true),
      () => (settled = true),
    );
    await eventually(() => acked >= 30 || settled, 10_000, 5);
    if (settled) await writer; // a writer that failed early fails the test with its own error
    const ackedBefore = acked;
    const [, ms] = await timed(() => a.ok(['container', 'checkpoint', '-R', '--tcp-established', 'py1']));
    const ackedAtEnd = acked;
    await writer;
    assert.ok(ackedBefore < N, `the checkpoint started while the writer was still writing (${ackedBefore} acks)`);
    assert.equal(acked, N);
    const ins = await a.inspect('py1');
    assert.equal(ins.State.Status, 'running');
    assert.equal(ins.State.Pid, pid, 'never stopped');

    const items = await itemsOn(held, ip);
    const writes = items.filter((x) => x.startsWith('w-'));
    assert.equal(new Set(writes).size, writes.length, 'no item twice');
    assert.deepEqual(writes, Array.from({ length: N }, (_, i) => `w-${i}`), 'every acknowledged item, in order');
    assert.deepEqual(items, expected);
    await countOnHeld();
    t.diagnostic(`checkpoint -R ${ms} ms; ${ackedBefore} items acknowledged before it, ${ackedAtEnd} by its end, ${acked} in all`);
  });

  it('export, then import twice (py2, py3) into a second root: both serve at once, each going on from the checkpointed items and counter on its own', async (t) => {
    await countOnHeld();
    const file = path.join(a.dir, 'py1.tar.zst');
    const [, exportMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', '--export', file, 'py1']));
    assert.equal((await a.inspect('py1')).State.Status, 'exited');
    const size = fs.statSync(file).size;

    // A new name means a new address: the held connection cannot follow, so it is closed there.
    const imports: number[] = [];
    const copies: { name: string; ip: string; agent: http.Agent }[] = [];
    for (const name of ['py2', 'py3']) {
      const [, ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', name, '--tcp-close', '--allow-host-mounts']));
      imports.push(ms);
      const ins = await b.inspect(name);
      assert.equal(ins.State.Status, 'running');
      assert.deepEqual(uids(ins.State.Pid), Array(4).fill(String(UID)), `${name} runs as uid 33`);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      agents.push(agent);
      copies.push({ name, ip: ins.NetworkSettings.IPAddress as string, agent });
    }
    assert.equal(new Set([ip, ...copies.map((c) => c.ip)]).size, 3, 'each copy has an address of its own');

    for (const c of copies) assert.deepEqual(await eventually(() => itemsOn(c.agent, c.ip), 20_000, 100), expected, `${c.name} holds the checkpointed items`);
    // Both go on from the same value, each on its own: two answers from py2, then one from py3.
    for (const [c, want] of [[copies[0]!, counter], [copies[0]!, counter + 1], [copies[1]!, counter]] as const) {
      const r = await request(c.agent, c.ip, 'GET', '/count');
      assert.equal(Number(r.body), want, `${c.name}'s counter`);
    }
    const p2 = await request(copies[0]!.agent, copies[0]!.ip, 'POST', '/item', 'in-py2');
    assert.equal(Number(p2.body), expected.length + 1);
    assert.deepEqual(await itemsOn(copies[1]!.agent, copies[1]!.ip), expected, "py2's write is py2's alone");
    t.diagnostic(`export ${exportMs} ms (${(size / 2 ** 20).toFixed(1)} MiB zstd), import+restore ${imports.join(' ms, ')} ms`);
  });
});

// The program travels in the command line: no host directory to have on both hosts.
describeHttpMigration({ title: 'Python HTTP service migrated to a second host while a client counts', app: 'python', name: 'pym', run: ['run', '-d', '--name', 'pym', 'python', 'python3', '-c', APP], port: PORT, uid: UID });
