import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { GzipInflater, haveIsal } from '../../src/lib/isal.js';

// Setup installs libisal2: pulls inflate with it (in worker threads); without it they fall back to zlib.
test('ISA-L inflate is available (libisal2, installed by setup)', () => {
  assert.ok(haveIsal(), 'libisal2 is missing or its inflate failed the self-test: run `npm run setup`');
});

function inflate(gz: Buffer, step: number): Buffer {
  const g = new GzipInflater();
  const out: Buffer[] = [];
  for (let o = 0; o < gz.length; o += step) g.push(gz.subarray(o, o + step), (b) => out.push(b));
  g.end();
  return Buffer.concat(out);
}

const fails = (gz: Buffer, re: RegExp): void => {
  for (const step of [1, 1000, gz.length]) assert.throws(() => inflate(gz, step), { message: re }, `fed in chunks of ${step}`);
};

test('gzip streams inflate as zlib does: any chunking, several members, trailing bytes ignored', () => {
  const a = Buffer.concat([randomBytes(200_000), Buffer.alloc(3 << 20, 7), randomBytes(1000)]);
  const b = Buffer.from('second member\n'.repeat(5000));
  const multi = Buffer.concat([zlib.gzipSync(a), zlib.gzipSync(b, { level: 1 })]);
  for (const step of [1, 3, 4096, 65536, multi.length]) assert.ok(inflate(multi, step).equals(Buffer.concat([a, b])), `chunks of ${step}`);
  assert.ok(inflate(Buffer.concat([zlib.gzipSync(b), Buffer.from('not gzip')]), 100).equals(b));
  // Output pieces are never written again (a later piece does not overwrite an earlier one).
  const pieces: Buffer[] = [];
  const g = new GzipInflater();
  g.push(zlib.gzipSync(a), (p) => pieces.push(p));
  g.end();
  assert.ok(pieces.length > 3);
  assert.ok(Buffer.concat(pieces).equals(a));
});

test('corrupt, cut or foreign gzip data is refused', () => {
  const gz = zlib.gzipSync(Buffer.concat([randomBytes(50_000), Buffer.alloc(100_000, 1)]));
  const crc = Buffer.from(gz);
  crc[crc.length - 6] = crc[crc.length - 6]! ^ 0xff;
  fails(crc, /^its gzip data is corrupt \(wrong checksum\)$/);
  const mid = Buffer.from(gz);
  mid[gz.length >> 1] = mid[gz.length >> 1]! ^ 0xff;
  fails(mid, /^its gzip data is corrupt \(/);
  fails(gz.subarray(0, gz.length >> 1), /^its gzip data is cut short$/);
  fails(gz.subarray(0, gz.length - 4), /^its gzip data is cut short$/);
  fails(Buffer.from('plain text, not gzip'), /^it is not gzip data$/);
  assert.throws(() => new GzipInflater().end(), { message: /^its gzip data is empty$/ });
});
