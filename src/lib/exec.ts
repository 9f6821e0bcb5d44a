import * as fs from 'node:fs';
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { FerryError } from './errors.js';
import { debug, debugEnabled } from './log.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
  /** Kill the child after this many milliseconds. */
  timeoutMs?: number;
  /** Extra file descriptors to pass as fd 3, 4, ... */
  extraFds?: number[];
  /** Run in its own process group, so a terminal's Ctrl-C does not reach it. */
  detached?: boolean;
}

/**
 * Runs a program with an argv array (never a shell string) and collects its output.
 * Resolves on exit whatever the exit code; a missing program rejects with EDEPEND.
 */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new FerryError('EINTERNAL', 'run: empty argv');
  const stdio: SpawnOptions['stdio'] = [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe', ...(opts.extraFds ?? [])];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio, detached: opts.detached ?? false });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      if (e.code === 'ENOENT') reject(new FerryError('EDEPEND', `${file} is not installed: run \`npm run setup\` (as root) to install Ferry's host dependencies`));
      else reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (debugEnabled()) debug(`ran ${argv.slice(0, 4).map((a) => (a.length > 40 ? `…${a.slice(-30)}` : a)).join(' ')} in ${(performance.now() - t0).toFixed(1)}ms: exit ${code ?? signal}`);
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run(), but a non-zero exit becomes an error carrying the program's last stderr line. */
export async function runOk(argv: readonly string[], opts: RunOptions & { what?: string; code?: 'ERUNTIME' | 'ECRIU' | 'EINTERNAL' } = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    const last = lastLine(r.stderr) || lastLine(r.stdout) || `exit ${r.code ?? r.signal}`;
    throw new FerryError(opts.code ?? 'ERUNTIME', `${opts.what ?? argv[0]} failed: ${last}`, { detail: r.stderr });
  }
  return r;
}

export function lastLine(s: string): string {
  const lines = s.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? '';
}

/** Resolves a program name to an absolute path through PATH (as conmon needs for -r). */
export function which(name: string): string | undefined {
  if (name.includes('/')) return name;
  for (const dir of (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = `${dir}/${name}`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** Runs a short program synchronously (argv array); a non-zero exit throws with its stderr. */
export function runSyncOk(argv: readonly string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new FerryError('ERUNTIME', `${argv[0]} failed: ${r.stderr.trim()}`);
}
