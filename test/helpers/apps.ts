/**
 * Images of real applications for the tests, built from Debian's packages with mmdebstrap
 * (installed by `npm run setup`) from the machine's own apt sources (another Debian suite than
 * the machine's comes from the same mirror). Each image is a recipe
 * (suite + packages); its tarball is cached under the checkout's .cache/ by a hash of the
 * recipe and rebuilt only when the recipe changes. To add an application, add a recipe to APPS.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO, eventually, isRoot, skipWith, type Host } from './ferry.js';
import { HostPair, hasSshd, names, type NetHost } from './hosts.js';

export interface AppRecipe {
  /** Debian suite the root filesystem comes from; the host's apt sources must offer it. */
  suite: string;
  /** Packages installed on top of mmdebstrap's minbase variant. */
  packages: string[];
}

export const APPS = {
  redis: { suite: 'bookworm', packages: ['redis-server', 'redis-tools'] },
  // python3-minimal lacks http.server (it is in libpython3.11-stdlib, which python3 brings).
  python: { suite: 'bookworm', packages: ['python3'] },
  // postgresql-15 brings the server, initdb, pg_ctl and pgbench (bookworm has no separate
  // contrib package), and psql through postgresql-client-15; its postinst makes no cluster we use.
  postgres: { suite: 'bookworm', packages: ['postgresql-15'] },
  nodejs: { suite: 'bookworm', packages: ['nodejs'] },
  // Debian 13's Node.js 20 (libuv 1.50): it sets up an io_uring for each event loop.
  nodejs20: { suite: 'trixie', packages: ['nodejs'] },
} satisfies Record<string, AppRecipe>;

export type AppName = keyof typeof APPS;

const CACHE = path.join(REPO, '.cache');

/** The hash that names a recipe's cached tarball: what goes into the image, nothing else. */
export function recipeHash(r: AppRecipe): string {
  const canonical = JSON.stringify({ variant: 'minbase', suite: r.suite, packages: [...r.packages].sort() });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

function deb822Stanzas(text: string): Map<string, string>[] {
  return text
    .split(/\n[ \t]*\n/)
    .map((block) => {
      const m = new Map<string, string>();
      for (const line of block.split('\n')) {
        const kv = /^([A-Za-z-]+):[ \t]*(.*)$/.exec(line);
        if (kv) m.set(kv[1]!.toLowerCase(), kv[2]!.trim());
      }
      return m;
    })
    .filter((m) => m.size);
}

/** The machine's apt sources files: deb822 ones first, then the one-line sources.list. */
function aptSourcesFiles(): string[] {
  const dir = '/etc/apt/sources.list.d';
  return [
    ...(fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.sources')).sort().map((f) => path.join(dir, f)) : []),
    '/etc/apt/sources.list',
  ];
}

/**
 * The machine's own apt sources file that offers `suite` (deb822 .sources files first, then the
 * one-line sources.list), handed to mmdebstrap as is.
 */
export function hostSourcesFile(suite: string, candidates = aptSourcesFiles()): string {
  for (const f of candidates) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    if (f.endsWith('.sources')) {
      const offers = deb822Stanzas(text.replace(/^[ \t]*#.*(\n|$)/gm, '')).some(
        (s) => (s.get('types') ?? '').split(/\s+/).includes('deb') && (s.get('suites') ?? '').split(/\s+/).includes(suite) && (s.get('enabled') ?? 'yes').toLowerCase() !== 'no',
      );
      if (offers) return f;
    } else if (text.split('\n').some((l) => /^\s*deb\s/.test(l) && l.replace(/\[[^\]]*\]/, '').trim().split(/\s+/)[2] === suite)) {
      return f;
    }
  }
  throw new Error(`no apt sources file of this machine offers Debian ${suite} (looked at ${candidates.join(', ')})`);
}

/** The main archive of the machine's Debian mirror: URI and keyring of its first `deb` entry for a plain codename. */
export function hostMirror(candidates = aptSourcesFiles()): { uri: string; signedBy?: string } {
  const plain = (suite: string): boolean => /^[a-z]+$/.test(suite);
  for (const f of candidates) {
    let text: string;
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    if (f.endsWith('.sources')) {
      for (const st of deb822Stanzas(text.replace(/^[ \t]*#.*(\n|$)/gm, ''))) {
        if (!(st.get('types') ?? '').split(/\s+/).includes('deb') || (st.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
        if (!(st.get('suites') ?? '').split(/\s+/).some(plain)) continue;
        const uri = (st.get('uris') ?? '').split(/\s+/)[0];
        if (uri) return { uri, signedBy: st.get('signed-by')?.startsWith('/') ? st.get('signed-by') : undefined };
      }
    } else {
      for (const line of text.split('\n')) {
        if (!/^\s*deb\s/.test(line)) continue;
        const opts = /\[([^\]]*)\]/.exec(line)?.[1] ?? '';
        const [, uri, suite] = line.replace(/\[[^\]]*\]/, '').trim().split(/\s+/);
        if (uri && suite && plain(suite)) return { uri, signedBy: /signed-by=(\S+)/.exec(opts)?.[1] };
      }
    }
  }
  throw new Error(`no Debian mirror in the machine's apt sources (looked at ${candidates.join(', ')})`);
}

/**
 * An apt sources file for `suite`: the machine's own when it offers that suite, otherwise one
 * written into `dir` that names the suite on the machine's own mirror (and keyring).
 */
export function sourcesFileFor(suite: string, dir: string, candidates = aptSourcesFiles()): string {
  try {
    return hostSourcesFile(suite, candidates);
  } catch {
    const m = hostMirror(candidates);
    const out = path.join(dir, `sources-${suite}.sources`);
    const text = ['Types: deb', `URIs: ${m.uri}`, `Suites: ${suite}`, 'Components: main', ...(m.signedBy ? [`Signed-By: ${m.signedBy}`] : []), ''].join('\n');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(out, text);
    return out;
  }
}

/** The app's root filesystem tarball, built with mmdebstrap unless the cache has this recipe. */
export function appTarball(name: AppName): string {
  const recipe: AppRecipe = APPS[name];
  const out = path.join(CACHE, `app-${name}-${recipeHash(recipe)}.tar`);
  if (fs.statSync(out, { throwIfNoEntry: false })?.isFile()) return out;
  fs.mkdirSync(CACHE, { recursive: true });
  // mmdebstrap picks its output format from the name's ending: the partial file ends in .tar too.
  const tmp = path.join(CACHE, `.tmp-app-${name}-${process.pid}.tar`);
  const argv = ['--variant=minbase', `--include=${recipe.packages.join(',')}`, recipe.suite, tmp, sourcesFileFor(recipe.suite, CACHE)];
  const r = spawnSync('mmdebstrap', argv, { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true, recursive: true });
    const why = r.error ? String(r.error) : r.stderr.trim().split('\n').slice(-15).join('\n');
    throw new Error(`mmdebstrap ${argv.join(' ')} failed (npm run setup installs mmdebstrap): ${why}`);
  }
  // Older builds of this app: a changed recipe replaces them.
  for (const f of fs.readdirSync(CACHE)) {
    if (f.startsWith(`app-${name}-`) && f.endsWith('.tar') && path.join(CACHE, f) !== out) fs.rmSync(path.join(CACHE, f), { force: true, recursive: true });
  }
  fs.renameSync(tmp, out);
  return out;
}

/** Imports the app's image into a Ferry host under its name (e.g. `redis`). */
export async function importApp(h: Host, name: AppName): Promise<void> {
  await h.ok(['import', appTarball(name), name], { timeoutMs: 300_000 });
}

/**
 * A client in a host's network namespace, from that host's own address, that GETs /count over
 * one keep-alive connection, one request at a time, and prints `ack N` for each answer. Each must
 * be the one before plus one, on the same server-side connection, so a lost or repeated request
 * stops it. A line on stdin makes it stop after the request in flight; it prints `done COUNT`.
 */
export class Counter {
  out = '';
  err = '';
  exit: number | null | undefined;
  private readonly child: ChildProcess;

  constructor(h: NetHost, ip: string, port: number) {
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
    this.child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, process.execPath, '-e', js, ip, String(port), h.ip], { stdio: ['pipe', 'pipe', 'pipe'] });
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

/** The uid line of a process (real, effective, saved, fs) as the host's /proc shows it. */
export function procUids(pid: number): string[] {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Uid:'))!;
  return line.split(/\s+/).slice(1, 5);
}

/**
 * The migration suite of an HTTP service that answers GET /count (0, 1, 2, ... with X-Conn, the
 * number of its connection): started on host A by `run`, moved A -> B by stop-and-copy, then B -> A
 * with --lazy, while a Counter on A counts through one keep-alive connection, routed so that it
 * follows the container's address. Every answer must be the one before plus one, a new connection
 * then gets the next value, and the service still runs as `uid`.
 */
export function describeHttpMigration(o: { title: string; app: AppName; name: string; run: string[]; port: number; uid: number }): void {
  const skip = !isRoot() ? 'needs root' : hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)';
  describe(o.title, { skip }, () => {
    let pair: HostPair;
    let a: NetHost;
    let b: NetHost;
    let ip = '';
    const clients: Counter[] = [];

    const migrate = (from: NetHost, to: NetHost, extra: string[]) =>
      from.ok(['migrate', o.name, to.url(), '--remote-command', to.remoteCommand(), ...pair.sshArgs(), '--tcp-established', '--print-stats', ...extra], { timeoutMs: 180_000 });
    /** The next counter value, over a new connection from A. */
    const nextCount = (): number =>
      Number(execFileSync('nsenter', [`--net=/run/netns/${a.netns}`, process.execPath, '-e', `fetch('http://${ip}:${o.port}/count').then((r) => r.text()).then((t) => { console.log(t); process.exit(0); })`], { encoding: 'utf8', timeout: 20_000 }).trim());

    async function underLoad(from: NetHost, to: NetHost, extra: string[], route: () => void): Promise<{ st: { mode: string; downtime_ms: number; total_ms: number; bytes_sent: number }; answers: number }> {
      const start = nextCount();
      const c = new Counter(a, ip, o.port);
      clients.push(c);
      await c.progress(100);
      const st = JSON.parse(await migrate(from, to, extra));
      assert.deepEqual(await names(from), []);
      assert.deepEqual(await names(to, false), [o.name]);
      assert.equal((await to.inspect(o.name)).NetworkSettings.IPAddress, ip);
      route();
      await c.progress(100);
      const values = await c.stop();
      assert.deepEqual(values, Array.from({ length: values.length }, (_, i) => start + 1 + i), 'every answer the one before plus one: nothing lost or repeated');
      assert.equal(nextCount(), start + 1 + values.length, 'a new connection gets the next value');
      assert.deepEqual(procUids((await to.inspect(o.name)).State.Pid), Array(4).fill(String(o.uid)), `still uid ${o.uid} after the move`);
      return { st, answers: values.length };
    }

    before(async () => {
      pair = new HostPair();
      a = pair.a;
      b = pair.b;
      await pair.setup();
      await Promise.all([importApp(a, o.app), importApp(b, o.app)]);
      await a.ok(o.run);
      ip = (await a.inspect(o.name)).NetworkSettings.IPAddress as string;
      await eventually(async () => (await a.logs(o.name)).includes(`serving as uid ${o.uid}`), 20_000, 100);
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
}
