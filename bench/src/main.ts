// Ferry's benchmark: the same workloads, in the same run, on Ferry, on bare runc + CRIU (the
// floor: what runc and CRIU cost by themselves) and on Podman (the peer). See bench/README.md.
//
//   bun bench/src/main.ts [--quick] [--smoke] [--iterations N] [--only ferry,bare,podman]
//                         [--out DIR] [--no-setup] [--migration | --no-migration | --only-migration]
//                         [--no-pull | --only-pull] [--no-api | --only-api]
//
// Everything it creates (containers, mounts, storage, Podman's config) lives in one temporary
// directory and is removed at the end, also on failure and on Ctrl-C.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Aborted, abort, checkAbort, isAborted } from './abort.js';
import { Cleanup } from './cleanup.js';
import { BareEngine } from './engines/bare.js';
import type { Engine } from './engines/engine.js';
import { FerryEngine } from './engines/ferry.js';
import { PodmanEngine } from './engines/podman.js';
import { Results, summarize } from './figures.js';
import { benchCheckpoint, benchCli, benchExport } from './local.js';
import { benchMigration } from './migration.js';
import { benchPull } from './pull.js';
import { benchApi } from './api.js';
import { parseArgs, usage, type EngineName, type Options } from './options.js';
import { BENCH_DIR, CRIU, REPO } from './paths.js';
import { errorMessage, firstLine, log } from './proc.js';
import { notes, printReport, renderTable, renderVerdicts, writeResults, type ResultsDoc } from './report.js';
import { prepareWorkloads, sizeLabel } from './workloads.js';

const o: Options = (() => {
  try {
    return parseArgs(process.argv.slice(2));
  } catch (e) {
    log(`bench: ${errorMessage(e)}`);
    return usage(2);
  }
})();

if (process.getuid?.() !== 0) {
  log('bench: must run as root (runc, overlay mounts, CRIU)');
  process.exit(1);
}

const cleanup = new Cleanup();

let interrupts = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    abort();
    if (++interrupts === 1) log(`\nbench: ${sig}: finishing the current step, then removing everything the bench made`);
    else {
      log('bench: cleaning up now');
      cleanup.run();
      process.exit(130);
    }
  });
}
process.on('exit', () => cleanup.run());

async function main(): Promise<number> {
  const started = new Date();
  const t0 = performance.now();
  let engineNames: EngineName[] = [...o.only];
  const skipped: Record<string, string> = {};

  if (o.setup) {
    const r = spawnSync('bash', [path.join(BENCH_DIR, 'setup.sh'), ...(engineNames.includes('podman') ? [] : ['--no-podman'])], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error('bench/setup.sh failed');
  }
  if (!fs.existsSync(CRIU)) throw new Error(`${CRIU} is missing: run \`npm run setup\``);
  if (!fs.existsSync(path.join(REPO, 'dist/ferry'))) throw new Error('Ferry is not built: run `npm run build`');

  // Short path: conmon's attach socket path must fit in 108 bytes.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fyb-'));
  cleanup.setTempDir(tmp);
  // Redis is prepared when a figure of this run uses it (the migration's too, with --only-migration).
  const inPlace = !o.onlyMigration && !o.onlyApi && !o.onlyPull;
  const redis = (inPlace && [...o.crSizes, ...o.exportSizes].includes('redis')) || (o.migration && !o.onlyApi && !o.onlyPull && o.migSizes.includes('redis'));
  const ctx = await prepareWorkloads(tmp, redis);

  const make: Record<EngineName, () => Engine> = {
    ferry: () => new FerryEngine(path.join(tmp, 'f')),
    bare: () => new BareEngine(path.join(tmp, 'b')),
    podman: () => new PodmanEngine(path.join(tmp, 'p')),
  };
  const engines = new Map<EngineName, Engine>();
  for (const n of engineNames) {
    const e = make[n]();
    engines.set(n, e);
    cleanup.track(n, e);
    try {
      await e.setup(ctx);
    } catch (err) {
      if (n === 'ferry') throw new Error(`Ferry could not be set up: ${errorMessage(err)}`);
      skipped[n] = errorMessage(err);
      log(`bench: skipping ${n}: ${errorMessage(err)}`);
    }
  }
  engineNames = engineNames.filter((n) => !skipped[n]);
  const list = engineNames.flatMap((n) => engines.get(n) ?? []);
  const R = new Results();
  log(`bench: ${o.mode} mode, ${o.iterations} iteration(s), engines: ${engineNames.join(', ')}${Object.keys(skipped).length ? ` (skipped: ${Object.keys(skipped).join(', ')})` : ''}`);

  const step = async (what: string, fn: (e: Engine) => Promise<void>): Promise<void> => {
    for (const e of list) {
      checkAbort();
      log(`bench: ${what} [${e.name}]`);
      await fn(e);
    }
  };
  if (!o.onlyMigration && !o.onlyApi && !o.onlyPull) {
    await step('CLI latency', (e) => benchCli(e, R, o));
    for (const size of o.crSizes) await step(`checkpoint/restore ${sizeLabel(size)}`, (e) => benchCheckpoint(e, R, o, ctx, size));
    for (const size of o.exportSizes) await step(`export/import ${sizeLabel(size)}`, (e) => benchExport(e, R, o, ctx, size));
  }
  // Migration: Ferry (stop-and-copy, --lazy) against bare runc + CRIU (checkpoint + tar over
  // ssh + restore) and Podman (checkpoint --export + scp + restore --import), each between two
  // "hosts" with their own state.
  if (o.pull) {
    log('bench: pull from a local registry');
    await benchPull(R, o, tmp, engineNames, (c) => cleanup.track(c.name, c));
  }
  if (o.migration) await benchMigration(R, o, ctx, engineNames, skipped, cleanup);
  // The API (issue 17): docker ps against Ferry's and Podman's services, and checkpoint/restore
  // through the libpod API against Ferry's CLI in the same run.
  if (o.api) {
    log('bench: the API (docker ps against both services; checkpoint/restore, API and CLI in turn)');
    await benchApi(R, o, tmp, engines.get('ferry') as FerryEngine, engineNames.includes('podman') ? (engines.get('podman') as PodmanEngine) : undefined, cleanup);
  }

  const { figures, verdicts } = summarize(R, o, engineNames);
  const table = renderTable(figures, engineNames) + renderVerdicts(verdicts);
  const podman = engines.get('podman');
  const doc: ResultsDoc = {
    version: 1,
    startedAt: started.toISOString(),
    durationS: Math.round((performance.now() - t0) / 100) / 10,
    mode: o.mode,
    iterations: o.iterations,
    engines: engineNames,
    skipped,
    host: {
      kernel: os.release(),
      cpus: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      versions: {
        ferry: engines.get('ferry')?.version,
        runc: firstLine(['runc', '--version']),
        criu: firstLine([CRIU, '--version'])?.replace(/^Version:\s*/, 'CRIU '),
        conmon: firstLine(['conmon', '--version']),
        podman: podman && !skipped.podman ? podman.version : undefined,
      },
    },
    notes: notes(o.migration, o.pull && !o.onlyMigration),
    figures,
    targets: verdicts,
    table,
  };
  const file = writeResults(doc, o.out, started);
  printReport(doc, file);
  const failedChecks = figures.some((f) => Object.values(f.engines).some((s) => s.error));
  return failedChecks ? 1 : 0;
}

main().then(
  (code) => {
    cleanup.run();
    process.exit(isAborted() ? 130 : code);
  },
  (err: unknown) => {
    log(`bench: ${err instanceof Aborted ? 'interrupted' : errorMessage(err)}`);
    cleanup.run();
    process.exit(isAborted() ? 130 : 1);
  },
);
