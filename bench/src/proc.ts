// Running commands (argv arrays only) and timing them, plus the bench's other small helpers.
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';

export type Child = ChildProcessByStdio<null, Readable, Readable>;

export interface ExecOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Leave stdout/stderr open after the exit (the caller goes on reading them). */
  keepStreams?: boolean;
}

export interface ExecResult {
  /** -1 when the command could not be started. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** From spawn to exit. */
  readonly ms: number;
  readonly child: Child | undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const log = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

/**
 * Runs argv and times it from spawn to exit (not to the close of its stdio: a detached
 * container may hold on to it). Children get their own process group so that a Ctrl-C reaches
 * only the bench, which then finishes the step and cleans up.
 */
export function exec(argv: readonly string[], { env, timeoutMs = 180_000, keepStreams = false }: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let child: Child;
    try {
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, detached: true });
    } catch (e) {
      resolve({ code: -1, signal: null, stdout: '', stderr: String(e), ms: 0, child: undefined });
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      stderr += `\n(bench: killed after ${timeoutMs / 1000} s)`;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + String(e), ms: performance.now() - t0, child });
    });
    child.on('exit', (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      const done = (): void =>
        resolve({
          code,
          signal,
          get stdout() {
            return stdout;
          },
          get stderr() {
            return stderr;
          },
          ms,
          child,
        });
      if (keepStreams) return done();
      // Collect what is left in the pipes, but do not wait for a grandchild holding them.
      let settled = false;
      const finish = (): void => {
        if (settled) return;
        settled = true;
        child.stdout.destroy();
        child.stderr.destroy();
        done();
      };
      child.on('close', finish);
      setTimeout(finish, 1000).unref();
    });
  });
}

export function cmdError(what: string, r: Pick<ExecResult, 'code' | 'signal' | 'stdout' | 'stderr'>): Error {
  const msg = (r.stderr || r.stdout || '').trim().split('\n').filter(Boolean).slice(-3).join(' | ');
  return new Error(`${what} failed (exit ${r.code ?? r.signal}): ${msg || 'no output'}`);
}

/** exec, failing unless the command exits 0. */
export async function ok(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
  const r = await exec(argv, opts);
  if (r.code !== 0) throw cmdError(argv.slice(0, 6).map((a) => path.basename(a)).join(' '), r);
  return r;
}

/** The first line a command prints (a version), or undefined when it fails. */
export function firstLine(argv: readonly string[]): string | undefined {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout || r.stderr).trim().split('\n')[0] : undefined;
}

/** Mount points at or below dir. */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')))
    .map((m) => m.replace(/\\040/g, ' '));
}

/** The message of something thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** GNU time, which reports a finished command's peak RSS (%M, KiB). */
export const GNU_TIME = '/usr/bin/time';

/**
 * The peak RSS (MiB) of a command that must succeed, measured by GNU time (written to a file of
 * its own, so the command's stderr stays apart); undefined when GNU time is not installed.
 */
export async function peakRssMiB(argv: readonly string[], opts: ExecOptions = {}): Promise<number | undefined> {
  if (!fs.existsSync(GNU_TIME)) return undefined;
  const out = path.join(os.tmpdir(), `ferry-bench-rss-${process.pid}`);
  try {
    await ok([GNU_TIME, '-o', out, '-f', '%M', ...argv], opts);
  } catch (err) {
    fs.rmSync(out, { force: true });
    throw err;
  }
  return readPeakMiB(out);
}

/** The largest peak RSS (MiB) GNU time wrote to file (`-a`: a line per process); the file is removed. */
export function readPeakMiB(file: string): number | undefined {
  const kib = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').map(Number).filter((n) => n > 0) : [];
  fs.rmSync(file, { force: true });
  return kib.length ? Math.round((Math.max(...kib) / 1024) * 10) / 10 : undefined;
}
