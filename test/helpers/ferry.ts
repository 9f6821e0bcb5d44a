/**
 * Test harness: each test file gets its own Ferry "host" (a --root/--runroot pair under a
 * temporary dir) and a busybox image; teardown removes every container, mount and file it made,
 * even when the test failed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The CLI as users run it: the compiled executable `npm run build` makes. */
export const FERRY_BIN = path.join(REPO, 'bin/ferry');
const BUSYBOX_TAR = path.join(REPO, '.cache/busybox.tar');

export const LOOPER = ['sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'];

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Compiles test/fixtures/NAME.c, statically linked, into dir/NAME (for a container to run); returns its path. */
export function buildFixture(name: string, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const out = path.join(dir, name);
  const r = spawnSync('gcc', ['-static', '-O2', '-o', out, path.join(REPO, 'test/fixtures', `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${name}.c failed: ${r.stderr}`);
  return out;
}

/** Builds the busybox image tarball once per checkout. */
export function busyboxTarball(): string {
  if (!fs.existsSync(BUSYBOX_TAR)) {
    fs.mkdirSync(path.dirname(BUSYBOX_TAR), { recursive: true });
    const r = spawnSync('bash', [path.join(REPO, 'scripts/make-busybox-image.sh'), BUSYBOX_TAR], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make-busybox-image failed: ${r.stderr}`);
  }
  return BUSYBOX_TAR;
}

export interface RunOpts {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** argv prefix to run ferry under, e.g. ['setpriv', '--reuid=65534', ...]. */
  wrap?: string[];
}

export class Host {
  readonly dir: string;
  readonly root: string;
  readonly runroot: string;

  constructor(name = 'host') {
    // Short paths: conmon's attach socket path must fit in 108 bytes.
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `fy-${name.slice(0, 6)}-`));
    this.root = path.join(this.dir, 'root');
    this.runroot = path.join(this.dir, 'run');
  }

  args(): string[] {
    return ['--root', this.root, '--runroot', this.runroot];
  }

  /** Runs `ferry --root R --runroot RR ...args` and collects its output. */
  run(args: string[], opts: RunOpts = {}): Promise<Result> {
    return new Promise((resolve, reject) => {
      const argv = [...(opts.wrap ?? []), FERRY_BIN, ...this.args(), ...args];
      const child = spawn(argv[0]!, argv.slice(1), {
        stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...opts.env },
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
  }

  /** Runs ferry and fails with its stderr unless it exits 0; returns stdout trimmed. */
  async ok(args: string[], opts: RunOpts = {}): Promise<string> {
    const r = await this.run(args, opts);
    if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /** Runs ferry expecting failure; returns the result for the caller to check the message. */
  async fails(args: string[], opts: RunOpts = {}): Promise<Result> {
    const r = await this.run(args, opts);
    if (r.code === 0) throw new Error(`expected ferry ${args.join(' ')} to fail, but it succeeded: ${r.stdout}`);
    return r;
  }

  async importBusybox(name = 'busybox'): Promise<void> {
    await this.ok(['import', busyboxTarball(), name]);
  }

  async inspect(ref: string): Promise<any> {
    return JSON.parse(await this.ok(['inspect', ref]))[0];
  }

  async logs(ref: string): Promise<string[]> {
    return (await this.ok(['logs', ref])).split('\n').filter(Boolean);
  }

  /** Mount points below this host's dir (a container's rootfs while it runs, ...). */
  mounts(): string[] {
    return fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m): m is string => !!m && m.startsWith(this.dir + '/'));
  }

  /** Directory names under ROOT/containers (records, and any half-made or half-removed ones). */
  containerDirs(): string[] {
    try {
      return fs.readdirSync(path.join(this.root, 'containers')).sort();
    } catch {
      return [];
    }
  }

  /** Names from `ps -a`, sorted. */
  async names(all = true): Promise<string[]> {
    const out = await this.ok(['ps', ...(all ? ['-a'] : []), '--format', '{{.Names}}']);
    return out.split('\n').filter(Boolean).sort();
  }

  /** Removes every container and every file of this host (mounts included). */
  async destroy(): Promise<void> {
    // Network namespaces and host veths the records name: gone after `rm`, unless it failed.
    const nets = recordedNets(this.root);
    if (fs.existsSync(this.root)) {
      const pods = await this.run(['pod', 'ps', '-q']).catch(() => undefined);
      for (const p of pods?.stdout.split('\n').filter(Boolean) ?? []) await this.run(['pod', 'rm', '-f', p]).catch(() => undefined);
      await this.run(['rm', '-a', '-f']).catch(() => undefined);
    }
    for (const n of nets) {
      if (n.veth) spawnSync('ip', ['link', 'del', n.veth], { stdio: 'ignore' });
      if (fs.existsSync(`/run/netns/${n.netns}`)) spawnSync('ip', ['netns', 'delete', n.netns], { stdio: 'ignore' });
    }
    // Anything still mounted below our dir (a test that failed half-way) goes too.
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(this.dir));
    for (const m of mounts.sort().reverse()) spawnSync('umount', ['-l', m]);
    // runc state of containers that escaped `rm` (e.g. records deleted by a test).
    const runcRoot = path.join(this.runroot, 'runc');
    if (fs.existsSync(runcRoot)) {
      for (const id of fs.readdirSync(runcRoot)) spawnSync('runc', ['--root', runcRoot, 'delete', '--force', id]);
    }
    // conmon runs `ferry container cleanup` after a container exits; one still running would
    // re-create ROOT/containers under our feet. Give them time to finish, then stop the rest.
    const end = Date.now() + 15_000;
    while (this.processes().length && Date.now() < end) await sleep(100);
    for (const pid of this.processes()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  }

  /** PIDs of processes (conmon, ferry cleanup) whose command line names this host's dir. */
  processes(): number[] {
    const out: number[] = [];
    for (const p of fs.readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(p) || Number(p) === process.pid) continue;
      try {
        if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(this.dir + '/')) out.push(Number(p));
      } catch {
        /* exited */
      }
    }
    return out;
  }
}

/** The network attachments (netns name, host veth) recorded in a root's container records. */
export function recordedNets(root: string): { netns: string; veth?: string }[] {
  const base = path.join(root, 'containers');
  const out: { netns: string; veth?: string }[] = [];
  let ids: string[] = [];
  try {
    ids = fs.readdirSync(base);
  } catch {
    return out;
  }
  for (const id of ids) {
    try {
      const net = JSON.parse(fs.readFileSync(path.join(base, id, 'container.json'), 'utf8')).state?.net;
      if (!net?.netnsName) continue;
      const ifs: { name: string; sandbox?: string }[] = net.result?.interfaces ?? [];
      out.push({ netns: net.netnsName, veth: ifs.find((i) => !i.sandbox && i.name.startsWith('veth'))?.name });
    } catch {
      /* half-written or removed meanwhile */
    }
  }
  return out;
}

/** Polls until fn returns a truthy value or the time is up. */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The last counter value the looper printed. */
export async function lastCount(h: Host, ref: string): Promise<number> {
  const lines = await h.logs(ref);
  return Number(lines[lines.length - 1]);
}

/** Asserts the Podman-style failure shape: non-zero exit, one line `Error: ...` on stderr. */
export function assertCleanError(r: Result, re: RegExp, code = 125): void {
  const lines = r.stderr.split('\n').filter(Boolean);
  if (r.code !== code) throw new Error(`expected exit ${code}, got ${r.code}; stderr: ${r.stderr}`);
  if (lines.length !== 1 || !lines[0]!.startsWith('Error: ')) throw new Error(`expected one "Error: ..." line on stderr, got: ${JSON.stringify(r.stderr)}`);
  if (!re.test(lines[0]!)) throw new Error(`stderr ${JSON.stringify(lines[0])} does not match ${re}`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- checkpoint test helpers

/** Like LOOPER, but counts every 0.2 s (busybox usleep), so progress shows up quickly. */
export const FAST_LOOPER = ['sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); usleep 200000; done'];

/** Every numeric line the container printed, in order. */
export async function counts(h: Host, ref: string): Promise<number[]> {
  return (await h.logs(ref)).filter((l) => /^[0-9]+$/.test(l)).map(Number);
}

/** Waits until the counter has gone up by at least `by` from its current value; returns the new value. */
export async function countsOn(h: Host, ref: string, by = 2, timeoutMs = 10_000): Promise<number> {
  const c = await counts(h, ref);
  const from = c.length ? c[c.length - 1]! : -1;
  return eventually(async () => {
    const n = await counts(h, ref);
    const last = n.length ? n[n.length - 1]! : -1;
    return last >= from + by ? last : 0;
  }, timeoutMs);
}

/** The container's directory under --root (by full ID). */
export function containerDir(h: Host, id: string): string {
  return path.join(h.root, 'containers', id);
}

/** True if the container's overlay rootfs is mounted (as /proc/self/mountinfo says). */
export function overlayMounted(h: Host, id: string): boolean {
  const merged = path.join(h.root, 'overlay', id, 'merged');
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === merged);
}

/** IDs of the containers runc knows under this host's runroot. */
export function runcIds(h: Host): string[] {
  const r = spawnSync('runc', ['--root', path.join(h.runroot, 'runc'), 'list', '-q'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean) : [];
}

/**
 * What a refused command must not change: every container's record and the files of its
 * directory (names, and sizes of all but the growing log), sorted.
 */
export function stateSnapshot(h: Host): string {
  const base = path.join(h.root, 'containers');
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      const rel = path.relative(base, p);
      if (e.isDirectory()) {
        out.push(`${rel}/`);
        walk(p);
      } else if (e.name === 'container.json') {
        out.push(`${rel}: ${fs.readFileSync(p, 'utf8')}`);
      } else if (e.name === 'ctr.log') {
        out.push(rel);
      } else {
        out.push(`${rel} ${fs.lstatSync(p).size}`);
      }
    }
  };
  walk(base);
  return out.join('\n');
}

/** Runs ferry in the background; the caller may signal it before it finishes. */
export function spawnFerry(h: Host, args: string[]): { child: import('node:child_process').ChildProcess; done: Promise<Result> } {
  const child = spawn(FERRY_BIN, [...h.args(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<Result>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : null), stdout, stderr }));
  });
  return { child, done };
}

/**
 * Skips the running test for a reason this machine gives (a kernel feature it lacks), and says
 * the reason where the runner's report only names the skipped test.
 */
export function skipWith(t: { skip(reason?: string): void }, reason: string): void {
  process.stderr.write(`  skipped: ${reason}\n`);
  t.skip(reason);
}

/** Numbers the looper printed are 0, 1, 2, ... without a gap or a restart, and more than n of them. */
export function continuous(seq: number[], n: number): boolean {
  return seq.length > n && seq.every((v, i) => v === i);
}

/**
 * Everything an import could leave behind on a host: containers (records, leftover temporary
 * dirs), overlays, volumes, mounts, runc state and staging dirs (not the trash a background rm
 * of an earlier removal may still be deleting). A refused import must leave it unchanged.
 */
export async function importFootprint(h: Host): Promise<Record<string, unknown>> {
  const ls = (...p: string[]): string[] => {
    try {
      return fs.readdirSync(path.join(h.root, ...p)).sort();
    } catch {
      return [];
    }
  };
  return {
    ps: await h.names(),
    staging: ls().filter((n) => n.startsWith('.') && !n.startsWith('.trash-')),
    containers: ls('containers'),
    overlay: ls('overlay'),
    volumes: ls('volumes'),
    mounts: h.mounts(),
    runc: runcIds(h).sort(),
  };
}

/** Milliseconds an async step took, and its result. */
export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, Math.round(performance.now() - t0)];
}

/** Runs a command (argv, no shell) to its end and collects its output; SIGKILL after timeoutMs. */
export function runCommand(argv: string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A `ferry system service` the test started: its stderr collected (its log), waited for until it
 * says it listens, stopped with SIGTERM (SIGKILL if it does not stop in time).
 */
export class ServiceProcess {
  log = '';
  constructor(readonly child: ChildProcess) {
    child.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
  }

  /** Resolves once it listens; fails with its log if it exits first. */
  async listening(): Promise<this> {
    await eventually(() => {
      if (this.child.exitCode !== null) throw new Error(`the service exited ${this.child.exitCode}: ${this.log}`);
      return this.log.includes('listening on');
    }, 15_000, 50);
    return this;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Its exit code, once it has exited (SIGKILL after ms). */
  async exited(ms = 15_000): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    const closed = new Promise<number | null>((r) => this.child.once('close', (code) => r(code)));
    const t = setTimeout(() => this.child.kill('SIGKILL'), ms);
    const code = await closed;
    clearTimeout(t);
    return code;
  }

  /** SIGTERM (SIGKILL if it does not stop in time); its exit code. */
  async stop(ms = 15_000): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM');
    return this.exited(ms);
  }
}
