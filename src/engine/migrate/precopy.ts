/**
 * Pre-copy's policy: how many rounds a migration may ask for, and when to stop them early.
 * Each round writes the memory changed
 * since the round before (soft-dirty tracking); the final dump (or lazy dump) then writes only
 * what changed since the last round, and the destination links the rounds under the restored
 * checkpoint as CRIU expects (parent links).
 */

import { FerryError } from '../../lib/errors.js';

/** The most pre-copy rounds a migration may ask for. */
export const MAX_PRE_COPY_ROUNDS = 20;
/** A round that writes no more than this many pages leaves little for the final dump. */
const PRE_COPY_SMALL_PAGES = 256;
/** A round writing at least this share of the one before is not converging. */
const PRE_COPY_CONVERGING = 0.75;

/** Refuses a number of pre-copy rounds outside 1..MAX_PRE_COPY_ROUNDS (undefined: no pre-copy). */
export function checkPreCopyRounds(rounds: number | undefined): void {
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds >= 1 && rounds <= MAX_PRE_COPY_ROUNDS)) throw badPreCopyRounds(String(rounds));
}

/** The refusal of a number of pre-copy rounds, shown as it was given. */
export function badPreCopyRounds(given: string): FerryError {
  return new FerryError('EINVAL', `invalid --pre-copy "${given}": give a number of rounds from 1 to ${MAX_PRE_COPY_ROUNDS}`);
}

/**
 * Whether another pre-copy round is worth it, given the pages each round so far wrote: not
 * past max rounds, not when the last round was already small, and not when the rounds have
 * stopped shrinking (memory is dirtied about as fast as it is sent: more rounds only delay).
 */
export function anotherPreCopyRound(pages: number[], max: number): boolean {
  const n = pages.length;
  if (n >= max) return false;
  const last = pages[n - 1] ?? Infinity;
  if (last <= PRE_COPY_SMALL_PAGES) return false;
  if (n >= 2 && last >= PRE_COPY_CONVERGING * pages[n - 2]!) return false;
  return true;
}
