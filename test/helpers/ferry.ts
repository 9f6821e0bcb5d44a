/**
 * Test harness: each test file gets its own Ferry "host" (a --root/--runroot pair under a
 * temporary dir) and a busybox image; teardown removes every container, mount and file it made,
 * even when the test failed.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
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

/** Builds the busybox image tarball once per checkout. */
export function busyboxTarball(): string {
  if (!fs.existsSync(BUSYBOX_TAR)) {
    fs.mkdirSync(path.dirname(BUSYBOX_TAR), { recursive: true });
    const r = spawnSync('bash', [path.join(REPO, 'scripts/make-busybox-image.sh'), BUSYBOX_TAR], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make-busybox-image failed: ${r.stderr}`);
  }
  return BUSYBOX_TAR;
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
  run(args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [FERRY_BIN, ...this.args(), ...args], {
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
  async ok(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.run(args, opts);
    if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /** Runs ferry expecting failure; returns the result for the caller to check the message. */
  async fails(args: string[]): Promise<Result> {
    const r = await this.run(args);
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

  /** Removes every container and every file of this host (mounts included). */
  async destroy(): Promise<void> {
    if (fs.existsSync(this.root)) {
      await this.run(['rm', '-a', '-f']).catch(() => undefined);
    }
    // Anything still mounted below our dir (a test that failed half-way) goes too.
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(this.dir));
    for (const m of mounts.sort().reverse()) spawnSync('umount', ['-l', m]);
    // runc state of containers that escaped `rm` (e.g. records deleted by a test).
    const runcRoot = path.join(this.runroot, 'runc');
    if (fs.existsSync(runcRoot)) {
      for (const id of fs.readdirSync(runcRoot)) spawnSync('runc', ['--root', runcRoot, 'delete', '--force', id]);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
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

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
