/**
 * The unpacking thread (layers.ts sends it each layer's bytes as they arrive, several layers at
 * once, each a session): gzip inflated by zlib (on threads of its own), the uncompressed tar
 * hashed (its diff_id) and checked member by member (tar.ts), and the checked stream written to
 * GNU tar's stdin, a pipe whose write end the session is given. The main thread meanwhile
 * receives, hashes and keeps the compressed blobs: a pull's work spreads over the CPUs.
 *
 * Messages in:  {type:'start', id, fd, gzip, hash, allowDevices} {type:'data', id, buf, len}
 *               {type:'end', id}, or {type:'abort', id} (the input failed: stop)
 * Messages out: {type:'ack', id, bytes} once a data message is consumed; then {type:'done', id,
 *               digest, size} or {type:'error', id, code, message, gzip}; the session's pipe is
 *               closed before either.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { isFerryError } from '../../lib/errors.js';
import { LayerFilter } from './tar.js';

export type ToWorker =
  | { type: 'start'; id: number; fd: number; gzip: boolean; hash: boolean; allowDevices: boolean }
  | { type: 'data'; id: number; buf: ArrayBuffer; len: number }
  | { type: 'end'; id: number }
  | { type: 'abort'; id: number };
export type FromWorker =
  | { type: 'ack'; id: number; bytes: number }
  | { type: 'done'; id: number; digest: string; size: number }
  | { type: 'error'; id: number; code: string; message: string; gzip: boolean };

const IOV_MAX = 512; // pieces per writev (the kernel takes 1024 at most)

/** zlib's error in words (a plain Error: the caller says which layer). */
class GzipError extends Error {}
function gzipError(e: NodeJS.ErrnoException): GzipError {
  return new GzipError(e.code === 'Z_BUF_ERROR' ? 'its gzip data is cut short' : `its gzip data is corrupt (${e.message})`);
}

const post = (m: FromWorker): void => parentPort!.postMessage(m);

class Session {
  private readonly hash: Hash | undefined;
  private readonly filter: LayerFilter;
  private readonly gunzip: zlib.Gunzip | undefined;
  private size = 0;
  failed = false;

  constructor(
    private readonly id: number,
    private fd: number,
    o: { gzip: boolean; hash: boolean; allowDevices: boolean },
  ) {
    this.hash = o.hash ? createHash('sha256') : undefined;
    this.filter = new LayerFilter({ allowDevices: o.allowDevices, whiteouts: true });
    if (o.gzip) {
      // Large chunks: fewer, larger writes down to tar.
      const g = zlib.createGunzip({ chunkSize: 256 << 10 });
      g.on('data', (b: Buffer) => this.guard(() => this.tarBytes(b)));
      g.on('error', (e) => this.fail(gzipError(e)));
      g.on('end', () => this.guard(() => this.done()));
      this.gunzip = g;
    }
  }

  private guard(f: () => void): void {
    if (this.failed) return;
    try {
      f();
    } catch (e) {
      this.fail(e);
    }
  }

  /** All of `bufs` into the pipe (blocking: this thread waits for tar, the main thread does not). */
  private writeAll(bufs: Buffer[]): void {
    let rest = bufs;
    while (rest.length) {
      let n = fs.writevSync(this.fd, rest.length > IOV_MAX ? rest.slice(0, IOV_MAX) : rest);
      let i = 0;
      while (i < rest.length && n >= rest[i]!.length) n -= rest[i++]!.length;
      rest = i < rest.length ? [rest[i]!.subarray(n), ...rest.slice(i + 1)] : [];
    }
  }

  private tarBytes(b: Buffer): void {
    this.size += b.length;
    this.hash?.update(b);
    const out = this.filter.write(b);
    if (out.length) this.writeAll(out);
  }

  private close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private done(): void {
    this.writeAll(this.filter.end());
    this.close();
    sessions.delete(this.id);
    post({ type: 'done', id: this.id, digest: this.hash ? `sha256:${this.hash.digest('hex')}` : '', size: this.size });
  }

  fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.gunzip?.destroy();
    try {
      this.close();
    } catch {
      /* released all the same */
    }
    sessions.delete(this.id);
    const code = isFerryError(e) ? e.code : ((e as NodeJS.ErrnoException).code ?? 'EARCHIVE');
    post({ type: 'error', id: this.id, code, message: (e as Error).message, gzip: e instanceof GzipError });
  }

  data(b: Buffer): void {
    const ack = (): void => post({ type: 'ack', id: this.id, bytes: b.length });
    if (this.gunzip) this.gunzip.write(b, ack);
    else
      this.guard(() => {
        this.tarBytes(b);
        ack();
      });
  }

  end(): void {
    if (this.gunzip) this.gunzip.end();
    else this.guard(() => this.done());
  }
}

const sessions = new Map<number, Session>();

parentPort!.on('message', (m: ToWorker) => {
  if (m.type === 'start') {
    try {
      sessions.set(m.id, new Session(m.id, m.fd, m));
    } catch (e) {
      fs.closeSync(m.fd);
      post({ type: 'error', id: m.id, code: 'EARCHIVE', message: (e as Error).message, gzip: false });
    }
    return;
  }
  const s = sessions.get(m.id);
  if (!s || s.failed) return;
  if (m.type === 'data') s.data(Buffer.from(m.buf, 0, m.len));
  else if (m.type === 'end') s.end();
  else s.fail(new Error('aborted'));
});
