/**
 * A container's output as its readers see it (`logs`, `logs -f`, a foreground `run`, and the
 * API's logs and attach): the entries of conmon's k8s-file log, picked by time and tail, and
 * followed until the container is done.
 */
import { FerryError } from '../lib/errors.js';
import { sleep } from '../lib/proc.js';
import { readLogFrom, type LogEntry } from '../drivers/runtime/logs.js';

export type { LogEntry };

export interface LogsOptions {
  /** Keep reading new entries until the container no longer runs. */
  follow?: boolean;
  /** Only the last N entries of what is written so far (entries followed afterwards all come). */
  tail?: number;
  /** Only entries written at or after this time. */
  since?: Date;
  /** Only entries written at or before this time. */
  until?: Date;
}

/** Refuses options no log can be read with. */
export function checkLogsOptions(o: LogsOptions): void {
  if (o.tail !== undefined && (!Number.isInteger(o.tail) || o.tail < 0)) throw new FerryError('EINVAL', `invalid tail ${String(o.tail)}: give a number of lines`);
  for (const [k, d] of [['since', o.since], ['until', o.until]] as const) {
    if (d !== undefined && Number.isNaN(d.getTime())) throw new FerryError('EINVAL', `invalid ${k} time: give a date and time`);
  }
}

/** The entries within since/until (an entry whose time cannot be read is kept). */
function inTime(entries: LogEntry[], o: Pick<LogsOptions, 'since' | 'until'>): LogEntry[] {
  if (!o.since && !o.until) return entries;
  return entries.filter((e) => {
    const t = Date.parse(e.time);
    if (Number.isNaN(t)) return true;
    return !(o.since && t < o.since.getTime()) && !(o.until && t > o.until.getTime());
  });
}

/** The entries of one read that a reader asked for: within since/until, then the last `tail`. */
export function pickLogEntries(entries: LogEntry[], o: Pick<LogsOptions, 'tail' | 'since' | 'until'>): LogEntry[] {
  const picked = inTime(entries, o);
  if (o.tail === undefined) return picked;
  return o.tail === 0 ? [] : picked.slice(-o.tail);
}

/**
 * Reads a k8s-file log: what is there now (picked by since/until/tail), and with `follow`
 * whatever is written next, polling until `done()` says the writer has finished, after which
 * the last complete lines are read once more.
 */
export async function* readLog(file: string, o: LogsOptions, done: () => Promise<boolean>, pollMs = 100): AsyncGenerator<LogEntry> {
  const first = readLogFrom(file, 0);
  yield* pickLogEntries(first.entries, o);
  if (!o.follow) return;
  let pos = first.next;
  for (;;) {
    const finished = await done();
    const r = readLogFrom(file, pos);
    yield* inTime(r.entries, o);
    pos = r.next;
    if (finished) {
      yield* inTime(readLogFrom(file, pos).entries, o);
      return;
    }
    await sleep(pollMs);
  }
}
