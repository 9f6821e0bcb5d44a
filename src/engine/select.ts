/**
 * Which containers an operation acts on: the containers named, `--all`, or `--latest` (as
 * Podman). One rule for every command of the CLI and every endpoint of the API; Engine.select()
 * applies it to the containers that exist.
 */
import { FerryError } from '../lib/errors.js';
import type { ContainerState } from './types.js';

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
 * start and rm, the live ones (running or paused) for stop, kill and checkpoint, the running
 * ones for pause, the paused ones for unpause, and the checkpointed ones not running for restore.
 */
export function pickedByAll(purpose: SelectPurpose, s: Pick<ContainerState, 'status' | 'checkpointed'>): boolean {
  switch (purpose) {
    case 'stop':
    case 'kill':
    case 'checkpoint':
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
