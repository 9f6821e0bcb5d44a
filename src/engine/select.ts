/**
 * Which containers an operation acts on: the containers named, `--all`, or `--latest` (as
 * Podman). One rule for every command of the CLI and every endpoint of the API; Engine.select()
 * applies it to the containers that exist.
 */
import { FerryError } from '../lib/errors.js';
import type { ContainerRecord, ContainerState } from './types.js';
import { DEFAULT_NETWORK, type NetworkRecord } from '../drivers/network/cni.js';

/** What a caller asked for: names or IDs, or every container the operation applies to, or the newest. */
export interface Selection {
  refs?: string[];
  all?: boolean;
  latest?: boolean;
  /** Names that match no container are left out rather than refused (`rm --ignore`). */
  ignoreMissing?: boolean;
}

/** The operation a selection is for: it decides which containers `--all` means. */
export type SelectPurpose = 'start' | 'stop' | 'kill' | 'pause' | 'unpause' | 'rm' | 'checkpoint' | 'restore' | 'inspect' | 'logs' | 'wait' | 'port';

/** Refuses a selection that names containers in more than one way, or in none. */
export function checkSelection(s: Selection): void {
  const n = (s.refs?.length ? 1 : 0) + (s.all ? 1 : 0) + (s.latest ? 1 : 0);
  if (n > 1) throw new FerryError('EINVAL', '--all, --latest and container names cannot be used together: pick one');
  if (n === 0) throw new FerryError('EINVAL', 'give at least one container name or ID, or use --all or --latest');
}

/**
 * Whether `--all` picks a container in this state for the operation: every container for
 * start and rm, the live ones (running or paused) for stop, kill, checkpoint and port, the running
 * ones for pause, the paused ones for unpause, and the checkpointed ones not running for restore.
 */
export function pickedByAll(purpose: SelectPurpose, s: Pick<ContainerState, 'status' | 'checkpointed'>): boolean {
  switch (purpose) {
    case 'stop':
    case 'kill':
    case 'checkpoint':
    case 'port':
      return s.status === 'running' || s.status === 'paused';
    case 'pause':
      return s.status === 'running';
    case 'unpause':
      return s.status === 'paused';
    case 'restore':
      return s.checkpointed && s.status !== 'running';
    default:
      return true;
  }
}

/**
 * `ps` filters (Docker's and Podman's names): every key given must match, any value of a key may,
 * but every label given (as Docker and Podman: label filters are exclusive).
 */
export interface ContainerFilters {
  /** KEY or KEY=VALUE */
  label?: string[];
  /** A part of the name; `^` and `$` anchor it at the start and end (`^web$`: that name only). */
  name?: string[];
  /** created, running, paused, exited (Ferry's stopped is exited too). */
  status?: string[];
  /** An ID prefix. */
  id?: string[];
}

const FILTER_STATUSES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead', 'stopped'];

/** Refuses filters no container can be picked by (an unknown key or status). */
export function checkFilters(f: Record<string, unknown>): ContainerFilters {
  const out: ContainerFilters = {};
  for (const [k, v] of Object.entries(f)) {
    if (k !== 'label' && k !== 'name' && k !== 'status' && k !== 'id') throw new FerryError('EINVAL', `invalid filter "${k}": use label, name, status or id`);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new FerryError('EINVAL', `invalid filter "${k}": give a list of strings`);
    if (k === 'status') for (const s of v as string[]) if (!FILTER_STATUSES.includes(s)) throw new FerryError('EINVAL', `invalid filter status "${s}": use any of ${FILTER_STATUSES.join(', ')}`);
    out[k] = v as string[];
  }
  return out;
}

/** Whether a container is picked by the filters. */
export function matchesFilters(r: ContainerRecord, f: ContainerFilters): boolean {
  const c = r.config;
  const status = r.state.status === 'stopped' ? 'exited' : r.state.status;
  const any = (vals: string[] | undefined, pred: (v: string) => boolean): boolean => !vals?.length || vals.some(pred);
  return (
    hasLabels(c.labels, f.label) &&
    any(f.name, (n) => nameMatches(c.name, n)) &&
    any(f.status, (s) => (s === 'stopped' ? 'exited' : s) === status) &&
    any(f.id, (p) => c.id.startsWith(p))
  );
}

/**
 * Docker's and Podman's name filter is a regular expression; what clients send is a part of the
 * name, anchored or not (`^c1$`). Those are what is understood here: a full regular expression
 * from a request could take exponential time to match.
 */
function nameMatches(name: string, filter: string): boolean {
  let f = filter.replace(/^\^?\//, (m) => (m.startsWith('^') ? '^' : ''));
  const start = f.startsWith('^');
  const end = f.endsWith('$') && !f.endsWith('\\$');
  f = f.slice(start ? 1 : 0, end ? -1 : undefined);
  if (start && end) return name === f;
  if (start) return name.startsWith(f);
  if (end) return name.endsWith(f);
  return name.includes(f);
}

/** Network filters (Docker's `network ls --filter`): every key given must match, any value of a key may (every label). */
export interface NetworkFilters {
  /** A part of the name. */
  name?: string[];
  /** An ID prefix. */
  id?: string[];
  /** KEY or KEY=VALUE */
  label?: string[];
  driver?: string[];
  /** builtin (the default network) or custom. */
  type?: string[];
}

/** Refuses network filters nothing can be picked by (an unknown key or type). */
export function checkNetworkFilters(f: Record<string, unknown>): NetworkFilters {
  const out: NetworkFilters = {};
  for (const [k, v] of Object.entries(f)) {
    if (k !== 'name' && k !== 'id' && k !== 'label' && k !== 'driver' && k !== 'type') throw new FerryError('EINVAL', `invalid filter "${k}": use name, id, label, driver or type`);
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new FerryError('EINVAL', `invalid filter "${k}": give a list of strings`);
    if (k === 'type') for (const t of v as string[]) if (t !== 'builtin' && t !== 'custom') throw new FerryError('EINVAL', `invalid filter type "${t}": use builtin or custom`);
    out[k] = v as string[];
  }
  return out;
}

/** Whether a network is picked by the filters. */
export function matchesNetworkFilters(n: NetworkRecord, f: NetworkFilters): boolean {
  const labels = n.labels ?? {};
  const any = (vals: string[] | undefined, pred: (v: string) => boolean): boolean => !vals?.length || vals.some(pred);
  return (
    any(f.name, (x) => nameMatches(n.name, x)) &&
    any(f.id, (p) => n.id.startsWith(p)) &&
    hasLabels(labels, f.label) &&
    any(f.driver, (d) => d === n.driver) &&
    any(f.type, (t) => (t === 'builtin') === (n.name === DEFAULT_NETWORK))
  );
}

/** Whether labels has every KEY or KEY=VALUE of want. */
function hasLabels(labels: Record<string, string>, want: string[] | undefined): boolean {
  return (want ?? []).every((l) => {
    const i = l.indexOf('=');
    return i < 0 ? l in labels : labels[l.slice(0, i)] === l.slice(i + 1);
  });
}
