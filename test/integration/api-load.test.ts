/**
 * Issue 17: the service under load, and killed mid-request.
 *
 * Load: concurrent clients (50 by default) for a bounded time (30 s by default) over the socket,
 * each creating, inspecting, sometimes starting, and mostly removing small containers without a
 * network. Nothing is lost: every create that answered 201 was removed by its client or is
 * listed; the API and `ferry ps -a` agree; no request failed; no directory, overlay, mount, runc
 * state or process is left that a listed container does not explain.
 *
 * Kill: the service is SIGKILLed while creates, starts and removes are in flight. The next ferry
 * command (`ps -a`) repairs what the op journal names: afterwards every container directory is a
 * listed container with no operation pending, and nothing else is left.
 *
 * FERRY_LOAD_CLIENTS and FERRY_LOAD_SECONDS change the load (this machine has 2 CPUs, shared).
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { eventually, FERRY_BIN, Host, isRoot, runcIds, sleep } from '../helpers/ferry.js';
import { Service } from '../helpers/api.js';

const SKIP = !isRoot() ? 'needs root' : false;
const CLIENTS = Number(process.env.FERRY_LOAD_CLIENTS ?? 50);
const SECONDS = Number(process.env.FERRY_LOAD_SECONDS ?? 30);

interface Reply {
  status: number;
  body: string;
}

/** Requests over the service's socket, a connection each (Bun's keep-alive agent retries a dead socket on its own). */
function client(sock: string) {
  const request = (method: string, p: string, body?: unknown): Promise<Reply> =>
    new Promise((resolve) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request({ socketPath: sock, method, path: `/v1.41${p}`, agent: false, headers: text ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } : {} }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        res.on('error', () => resolve({ status: 0, body: '' }));
      });
      // A connection cut (the service killed) is status 0.
      req.on('error', () => resolve({ status: 0, body: '' }));
      req.end(text);
    });
  return { request };
}

const CREATE = (cmd: string[]) => ({ Image: 'busybox', Cmd: cmd, Labels: { load: '1' }, HostConfig: { NetworkMode: 'none' } });

/** What is on the host for h: records (and anything else) under containers, overlays, mounts, runc state. */
function footprint(h: Host) {
  const ls = (d: string): string[] => (fs.existsSync(d) ? fs.readdirSync(d).sort() : []);
  return {
    dirs: ls(path.join(h.root, 'containers')),
    overlays: ls(path.join(h.root, 'overlay')),
    mounts: h.mounts(),
    runc: runcIds(h).sort(),
  };
}

/** `ferry ps -a` as JSON: ID and state of each container. */
async function psAll(h: Host): Promise<Map<string, string>> {
  return new Map((JSON.parse(await h.ok(['ps', '-a', '--format', 'json'])) as { Id: string; State: string }[]).map((c) => [c.Id, c.State]));
}

/**
 * The invariants both tests end on: the records are exactly the containers listed, none with an
 * operation pending; overlays and runc state belong to listed containers; only running ones
 * have a mounted rootfs or runc state; the only processes left are their conmons.
 */
async function assertConsistent(h: Host, listed: Map<string, string>, servicePid?: number): Promise<void> {
  const ids = [...listed.keys()].sort();
  const running = ids.filter((id) => listed.get(id) === 'running');
  const f = footprint(h);
  assert.deepEqual(f.dirs, ids, 'every container directory is a listed container, and nothing else is there');
  for (const id of ids) {
    const rec = JSON.parse(fs.readFileSync(path.join(h.root, 'containers', id, 'container.json'), 'utf8'));
    assert.equal(rec.state.op, undefined, `container ${id} has no operation pending`);
  }
  for (const o of f.overlays) assert.ok(listed.has(o), `overlay ${o} belongs to a listed container`);
  for (const m of f.mounts) assert.ok(running.some((id) => m.includes(id)), `mount ${m} is a running container's`);
  assert.deepEqual(f.runc, running, 'runc knows exactly the running containers');
  // conmon's exit commands (`container cleanup`) of containers a repair stopped finish by themselves.
  const cmdline = (pid: number): string => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      return ''; // exited
    }
  };
  const left = (): string[] => h.processes().filter((p) => p !== servicePid).map(cmdline).filter(Boolean);
  const conmonOfRunning = (cmd: string): boolean => /^\S*conmon /.test(cmd) && running.some((id) => cmd.includes(` -c ${id} `));
  await eventually(() => left().every(conmonOfRunning), 20_000, 200).catch(() => {
    throw new Error(`processes left that no running container explains:\n${left().filter((c) => !conmonOfRunning(c)).map((c) => c.slice(0, 160)).join('\n')}`);
  });
  assert.equal(left().length, running.length, 'one conmon per running container');
}

describe('the service under load, and killed mid-request', { skip: SKIP }, () => {
  let h: Host;
  let svc: Service | undefined;

  before(async () => {
    h = new Host('load');
    await h.importBusybox();
  });
  after(async () => {
    await svc?.stop();
    await h?.destroy();
  });

  it(`${CLIENTS} clients for ${SECONDS} s: nothing lost, API and CLI agree, nothing stray`, async () => {
    svc = await Service.start(h);
    const pre = await h.ok(['create', '--name', 'made-by-cli', '--network', 'none', 'busybox', 'true']);
    const api = client(svc.sock);
    const created = new Set<string>();
    const removed = new Set<string>();
    const unexpected: string[] = [];
    let iterations = 0;
    const expect = (what: string, r: Reply, status: number): boolean => {
      if (r.status === status) return true;
      unexpected.push(`${what}: ${r.status} ${r.body.trim()}`);
      return false;
    };
    const end = Date.now() + SECONDS * 1000;
    const worker = async (c: number): Promise<void> => {
      for (let n = 0; Date.now() < end && unexpected.length < 20; n++) {
        iterations++;
        const start = n % 4 === 1; // a quarter are started (a conmon, runc, a mounted rootfs each)
        const keep = n % 8 === 3; // an eighth are left for the listing to account for
        const r = await api.request('POST', `/containers/create?name=ld-${c}-${n}`, CREATE(start ? ['sleep', '600'] : ['true']));
        if (!expect('create', r, 201)) continue;
        const id = JSON.parse(r.body).Id as string;
        created.add(id);
        const i = await api.request('GET', `/containers/${id}/json`);
        if (expect('inspect', i, 200)) assert.equal(JSON.parse(i.body).Name, `/ld-${c}-${n}`);
        if (start) {
          if (!expect('start', await api.request('POST', `/containers/${id}/start`), 204)) continue;
          const s = await api.request('GET', `/containers/${id}/json`);
          if (expect('inspect', s, 200)) assert.equal(JSON.parse(s.body).State.Status, 'running');
        }
        if (keep) continue;
        if (expect('remove', await api.request('DELETE', `/containers/${id}?force=1`), 204)) removed.add(id);
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => worker(c)));
    const took = Date.now() - t0;
    process.stderr.write(`  load: ${CLIENTS} clients, ${iterations} iterations in ${(took / 1000).toFixed(1)} s: ${created.size} created, ${removed.size} removed\n`);
    assert.deepEqual(unexpected, [], 'every request answered as expected');
    assert.ok(created.size >= CLIENTS, `each client got a container made at least (${created.size})`);

    const listedApi = new Set((JSON.parse((await api.request('GET', '/containers/json?all=1')).body) as { Id: string }[]).map((c) => c.Id));
    const listedCli = await psAll(h);
    assert.deepEqual([...listedApi].sort(), [...listedCli.keys()].sort(), 'the API and `ferry ps -a` list the same containers');
    const lost = [...created].filter((id) => !removed.has(id) && !listedApi.has(id));
    assert.deepEqual(lost, [], 'every container created is removed or listed');
    for (const id of removed) assert.ok(!listedApi.has(id), `removed ${id} is not listed`);
    for (const id of listedApi) assert.ok(created.has(id) || id === pre, `listed ${id} was created by a client or the CLI`);
    assert.ok(listedApi.has(pre), 'the CLI\'s container is listed by the API');
    await assertConsistent(h, listedCli, svc.child.pid);

    await h.ok(['rm', '-a', '-f']);
    await assertConsistent(h, await psAll(h), svc.child.pid);
    await svc.stop();
    svc = undefined;
  });

  it('SIGKILL while creates, starts and removes are in flight: the next command repairs everything', async () => {
    svc = await Service.start(h);
    const api = client(svc.sock);
    const created = new Set<string>();
    const removed = new Set<string>();
    const cutRemoving = new Set<string>();
    let stop = false;
    let cut = 0;
    const worker = async (c: number): Promise<void> => {
      for (let n = 0; !stop; n++) {
        const r = await api.request('POST', `/containers/create?name=k-${c}-${n}`, CREATE(['sleep', '600']));
        if (r.status !== 201) {
          cut++;
          await sleep(10);
          continue;
        }
        const id = JSON.parse(r.body).Id as string;
        created.add(id);
        // A third of the clients create and remove, a third create and start, a third do all three.
        if (c % 3 !== 0 && (await api.request('POST', `/containers/${id}/start`)).status !== 204) cut++;
        if (c % 3 !== 1) {
          const d = await api.request('DELETE', `/containers/${id}?force=1`);
          if (d.status === 204) removed.add(id);
          else if (d.status === 0) cutRemoving.add(id); // cut: it may be gone or still there
        }
      }
    };
    const workers = Promise.all(Array.from({ length: CLIENTS }, (_, c) => worker(c)));
    // Killed once requests of every kind are under way, at a moment that differs from run to run.
    await eventually(() => created.size >= CLIENTS, 60_000, 20);
    await sleep(Math.floor(Math.random() * 1500));
    stop = true; // the clients stop once their request in flight ends (cut)
    svc.child.kill('SIGKILL');
    await svc.exited();
    await workers;
    svc = undefined;
    process.stderr.write(`  kill: ${created.size} created, ${removed.size} removed, ${cut} requests cut or refused when the service died\n`);
    assert.ok(cut > 0, 'requests were in flight when the service was killed');

    // Containers the service was stopping when it died may still be dying (their signal was
    // sent): once their conmons' exit commands have ended, the next ferry command repairs what
    // the journal names, and the state it leaves must hold still.
    await sleep(1000);
    const cleanups = (): number =>
      h.processes().filter((pid) => {
        try {
          const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return path.basename(argv[0]!) !== 'conmon' && argv.includes('cleanup'); // conmon's own argv names it too
        } catch {
          return false;
        }
      }).length;
    await eventually(() => cleanups() === 0, 30_000, 50);
    const listed = await psAll(h);
    const lost = [...created].filter((id) => !removed.has(id) && !cutRemoving.has(id) && !listed.has(id));
    assert.deepEqual(lost, [], 'every create that answered 201 is removed or listed (or was being removed when the service died)');
    for (const id of removed) assert.ok(!listed.has(id), `removed ${id} is not listed`);
    await assertConsistent(h, listed);

    // A service started again sees the same containers.
    svc = await Service.start(h);
    const again = client(svc.sock);
    const viaApi = (JSON.parse((await again.request('GET', '/containers/json?all=1')).body) as { Id: string }[]).map((c) => c.Id).sort();
    assert.deepEqual(viaApi, [...listed.keys()].sort());
    await h.ok(['rm', '-a', '-f']);
    await assertConsistent(h, await psAll(h), svc.child.pid);
    assert.equal(spawnSync('runc', ['--root', path.join(h.runroot, 'runc'), 'list', '-q'], { encoding: 'utf8' }).stdout.trim(), '');
  });

  it('a create killed between its temporary directory and the rename: swept by the next command, unless one is creating', async () => {
    // What a create leaves when killed there: containers/.tmp-ID with a record inside.
    const tmp = path.join(h.root, 'containers', `.tmp-${'ab'.repeat(32)}`);
    fs.mkdirSync(path.join(tmp, 'userdata'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'container.json'), '{}');
    // While the names lock is held (a create in progress), it is left alone.
    const holder = spawnSync('flock', ['-n', path.join(h.runroot, 'locks', 'names.lock'), FERRY_BIN, ...h.args(), 'ps', '-a'], { encoding: 'utf8' });
    assert.equal(holder.status, 0, holder.stderr);
    assert.ok(fs.existsSync(tmp), 'not swept while a create may be writing it');
    await h.ok(['ps', '-a']);
    assert.equal(fs.existsSync(tmp), false, 'swept by the next command');
    assert.deepEqual(footprint(h).dirs, []);
  });
});
