/**
 * Pre-copy's policy: when to stop the rounds early. Each round writes the memory changed
 * since the round before (soft-dirty tracking); the final dump (or lazy dump) then writes only
 * what changed since the last round, and the destination links the rounds under the restored
 * checkpoint as CRIU expects (parent links).
 */

/** A round that writes no more than this many pages leaves little for the final dump. */
const PRE_COPY_SMALL_PAGES = 256;
/** A round writing at least this share of the one before is not converging. */
const PRE_COPY_CONVERGING = 0.75;

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
