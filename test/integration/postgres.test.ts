/**
 * A real application: PostgreSQL 15 from Debian's packages (test/helpers/apps.ts), several
 * processes running as the `postgres` user around shared memory, with pgbench's tables (scale
 * 1). Checkpointed and restored in place while psql holds a connection and a writer inserts
 * through the freeze, checkpointed with -R under pgbench, exported and imported twice into a
 * second root, and migrated to a second host (stop-and-copy, then lazy back) while pgbench and a
 * writer run. The application checks itself: table checksums, pgbench's balance invariant, the
 * next transaction ID, the server's processes (pg_stat_activity) and its shared buffers.
 * The clients are the image's own psql and pgbench (test/helpers/pg.ts). Traffic goes only to
 * container IPs on Ferry's bridges and inside the test's own namespaces.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Host, eventually, isRoot, skipWith, timed } from '../helpers/ferry.js';
import { HostPair, hasSshd, names, type NetHost } from '../helpers/hosts.js';
import { freeIp } from '../helpers/net.js';
import { importApp } from '../helpers/apps.js';
import { BACKGROUND, BALANCED, PgWriter, Psql, clientRoot, pgRunArgs, pgState, pgbenchSummary, psqlOnce, runClient, waitReady, type ClientEnv } from '../helpers/pg.js';

const SKIP = !isRoot() ? 'needs root' : false;


/** Pages of pgbench_accounts in PostgreSQL's shared buffers (pg_buffercache). */
const CACHED_ACCOUNTS =
  "SELECT count(*) FROM pg_buffercache b JOIN pg_class c ON b.relfilenode = pg_relation_filenode(c.oid) AND b.reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) WHERE c.relname = 'pgbench_accounts'";
const XACT_COMMIT = "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'";

/** The uids of a process's children and itself, as the host's /proc shows them (real uid). */
function treeUids(pid: number): { pids: number[]; uids: Set<string> } {
  const kids = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const uids = new Set<string>();
  for (const p of [pid, ...kids]) {
    const line = fs.readFileSync(`/proc/${p}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'))!;
    uids.add(line.split(/\s+/)[1]!);
  }
  return { pids: kids, uids };
}

describe('PostgreSQL 15 across checkpoint/restore', { skip: SKIP }, () => {
  let a: Host;
  let b: Host;
  let client: ClientEnv;
  let ip = '';
  let held: Psql; // one connection from this process, held across the steps
  let heldPid = '';
  const sessions: Psql[] = [];
  const open = (host: string): Psql => {
    const s = new Psql(client, host);
    sessions.push(s);
    return s;
  };

  before(async () => {
    a = new Host('pga');
    b = new Host('pgb');
    await Promise.all([importApp(a, 'postgres'), importApp(b, 'postgres')]);
    client = { root: await clientRoot(a) };
    ip = freeIp();
    await a.ok(pgRunArgs('pg1', ['--ip', ip]));
    await waitReady(client, ip);
    const init = await runClient(client, 'pgbench', ['-h', ip, '-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, init.stderr);
    const load = await runClient(client, 'pgbench', ['-h', ip, '-n', '-c', '2', '-t', '200']);
    assert.equal(load.code, 0, load.stderr);
    assert.equal(pgbenchSummary(load.stdout).failed, 0);
    held = open(ip);
    heldPid = await held.one('SELECT pg_backend_pid()');
    await held.query('CREATE EXTENSION pg_buffercache');
    await held.query('CREATE TABLE w (n int PRIMARY KEY)');
    // Nothing left for autovacuum to do (its ANALYZE would take a transaction ID between two looks).
    await held.query('VACUUM ANALYZE');
  });
  after(async () => {
    for (const s of sessions) s.kill();
    await a?.destroy();
    await b?.destroy();
  });

  it('checkpoint --tcp-established / restore in place: the held connection goes on, data, processes and shared memory whole', async (t) => {
    const before = await pgState(held);
    const cached = Number(await held.one(CACHED_ACCOUNTS));
    assert.ok(cached > 0, 'pgbench_accounts is in shared buffers');
    const background = await held.query(BACKGROUND);
    assert.ok(['checkpointer', 'background writer', 'walwriter', 'autovacuum launcher'].every((k) => background.some((l) => l.endsWith(`|${k}`))), background.join(', '));
    const commits = Number(await held.one(XACT_COMMIT));
    const ins0 = await a.inspect('pg1');
    const procs = treeUids(ins0.State.Pid);
    assert.ok(procs.pids.length >= 5, `the server's processes: ${procs.pids.join(' ')}`);
    assert.ok(!procs.uids.has('0'), `none runs as root: uids ${[...procs.uids].join(' ')}`);

    const [, ckptMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', 'pg1']));
    assert.equal((await a.inspect('pg1')).State.Status, 'exited');
    assert.ok(held.alive, 'psql saw no FIN or reset');
    const [, restoreMs] = await timed(() => a.ok(['container', 'restore', '--tcp-established', 'pg1']));
    const ins = await a.inspect('pg1');
    assert.equal(ins.State.Status, 'running');
    assert.notEqual(ins.State.Pid, ins0.State.Pid, 'a restored process, not the old one');

    // The same server process serves the same connection.
    assert.equal(await held.one('SELECT pg_backend_pid()'), heldPid);
    // Shared buffers came back as they were (a restarted server would start with them empty).
    assert.equal(Number(await held.one(CACHED_ACCOUNTS)), cached);
    assert.deepEqual(await pgState(held), before, 'same checksums, history and next transaction ID');
    assert.deepEqual(await held.query(BACKGROUND), background, 'the same background processes');
    assert.ok(Number(await held.one(XACT_COMMIT)) >= commits, 'the statistics in shared memory were kept');
    assert.equal(await held.one(BALANCED), 't');
    const back = treeUids(ins.State.Pid);
    assert.ok(back.pids.length >= 5 && !back.uids.has('0'), `the server's processes, none as root: ${back.pids.join(' ')}`);
    // New connections, over TCP and over the server's unix socket inside the container.
    assert.deepEqual(await psqlOnce(client, ip, 'SELECT count(*) FROM pgbench_branches'), ['1']);
    assert.equal(await a.ok(['exec', 'pg1', 'psql', '-X', '-A', '-t', '-U', 'postgres', '-c', 'SELECT 42']), '42');
    t.diagnostic(`checkpoint ${ckptMs} ms, restore ${restoreMs} ms; ${cached} cached pages of pgbench_accounts`);
  });

  it('a writer through checkpoint and restore in place: every acknowledged insert is there once', async (t) => {
    const w = new PgWriter(open(ip), 'w');
    await w.progress(100);
    const [, ckptMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', 'pg1']));
    const atCheckpoint = w.acked;
    await new Promise((r) => setTimeout(r, 300)); // a write waits on the frozen connection
    assert.equal(w.acked, atCheckpoint, 'nothing acknowledged while it is checkpointed');
    const [, restoreMs] = await timed(() => a.ok(['container', 'restore', '--tcp-established', 'pg1']));
    await w.progress(100);
    const acked = await w.stop();
    assert.equal(await held.one('SELECT count(*) || \'|\' || min(n) || \'|\' || max(n) FROM w'), `${acked}|0|${acked - 1}`, 'rows 0..N-1: nothing lost or doubled');
    await held.query('TRUNCATE w');
    t.diagnostic(`${atCheckpoint} inserts acknowledged before the checkpoint (${ckptMs} ms), ${acked} in all; restore ${restoreMs} ms`);
  });

  it('checkpoint -R while pgbench runs: it keeps serving, the same processes, every transaction counted once', async (t) => {
    const pid = (await a.inspect('pg1')).State.Pid;
    const base = await pgState(held);
    const bench = runClient(client, 'pgbench', ['-h', ip, '-n', '-c', '2', '-t', '400', '-R', '200']);
    await eventually(async () => Number(await held.one('SELECT count(*) FROM pgbench_history')) >= base.historyRows + 100, 20_000, 50);
    const [, ms] = await timed(() => a.ok(['container', 'checkpoint', '-R', '--tcp-established', 'pg1']));
    const during = Number(await held.one('SELECT count(*) FROM pgbench_history')) - base.historyRows;
    const r = await bench;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(pgbenchSummary(r.stdout), { processed: 800, asked: 800, failed: 0 });
    assert.ok(during < 800, `the checkpoint ended while pgbench still ran (${during} done)`);
    const ins = await a.inspect('pg1');
    assert.equal(ins.State.Status, 'running');
    assert.equal(ins.State.Pid, pid, 'never stopped');
    assert.equal((await pgState(held)).historyRows, base.historyRows + 800, 'every committed pgbench transaction, once');
    assert.equal(await held.one(BALANCED), 't');
    assert.equal(await held.one('SELECT pg_backend_pid()'), heldPid);
    t.diagnostic(`checkpoint -R ${ms} ms; ${during} of 800 pgbench transactions done by its end`);
  });

  it('export, then import twice under new names into a second root: both copies serve at once, the same data', async (t) => {
    await held.query('VACUUM ANALYZE');
    const background = await held.query(BACKGROUND);
    const exported = await pgState(held);
    const file = path.join(a.dir, 'pg1.tar.zst');
    const [, exportMs] = await timed(() => a.ok(['container', 'checkpoint', '--tcp-established', '--export', file, 'pg1']));
    const size = fs.statSync(file).size;
    assert.equal((await a.inspect('pg1')).State.Status, 'exited');

    // New names mean new addresses: the held connection cannot follow, so it is closed there.
    const [, import2Ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', 'pg2', '--tcp-close']));
    const [, import3Ms] = await timed(() => b.ok(['container', 'restore', '--import', file, '-n', 'pg3', '--tcp-close']));
    const ips: string[] = [];
    for (const n of ['pg2', 'pg3']) {
      const ins = await b.inspect(n);
      assert.equal(ins.State.Status, 'running');
      ips.push(ins.NetworkSettings.IPAddress as string);
    }
    assert.equal(new Set([ip, ...ips]).size, 3, `three addresses: ${[ip, ...ips].join(' ')}`);
    await Promise.all(ips.map((x) => waitReady(client, x)));
    const [s2, s3] = ips.map(open);
    // Both at once, each with the whole database and the server's processes.
    assert.deepEqual(await Promise.all([pgState(s2!), pgState(s3!)]), [exported, exported]);
    assert.deepEqual(await Promise.all([s2!.query(BACKGROUND), s3!.query(BACKGROUND)]), [background, background]);
    // Two copies, not one shared: a write to one is not in the other.
    await s2!.query('INSERT INTO w VALUES (-2)');
    assert.equal(await s3!.one('SELECT count(*) FROM w WHERE n = -2'), '0');
    assert.equal(await s2!.one('SELECT count(*) FROM w WHERE n = -2'), '1');
    const bench = await runClient(client, 'pgbench', ['-h', ips[1]!, '-n', '-c', '2', '-t', '100']);
    assert.equal(bench.code, 0, bench.stderr);
    assert.equal(await s3!.one(BALANCED), 't');
    t.diagnostic(`export ${exportMs} ms (${(size / 2 ** 20).toFixed(1)} MiB zstd), import+restore ${import2Ms} ms and ${import3Ms} ms`);
  });
});

describe('PostgreSQL 15 migrated to a second host while pgbench and a writer run', { skip: SKIP || (hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)') }, () => {
  let pair: HostPair;
  let a: NetHost;
  let b: NetHost;
  let ip = '';
  let client: ClientEnv; // psql and pgbench in A's network namespace
  const sessions: Psql[] = [];
  const CLIENTS = 2;
  const PER_CLIENT = 1000;

  const migrate = (from: NetHost, to: NetHost, extra: string[]) =>
    from.ok(['migrate', 'pg', to.url(), '--remote-command', to.remoteCommand(), ...pair.sshArgs(), '--tcp-established', '--print-stats', ...extra], { timeoutMs: 180_000 });
  /** A's route to the container: on its own bridge, or through B; from A's own address either way. */
  const routeOnA = (via: 'bridge' | 'b') =>
    execFileSync('ip', ['-n', a.netns, 'route', 'replace', `${ip}/32`, ...(via === 'bridge' ? ['dev', 'ferry0'] : ['via', b.ip]), 'src', a.ip]);

  /** Migrates while pgbench (bounded) and a writer run from A; checks everything after on `to`. */
  async function underLoad(from: NetHost, to: NetHost, extra: string[], routeAfter: 'bridge' | 'b'): Promise<{ st: any; acked: number }> {
    const s = new Psql(client, ip);
    sessions.push(s);
    await s.query('TRUNCATE w');
    const base = await pgState(s);
    const w = new PgWriter(s, 'w');
    await w.progress(50);
    const bench = runClient(client, 'pgbench', ['-h', ip, '-n', '-c', String(CLIENTS), '-t', String(PER_CLIENT), '-R', '300'], 120_000);
    const watcher = new Psql(client, ip);
    sessions.push(watcher);
    await eventually(async () => Number(await watcher.one('SELECT count(*) FROM pgbench_history')) >= base.historyRows + 200, 20_000, 50);
    watcher.kill();
    const st = JSON.parse(await migrate(from, to, extra));
    assert.deepEqual(await names(from), []);
    assert.deepEqual(await names(to, false), ['pg']);
    assert.equal((await to.inspect('pg')).NetworkSettings.IPAddress, ip);
    // The network now routes the container's address to where it runs; the clients go on.
    routeOnA(routeAfter);
    await w.progress(50);
    const r = await bench;
    assert.equal(r.code, 0, `pgbench: ${r.stderr}`);
    assert.deepEqual(pgbenchSummary(r.stdout), { processed: CLIENTS * PER_CLIENT, asked: CLIENTS * PER_CLIENT, failed: 0 });
    const acked = await w.stop();
    // Checked over the connection that wrote through the migration, and over new ones.
    assert.equal(await s.one("SELECT count(*) || '|' || min(n) || '|' || max(n) FROM w"), `${acked}|0|${acked - 1}`, 'rows 0..N-1: nothing lost or doubled');
    const after = await pgState(s);
    assert.equal(after.historyRows, base.historyRows + CLIENTS * PER_CLIENT, 'every pgbench transaction committed once');
    assert.ok(after.nextXid >= base.nextXid + CLIENTS * PER_CLIENT + acked, `transaction IDs went on: ${base.nextXid} -> ${after.nextXid}`);
    assert.equal(await s.one(BALANCED), 't');
    assert.deepEqual(await psqlOnce(client, ip, "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('checkpointer', 'background writer', 'walwriter')"), ['3']);
    assert.equal(await to.ok(['exec', 'pg', 'psql', '-X', '-A', '-t', '-U', 'postgres', '-c', 'SELECT count(*) FROM w']), String(acked));
    s.kill();
    return { st, acked };
  }

  before(async () => {
    pair = new HostPair();
    a = pair.a;
    b = pair.b;
    await pair.setup();
    await Promise.all([importApp(a, 'postgres'), importApp(b, 'postgres')]);
    client = { root: await clientRoot(a), wrap: ['nsenter', `--net=/run/netns/${a.netns}`] };
    await a.ok(pgRunArgs('pg'));
    ip = (await a.inspect('pg')).NetworkSettings.IPAddress as string;
    // The clients reach the container from A's own address (B routes it back to A after the move).
    routeOnA('bridge');
    await waitReady(client, ip);
    const init = await runClient(client, 'pgbench', ['-h', ip, '-i', '-s', '1', '-q']);
    assert.equal(init.code, 0, init.stderr);
    await psqlOnce(client, ip, 'CREATE TABLE w (n int PRIMARY KEY)');
    // B forwards between A and its bridge and does not masquerade what the container sends A
    // (as a routed network would): the restored socket speaks first, unknown to B's conntrack.
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    execFileSync('nsenter', [`--net=/run/netns/${b.netns}`, 'iptables', '-w', '-t', 'nat', '-I', 'POSTROUTING', '-d', `${a.ip}/32`, '-j', 'ACCEPT']);
  });
  after(async () => {
    for (const s of sessions) s.kill();
    // Routes, forwarding and rules live in the pair's namespaces and go with them.
    await pair?.destroy();
  });

  it('stop-and-copy A -> B under pgbench: every transaction and acknowledged insert once, data consistent', async (t) => {
    const { st, acked } = await underLoad(a, b, [], 'b');
    assert.equal(st.mode, 'stop-and-copy');
    t.diagnostic(`stop-and-copy: downtime ${st.downtime_ms} ms, total ${st.total_ms} ms, ${(st.bytes_sent / 2 ** 20).toFixed(1)} MiB sent; ${CLIENTS * PER_CLIENT} pgbench transactions, ${acked} inserts`);
  });

  it('lazy B -> A under pgbench: the same, with memory following on demand', async (t) => {
    const info = JSON.parse(await a.ok(['info', '--format', 'json']));
    if (!info.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${info.host.notes.join('; ')}`);
    const { st, acked } = await underLoad(b, a, ['--lazy'], 'bridge');
    assert.equal(st.mode, 'lazy');
    t.diagnostic(`lazy: downtime ${st.downtime_ms} ms, total ${st.total_ms} ms, ${(st.bytes_sent / 2 ** 20).toFixed(1)} MiB sent; ${CLIENTS * PER_CLIENT} pgbench transactions, ${acked} inserts`);
  });
});
