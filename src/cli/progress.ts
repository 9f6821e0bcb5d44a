/**
 * Pull and push progress on a terminal, as Podman shows it: one row per blob, redrawn in place
 * while its bytes arrive ("Copying blob 36f80162f1da [====>-----] 12.3MiB / 45.6MiB"), then
 * "... done" or "... skipped: already exists"; the other messages as plain lines. Rows are
 * cut to the terminal's width so that none wraps (a wrapped row would break the cursor
 * arithmetic). Only used when stderr is a terminal.
 */
import type { Writable } from 'node:stream';

const BAR = 30;
const REDRAW_MS = 100;

function mib(n: number): string {
  if (n < 1 << 10) return `${n}b`;
  if (n < 1 << 20) return `${(n / (1 << 10)).toFixed(1)}KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)}MiB`;
  return `${(n / (1 << 30)).toFixed(1)}GiB`;
}

export function progressRow(what: string, digest: string, done: number, total: number): string {
  const filled = total > 0 ? Math.min(BAR, Math.floor((done / total) * BAR)) : 0;
  const bar = filled >= BAR ? '='.repeat(BAR) : `${'='.repeat(filled)}>${'-'.repeat(BAR - filled - 1)}`;
  return `Copying ${what} ${digest.replace(/^sha256:/, '').slice(0, 12)} [${bar}] ${mib(done)} / ${mib(total)}`;
}

export class TerminalProgress {
  private readonly rows: string[] = [];
  /** Row of each blob, by its 12-hex short ID. */
  private readonly at = new Map<string, number>();
  private readonly last = new Map<string, number>();

  constructor(private readonly out: Writable & { columns?: number }) {}

  private fit(text: string): string {
    // A terminal that gives no size (0): rows as they are.
    const cols = this.out.columns;
    if (!cols || cols < 20) return text;
    return text.length > cols - 1 ? text.slice(0, cols - 1) : text;
  }

  private add(text: string, key?: string): void {
    if (key !== undefined) this.at.set(key, this.rows.length);
    this.rows.push(text);
    this.out.write(`${this.fit(text)}\n`);
  }

  private set(i: number, text: string): void {
    if (this.rows[i] === text) return;
    this.rows[i] = text;
    const up = this.rows.length - i;
    // Up to the row, clear it, write it, back down to where the next line goes.
    this.out.write(`\x1b[${up}A\r\x1b[2K${this.fit(text)}\x1b[${up}B\r`);
  }

  /** A message; "Copying blob ID done" (or skipped) replaces that blob's row. */
  line(text: string): void {
    const key = /^Copying (?:blob|config) ([0-9a-f]{12})\b/.exec(text)?.[1];
    const i = key !== undefined ? this.at.get(key) : undefined;
    if (i !== undefined) this.set(i, text);
    else this.add(text, key);
  }

  /** Bytes of a blob so far: its row, redrawn at most every 100 ms. */
  bytes(digest: string, done: number, total: number): void {
    const key = digest.replace(/^sha256:/, '').slice(0, 12);
    const now = Date.now();
    if (done < total && now - (this.last.get(key) ?? 0) < REDRAW_MS) return;
    this.last.set(key, now);
    const text = progressRow('blob', digest, done, total);
    const i = this.at.get(key);
    if (i !== undefined) this.set(i, text);
    else this.add(text, key);
  }
}
