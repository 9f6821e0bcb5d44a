import * as fs from 'node:fs';
import { IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC, imageEntries } from './image.js';
import type Protobuf from 'protobufjs/minimal.js';
import { protobufMinimal } from '../../lib/lazy.js';

/**
 * CRIU's stats-dump / stats-restore images: magic words, then one size-prefixed StatsEntry
 * holding a DumpStatsEntry or a RestoreStatsEntry. Numbers for the record: a file
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

/**
 * The one image every checkpoint and restore reads, so it is decoded the way protobufjs's static
 * code generator writes decoders: its Reader, field by field. Reflection (messages.ts) would
 * first parse every message definition and generate code, 10-20 ms of each command's time.
 * Fields are CRIU's (images/stats.proto); unknown ones are skipped; a required one missing makes
 * the message undefined, as it would not decode for CRIU either.
 */
type Fields = Record<number, readonly [name: string, kind: 'uint32' | 'uint64', required: boolean]>;

const DUMP_FIELDS: Fields = {
  1: ['freezingTime', 'uint32', true],
  2: ['frozenTime', 'uint32', true],
  3: ['memdumpTime', 'uint32', true],
  4: ['memwriteTime', 'uint32', true],
  5: ['pagesScanned', 'uint64', true],
  6: ['pagesSkippedParent', 'uint64', true],
  7: ['pagesWritten', 'uint64', true],
  9: ['pagesLazy', 'uint64', true],
};

const RESTORE_FIELDS: Fields = {
  1: ['pagesCompared', 'uint64', true],
  2: ['pagesSkippedCow', 'uint64', true],
  3: ['forkingTime', 'uint32', true],
  4: ['restoreTime', 'uint32', true],
  5: ['pagesRestored', 'uint64', false],
};

/** protobufjs's Reader, loaded on the first decode (every command loads this module, few read stats). */
const reader = (b: Uint8Array): Protobuf.Reader => protobufMinimal().Reader.create(b);

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;

function uint64(r: Protobuf.Reader): number {
  const v = r.uint64() as unknown as number | { toNumber(): number };
  return typeof v === 'number' ? v : v.toNumber();
}

function decodeFlat(r: Protobuf.Reader, end: number, fields: Fields): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  while (r.pos < end) {
    const tag = r.uint32();
    const f = fields[tag >>> 3];
    if (f && (tag & 7) === WIRE_VARINT) out[f[0]] = f[1] === 'uint64' ? uint64(r) : r.uint32();
    else r.skipType(tag & 7);
  }
  for (const [name, , required] of Object.values(fields)) if (required && out[name] === undefined) return undefined;
  return out;
}

/** StatsEntry: dump = 1, restore = 2 (each a message). */
function decodeStats(entry: Uint8Array): { dump?: Record<string, number>; restore?: Record<string, number> } {
  const r = reader(entry);
  const out: { dump?: Record<string, number>; restore?: Record<string, number> } = {};
  while (r.pos < r.len) {
    const tag = r.uint32();
    const num = tag >>> 3;
    if ((num === 1 || num === 2) && (tag & 7) === WIRE_BYTES) {
      const len = r.uint32();
      const end = r.pos + len;
      if (end > r.len) throw new RangeError('index out of range');
      const m = decodeFlat(r, end, num === 1 ? DUMP_FIELDS : RESTORE_FIELDS);
      r.pos = end;
      if (num === 1) out.dump = m;
      else out.restore = m;
    } else r.skipType(tag & 7);
  }
  return out;
}

function statsEntry(file: string): ReturnType<typeof decodeStats> | undefined {
  try {
    const buf = fs.readFileSync(file);
    // The stats images carry the service magic and then their own; older ones their own alone.
    const m0 = buf.length >= 4 ? buf.readUInt32LE(0) : 0;
    const service = Buffer.alloc(4);
    service.writeUInt32LE(IMG_SERVICE_MAGIC);
    const framed = m0 === IMG_SERVICE_MAGIC || m0 === IMG_COMMON_MAGIC ? buf : Buffer.concat([service, buf]);
    const first = imageEntries(framed, file)[0];
    return first ? decodeStats(first) : undefined;
  } catch {
    return undefined;
  }
}

/** Loads the decoder readDumpStats uses, ahead of the first read (while CRIU still works). */
export function loadStatsDecoder(): void {
  protobufMinimal();
}

export function readDumpStats(file: string): DumpStats | undefined {
  const m = statsEntry(file)?.dump;
  if (!m) return undefined;
  return {
    freezingTimeUs: m.freezingTime!,
    frozenTimeUs: m.frozenTime!,
    memdumpTimeUs: m.memdumpTime!,
    memwriteTimeUs: m.memwriteTime!,
    pagesScanned: m.pagesScanned!,
    pagesSkippedParent: m.pagesSkippedParent!,
    pagesWritten: m.pagesWritten!,
    pagesLazy: m.pagesLazy!,
  };
}

export function readRestoreStats(file: string): RestoreStats | undefined {
  const m = statsEntry(file)?.restore;
  if (!m) return undefined;
  return {
    pagesCompared: m.pagesCompared!,
    pagesSkippedCow: m.pagesSkippedCow!,
    forkingTimeUs: m.forkingTime!,
    restoreTimeUs: m.restoreTime!,
    pagesRestored: m.pagesRestored ?? 0,
  };
}
