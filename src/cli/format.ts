/** Output helpers: Podman-style tables and a small subset of Go templates for --format. */

/** Prints rows as columns separated by at least three spaces (Podman's tabwriter look). */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 2))).join(' ').trimEnd()).join('\n') + '\n';
}

function lookup(obj: unknown, dotted: string): unknown {
  let v: unknown = obj;
  for (const k of dotted.split('.').filter(Boolean)) {
    if (v === null || v === undefined || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return '<no value>';
  if (Array.isArray(v)) return `[${v.map(show).join(' ')}]`;
  if (typeof v === 'object') return `map[${Object.entries(v as object).map(([k, x]) => `${k}:${show(x)}`).join(' ')}]`;
  return String(v);
}

/**
 * Renders `{{.Field.Sub}}`, `{{json .Field}}` and `{{.}}` (a useful subset of Podman's Go
 * templates); a leading `table ` prints a header of the field names.
 */
export function renderTemplate(tpl: string, items: unknown[]): string {
  let t = tpl.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  let header = '';
  if (t.startsWith('table ')) {
    t = t.slice(6);
    header = t.replace(/\{\{\s*(?:json\s+)?\.([\w.]*)\s*\}\}/g, (_, f: string) => f.toUpperCase()) + '\n';
  }
  const one = (item: unknown): string =>
    t.replace(/\{\{\s*(json\s+)?\.([\w.]*)\s*\}\}/g, (_, json: string | undefined, f: string) => {
      const v = f ? lookup(item, f) : item;
      return json ? JSON.stringify(v) : show(v);
    });
  return header + items.map((i) => one(i) + '\n').join('');
}

export function formatOutput(format: string | undefined, items: unknown[], fallback: () => string): string {
  if (!format) return fallback();
  if (format === 'json') return JSON.stringify(items, null, 4) + '\n';
  return renderTemplate(format, items);
}

export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toPrecision(3)} ${units[i]}`;
}
