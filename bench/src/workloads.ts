// The workloads and how their output is read: Ferry's looper (tiny) and the static C memhog
// (test/fixtures/memhog.c, N MiB re-verified every 500 ms), the sizes, and the checks that a
// restored or migrated workload goes on where it stopped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ok, sleep } from './proc.js';
import { REPO } from './paths.js';

/** 'tiny' is the looper; a number is memhog's size in MiB. */
export type Size = 'tiny' | number;

export const LOOPER = ['sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'];

export interface Workload {
  kind: 'tiny' | 'memhog';
  argv: string[];
  /** A host directory bind-mounted read-only at /opt (memhog's binary). */
  opt?: string;
}

export const TINY: Workload = { kind: 'tiny', argv: LOOPER };

/** What every step shares: the temporary dir and what was made in it first. */
export interface BenchContext {
  /** The temporary dir everything lives in. */
  dir: string;
  /** The busybox image (scripts/make-busybox-image.sh). */
  tarball: string;
  /** Holds the memhog binary. */
  optDir: string;
  /** Export/import archives. */
  archives: string;
}

export const sizeLabel = (s: Size): string => (s === 'tiny' ? 'tiny' : s >= 1024 ? `${s / 1024} GiB` : `${s} MiB`);

/** memhog fills `size` MiB and re-verifies it every 500 ms. */
export const memhogArgv = (size: number): string[] => ['/opt/memhog', String(size), '500'];

/** The workload of a size, with memhog's binary bind-mounted from the bench's directory. */
export function workload(size: Size, ctx: BenchContext): Workload {
  return size === 'tiny' ? TINY : { kind: 'memhog', argv: memhogArgv(size), opt: ctx.optDir };
}

/** Makes the temporary dir's contents: the busybox tarball and the static memhog binary. */
export async function prepareWorkloads(dir: string): Promise<BenchContext> {
  const ctx = { dir, tarball: path.join(dir, 'busybox.tar'), optDir: path.join(dir, 'opt'), archives: path.join(dir, 'archives') };
  fs.mkdirSync(ctx.optDir, { mode: 0o755 });
  fs.mkdirSync(ctx.archives);
  await ok(['bash', path.join(REPO, 'scripts/make-busybox-image.sh'), ctx.tarball]);
  await ok(['gcc', '-static', '-O2', '-o', path.join(ctx.optDir, 'memhog'), path.join(REPO, 'test', 'fixtures', 'memhog.c')]);
  return ctx;
}

/** Anything whose containers' output can be read: an engine, or Ferry on a migration host. */
export interface OutputSource {
  readonly name: string;
  output(name: string): Promise<string>;
}

interface Progress {
  lines: string[];
  /** The last number printed, -1 when none. */
  last: number;
  num: (line: string) => number | undefined;
}

/**
 * The workload's progress as seen in its output. Tiny looper: it prints 0, 1, 2, ...;
 * memhog: "filled ...", then "ok 0", "ok 1", ... or "CORRUPT".
 * `mark` is the last number printed before the checkpoint; a process that was really restored
 * (memory intact, not started again) prints mark+1 next, and nothing else in between.
 */
export function progress(text: string, kind: Workload['kind']): Progress {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const num = (l: string): number | undefined => {
    const m = kind === 'tiny' ? /^(\d+)$/.exec(l) : /^ok (\d+)$/.exec(l);
    return m ? Number(m[1]) : undefined;
  };
  let last = -1;
  for (const l of lines) {
    const n = num(l);
    if (n !== undefined) last = n;
  }
  return { lines, last, num };
}

/** Checks the restored output; returns undefined when fine, 'wait' when not yet, or an error text. */
export function checkRestored(text: string, kind: Workload['kind'], mark: number): string | undefined {
  const { lines, num } = progress(text, kind);
  // Lines after the last occurrence of the mark (logs of Ferry and Podman keep the old lines).
  let from = 0;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (num(lines[i]!) === mark) {
      from = i + 1;
      break;
    }
  }
  for (const l of lines.slice(from)) {
    if (l.includes('CORRUPT')) return `the workload reported memory corruption: "${l}"`;
    if (l.startsWith('filled')) return 'the workload started again instead of being restored ("filled" printed again)';
    const n = num(l);
    if (n === undefined) continue;
    return n === mark + 1 ? undefined : `after restore the workload printed ${n}, expected ${mark + 1} (it was not restored where it stopped)`;
  }
  return 'wait';
}

/** Waits until the workload is up: the looper printed a line, the memhog said "filled" and one "ok". */
export async function waitStarted(e: OutputSource, name: string, w: Workload, timeoutMs = 60_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const text = await e.output(name);
    if (text.includes('CORRUPT')) throw new Error(`${e.name}: the workload reported corruption before any checkpoint: ${text.trim().split('\n').at(-1)}`);
    const p = progress(text, w.kind);
    if (p.last >= (w.kind === 'tiny' ? 0 : 1)) return;
    if (performance.now() > end) throw new Error(`${e.name}: the workload did not start within ${timeoutMs / 1000} s (output: ${JSON.stringify(text.slice(-200))})`);
    await sleep(150);
  }
}

/** The number the workload printed last (after a checkpoint, when it is frozen). */
export async function markOf(e: OutputSource, name: string, w: Workload): Promise<number> {
  return progress(await e.output(name), w.kind).last;
}

/** After a restore: waits for mark+1 with no corruption and no restart in between. */
export async function verifyRestored(e: OutputSource, name: string, w: Workload, mark: number, timeoutMs = 30_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const text = await e.output(name);
    const why = checkRestored(text, w.kind, mark);
    if (why === undefined) return;
    if (why !== 'wait') throw new Error(`${e.name}: check after restore failed: ${why}`);
    if (performance.now() > end) throw new Error(`${e.name}: check after restore failed: the workload printed nothing after ${mark} within ${timeoutMs / 1000} s`);
    await sleep(150);
  }
}

/**
 * After a migration: the workload goes on from `from` (the last number seen before it), every
 * number after it in order, at least two of them, no CORRUPT and no restart ("filled").
 */
export async function verifyContinues(e: OutputSource, name: string, w: Workload, from: number, timeoutMs = 30_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const { lines, num } = progress(await e.output(name), w.kind);
    let i = -1;
    for (let k = lines.length - 1; k >= 0; k--) {
      if (num(lines[k]!) === from) {
        i = k;
        break;
      }
    }
    const after = lines.slice(i + 1);
    const bad = after.find((l) => l.includes('CORRUPT') || l.startsWith('filled'));
    if (bad) throw new Error(`${e.name}: check after migration failed: "${bad}"`);
    if (i < 0) throw new Error(`${e.name}: check after migration failed: ${from} is not in the output on the destination`);
    const nums = after.map(num).filter((n): n is number => n !== undefined);
    const k = nums.findIndex((n, j) => n !== from + 1 + j);
    if (k >= 0) throw new Error(`${e.name}: check after migration failed: printed ${nums[k]} where ${from + 1 + k} was due (not restored where it stopped)`);
    if (nums.length >= 2) return;
    if (performance.now() > end) throw new Error(`${e.name}: check after migration failed: fewer than 2 numbers after ${from} within ${timeoutMs / 1000} s`);
    await sleep(150);
  }
}
