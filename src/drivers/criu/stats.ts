import * as fs from 'node:fs';
import { IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, Message } from './proto.js';

/**
 * CRIU's stats-dump / stats-restore images: a magic header, then one length-prefixed protobuf
 * StatsEntry { DumpStatsEntry dump = 1; RestoreStatsEntry restore = 2; }, decoded by proto.ts.
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

/** Decodes one protobuf message into field number -> value (varints) or sub-buffer; the last occurrence wins. */
export function decodeMessage(buf: Buffer): Map<number, number | Buffer> {
  return new Message(buf).last();
}

function statsEntry(file: string, field: 1 | 2): Map<number, number | Buffer> | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  try {
    let pos = 0;
    const m0 = buf.readUInt32LE(0);
    if (m0 === IMG_COMMON_MAGIC || m0 === IMG_SERVICE_MAGIC) pos = 8;
    else pos = 4;
    const len = buf.readUInt32LE(pos);
    if (pos + 4 + len > buf.length) return undefined; // cut short: no numbers rather than zeros
    const entry = decodeMessage(buf.subarray(pos + 4, pos + 4 + len));
    const sub = entry.get(field);
    return Buffer.isBuffer(sub) ? decodeMessage(sub) : undefined;
  } catch {
    return undefined;
  }
}

const num = (m: Map<number, number | Buffer>, f: number): number => {
  const v = m.get(f);
  return typeof v === 'number' ? v : 0;
};

export function readDumpStats(file: string): DumpStats | undefined {
  const m = statsEntry(file, 1);
  if (!m) return undefined;
  return {
    freezingTimeUs: num(m, 1),
    frozenTimeUs: num(m, 2),
    memdumpTimeUs: num(m, 3),
    memwriteTimeUs: num(m, 4),
    pagesScanned: num(m, 5),
    pagesSkippedParent: num(m, 6),
    pagesWritten: num(m, 7),
    pagesLazy: num(m, 9),
  };
}

export function readRestoreStats(file: string): RestoreStats | undefined {
  const m = statsEntry(file, 2);
  if (!m) return undefined;
  return {
    pagesCompared: num(m, 1),
    pagesSkippedCow: num(m, 2),
    forkingTimeUs: num(m, 3),
    restoreTimeUs: num(m, 4),
    pagesRestored: num(m, 5),
  };
}
