import * as fs from 'node:fs';
import { IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, imageEntries } from './image.js';
import { decodeMessage } from './messages.js';

/**
 * CRIU's stats-dump / stats-restore images: magic words, then one size-prefixed StatsEntry
 * (messages.ts) holding a DumpStatsEntry or a RestoreStatsEntry. Numbers for the record: a file
 * that is missing, cut short or does not decode reads as undefined, never as an error.
 */

export interface DumpStats {
  freezingTimeUs: number;
  frozenTimeUs: number;
  memdumpTimeUs: number;
  memwriteTimeUs: number;
  pagesScanned: number;
  pagesSkippedParent: number;
  pagesWritten: number;
  pagesLazy: number;
}

export interface RestoreStats {
  pagesCompared: number;
  pagesSkippedCow: number;
  forkingTimeUs: number;
  restoreTimeUs: number;
  pagesRestored: number;
}

function statsEntry(file: string): ReturnType<typeof decodeMessage<'StatsEntry'>> | undefined {
  try {
    const buf = fs.readFileSync(file);
    // The stats images carry the service magic and then their own; older ones their own alone.
    const m0 = buf.length >= 4 ? buf.readUInt32LE(0) : 0;
    const service = Buffer.alloc(4);
    service.writeUInt32LE(IMG_SERVICE_MAGIC);
    const framed = m0 === IMG_SERVICE_MAGIC || m0 === IMG_COMMON_MAGIC ? buf : Buffer.concat([service, buf]);
    const first = imageEntries(framed, file)[0];
    return first ? decodeMessage('StatsEntry', first) : undefined;
  } catch {
    return undefined;
  }
}

export function readDumpStats(file: string): DumpStats | undefined {
  const m = statsEntry(file)?.dump;
  if (!m) return undefined;
  return {
    freezingTimeUs: m.freezingTime,
    frozenTimeUs: m.frozenTime,
    memdumpTimeUs: m.memdumpTime,
    memwriteTimeUs: m.memwriteTime,
    pagesScanned: m.pagesScanned,
    pagesSkippedParent: m.pagesSkippedParent,
    pagesWritten: m.pagesWritten,
    pagesLazy: m.pagesLazy,
  };
}

export function readRestoreStats(file: string): RestoreStats | undefined {
  const m = statsEntry(file)?.restore;
  if (!m) return undefined;
  return {
    pagesCompared: m.pagesCompared,
    pagesSkippedCow: m.pagesSkippedCow,
    forkingTimeUs: m.forkingTime,
    restoreTimeUs: m.restoreTime,
    pagesRestored: m.pagesRestored ?? 0,
  };
}
