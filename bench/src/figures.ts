// The figures: the pause before each step, the samples each engine gave, their min and median,
// the ratios of the medians, and the targets (issue 14) they are judged against.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkAbort } from './abort.js';
import type { EngineName, Options } from './options.js';
import { exec, sleep } from './proc.js';
import { REDIS_MIB, sizeLabel, type Size } from './workloads.js';

// ---------------------------------------------------------------------------------------------
// Timing

export const LARGE_PAUSE_MS = 3000; // host-notes: the VM hands freed memory back ~2 s late
export const SMALL_PAUSE_MS = 300;

/**
 * Memory handed back to the host is backed again page by page when the guest next writes to it,
 * at ~4 µs a page here: CRIU writing a 181 MiB Redis's pages took 40 or 240 ms for the same
 * container, whichever engine ran it, depending on which free pages the kernel gave its page
 * cache. Writing twice the workload's memory into a file and deleting it right before the step
 * leaves warm pages on the free lists, and every engine's step gets them (bench/README.md,
 * "CRIU's page writing").
 */
async function warmFreeMemory(mib: number): Promise<void> {
  const file = path.join(os.tmpdir(), `ferry-bench-warm-${process.pid}`);
  const chunk = Buffer.alloc(4 << 20, 0x5a);
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    fs.unlinkSync(file); // nothing is left behind, whatever happens; no writeback once closed
    for (let i = 0; i < Math.ceil((2 * mib) / 4); i++) fs.writeSync(fd, chunk);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * sync, then wait out the pause (doing `during` meanwhile: checks of the previous step).
 * `memMiB`: the step's workload memory (memoryOf; 0 for tiny and CLI steps): a step with
 * memory pauses longer, then gets that memory warmed (warmFreeMemory).
 */
export async function settle<T>(memMiB: number, during: () => Promise<T>): Promise<T>;
export async function settle(memMiB: number, during?: () => Promise<unknown>): Promise<unknown>;
export async function settle(memMiB: number, during?: () => Promise<unknown>): Promise<unknown> {
  const t0 = performance.now();
  await exec(['sync']);
  const r = during ? await during() : undefined;
  const rest = (memMiB > 0 ? LARGE_PAUSE_MS : SMALL_PAUSE_MS) - (performance.now() - t0);
  if (rest > 0) await sleep(rest);
  if (memMiB > 0) await warmFreeMemory(memMiB);
  checkAbort();
  return r;
}

/** A workload's memory in MiB for settle (0: tiny, nothing to warm). */
export const memoryOf = (size: Size): number => (size === 'tiny' ? 0 : size === 'redis' ? REDIS_MIB : size);

export function median(xs: readonly number[]): number | undefined {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return undefined;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

// ---------------------------------------------------------------------------------------------
// Samples

/** One engine's part of a figure (the JSON keeps this shape). */
export interface EngineFigure {
  /** ms, one decimal. */
  samples: number[];
  /** Archive or migrated bytes, per sample. */
  sizeBytes?: number[];
  /** Ferry's migrations: the whole `ferry migrate` command, per sample. */
  wallMs?: number[];
  /**
   * Checkpoints: CRIU's own time writing the memory pages to the image files (its stats-dump's
   * memwrite_time), per sample, where the engine leaves that file to read.
   */
  criuWriteMs?: number[];
  /** Ferry's migrations: the peak RSS (MiB) of the source's and the destination's ferry, per sample. */
  rssSourceMiB?: number[];
  rssDestinationMiB?: number[];
  /** Why the figure failed for this engine (the first error). */
  error?: string;
  // Set by summarize():
  min?: number;
  median?: number;
  sizeBytesMedian?: number;
  criuWriteMedianMs?: number;
  rssSourceMedianMiB?: number;
  rssDestinationMedianMiB?: number;
  ok?: boolean;
}

export interface Figure {
  id: string;
  title: string;
  /** What the samples count: milliseconds, or MiB for a peak RSS figure. */
  unit: 'ms' | 'MiB';
  engines: { [E in EngineName]?: EngineFigure };
}

/** A figure's ID and its title in the table. */
export type FigureKey = readonly [id: string, title: string];

/** The samples as they come in, by figure and engine. */
export class Results {
  readonly figures = new Map<string, Figure>();

  private fig(id: string, title: string, unit: Figure['unit'] = 'ms'): Figure {
    let f = this.figures.get(id);
    if (!f) {
      f = { id, title, unit, engines: {} };
      this.figures.set(id, f);
    }
    return f;
  }

  private slot([id, title]: FigureKey, engine: EngineName): EngineFigure {
    const f = this.fig(id, title);
    return (f.engines[engine] ??= { samples: [] });
  }

  add(key: FigureKey, engine: EngineName, ms: number, extra?: { bytes?: number; wallMs?: number; criuWriteMs?: number; rss?: { source?: number; destination?: number } }): void {
    const s = this.slot(key, engine);
    s.samples.push(Math.round(ms * 10) / 10);
    if (extra?.bytes !== undefined) (s.sizeBytes ??= []).push(extra.bytes);
    if (extra?.wallMs !== undefined) (s.wallMs ??= []).push(Math.round(extra.wallMs * 10) / 10);
    if (extra?.criuWriteMs !== undefined) (s.criuWriteMs ??= []).push(Math.round(extra.criuWriteMs * 10) / 10);
    if (extra?.rss?.source !== undefined) (s.rssSourceMiB ??= []).push(extra.rss.source);
    if (extra?.rss?.destination !== undefined) (s.rssDestinationMiB ??= []).push(extra.rss.destination);
  }

  /** Marks the figures failed for an engine (keeping the first error). */
  /** A peak RSS sample (MiB) of a MiB figure. */
  addMiB([id, title]: FigureKey, engine: EngineName, mib: number): void {
    const f = this.fig(id, title, 'MiB');
    (f.engines[engine] ??= { samples: [] }).samples.push(Math.round(mib * 10) / 10);
  }

  fail(keys: readonly FigureKey[], engine: EngineName, msg: string): void {
    for (const key of keys) {
      const s = this.slot(key, engine);
      s.error ??= msg;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Targets

interface Target {
  text: string;
  /** Ferry's median below this many ms. */
  max?: number;
  /** Ferry/bare at most this. */
  bareMax?: number;
  /** Ferry/Podman at most this (below it when strict). */
  podmanMax?: number;
  strict?: boolean;
  /** Ferry's median / Ferry's median of this other figure (same run) at most vsMax. */
  vs?: string;
  vsMax?: number;
}

/**
 * Targets from issue 14 (and issue 8's for migration). Keys are figure IDs. The export/import
 * targets apply to every size from 256 MiB up.
 */
function targetsFor(o: Options): Record<string, Target> {
  const t: Record<string, Target> = {
    'cli.ps': { podmanMax: 1, text: '≤ podman' },
    'cli.inspect': { podmanMax: 1, text: '≤ podman' },
    'cli.images': { podmanMax: 1, text: '≤ podman' },
    // The CLI process's peak memory (GNU time's %M around `ps`).
    'cli.ps.rss': { max: 60, text: '≤ 60 MiB' },
    'cli.run': { podmanMax: 1, strict: true, text: '< podman' },
    'cr.tiny.checkpoint': { bareMax: 1.0, podmanMax: 1, strict: true, text: '≤1.0× bare, < podman' },
    'cr.tiny.restore': { bareMax: 1.15, podmanMax: 1, strict: true, text: '≤1.15× bare, < podman' },
    // Issue 17: the API against Podman's service, and against Ferry's own CLI.
    'api.docker.ps': { podmanMax: 1, text: '≤ podman service' },
    'api.checkpoint': { vs: 'api.cli.checkpoint', vsMax: 1.1, text: '≤1.10× CLI' },
    'api.restore': { vs: 'api.cli.restore', vsMax: 1.1, text: '≤1.10× CLI' },
  };
  // Pull (issue 15): the bare column is skopeo copy to a dir (fetch and verify, no unpacking).
  t['pull.first'] = { bareMax: 1.0, podmanMax: 1, text: '≤ skopeo copy, ≤ podman' };
  t['pull.shared'] = { podmanMax: 1, text: '≤ podman' };
  for (const size of [...o.crSizes, ...o.exportSizes]) {
    if (size === 'tiny') continue;
    t[`cr.${size}.checkpoint`] = { bareMax: 1.1, text: '≤1.1× bare' };
    t[`cr.${size}.restore`] = { bareMax: 1.1, text: '≤1.1× bare' };
    t[`export.${size}.export`] = { bareMax: 1.2, podmanMax: 1, strict: true, text: '≤1.2× bare, < podman' };
    t[`export.${size}.import`] = { bareMax: 1.2, podmanMax: 1, strict: true, text: '≤1.2× bare, < podman' };
  }
  // Live migration: post-copy downtime ≤ 300 ms (and flat as memory grows: see LAZY_FLAT);
  // stop-and-copy total ≤ 1.2× bare at every size.
  for (const size of o.migSizes) {
    t[`migrate.lazy.${size}.downtime`] = { max: 300, text: '≤ 300 ms' };
    t[`migrate.stop.${size}.total`] = { bareMax: 1.2, text: '≤1.2× bare' };
  }
  return t;
}

/**
 * "Flat as memory grows" (`--lazy` downtime): the largest median over the migration
 * sizes is at most this many times the smallest.
 */
export const LAZY_FLAT = 1.25;

// ---------------------------------------------------------------------------------------------
// Summary: min, median, ratios, verdicts

export interface Ratios {
  ferry_bare: number | undefined;
  ferry_podman: number | undefined;
  /** Ferry's median against Ferry's median of another figure (the API against the CLI). */
  ferry_vs?: { figure: string; ratio: number | undefined };
  /** `--lazy` figures: which engines' ratio is against their stop-and-copy figure. */
  against?: string;
  againstStop?: EngineName[];
}

export interface FigureTarget {
  text: string;
  /** null: nothing to judge it on (its engines were left out). */
  pass: boolean | null;
  /** Judged on only some of the engines it names. */
  partial: boolean;
}

export interface JudgedFigure extends Figure {
  ratios: Ratios;
  target?: FigureTarget;
}

/** The verdict on one figure's target. */
export interface FigureVerdict {
  id: string;
  title: string;
  target: string;
  pass: boolean | null;
  partial: boolean;
  ferryMedianMs: number | undefined;
  /** The unit of ferryMedianMs (a MiB figure's median is in MiB). */
  unit: Figure['unit'];
  ratios: Ratios;
}

export const LAZY_FLAT_ID = 'migrate.lazy.flat';

/**
 * "A migrate of a 1 GiB container keeps the source and destination ferry processes' RSS flat":
 * over the migration sizes, each side's largest median peak RSS at most this many MiB above its
 * smallest (memory images buffered in ferry would add the container's size).
 */
export const RSS_FLAT_MIB = 32;
export const RSS_FLAT_ID = 'migrate.rss.flat';

/** The verdict on "the ferry processes' peak RSS flat as memory grows", over both modes and all migration sizes. */
export interface RssVerdict {
  id: typeof RSS_FLAT_ID;
  title: string;
  target: string;
  pass: boolean | null;
  partial: false;
  /** Median peak RSS (MiB) per mode and size, each side. */
  mediansMiB: Record<string, { source?: number; destination?: number }>;
  /** The largest spread (MiB) of one side over the sizes. */
  spreadMiB: number | undefined;
}

/** The verdict on "`--lazy` downtime flat as memory grows", over all migration sizes. */
export interface FlatVerdict {
  id: typeof LAZY_FLAT_ID;
  title: string;
  target: string;
  pass: boolean | null;
  partial: false;
  mediansMs: Record<string, number | undefined>;
  ratio: number | undefined;
}

export type Verdict = FigureVerdict | FlatVerdict | RssVerdict;

export const isFlatVerdict = (v: Verdict): v is FlatVerdict => v.id === LAZY_FLAT_ID;
export const isRssVerdict = (v: Verdict): v is RssVerdict => v.id === RSS_FLAT_ID;

/** The median of an engine that measured the figure without error. */
const okMedian = (s: EngineFigure | undefined): number | undefined => (s?.ok ? s.median : undefined);

export function summarize(R: Results, o: Options, engineNames: readonly EngineName[]): { figures: JudgedFigure[]; verdicts: Verdict[] } {
  const targets = targetsFor(o);
  const out: JudgedFigure[] = [];
  for (const f of R.figures.values()) {
    for (const s of Object.values(f.engines)) {
      s.min = s.samples.length ? Math.min(...s.samples) : undefined;
      s.median = median(s.samples);
      if (s.sizeBytes) s.sizeBytesMedian = median(s.sizeBytes);
      if (s.criuWriteMs) s.criuWriteMedianMs = median(s.criuWriteMs);
      if (s.rssSourceMiB) s.rssSourceMedianMiB = median(s.rssSourceMiB);
      if (s.rssDestinationMiB) s.rssDestinationMedianMiB = median(s.rssDestinationMiB);
      if (s.error) s.ok = false;
      else s.ok = s.samples.length > 0;
    }
  }
  for (const f of R.figures.values()) {
    const fe = f.engines.ferry;
    // Podman has no post-copy mode: its `--lazy` ratio is against its stop-and-copy figure of
    // the same size (marked `†` in the table, `against` in the JSON). Bare runc + CRIU has one.
    const lazy = /^migrate\.lazy\./.test(f.id);
    const stop: Figure['engines'] = lazy ? (R.figures.get(f.id.replace('migrate.lazy.', 'migrate.stop.'))?.engines ?? {}) : {};
    const against = lazy ? (['bare', 'podman'] as const).filter((e) => !f.engines[e] && stop[e]) : [];
    const base: Figure['engines'] = { ...f.engines, ...Object.fromEntries(against.map((e) => [e, stop[e]])) };
    const ratio = (other: EngineName): number | undefined => {
      const a = okMedian(fe);
      const b = okMedian(base[other]);
      return a !== undefined && b !== undefined ? Math.round((a / b) * 100) / 100 : undefined;
    };
    const judged: JudgedFigure = Object.assign(f, {
      ratios: { ferry_bare: ratio('bare'), ferry_podman: ratio('podman'), ...(against.length ? { against: `the stop-and-copy figure of ${against.join(' and ')}`, againstStop: against } : {}) },
    });
    const t = targets[f.id];
    if (t?.vs) {
      const a = okMedian(fe);
      const b = okMedian(R.figures.get(t.vs)?.engines.ferry);
      judged.ratios.ferry_vs = { figure: t.vs, ratio: a !== undefined && b !== undefined ? Math.round((a / b) * 100) / 100 : undefined };
    }
    if (t) {
      const checks: (boolean | null)[] = [];
      const fm = okMedian(fe);
      if (t.vsMax !== undefined) checks.push(judged.ratios.ferry_vs?.ratio !== undefined ? judged.ratios.ferry_vs.ratio <= t.vsMax : false);
      if (t.max !== undefined) checks.push(fm !== undefined ? fm <= t.max : false);
      if (t.bareMax !== undefined) checks.push(engineNames.includes('bare') ? (judged.ratios.ferry_bare === undefined ? false : judged.ratios.ferry_bare <= t.bareMax) : null);
      if (t.podmanMax !== undefined) {
        const pm = okMedian(f.engines.podman);
        if (!engineNames.includes('podman')) checks.push(null);
        else if (judged.ratios.ferry_podman === undefined || fm === undefined || pm === undefined) checks.push(false);
        else {
          const r = fm / pm;
          checks.push(t.strict ? r < t.podmanMax : r <= t.podmanMax);
        }
      }
      const evaluated = checks.filter((c) => c !== null);
      const pass = evaluated.length === 0 ? null : evaluated.every(Boolean);
      judged.target = { text: t.text, pass, partial: evaluated.length < checks.length };
    }
    out.push(judged);
  }
  // One verdict per target, in the order of the figures, plus "--lazy downtime flat as memory grows".
  const verdicts: Verdict[] = out.flatMap((f) =>
    f.target ? [{ id: f.id, title: f.title, target: f.target.text, pass: f.target.pass, partial: f.target.partial, ferryMedianMs: f.engines.ferry?.median, unit: f.unit, ratios: f.ratios }] : [],
  );
  // Over the memory sizes (Redis is a workload of its own, not a point on that line).
  const flatSizes = o.migSizes.filter((size) => size !== 'redis');
  const lazyIds = flatSizes.map((size) => `migrate.lazy.${size}.downtime`);
  const lazyFigs = lazyIds.map((id) => R.figures.get(id)).filter((f): f is Figure => !!f);
  if (o.migration && lazyFigs.length) {
    // One size (--smoke --migration) cannot show a trend: n/a.
    const meds = lazyFigs.map((f) => okMedian(f.engines.ferry));
    const okMeds = meds.filter((m): m is number => m !== undefined);
    const all = okMeds.length === lazyIds.length && okMeds.length >= 2;
    const lo = Math.min(...okMeds);
    const hi = Math.max(...okMeds);
    verdicts.push({
      id: LAZY_FLAT_ID,
      title: `migrate --lazy downtime flat (${flatSizes.map(sizeLabel).join(', ')})`,
      target: `max ≤ ${LAZY_FLAT}× min of the medians`,
      pass: lazyIds.length < 2 ? null : all ? hi <= LAZY_FLAT * lo : false,
      partial: false,
      mediansMs: Object.fromEntries(flatSizes.map((size, i) => [sizeLabel(size), lazyFigs[i]?.engines.ferry?.median])),
      ratio: all ? Math.round((hi / lo) * 100) / 100 : undefined,
    });
  }
  // The ferry processes' peak RSS over the sizes, each mode and side on its own.
  const rssFigs = (['stop', 'lazy'] as const).flatMap((mode) => flatSizes.map((size) => [`${mode === 'stop' ? 'stop-and-copy' : '--lazy'} ${sizeLabel(size)}`, mode, R.figures.get(`migrate.${mode}.${size}.total`)?.engines.ferry] as const));
  const measured = rssFigs.filter(([, , e]) => e?.rssSourceMedianMiB !== undefined || e?.rssDestinationMedianMiB !== undefined);
  if (o.migration && measured.length) {
    let spread: number | undefined;
    for (const mode of ['stop', 'lazy'] as const) {
      for (const side of ['rssSourceMedianMiB', 'rssDestinationMedianMiB'] as const) {
        const xs = rssFigs.filter(([, m]) => m === mode).map(([, , e]) => e?.[side]).filter((x): x is number => x !== undefined);
        if (xs.length >= 2) spread = Math.max(spread ?? 0, Math.max(...xs) - Math.min(...xs));
      }
    }
    verdicts.push({
      id: RSS_FLAT_ID,
      title: `migrate: peak RSS of the source and destination ferry flat (${flatSizes.map(sizeLabel).join(', ')})`,
      target: `max ≤ min + ${RSS_FLAT_MIB} MiB of the medians`,
      pass: spread === undefined ? null : spread <= RSS_FLAT_MIB,
      partial: false,
      mediansMiB: Object.fromEntries(measured.map(([label, , e]) => [label, { source: e?.rssSourceMedianMiB, destination: e?.rssDestinationMedianMiB }])),
      spreadMiB: spread === undefined ? undefined : Math.round(spread * 10) / 10,
    });
  }
  return { figures: out, verdicts };
}
