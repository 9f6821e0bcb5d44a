/**
 * The events journal: every container operation Ferry finishes (create, start, died, stop,
 * kill, pause, unpause, remove, rename, restart, checkpoint, restore, migrate, prune) appends
 * one JSON line, in Podman's event shape, to ROOT/events.log (one write each, O_APPEND, so
 * concurrent ferry processes never interleave a line). `ferry events` reads and follows it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { sleep } from '../lib/proc.js';
import type { ContainerRecord } from './types.js';
import type { Engine, WaitOptions } from './engine.js';

export interface FerryEvent {
  ID: string;
  Image: string;
  Name: string;
  Status: string;
  /** ISO 8601, UTC. */
  Time: string;
  Type: 'container';
  Attributes: Record<string, string>;
}

export function eventsFile(root: string): string {
  return path.join(root, 'events.log');
}

/** Appends one event; a journal that cannot be written never fails the operation. */
export function appendEvent(root: string, rec: ContainerRecord, status: string, attributes: Record<string, string> = {}): void {
  const ev: FerryEvent = { ID: rec.config.id, Image: rec.config.imageName, Name: rec.config.name, Status: status, Time: new Date().toISOString(), Type: 'container', Attributes: attributes };
  try {
    fs.appendFileSync(eventsFile(root), `${JSON.stringify(ev)}\n`, { mode: 0o600 });
  } catch {
    // (a full disk: the operation itself matters more)
  }
}

export interface EventsQuery {
  /** KEY=VALUE: container (name or ID), event (status), image, type; one key's values are alternatives. */
  filters?: string[];
  /** A time (RFC 3339, or a date) or a duration before now (10m, 1h30m). */
  since?: string;
  until?: string;
  /** Keep reading as events come (until abort). */
  follow?: boolean;
  abort?: AbortSignal;
}

/** A time given as RFC 3339 / a date, a Unix time, or a Go-style duration before now. */
export function parseEventTime(s: string, flag: string): number {
  const d = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(s.trim());
  if (d && s.trim() && (d[1] || d[2] || d[3])) return Date.now() - ((Number(d[1] ?? 0) * 60 + Number(d[2] ?? 0)) * 60 + Number(d[3] ?? 0)) * 1000;
  if (/^\d+(\.\d+)?$/.test(s.trim())) return Number(s) * 1000;
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new FerryError('EINVAL', `invalid ${flag} "${s}": give a time (2024-05-01T10:00:00Z), a Unix time, or a duration such as 10m`);
  return t;
}

const FILTER_KEYS = ['container', 'event', 'status', 'image', 'type'];

function matcher(q: EventsQuery): (e: FerryEvent) => boolean {
  const want = new Map<string, string[]>();
  for (const f of q.filters ?? []) {
    const i = f.indexOf('=');
    const k = i > 0 ? f.slice(0, i) : '';
    if (!FILTER_KEYS.includes(k) || i === f.length - 1) throw new FerryError('EINVAL', `invalid --filter "${f}": use KEY=VALUE with KEY one of ${FILTER_KEYS.join(', ')}`);
    const key = k === 'status' ? 'event' : k;
    want.set(key, [...(want.get(key) ?? []), f.slice(i + 1)]);
  }
  const since = q.since !== undefined ? parseEventTime(q.since, '--since') : undefined;
  const until = q.until !== undefined ? parseEventTime(q.until, '--until') : undefined;
  return (e) => {
    const t = Date.parse(e.Time);
    if (since !== undefined && t < since) return false;
    if (until !== undefined && t > until) return false;
    for (const [k, vals] of want) {
      const ok = vals.some((v) =>
        k === 'container' ? e.Name === v || e.ID.startsWith(v) : k === 'event' ? e.Status === v : k === 'image' ? e.Image === v || e.Image.startsWith(`${v}:`) || e.Image.endsWith(`/${v}`) || e.Image.includes(`/${v}:`) : e.Type === v,
      );
      if (!ok) return false;
    }
    return true;
  };
}

/** The journal's events that match, then (follow) new ones as they are appended. */
export async function* readEvents(root: string, q: EventsQuery): AsyncGenerator<FerryEvent> {
  const match = matcher(q); // bad filters fail before anything is read
  const until = q.until !== undefined ? parseEventTime(q.until, '--until') : undefined;
  const file = eventsFile(root);
  let offset = 0;
  let rest = '';
  for (;;) {
    let chunk = '';
    try {
      const fd = fs.openSync(file, 'r');
      try {
        const size = fs.fstatSync(fd).size;
        if (size > offset) {
          const buf = Buffer.alloc(size - offset);
          fs.readSync(fd, buf, 0, buf.length, offset);
          offset = size;
          chunk = buf.toString('utf8');
        }
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      // no journal yet
    }
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      let e: FerryEvent;
      try {
        e = JSON.parse(line) as FerryEvent;
      } catch {
        continue; // a torn line from a crash
      }
      if (match(e)) yield e;
    }
    if (!q.follow || q.abort?.aborted || (until !== undefined && Date.now() > until)) return;
    await sleep(200);
  }
}

/** Podman's text line: 2024-05-01 10:00:00.123 +0000 UTC container start ID (image=..., name=...) */
export function eventText(e: FerryEvent): string {
  const t = e.Time.replace('T', ' ').replace('Z', ' +0000 UTC');
  const attrs = [`image=${e.Image}`, `name=${e.Name}`, ...Object.entries(e.Attributes).map(([k, v]) => `${k}=${v}`)].join(', ');
  return `${t} ${e.Type} ${e.Status} ${e.ID} (${attrs})`;
}

/**
 * wait() for a remote client: when the container is gone before or while it waits (an --rm
 * container's exit cleanup removed it), its exit code is the one its last `died` event recorded.
 * ref must then be its full ID (as Podman's client sends it) or a name seen before the removal.
 */
export async function waitOrRecorded(engine: Engine, ref: string, o: WaitOptions = {}): Promise<number> {
  const id = engine.find(ref)?.config.id ?? ref;
  try {
    return await engine.wait(ref, o);
  } catch (e) {
    if (!(e instanceof FerryError) || e.code !== 'ENOTFOUND' || !/^[0-9a-f]{64}$/.test(id)) throw e;
    let code: number | undefined;
    for await (const ev of readEvents(engine.paths.root, { filters: [`container=${id}`, 'event=died'] })) if (ev.ID === id) code = Number(ev.Attributes.containerExitCode);
    if (code === undefined || !Number.isInteger(code)) throw e;
    return code;
  }
}
