/**
 * A worker thread that unpacks one layer (layers.ts sends it the layer's bytes as they arrive):
 * gzip inflated by zlib (on its own threads), the uncompressed tar hashed (its diff_id) and checked
 * member by member (tar.ts), and the checked stream written to GNU tar's stdin, a pipe whose write
 * end it is given. Every layer of a pull gets one, so their work spreads over the CPUs while the
 * main thread receives, hashes and keeps the compressed blobs.
 *
 * Messages in:  {type:'start', fd, gzip, hash, allowDevices} {type:'data', buf, len} {type:'end'}
 *               or {type:'abort'} (the input failed: stop)
 * Messages out: {type:'ack', bytes} once a data message is consumed; then {type:'done', digest, size}
 *               or {type:'error', code, message, gzip}; the pipe is closed before either.
 */
import * as fs from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { isFerryError } from '../../lib/errors.js';
import * as zlib from 'node:zlib';
import { LayerFilter } from './tar.js';

export type ToWorker = { type: 'start'; fd: number; gzip: boolean; hash: boolean; allowDevices: boolean } | { type: 'data'; buf: ArrayBuffer; len: number } | { type: 'end' } | { type: 'abort' };
export type FromWorker = { type: 'ack'; bytes: number } | { type: 'done'; digest: string; size: number } | { type: 'error'; code: string; message: string; gzip: boolean };

let fd = -1;
let gunzip: zlib.Gunzip | undefined;
let hash: Hash | undefined;
let filter: LayerFilter | undefined;
let size = 0;
let failed = false;
const IOV_MAX = 512; // pieces per writev (the kernel takes 1024 at most)

/** All of `bufs` into the pipe (blocking: this thread waits for tar, the main thread does not). */
function writeAll(bufs: Buffer[]): void {
  let rest = bufs;
  while (rest.length) {
    let n = fs.writevSync(fd, rest.length > IOV_MAX ? rest.slice(0, IOV_MAX) : rest);
    let i = 0;
    while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length;
    rest = i < rest.length ? [rest[i]!.subarray(n), ...rest.slice(i + 1)] : [];
  }
}

function tarBytes(b: Buffer): void {
  size += b.length;
  hash?.update(b);
  const out = filter!.write(b);
  if (out.length) writeAll(out);
}

function close(): void {
  if (fd >= 0) fs.closeSync(fd);
  fd = -1;
}

/** zlib's error in words (a plain Error: the caller says which layer). */
class GzipError extends Error {}
function gzipError(e: NodeJS.ErrnoException): GzipError {
  return new GzipError(e.code === 'Z_BUF_ERROR' ? 'its gzip data is cut short' : `its gzip data is corrupt (${e.message})`);
}

function done(): void {
  writeAll(filter!.end());
  close();
  parentPort!.postMessage({ type: 'done', digest: hash ? `sha256:${hash.digest('hex')}` : '', size } satisfies FromWorker);
}

function fail(e: unknown): void {
  if (failed) return;
  failed = true;
  gunzip?.destroy();
  try {
    close();
  } catch {
    /* already reported */
  }
  const code = isFerryError(e) ? e.code : ((e as NodeJS.ErrnoException).code ?? 'EARCHIVE');
  parentPort!.postMessage({ type: 'error', code, message: (e as Error).message, gzip: e instanceof GzipError } satisfies FromWorker);
}

parentPort!.on('message', (m: ToWorker) => {
  if (failed) return;
  try {
    if (m.type === 'start') {
      fd = m.fd;
      hash = m.hash ? createHash('sha256') : undefined;
      filter = new LayerFilter({ allowDevices: m.allowDevices, whiteouts: true });
      if (m.gzip) {
        // Large chunks: fewer, larger writes down to tar.
        gunzip = zlib.createGunzip({ chunkSize: 256 << 10 });
        gunzip.on('data', (b: Buffer) => {
          if (failed) return;
          try {
            tarBytes(b);
          } catch (e) {
            fail(e);
          }
        });
        gunzip.on('error', (e) => fail(gzipError(e)));
        gunzip.on('end', () => {
          if (failed) return;
          try {
            done();
          } catch (e) {
            fail(e);
          }
        });
      }
    } else if (m.type === 'data') {
      const b = Buffer.from(m.buf, 0, m.len);
      const ack = (): void => parentPort!.postMessage({ type: 'ack', bytes: b.length } satisfies FromWorker);
      if (gunzip) gunzip.write(b, ack);
      else {
        tarBytes(b);
        ack();
      }
    } else if (m.type === 'abort') {
      fail(new Error('aborted'));
    } else if (gunzip) gunzip.end();
    else done();
  } catch (e) {
    fail(e);
  }
});
