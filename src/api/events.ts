/**
 * Docker's `GET /events`: container events (create, start, die, destroy) as a JSON stream.
 * Ferry has no daemon that sees every change as it happens, so the service watches the
 * containers' records (one watcher, shared by every open stream, running only while one is) and
 * reports what changed since its last look: containers made or changed by the CLI show too.
 */
import type { ServerResponse } from 'node:http';
import type { Engine } from '../engine/engine.js';
import type { ContainerRecord } from '../engine/types.js';
import { debug } from '../lib/log.js';
import { ApiError } from './http.js';

export interface DockerEvent {
  status: string;
  id: string;
  from: string;
  Type: 'container';
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local';
  time: number;
  timeNano: number;
}

interface Seen {
  status: string;
  startedAt?: string;
  finishedAt?: string;
  name: string;
  image: string;
  exitCode: number;
}

const EVENT_ACTIONS = new Set(['create', 'start', 'die', 'destroy']);

/** The `filters` of an events request: type, event, container (name or ID), label are understood. */
export function eventFilter(text: string | null): (e: DockerEvent, labels: Record<string, string>) => boolean {
  if (!text) return () => true;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ApiError(400, 'invalid filters: give JSON such as {"event":["start"]}');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, 'invalid filters: give a JSON object');
  const f: Record<string, string[]> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const list = x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.keys(x) : x;
    if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) throw new ApiError(400, `invalid filter ${k}: give a list of strings`);
    if (!['type', 'event', 'container', 'label'].includes(k)) throw new ApiError(400, `unsupported events filter "${k}": use type, event, container or label`);
    f[k] = list as string[];
  }
  return (e, labels) =>
    (!f.type?.length || f.type.includes(e.Type)) &&
    (!f.event?.length || f.event.includes(e.Action)) &&
    (!f.container?.length || f.container.some((c) => c === e.Actor.Attributes.name || e.id.startsWith(c))) &&
    (!f.label?.length || f.label.every((l) => (l.includes('=') ? labels[l.slice(0, l.indexOf('='))] === l.slice(l.indexOf('=') + 1) : l in labels)));
}

type Listener = (e: DockerEvent, labels: Record<string, string>) => void;

/** Watches the containers while someone listens; tells each listener what changed. */
export class EventWatcher {
  private readonly listeners = new Set<Listener>();
  private seen = new Map<string, Seen>();
  private labels = new Map<string, Record<string, string>>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly engine: Engine,
    private readonly intervalMs = 250,
  ) {}

  async subscribe(l: Listener): Promise<() => void> {
    if (!this.listeners.size) {
      await this.look(false); // what exists now is no event
      this.timer = setInterval(() => void this.look(true), this.intervalMs);
    }
    this.listeners.add(l);
    return () => {
      this.listeners.delete(l);
      if (!this.listeners.size && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /**
   * Looks now (after the API changed a container: a container that lives a few milliseconds is
   * seen created, started and dead all the same). Nothing when nobody listens.
   */
  async poke(): Promise<void> {
    if (!this.listeners.size) return;
    while (this.busy) await new Promise((r) => setTimeout(r, 10));
    await this.look(true);
  }

  /** Compares the records with the last look; with emit, reports the differences. */
  private async look(emit: boolean): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const recs = await this.engine.listContainers({ all: true });
      const now = new Map<string, Seen>();
      const out: [string, string, Seen][] = [];
      for (const r of recs) {
        const s = seenOf(r);
        // A container whose process has exited may still be recorded running (until its exit is
        // processed): its exit file says it died.
        if ((s.status === 'running' || s.status === 'paused') && s.startedAt) {
          const code = this.engine.exitCodeOf(r.config.id);
          if (code !== undefined) {
            s.status = 'exited';
            s.exitCode = code;
            s.finishedAt = `exit after ${s.startedAt}`;
          }
        }
        const prev = this.seen.get(r.config.id);
        // The same exit, later recorded with its time, is no second death.
        if (prev?.finishedAt === `exit after ${s.startedAt}` && s.status !== 'running' && s.status !== 'paused' && s.startedAt === prev.startedAt) s.finishedAt = prev.finishedAt;
        now.set(r.config.id, s);
        this.labels.set(r.config.id, r.config.labels ?? {});
        const before = this.seen.get(r.config.id);
        if (!before) out.push(['create', r.config.id, s]);
        const startedNow = s.startedAt && s.startedAt !== before?.startedAt;
        if (startedNow) out.push(['start', r.config.id, s]);
        if (s.finishedAt && s.finishedAt !== before?.finishedAt && (before || startedNow)) out.push(['die', r.config.id, s]);
      }
      for (const [id, s] of this.seen) {
        if (now.has(id)) continue;
        if (s.status === 'running' || s.status === 'paused') out.push(['die', id, s]); // it went before we saw it exit
        out.push(['destroy', id, s]);
      }
      this.seen = now;
      if (emit) for (const [action, id, s] of out) this.emit(action, id, s);
      for (const id of [...this.labels.keys()]) if (!now.has(id)) this.labels.delete(id);
    } catch (e) {
      debug(`events: ${(e as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  private emit(action: string, id: string, s: Seen): void {
    if (!EVENT_ACTIONS.has(action)) return;
    const ms = Date.now();
    const attrs: Record<string, string> = { name: s.name, image: s.image };
    if (action === 'die') attrs.exitCode = String(s.exitCode);
    const e: DockerEvent = { status: action, id, from: s.image, Type: 'container', Action: action, Actor: { ID: id, Attributes: attrs }, scope: 'local', time: Math.floor(ms / 1000), timeNano: ms * 1_000_000 };
    const labels = this.labels.get(id) ?? {};
    for (const l of this.listeners) l(e, labels);
  }
}

function seenOf(r: ContainerRecord): Seen {
  return { status: r.state.status, startedAt: r.state.startedAt, finishedAt: r.state.finishedAt, name: r.config.name, image: r.config.imageName, exitCode: r.state.exitCode };
}

/** Streams events to res until the client goes (or until, Unix seconds, passes). */
export async function streamEvents(watcher: EventWatcher, res: ServerResponse, q: URLSearchParams): Promise<void> {
  const match = eventFilter(q.get('filters'));
  const since = q.get('since');
  if (since && !/^[0-9]{1,12}(\.[0-9]{1,9})?$/.test(since)) throw new ApiError(400, `invalid since=${since}: give Unix seconds`);
  if (since && Number(since) * 1000 < Date.now() - 2000) throw new ApiError(400, 'since in the past is not supported: Ferry keeps no event history');
  const untilText = q.get('until');
  if (untilText && !/^[0-9]{1,12}(\.[0-9]{1,9})?$/.test(untilText)) throw new ApiError(400, `invalid until=${untilText}: give Unix seconds`);
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.flushHeaders();
  await new Promise<void>((resolve) => {
    let stop: (() => void) | undefined;
    let t: NodeJS.Timeout | undefined;
    const end = (): void => {
      stop?.();
      if (t) clearTimeout(t);
      resolve();
    };
    res.once('close', end);
    if (untilText) t = setTimeout(end, Math.max(0, Number(untilText) * 1000 - Date.now()));
    void watcher
      .subscribe((e, labels) => {
        if (match(e, labels)) res.write(JSON.stringify(e) + '\n');
      })
      .then((s) => {
        if (res.writableEnded || res.destroyed) s();
        else stop = s;
      });
  });
  res.end();
}
