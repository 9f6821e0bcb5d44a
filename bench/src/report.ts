// What the bench hands back: the table (stdout) with a PASS/FAIL line per target, and the JSON
// with every sample under --out (<timestamp>.json and latest.json).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LARGE_PAUSE_MS, LAZY_FLAT, SMALL_PAUSE_MS, isFlatVerdict, isRssVerdict, type EngineFigure, type JudgedFigure, type Verdict } from './figures.js';
import type { EngineName, Mode } from './options.js';

const fmtMs = (v: number | undefined): string => (v === undefined ? '–' : v >= 10_000 ? `${(v / 1000).toFixed(1)}s` : `${Math.round(v)}`);
const fmtRatio = (r: number | undefined): string => (r === undefined ? '–' : `${r.toFixed(2)}×`);
const fmtSize = (b: number | undefined): string => (b === undefined ? '–' : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

/** The engines that took part in a figure, with their part. */
const parts = (f: JudgedFigure): [string, EngineFigure][] => Object.entries(f.engines).filter((x): x is [string, EngineFigure] => x[1] !== undefined);

export function renderVerdicts(verdicts: readonly Verdict[]): string {
  if (!verdicts.length) return '';
  const ms = (v: number | undefined): string => (v === undefined ? '–' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
  const lines = verdicts.map((v) => {
    const res = v.pass === null ? 'n/a ' : `${v.pass ? 'PASS' : 'FAIL'}${v.partial ? '*' : ' '}`;
    let detail: string;
    if (isRssVerdict(v)) {
      detail = `${Object.entries(v.mediansMiB)
        .map(([k, m]) => `${k} ${m.source ?? '–'}/${m.destination ?? '–'} MiB`)
        .join(', ')} (source/destination)${v.spreadMiB !== undefined ? `: spread ${v.spreadMiB} MiB` : ''}`;
    } else if (isFlatVerdict(v)) {
      detail = `medians ${Object.entries(v.mediansMs)
        .map(([k, m]) => `${k} ${ms(m)}`)
        .join(', ')}${v.ratio !== undefined ? `: max/min ${v.ratio.toFixed(2)}×` : ''}`;
    } else {
      const rs = [
        v.ratios.ferry_bare !== undefined ? `F/bare ${fmtRatio(v.ratios.ferry_bare)}` : '',
        v.ratios.ferry_podman !== undefined ? `F/podman ${fmtRatio(v.ratios.ferry_podman)}` : '',
        v.ratios.ferry_vs ? `/${v.ratios.ferry_vs.figure} ${fmtRatio(v.ratios.ferry_vs.ratio)}` : '',
      ].filter(Boolean);
      detail = `ferry median ${v.unit === 'MiB' ? `${v.ferryMedianMs ?? '–'} MiB` : ms(v.ferryMedianMs)}${rs.length ? `, ${rs.join(', ')}` : ''}`;
    }
    return `  ${res} ${v.title}: ${v.target} (${detail})`;
  });
  return `\nTargets (the issues', on the medians):\n${lines.join('\n')}\n`;
}

export function renderTable(figures: readonly JudgedFigure[], engineNames: readonly EngineName[]): string {
  const head = ['Figure (ms)', ...engineNames.map((e) => `${e} min/med`), ...(engineNames.includes('bare') ? ['F/bare'] : []), ...(engineNames.includes('podman') ? ['F/podman'] : []), 'Target', 'Result'];
  const rows = figures.map((f) => {
    const cells = [f.title];
    for (const e of engineNames) {
      const s = f.engines[e];
      cells.push(!s ? '–' : s.error ? 'ERROR' : `${fmtMs(s.min)} / ${fmtMs(s.median)}`);
    }
    const mark = (r: number | undefined, e: EngineName): string => (r !== undefined && f.ratios.againstStop?.includes(e) ? `${fmtRatio(r)}†` : fmtRatio(r));
    if (engineNames.includes('bare')) cells.push(mark(f.ratios.ferry_bare, 'bare'));
    if (engineNames.includes('podman')) cells.push(mark(f.ratios.ferry_podman, 'podman'));
    cells.push(f.target?.text ?? '');
    cells.push(!f.target ? '' : f.target.pass === null ? 'n/a' : `${f.target.pass ? 'PASS' : 'FAIL'}${f.target.partial ? '*' : ''}`);
    return cells;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  let s = [line(head), sep, ...rows.map(line)].join('\n') + '\n';
  const sized = figures.filter((f) => parts(f).some(([, x]) => x.sizeBytesMedian !== undefined));
  if (sized.length) {
    const sizes = (fs_: readonly JudgedFigure[]): string =>
      fs_.map((f) => `${f.title.replace('checkpoint --export ', '').replace(/ total$/, '')}: ${engineNames.map((e) => `${e} ${fmtSize(f.engines[e]?.sizeBytesMedian)}`).join(', ')}`).join('; ');
    const archives = sized.filter((f) => !f.id.startsWith('migrate.'));
    const sent = sized.filter((f) => f.id.startsWith('migrate.'));
    if (archives.length) s += `\nArchive sizes (median): ${sizes(archives)}\n`;
    if (sent.length) s += `\nMigrated bytes (median; Ferry: bytes_sent, zstd stream; bare: CRIU images, plain tar; podman: the --export archive, zstd): ${sizes(sent)}\n`;
  }
  const written = figures.filter((f) => parts(f).some(([, x]) => (x.criuWriteMedianMs ?? 0) >= 1)); // tiny writes next to nothing
  if (written.length) {
    s += `\nCRIU's own time writing the memory pages in the checkpoints (its stats-dump's memwrite_time; median, and every sample): ${written
      .map((f) => `${f.title.replace(/^checkpoint /, '')}: ${engineNames.filter((e) => f.engines[e]?.criuWriteMs).map((e) => `${e} ${Math.round(f.engines[e]!.criuWriteMedianMs!)} (${f.engines[e]!.criuWriteMs!.map(Math.round).join(', ')})`).join(', ')}`)
      .join('; ')}\n`;
  }
  const errors = figures.flatMap((f) => parts(f).flatMap(([e, x]) => (x.error ? [`${f.title} [${e}]: ${x.error}`] : [])));
  if (errors.length) s += `\nErrors:\n${[...new Set(errors)].map((e) => `  - ${e}`).join('\n')}\n`;
  if (figures.some((f) => f.ratios.againstStop?.length)) s += "\n† Ferry --lazy against that engine's stop-and-copy figure of the same size (Podman has no post-copy mode)\n";
  if (figures.some((f) => f.target?.partial)) s += '\n* judged only against the engines that ran\n';
  return s;
}

export interface Versions {
  ferry: string | undefined;
  runc: string | undefined;
  criu: string | undefined;
  conmon: string | undefined;
  podman: string | undefined;
}

/** The JSON written under --out. */
export interface ResultsDoc {
  version: 1;
  startedAt: string;
  durationS: number;
  mode: Mode;
  iterations: number;
  engines: EngineName[];
  /** What was left out, and why. */
  skipped: Record<string, string>;
  host: { kernel: string; cpus: number; memoryGiB: number; versions: Versions };
  notes: { pauseMs: { large: number; small: number }; bare: string; ferry: string; podman: string; migration: string | undefined; pull: string | undefined };
  figures: JudgedFigure[];
  targets: Verdict[];
  table: string;
}

/** How each engine was measured, in words (the JSON's notes). */
export function notes(migration: boolean, pull = false): ResultsDoc['notes'] {
  return {
    pauseMs: { large: LARGE_PAUSE_MS, small: SMALL_PAUSE_MS },
    bare: 'runc run -d / checkpoint / restore -d with the same CRIU; run includes the overlay mount; export = runc checkpoint + tar | zstd -T0 -3; import = zstd -d | tar -x + overlay mount + runc restore -d',
    ferry: 'run --network none',
    podman: 'rootful, runc, cgroupfs, --network none, rm -f -t 0, k8s-file logs, file locks',
    migration: migration
      ? "two hosts = two network namespaces with their own sshd (test/helpers/hosts.ts), samples alternate A->B, B->A. ferry: migrate NAME ssh://root@IP:2222 --remote-command ... --print-stats [--lazy] (--network none, zstd stream, memhog binary in a named volume); downtime/total = downtime_ms/total_ms from --print-stats, wallMs = the whole command. bare: fresh overlay+bundle on the destination, then runc checkpoint | tar -c | ssh tar -x | runc restore -d (all inside the hosts' netns); downtime = checkpoint start to restore done, total = also the destination bundle and the source removal. podman (no migrate command): a Podman state of its own on each host (--root/--runroot, runc root, tmp, locks, network config; the same image imported), --network none, podman container checkpoint --export F --compress zstd | scp -O F over the veth link | podman container restore --import F (podman run inside the hosts' netns); downtime = total = checkpoint start to restore done (the source's container is removed untimed). bare --lazy: runc checkpoint --lazy-pages --page-server SRC_IP:PORT --status-fd, the non-memory images by tar | ssh tar -x, criu lazy-pages --page-server on the destination reaching the source's page server straight over the veth, runc restore -d --lazy-pages; downtime = checkpoint start to restore done, total = also every page served and the source removal. --lazy ratios against Podman: its stop-and-copy figure of the same size. lazy flat: max <= " +
        LAZY_FLAT +
        'x min of the --lazy downtime medians over the sizes'
      : undefined,
    pull: pull
      ? "a docker-registry on 127.0.0.1 (plain HTTP) holding two images built from the Python app rootfs (3 gzip layers each, 2 shared); each sample from an empty store: ferry pull -q (fresh --root), podman pull -q (fresh private --root), and in the bare column skopeo copy docker://REF dir:D (fetch + verify, nothing unpacked). '2nd image' = the second image pulled right after the first into the same store (only its own layer is new). Verified untimed: image IDs, Ferry's RootFS.Layers, python3 runs in Ferry's image, and through a counting proxy Ferry's second pull fetches only the second image's config and new layer"
      : undefined,
  };
}

/** Writes <timestamp>.json and latest.json; returns the timestamped file. */
export function writeResults(doc: ResultsDoc, out: string, started: Date): string {
  fs.mkdirSync(out, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const json = JSON.stringify(doc, null, 2) + '\n';
  const file = path.join(out, `${stamp}.json`);
  fs.writeFileSync(file, json);
  fs.writeFileSync(path.join(out, 'latest.json'), json);
  return file;
}

/** The report on stdout: a heading, the table and verdicts, what was skipped, where the JSON is. */
export function printReport(doc: ResultsDoc, file: string): void {
  const v = doc.host.versions;
  process.stdout.write(`\nFerry benchmark (${doc.mode}, ${doc.iterations} iteration(s); ${os.cpus().length} CPUs, kernel ${os.release()}; ${v.criu ?? 'CRIU ?'}, ${v.runc ?? 'runc ?'}${v.podman ? `, ${v.podman}` : ''})\n\n`);
  process.stdout.write(doc.table);
  for (const [n, why] of Object.entries(doc.skipped)) process.stdout.write(`\n${n} was skipped: ${why}\n`);
  process.stdout.write(`\nResults: ${file} (and latest.json); took ${doc.durationS} s\n`);
}
