// The workloads and how their output is read: Ferry's looper (tiny), the static C memhog
// (test/fixtures/memhog.c, N MiB re-verified every 500 ms) and Redis 7 holding 1M keys; the
// sizes, and the checks that a restored or migrated workload goes on where it stopped (Redis:
// the same DEBUG DIGEST as before the checkpoint).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { appTarball } from '../../test/helpers/apps.js';
import { errorMessage, ok, sleep } from './proc.js';
import { REPO } from './paths.js';

/** 'tiny' is the looper; a number is memhog's size in MiB; 'redis' is Redis with 1M keys. */
export type Size = 'tiny' | number | 'redis';

export const LOOPER = ['sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'];

/** The root filesystems the workloads run in. */
export type ImageName = 'busybox' | 'redis';

export interface Workload {
  kind: 'tiny' | 'memhog' | 'redis';
  argv: string[];
  /** A host directory bind-mounted read-only at /opt (memhog's binary). */
  opt?: string;
  /** The image it runs in (busybox unless named). */
  image?: ImageName;
}

export const TINY: Workload = { kind: 'tiny', argv: LOOPER };

/**
 * Redis 7 (Debian bookworm's), no persistence, DEBUG for POPULATE and DIGEST; it listens only on
 * a unix socket in the container's own /tmp (no TCP port): after `runc restore` and Podman's
 * restore of a `--network none` container the loopback interface comes back down, so a client
 * inside could not reach 127.0.0.1 on those two (Ferry brings it up in its hook).
 */
export const REDIS_KEYS = 1_000_000;
/** Redis's resident memory with those keys (~180 MiB). */
export const REDIS_MIB = 180;
export const REDIS_SOCKET = '/tmp/redis.sock';
export const REDIS: Workload = {
  kind: 'redis',
  argv: ['redis-server', '--enable-debug-command', 'yes', '--save', '', '--appendonly', 'no', '--port', '0', '--unixsocket', REDIS_SOCKET, '--unixsocketperm', '700'],
  image: 'redis',
};

/** What every step shares: the temporary dir and what was made in it first. */
export interface BenchContext {
  /** The temporary dir everything lives in. */
  dir: string;
  /** The busybox image (scripts/make-busybox-image.sh). */
  tarball: string;
  /** Holds the memhog binary. */
  optDir: string;
  /**
   * The busybox image with the memhog binary at /opt/memhog: Ferry's migrations run memhog from
   * it (imported on both hosts, as the baselines see the bind-mounted binary on both), so nothing
   * but the workload's memory differs from a size to the next.
   */
  memhogTarball: string;
  /** Export/import archives. */
  archives: string;
  /** The Redis image (the test suite's mmdebstrap recipe), when a Redis figure is measured. */
  redisTarball?: string;
}

export const sizeLabel = (s: Size): string => (s === 'tiny' ? 'tiny' : s === 'redis' ? 'Redis 1M keys' : s >= 1024 ? `${s / 1024} GiB` : `${s} MiB`);

/** memhog fills `size` MiB and re-verifies it every 500 ms. */
export const memhogArgv = (size: number): string[] => ['/opt/memhog', String(size), '500'];

/** The workload of a size, with memhog's binary bind-mounted from the bench's directory. */
export function workload(size: Size, ctx: BenchContext): Workload {
  return size === 'tiny' ? TINY : size === 'redis' ? REDIS : { kind: 'memhog', argv: memhogArgv(size), opt: ctx.optDir };
}

/**
 * Makes the temporary dir's contents: the busybox tarball and the static memhog binary; and,
 * with `redis`, finds the Redis image in the checkout's cache (.cache/, by recipe hash), built
 * with mmdebstrap first when the cache does not have it.
 */
export async function prepareWorkloads(dir: string, redis = false): Promise<BenchContext> {
  const ctx: BenchContext = {
    dir,
    tarball: path.join(dir, 'busybox.tar'),
    optDir: path.join(dir, 'opt'),
    memhogTarball: path.join(dir, 'memhog.tar'),
    archives: path.join(dir, 'archives'),
  };
  fs.mkdirSync(ctx.optDir, { mode: 0o755 });
  fs.mkdirSync(ctx.archives);
  await ok(['bash', path.join(REPO, 'scripts/make-busybox-image.sh'), ctx.tarball]);
  await ok(['gcc', '-static', '-O2', '-o', path.join(ctx.optDir, 'memhog'), path.join(REPO, 'test', 'fixtures', 'memhog.c')]);
  // busybox + ./opt/memhog, with the busybox tarball's fixed owner and mtime.
  fs.copyFileSync(ctx.tarball, ctx.memhogTarball);
  await ok(['tar', '--mtime=2024-01-01 00:00Z', '--owner=0', '--group=0', '--numeric-owner', '-C', dir, '-rf', ctx.memhogTarball, './opt/memhog']);
  if (redis) ctx.redisTarball = appTarball('redis');
  return ctx;
}

/**
 * Anything whose containers can be read: an engine, or Ferry on a migration host. `exec` runs a
 * command in a running container (the engine's own exec) and returns its stdout; it throws when
 * the command fails.
 */
export interface OutputSource {
  readonly name: string;
  output(name: string): Promise<string>;
  exec(name: string, argv: readonly string[]): Promise<string>;
}

/** `redis-cli ARGS` inside the container (the engine's exec), over Redis's unix socket: the reply, trimmed. */
async function redisCli(e: OutputSource, name: string, args: readonly string[]): Promise<string> {
  return (await e.exec(name, ['redis-cli', '-s', REDIS_SOCKET, ...args])).trim();
}

/** DEBUG DIGEST: a SHA-1 of the whole dataset (40 zeros when empty). */
async function redisDigest(e: OutputSource, name: string): Promise<string> {
  const d = await redisCli(e, name, ['DEBUG', 'DIGEST']);
  if (!/^[0-9a-f]{40}$/.test(d)) throw new Error(`${e.name}: Redis answered DEBUG DIGEST with ${JSON.stringify(d.slice(0, 200))}`);
  return d;
}

/** Redis answers PING; then it gets its 1M keys (DEBUG POPULATE, ~180 MiB) and must hold them. */
async function startRedis(e: OutputSource, name: string, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    let why: string;
    try {
      const r = await redisCli(e, name, ['PING']);
      if (r === 'PONG') break;
      why = r;
    } catch (err) {
      why = errorMessage(err);
    }
    if (performance.now() > end) throw new Error(`${e.name}: Redis did not answer PING within ${timeoutMs / 1000} s: ${why}`);
    await sleep(150);
  }
  const pop = await redisCli(e, name, ['DEBUG', 'POPULATE', String(REDIS_KEYS), 'key', '100']);
  if (pop !== 'OK') throw new Error(`${e.name}: Redis DEBUG POPULATE answered ${JSON.stringify(pop)}`);
  const n = await redisCli(e, name, ['DBSIZE']);
  if (Number(n) !== REDIS_KEYS) throw new Error(`${e.name}: Redis holds ${n} keys after DEBUG POPULATE, expected ${REDIS_KEYS}`);
  if ((await redisDigest(e, name)) === '0'.repeat(40)) throw new Error(`${e.name}: Redis's dataset is empty after DEBUG POPULATE`);
}

/**
 * What a restore must bring back, noted before the checkpoint (untimed, in the pause): Redis's
 * DEBUG DIGEST. The looper and memhog need nothing: their mark is read after the checkpoint.
 */
export async function stateBefore(e: OutputSource, name: string, w: Workload): Promise<string | undefined> {
  return w.kind === 'redis' ? redisDigest(e, name) : undefined;
}

/** The looper's or memhog's last number, or Redis's digest before the checkpoint. */
export type Mark = number | string;

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

/**
 * Waits until the workload is up: the looper printed a line, the memhog said "filled" and one
 * "ok", Redis answers and holds its 1M keys.
 */
export async function waitStarted(e: OutputSource, name: string, w: Workload, timeoutMs = 60_000): Promise<void> {
  if (w.kind === 'redis') return startRedis(e, name, timeoutMs);
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

/**
 * The number the workload printed last (after a checkpoint, when it is frozen); for Redis, the
 * digest `before` the checkpoint (stateBefore).
 */
export async function markOf(e: OutputSource, name: string, w: Workload, before?: string): Promise<Mark> {
  if (w.kind === 'redis') {
    if (before === undefined) throw new Error(`${e.name}: no DEBUG DIGEST was taken before the checkpoint`);
    return before;
  }
  return progress(await e.output(name), w.kind).last;
}

/**
 * After a restore: waits for mark+1 with no corruption and no restart in between; Redis must
 * answer DEBUG DIGEST with the digest it had before the checkpoint (a Redis started again
 * would be empty).
 */
export async function verifyRestored(e: OutputSource, name: string, w: Workload, mark: Mark, timeoutMs = 30_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  if (w.kind === 'redis') {
    for (;;) {
      let d: string;
      try {
        d = await redisDigest(e, name);
      } catch (err) {
        if (performance.now() > end) throw new Error(`${e.name}: check after restore failed: Redis did not answer DEBUG DIGEST within ${timeoutMs / 1000} s: ${errorMessage(err)}`);
        await sleep(150);
        continue;
      }
      if (d !== mark) throw new Error(`${e.name}: check after restore failed: Redis's DEBUG DIGEST is ${d}, it was ${String(mark)} before the checkpoint`);
      return;
    }
  }
  if (typeof mark !== 'number') throw new Error(`${e.name}: a ${w.kind} workload's mark must be a number`);
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
