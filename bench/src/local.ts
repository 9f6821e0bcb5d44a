// The figures on one host, engine after engine: CLI latency (run -d, ps, inspect, rm -f),
// checkpoint/restore in place, and export/import.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Aborted, checkAbort } from './abort.js';
import { rmQuiet, uniq, type Engine } from './engines/engine.js';
import { memoryOf, settle, type FigureKey, type Results } from './figures.js';
import type { Options } from './options.js';
import { errorMessage, log } from './proc.js';
import { TINY, markOf, sizeLabel, stateBefore, verifyRestored, waitStarted, workload, type BenchContext, type Size } from './workloads.js';

const CLI = {
  run: ['cli.run', 'run -d (tiny)'],
  rm: ['cli.rm', 'rm -f (tiny)'],
  ps: ['cli.ps', 'ps (1 running)'],
  psRss: ['cli.ps.rss', 'ps peak RSS (MiB)'],
  inspect: ['cli.inspect', 'inspect'],
  images: ['cli.images', 'images'],
} as const satisfies Record<string, FigureKey>;

/** Records the failure of a group of figures for an engine; a Ctrl-C goes on up. */
function failed(R: Results, keys: readonly FigureKey[], e: Engine, err: unknown): void {
  if (err instanceof Aborted) throw err;
  R.fail(keys, e.name, errorMessage(err));
  log(`  ${e.name}: ${errorMessage(err)}`);
}

export async function benchCli(e: Engine, R: Results, o: Options): Promise<void> {
  try {
    const w = TINY;
    // One untimed round first: the first command of each engine pays for a cold cache.
    const warm = uniq('warm');
    await e.run(warm, w);
    await e.ps();
    await e.inspect(warm);
    await e.rm(warm);
    for (let i = 0; i < o.iterations; i++) {
      checkAbort();
      const n = uniq('cli');
      await settle(0);
      R.add(CLI.run, e.name, await e.run(n, w));
      await waitStarted(e, n, w);
      R.add(CLI.ps, e.name, await e.ps());
      R.add(CLI.inspect, e.name, await e.inspect(n));
      if (e.images) R.add(CLI.images, e.name, await e.images());
      R.add(CLI.rm, e.name, await e.rm(n));
    }
    // Peak memory of `ps` with one container running, untimed (GNU time around the command).
    if (e.psPeakMiB) {
      const n = uniq('cli');
      await e.run(n, w);
      await waitStarted(e, n, w);
      for (let i = 0; i < o.iterations; i++) {
        const mib = await e.psPeakMiB();
        if (mib !== undefined) R.addMiB(CLI.psRss, e.name, mib);
      }
      await e.rm(n);
    }
  } catch (err) {
    failed(R, [CLI.run, CLI.rm, CLI.ps, CLI.inspect, ...(e.images ? [CLI.images] : []), ...(e.psPeakMiB ? [CLI.psRss] : [])], e, err);
  }
}

/** Checkpoint and restore in place, N cycles on one container, checking the workload each time. */
export async function benchCheckpoint(e: Engine, R: Results, o: Options, ctx: BenchContext, size: Size): Promise<void> {
  const mem = memoryOf(size); // MiB to warm before each step (0: tiny)
  const label = sizeLabel(size);
  const ids: [FigureKey, FigureKey] = [
    [`cr.${size}.checkpoint`, `checkpoint ${label}`],
    [`cr.${size}.restore`, `restore ${label}`],
  ];
  const w = workload(size, ctx);
  const name = uniq(`cr${size}`);
  let running = false;
  try {
    await settle(mem);
    await e.run(name, w);
    running = true;
    await waitStarted(e, name, w);
    if (size === o.crSizes[0]) {
      // One untimed cycle first: an engine's first checkpoint pays one-off costs (Ferry probes
      // CRIU's features once per runroot, Podman initialises its checkpoint support).
      const before = await stateBefore(e, name, w);
      await e.checkpoint(name);
      const mark = await settle(mem, () => markOf(e, name, w, before));
      await e.restore(name);
      await verifyRestored(e, name, w, mark);
    }
    let pendingCheck: (() => Promise<void>) | undefined;
    for (let i = 0; i < o.iterations; i++) {
      // The previous restore's check, then what this restore must bring back (Redis's digest).
      const before = await settle(mem, async () => {
        await pendingCheck?.();
        return stateBefore(e, name, w);
      });
      const ckptMs = await e.checkpoint(name);
      R.add(ids[0], e.name, ckptMs, { criuWriteMs: await e.criuWriteMs?.(name) });
      const mark = await settle(mem, () => markOf(e, name, w, before));
      R.add(ids[1], e.name, await e.restore(name));
      pendingCheck = () => verifyRestored(e, name, w, mark);
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    failed(R, ids, e, err);
  } finally {
    if (running) await rmQuiet(e, name);
  }
}

/**
 * Export and import: a chain, each imported container exported in turn (so no iteration pays
 * for starting and filling the workload again); each import is checked like a restore.
 */
export async function benchExport(e: Engine, R: Results, o: Options, ctx: BenchContext, size: Size): Promise<void> {
  const mem = memoryOf(size); // MiB to warm before each step (0: tiny)
  const label = sizeLabel(size);
  const ids: [FigureKey, FigureKey] = [
    [`export.${size}.export`, `checkpoint --export ${label}`],
    [`export.${size}.import`, `restore --import ${label}`],
  ];
  const w = workload(size, ctx);
  const live = new Set<string>();
  try {
    await settle(mem);
    let name = uniq(`ex${size}`);
    await e.run(name, w);
    live.add(name);
    await waitStarted(e, name, w);
    let pendingCheck: (() => Promise<void>) | undefined;
    for (let i = 0; i < o.iterations; i++) {
      const before = await settle(mem, async () => {
        await pendingCheck?.();
        return stateBefore(e, name, w);
      });
      const file = path.join(ctx.archives, `${e.name}-${name}.tar.zst`);
      const exMs = await e.export(name, file);
      const bytes = fs.statSync(file).size;
      R.add(ids[0], e.name, exMs, { bytes });
      const mark = await settle(mem, () => markOf(e, name, w, before));
      const next = uniq(`ex${size}`);
      live.add(next);
      R.add(ids[1], e.name, await e.import(file, next, w));
      fs.rmSync(file, { force: true });
      const prev = name;
      name = next;
      // The check of the import and the removal of the exported container overlap the pause.
      pendingCheck = async () => {
        await verifyRestored(e, next, w, mark);
        await e.rm(prev);
        live.delete(prev);
      };
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    failed(R, ids, e, err);
  } finally {
    for (const n of live) await rmQuiet(e, n);
  }
}
