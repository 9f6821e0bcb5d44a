/**
 * PostgreSQL 15 for the tests (the `postgres` image of test/helpers/apps.ts): how a container
 * starts it (initdb on first start, then the server as the `postgres` user), and clients. The
 * clients are PostgreSQL's own `psql` and `pgbench`, run from the imported image's root
 * filesystem with chroot (read only; the host needs no PostgreSQL package), optionally inside a
 * test host's network namespace. A `Psql` session is one psql process holding one connection
 * that it never reopens (psql without a terminal exits when its connection breaks).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { eventually, type Host, runCommand } from './ferry.js';

export const PG_PORT = 5432;
const BIN = '/usr/lib/postgresql/15/bin';

/**
 * The container's command: initdb into the container's own filesystem on its first start
 * (trust authentication, from anywhere: the network is the test's own), then the server as
 * `postgres` (it refuses to run as root). setpriv execs: the server is the container's PID 1.
 */
export const PG_START = [
  'set -e',
  `B=${BIN}`,
  'D=/var/lib/postgresql/data',
  'mkdir -p /run/postgresql',
  'chown postgres:postgres /run/postgresql',
  'if [ ! -s "$D/PG_VERSION" ]; then',
  '  install -d -m 700 -o postgres -g postgres "$D"',
  '  setpriv --reuid=postgres --regid=postgres --init-groups "$B/initdb" -D "$D" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null',
  '  echo "host all all 0.0.0.0/0 trust" >> "$D/pg_hba.conf"',
  'fi',
  `exec setpriv --reuid=postgres --regid=postgres --init-groups "$B/postgres" -D "$D" -c listen_addresses='*'`,
].join('\n');

/** `ferry run` arguments that start PostgreSQL in a container named `name`. */
export function pgRunArgs(name: string, extra: string[] = []): string[] {
  return ['run', '-d', '--name', name, ...extra, 'postgres', 'sh', '-c', PG_START];
}

/**
 * The root filesystem of the image `postgres` imported into h (where the clients run from): an
 * imported rootfs is a one-layer image, whose layer is unpacked in the store by its diff ID.
 */
export async function clientRoot(h: Host): Promise<string> {
  const layers = JSON.parse(await h.ok(['image', 'inspect', 'postgres']))[0].RootFS.Layers as string[];
  if (layers.length !== 1) throw new Error(`the postgres image has ${layers.length} layers, not one`);
  const root = path.join(h.root, 'images', 'layers', layers[0]!.replace(/^sha256:/, ''), 'diff');
  if (!fs.existsSync(path.join(root, BIN.slice(1), 'psql'))) throw new Error(`no psql in the postgres image at ${root}`);
  return root;
}

/** Where the clients run: the image's rootfs, and an argv prefix (e.g. nsenter into a host's netns). */
export interface ClientEnv {
  root: string;
  wrap?: string[];
}

function clientArgv(c: ClientEnv, tool: 'psql' | 'pgbench', args: string[]): string[] {
  return [...(c.wrap ?? []), 'chroot', c.root, `${BIN}/${tool}`, ...args];
}

const ENV = { ...process.env, PGCONNECT_TIMEOUT: '5', PGUSER: 'postgres', PGDATABASE: 'postgres' };

export interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client to its end. */
export function runClient(c: ClientEnv, tool: 'psql' | 'pgbench', args: string[], timeoutMs = 60_000): Promise<Done> {
  return runCommand(clientArgv(c, tool, args), { env: ENV, timeoutMs });
}

/** One statement over a fresh connection; its rows (unaligned, `|` between columns). */
export async function psqlOnce(c: ClientEnv, host: string, sql: string): Promise<string[]> {
  const r = await runClient(c, 'psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', host, '-c', sql], 30_000);
  if (r.code !== 0) throw new Error(`psql -h ${host} -c ${JSON.stringify(sql)} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout.split('\n').filter(Boolean);
}

/** Waits until the server at host answers a fresh connection. */
export async function waitReady(c: ClientEnv, host: string, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => (await psqlOnce(c, host, 'SELECT 1'))[0] === '1', timeoutMs, 200);
}

/** One psql process, one connection, statements one at a time. */
export class Psql {
  private out = '';
  private err = '';
  private seq = 0;
  exit: number | null | undefined;
  private readonly child: ChildProcess;

  constructor(c: ClientEnv, host: string) {
    const argv = clientArgv(c, 'psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', host]);
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: ENV });
    this.child.stdout!.on('data', (b: Buffer) => (this.out += b.toString()));
    this.child.stderr!.on('data', (b: Buffer) => (this.err += b.toString()));
    this.child.on('close', (code) => (this.exit = code));
    this.child.stdin!.on('error', () => undefined); // a write after psql exited: reported by query()
  }

  /** Runs one statement; resolves with its rows. Rejects when psql exits (an error, a broken connection). */
  async query(sql: string, timeoutMs = 20_000): Promise<string[]> {
    const marker = `__ferry_done_${++this.seq}__`;
    this.child.stdin!.write(`${sql};\n\\echo ${marker}\n`);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const at = this.out.indexOf(`${marker}\n`);
      if (at >= 0) {
        const rows = this.out.slice(0, at).split('\n').filter(Boolean);
        this.out = this.out.slice(at + marker.length + 1);
        return rows;
      }
      if (this.exit !== undefined) throw new Error(`psql exited ${this.exit} during ${JSON.stringify(sql)}: ${this.err.trim()}`);
      if (Date.now() > end) throw new Error(`no answer to ${JSON.stringify(sql)} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  async one(sql: string, timeoutMs?: number): Promise<string> {
    const rows = await this.query(sql, timeoutMs);
    if (rows.length !== 1) throw new Error(`${sql}: expected one row, got ${JSON.stringify(rows)}`);
    return rows[0]!;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  kill(): void {
    if (this.exit === undefined) this.child.kill('SIGKILL');
  }
}

/**
 * Inserts 0, 1, 2, ... into `table` (n int primary key) over one connection, one statement and
 * one acknowledgement at a time: each must answer its own number, and the primary key refuses a
 * repeat, so a lost or doubled write stops it. stop() returns how many were acknowledged.
 */
export class PgWriter {
  acked = 0;
  error: Error | undefined;
  private stopping = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly s: Psql,
    private readonly table: string,
  ) {
    this.done = this.loop().catch((e: Error) => {
      this.error = e;
    });
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      const got = await this.s.one(`INSERT INTO ${this.table}(n) VALUES (${this.acked}) RETURNING n`, 60_000);
      if (got !== String(this.acked)) throw new Error(`INSERT ${this.acked} answered ${got}`);
      this.acked++;
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Waits until `n` more writes than now are acknowledged. */
  async progress(n: number, timeoutMs = 30_000): Promise<void> {
    const from = this.acked;
    await eventually(() => {
      if (this.error) throw new Error(`the writer stopped after ${this.acked} acks: ${this.error.message}`);
      return this.acked >= from + n;
    }, timeoutMs, 10);
  }

  async stop(): Promise<number> {
    this.stopping = true;
    await this.done;
    if (this.error) throw new Error(`the writer stopped after ${this.acked} acks: ${this.error.message}`);
    return this.acked;
  }
}

/** What the application says its data is: a checksum of each pgbench table, its history's size, the next transaction ID. */
export interface PgState {
  accounts: string;
  tellers: string;
  branches: string;
  history: string;
  historyRows: number;
  /** pg_current_snapshot's xmax: every transaction ever committed or aborted is below it. */
  nextXid: number;
}

export async function pgState(s: Psql): Promise<PgState> {
  const row = await s.one(
    [
      'SELECT',
      "(SELECT md5(string_agg(a::text, ',' ORDER BY aid)) FROM pgbench_accounts a),",
      "(SELECT md5(string_agg(t::text, ',' ORDER BY tid)) FROM pgbench_tellers t),",
      "(SELECT md5(string_agg(b::text, ',' ORDER BY bid)) FROM pgbench_branches b),",
      "(SELECT md5(coalesce(string_agg(h::text, ',' ORDER BY h::text), '')) FROM pgbench_history h),",
      '(SELECT count(*) FROM pgbench_history),',
      'pg_snapshot_xmax(pg_current_snapshot())',
    ].join(' '),
  );
  const [accounts, tellers, branches, history, rows, xmax] = row.split('|');
  return { accounts: accounts!, tellers: tellers!, branches: branches!, history: history!, historyRows: Number(rows), nextXid: Number(xmax) };
}

/** pgbench's own invariant: every balance is the sum of the history's deltas ('t' when it holds). */
export const BALANCED =
  'SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history) AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)';

/**
 * The server's own long-lived processes, as pg_stat_activity lists them: `pid|type` (not client
 * backends, nor the autovacuum workers its launcher starts and ends every so often).
 */
export const BACKGROUND = "SELECT pid || '|' || backend_type FROM pg_stat_activity WHERE backend_type NOT IN ('client backend', 'autovacuum worker') ORDER BY pid";

/** pgbench's summary: transactions processed of those asked, and failed ones. */
export function pgbenchSummary(out: string): { processed: number; asked: number; failed: number } {
  const p = /number of transactions actually processed: (\d+)\/(\d+)/.exec(out);
  const f = /number of failed transactions: (\d+)/.exec(out);
  if (!p || !f) throw new Error(`no pgbench summary in: ${out}`);
  return { processed: Number(p[1]), asked: Number(p[2]), failed: Number(f[1]) };
}
