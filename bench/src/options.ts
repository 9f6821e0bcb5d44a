// The command line: flags, defaults, and what each mode measures.
import * as path from 'node:path';
import { BENCH_DIR } from './paths.js';
import type { Size } from './workloads.js';

export const ALL_ENGINES = ['ferry', 'bare', 'podman'] as const;
export type EngineName = (typeof ALL_ENGINES)[number];

export type Mode = 'smoke' | 'quick' | 'full';

export interface Options {
  quick: boolean;
  smoke: boolean;
  /** Runs per figure. */
  iterations: number;
  only: EngineName[];
  /** Where <timestamp>.json and latest.json go. */
  out: string;
  /** Run bench/setup.sh first. */
  setup: boolean;
  migration: boolean;
  onlyMigration: boolean;
  /** Pull from a local registry (issue 15): Ferry, Podman, skopeo copy. */
  pull: boolean;
  onlyPull: boolean;
  /** The API's figures (docker ps against both services, checkpoint/restore via the API). */
  api: boolean;
  onlyApi: boolean;
  mode: Mode;
  /** Checkpoint/restore in place. */
  crSizes: Size[];
  exportSizes: Size[];
  migSizes: Size[];
}

export function usage(code: number): never {
  process.stdout.write(`usage: bun bench/src/main.ts [options]
  --quick            tiny, 256 MiB and Redis workloads (migration: tiny), 3 iterations (about 8 minutes)
  --smoke            tiny workload only, 1 iteration (for the smoke test)
  --iterations N     runs per figure (default 5; --quick 3; --smoke 1)
  --only LIST        engines to run, comma-separated: ferry,bare,podman (default all)
  --out DIR          where to write <timestamp>.json and latest.json (default bench/results)
  --no-setup         do not run bench/setup.sh first
  --migration        also measure live migration in --smoke mode (on by default otherwise)
  --no-migration     leave the migration figures out
  --only-migration   measure only the migration figures
  --sizes LIST       only these workload sizes, comma-separated: tiny,64,256,1024,redis (e.g. the
                     full run's 1 GiB and Redis figures alone: --sizes 1024,redis)
  --no-pull          leave the pull figures out (on by default but in --smoke)
  --only-pull        measure only the pull figures (a local registry, ~100 MB image)
  --no-api           leave the API figures out (docker ps against Ferry's and Podman's services,
                     checkpoint/restore through the libpod API against the CLI)
  --only-api         measure only the API figures
`);
  process.exit(code);
}

const isEngine = (e: string): e is EngineName => (ALL_ENGINES as readonly string[]).includes(e);

/** Parses the flags; throws on a bad one (the caller prints usage), exits on --help. */
export function parseArgs(argv: readonly string[]): Options {
  let quick = false;
  let smoke = false;
  let iterations: number | undefined;
  let only: EngineName[] = [...ALL_ENGINES];
  let out = path.join(BENCH_DIR, 'results');
  let setup = true;
  let migration: boolean | undefined;
  let onlyMigration = false;
  let sizes: Size[] | undefined;
  let pull: boolean | undefined;
  let onlyPull = false;
  let api = true;
  let onlyApi = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') quick = true;
    else if (a === '--smoke') smoke = true;
    else if (a.startsWith('--iterations')) {
      iterations = Number(val());
      if (!Number.isInteger(iterations) || iterations < 1) throw new Error('--iterations takes a whole number >= 1');
    } else if (a === '--only-migration') onlyMigration = migration = true;
    else if (a === '--only-pull') onlyPull = pull = true;
    else if (a === '--no-pull') pull = false;
    else if (a === '--only' || a.startsWith('--only=')) {
      const names = val().split(',').map((s) => s.trim()).filter(Boolean);
      only = [];
      for (const e of names) {
        if (!isEngine(e)) throw new Error(`--only: unknown engine "${e}" (use ${ALL_ENGINES.join(', ')})`);
        only.push(e);
      }
      if (!only.includes('ferry')) throw new Error('--only must include ferry: every figure compares Ferry with the others');
    } else if (a.startsWith('--out')) out = path.resolve(val());
    else if (a === '--no-setup') setup = false;
    else if (a === '--sizes' || a.startsWith('--sizes=')) {
      sizes = val().split(',').map((x) => x.trim()).filter(Boolean).map((x): Size => {
        if (x === 'tiny' || x === 'redis') return x;
        if (/^(64|256|1024)$/.test(x)) return Number(x) as Size;
        throw new Error(`--sizes: unknown size "${x}" (use tiny, 64, 256, 1024, redis)`);
      });
      if (!sizes.length) throw new Error('--sizes needs at least one size');
    } else if (a === '--migration') migration = true;
    else if (a === '--no-migration') migration = false;
    else if (a === '--no-api') api = false;
    else if (a === '--only-api') onlyApi = true;
    else if (a === '-h' || a === '--help') usage(0);
    else throw new Error(`unknown option ${a}`);
  }
  if ([onlyPull, onlyMigration, onlyApi].filter(Boolean).length > 1) throw new Error('--only-pull, --only-migration and --only-api: choose one');
  if (onlyPull) migration = false;
  // --sizes: the mode's sizes that are in the list.
  const pick = (all: Size[]): Size[] => (sizes ? all.filter((x) => sizes!.includes(x)) : all);
  return {
    quick,
    smoke,
    iterations: iterations ?? (smoke ? 1 : quick ? 3 : 5),
    only,
    out,
    setup,
    // Live migration between two "hosts" (network namespaces with their own sshd) on this machine.
    migration: onlyApi ? false : migration ?? !smoke,
    onlyMigration,
    pull: onlyPull || (pull ?? (!smoke && !onlyMigration && !onlyApi)),
    onlyPull,
    api: onlyApi || (api && !onlyMigration && !onlyPull && !smoke),
    onlyApi,
    mode: smoke ? 'smoke' : quick ? 'quick' : 'full',
    // --quick: tiny, 256 MiB (the size targets are judged on it) and Redis (1M keys,
    // ~180 MiB): about 8 minutes with the tiny migrations. The full run adds 1 GiB.
    crSizes: pick(smoke ? ['tiny'] : quick ? ['tiny', 256, 'redis'] : ['tiny', 256, 1024, 'redis']),
    exportSizes: pick(smoke ? ['tiny'] : quick ? ['tiny', 256, 'redis'] : ['tiny', 256, 1024, 'redis']),
    migSizes: pick(smoke ? ['tiny', 64] : quick ? ['tiny'] : ['tiny', 64, 256, 1024, 'redis']),
  };
}
