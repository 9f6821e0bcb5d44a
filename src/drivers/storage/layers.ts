/**
 * Layers: each unpacked once, by its uncompressed digest (diff_id), into its own directory,
 * and shared by every image that lists it. Overlay stacks them as lower directories through
 * short link names (l/<26 chars> -> ../layers/<hex>/diff), mounted from the store's directory,
 * so the mount options stay far below the kernel's one-page limit even for deep images.
 *
 *   DIR/layers/<hex>/diff/        the layer's files (whiteouts as overlay whiteouts)
 *   DIR/layers/<hex>/layer.json   { DiffID, Size, Link, Created, CompressedDigests }
 *   DIR/l/<LINK>                  symlink to ../layers/<hex>/diff
 *   DIR/layers/.tmp-<PID>-<rand>/ a layer being unpacked (swept when PID is dead)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from '../../lib/lazy.js';
import type { Hash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, isFerryError } from '../../lib/errors.js';
import { mkdirp, readJsonIfExists, writeJsonAtomic } from '../../lib/fsutil.js';
import { processAlive } from '../../lib/proc.js';
import { decompressor, sniff } from '../archive/compress.js';
import { LayerSanitizer } from './tar.js';

export interface LayerRecord {
  DiffID: string; // sha256:<hex> of the uncompressed tar
  Size: number; // bytes of the uncompressed tar
  Link: string; // short name under l/
  Created: string;
  /** Compressed digests this layer was seen under (registry blobs). */
  CompressedDigests: string[];
}

export interface LayerExpect {
  /** The blob's digest (sha256:...) as the manifest gives it. */
  digest?: string;
  /** The blob's size as the manifest gives it. */
  size?: number;
  /** The uncompressed digest as the image config gives it. */
  diffId?: string;
  /** `digest` was checked already (the blob was verified on its way to disk): not hashed again. */
  verified?: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;
const LINK_RE = /^[A-Z0-9]{26}$/;

export function digestHex(d: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(d);
  if (!m) throw new FerryError('EINVAL', `unsupported digest "${d}": Ferry verifies sha256 digests only`);
  return m[1]!;
}

/** Counts and hashes the bytes going through; fails once more than `limit` bytes went by. */
export class Meter extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  /** Off when another Meter sees the same bytes or the digest is known already. */
  hashing = true;
  /** A file descriptor that gets a copy of every byte (the blob kept as it came). */
  copyTo: number | undefined;
  constructor(private readonly limit = Infinity, private readonly what = '') {
    super();
  }
  /** Counts, hashes and copies one chunk; throws past the limit or when the copy fails. */
  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) throw new FerryError('EARCHIVE', `${this.what} is larger than its manifest says; nothing was stored`);
    if (this.hashing) this.hash.update(chunk);
    if (this.copyTo !== undefined) for (let off = 0; off < chunk.length; ) off += fs.writeSync(this.copyTo, chunk, off);
  }
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    try {
      this.update(chunk);
    } catch (e) {
      return cb(e as Error);
    }
    cb(null, chunk);
  }
}

export class LayerStore {
  readonly layersDir: string;
  readonly linksDir: string;

  constructor(readonly dir: string) {
    this.layersDir = path.join(dir, 'layers');
    this.linksDir = path.join(dir, 'l');
  }

  diffDir(hex: string): string {
    return path.join(this.layersDir, hex, 'diff');
  }

  get(hex: string): LayerRecord | undefined {
    if (!HEX64.test(hex)) return undefined;
    return readJsonIfExists<LayerRecord>(path.join(this.layersDir, hex, 'layer.json'));
  }

  has(hex: string): boolean {
    return this.get(hex) !== undefined;
  }

  list(): LayerRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.layersDir).filter((d) => HEX64.test(d));
    } catch {
      return [];
    }
    return names.map((h) => this.get(h)).filter((r): r is LayerRecord => r !== undefined);
  }

  /**
   * Overlay's lower directories for layers given base first: relative to the store's dir
   * (mount from there), top layer first as overlay wants them.
   */
  lowerDirs(hexes: string[]): { cwd: string; lower: string[] } {
    const lower = hexes.map((h) => {
      const rec = this.get(h);
      if (!rec) throw new FerryError('ENOTFOUND', `layer sha256:${h.slice(0, 12)} of the image is missing from the store: pull or import the image again`);
      this.ensureLink(h, rec.Link);
      return `l/${rec.Link}`;
    });
    return { cwd: this.dir, lower: lower.reverse() };
  }

  private ensureLink(hex: string, link: string): void {
    const p = path.join(this.linksDir, link);
    if (fs.existsSync(p)) return;
    mkdirp(this.linksDir, 0o700);
    fs.rmSync(p, { force: true });
    fs.symlinkSync(`../layers/${hex}/diff`, p);
  }

  /**
   * Unpacks a layer stream (gzip, zstd or plain tar) into a new layer, checking every member
   * (see tar.ts) and the digests it is expected to have. Any failure leaves nothing stored.
   */
  async unpack(src: Readable, expect: LayerExpect, what: string): Promise<LayerRecord> {
    return (await this.unpackDigest(src, expect, what)).rec;
  }

  /** unpack(), also giving the digest of the stream as it came (compressed or not). */
  async unpackDigest(src: Readable, expect: LayerExpect, what: string, copyTo?: number, onBytes?: (received: number) => void): Promise<{ rec: LayerRecord; digest: string }> {
    mkdirp(this.layersDir, 0o700);
    this.sweep();
    const tmp = path.join(this.layersDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const diff = mkdirp(path.join(tmp, 'diff'), 0o755);
    try {
      const { rec, digest } = await this.unpackInto(src, diff, expect, what, copyTo, onBytes);
      const hex = digestHex(rec.DiffID);
      const final = path.join(this.layersDir, hex);
      const existing = this.get(hex);
      if (existing) {
        fs.rmSync(tmp, { recursive: true, force: true });
        return { rec: this.noteDigest(existing, digest === existing.DiffID ? undefined : digest), digest };
      }
      writeJsonAtomic(path.join(tmp, 'layer.json'), rec);
      fs.rmSync(final, { recursive: true, force: true }); // a half-removed one
      fs.renameSync(tmp, final);
      this.ensureLink(hex, rec.Link);
      return { rec, digest };
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * A registry blob (or an archive's): unpacked as it arrives, every member checked (tar.ts),
   * into a staging dir, while a copy of the blob goes to a staging file; its size, digest and
   * diff_id are checked at the end, and only then are the layer and the blob (`keep`) stored:
   * any failure removes both, so nothing unverified is ever stored.
   */
  async unpackBlob(src: Readable, expect: LayerExpect, what: string, keep?: (verifiedFile: string, digest: string) => void, onBytes?: (received: number) => void): Promise<LayerRecord> {
    mkdirp(this.layersDir, 0o700);
    const file = path.join(this.layersDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}.blob`);
    let fd: number | undefined;
    try {
      if (keep) fd = fs.openSync(file, 'wx', 0o600);
      const { rec, digest } = await this.unpackDigest(src, { ...expect, verified: false }, what, fd, onBytes);
      if (fd !== undefined) {
        fs.closeSync(fd);
        fd = undefined;
        keep!(file, digest); // the blob, kept as it came (push and save send it unchanged)
      }
      return rec;
    } catch (e) {
      if (isFerryError(e)) throw e;
      if ((e as NodeJS.ErrnoException).code === 'ENOSPC') throw this.full(what);
      throw new FerryError('EARCHIVE', `downloading ${what} failed: ${(e as Error).message}; nothing was stored`);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
      fs.rmSync(file, { force: true });
    }
  }

  private full(what: string): FerryError {
    return new FerryError('EARCHIVE', `storing ${what} failed: the disk holding ${this.dir} is full; free some space and try again; nothing was stored`);
  }

  /** Records that a known layer also comes as this compressed blob (so a later pull skips it). */
  noteDigest(rec: LayerRecord, digest: string | undefined): LayerRecord {
    if (digest && !rec.CompressedDigests.includes(digest)) {
      rec.CompressedDigests.push(digest);
      writeJsonAtomic(path.join(this.layersDir, digestHex(rec.DiffID), 'layer.json'), rec);
    }
    return rec;
  }

  private async unpackInto(src: Readable, diff: string, expect: LayerExpect, what: string, copyTo?: number, onBytes?: (received: number) => void): Promise<{ rec: LayerRecord; digest: string }> {
    const root = process.getuid?.() === 0;
    const packed = new Meter(expect.size ?? Infinity, what);
    packed.copyTo = copyTo;
    packed.hashing = !(expect.verified && expect.digest);
    const unpacked = new Meter();
    const sanitizer = new LayerSanitizer({ allowDevices: root, whiteouts: true });
    const tarArgs = ['-x', '-f', '-', '-b', '256', '-B', '-C', diff, '--numeric-owner', '--xattrs', '--xattrs-include=*', ...(root ? [] : ['--no-same-owner'])];
    const child = spawn('tar', tarArgs, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new FerryError('EDEPEND', 'tar is not installed: run `npm run setup` (as root)') : e));
      child.on('close', (code) => resolve(code));
    });
    exited.catch(() => undefined);
    child.stdin!.on('error', () => undefined);
    let failure: unknown;
    // The source is pumped by hand through the meter (size, digest, the blob's copy) into the
    // decompressor: when unpacking fails, the rest is still read and hashed, so that a blob that
    // was cut or tampered with is reported as such rather than as the tar or gzip error it causes.
    const entry = new PassThrough({ highWaterMark: 1 << 20 });
    let feeding = true;
    let srcError: unknown;
    let overflow: unknown;
    const received = new Promise<void>((resolve) => {
      const onDrain = (): void => {
        src.resume();
      };
      src.on('data', (c: Buffer) => {
        try {
          packed.update(c);
          onBytes?.(packed.bytes);
        } catch (e) {
          overflow = e;
          src.destroy();
          entry.destroy(e as Error);
          resolve();
          return;
        }
        if (feeding && !entry.write(c)) {
          src.pause();
          entry.once('drain', onDrain);
        }
      });
      let ended = false;
      src.once('end', () => {
        ended = true;
        entry.end();
        resolve();
      });
      src.once('error', (e) => {
        srcError ??= e;
        entry.destroy(e);
        resolve();
      });
      src.once('close', () => {
        // Closed before its end (a connection dropped without an error): cut short.
        if (!ended && srcError === undefined && overflow === undefined) {
          srcError = new Error('the stream was closed before its end');
          entry.destroy(srcError as Error);
        }
        resolve();
      });
      entry.on('error', () => undefined);
      entry.on('close', () => {
        // The unpacking ended early: keep reading (hash and count only).
        if (feeding) {
          feeding = false;
          entry.off('drain', onDrain);
          if (!src.destroyed) src.resume();
        }
      });
    });
    try {
      const { compression, stream } = await sniff(entry);
      // Uncompressed: the same bytes, hashed once.
      if (compression === 'none' && packed.hashing) unpacked.hashing = false;
      const codec = decompressor(compression, `${what} is not valid ${compression} data`);
      codec.done.catch(() => undefined);
      await Promise.all([pipeline(stream, codec.stream, unpacked, sanitizer, child.stdin!), codec.done]);
    } catch (e) {
      failure = e;
      child.kill('SIGKILL');
      feeding = false;
      entry.destroy();
      if (!src.destroyed) src.resume();
    }
    await received;
    const code = await exited.catch((e: unknown) => {
      failure ??= e;
      return -1;
    });
    if (overflow !== undefined) throw overflow;
    if (failure !== undefined || srcError !== undefined) {
      if (/No space left on device/.test(stderr)) throw this.full(what);
      if ((failure as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC') throw this.full(what);
      // What the whole blob says decides first: cut short, or not the blob the manifest names.
      if (expect.size !== undefined && packed.bytes < expect.size) {
        throw new FerryError('EARCHIVE', `downloading ${what} failed: it was cut after ${packed.bytes} of its ${expect.size} bytes; try again; nothing was stored`);
      }
      if (srcError === undefined && expect.digest !== undefined && packed.hashing) {
        const got = `sha256:${packed.hash.digest('hex')}`;
        if (got !== expect.digest) throw new FerryError('EARCHIVE', `${what} does not match its digest (got ${got}): the source is corrupt or tampered with; nothing was stored`);
      }
      failure ??= srcError;
      if (isFerryError(failure, 'EARCHIVE')) throw new FerryError('EARCHIVE', `unpacking ${what} failed: ${failure.message}; nothing was stored`);
      if (isFerryError(failure)) throw failure;
      throw new FerryError('EARCHIVE', `unpacking ${what} failed: ${(failure as Error).message}; nothing was stored`);
    }
    if (code !== 0 && /No space left on device/.test(stderr)) throw this.full(what);
    if (code !== 0) throw new FerryError('EARCHIVE', `unpacking ${what} failed: ${stderr.trim().split('\n').pop() || `tar exit ${code}`}; nothing was stored`);
    const gotDigest = packed.hashing ? `sha256:${packed.hash.digest('hex')}` : expect.digest!;
    const gotDiff = unpacked.hashing ? `sha256:${unpacked.hash.digest('hex')}` : gotDigest;
    if (expect.size !== undefined && packed.bytes !== expect.size) {
      throw new FerryError('EARCHIVE', `${what} has ${packed.bytes} bytes, not the ${expect.size} its manifest says: the source is corrupt or tampered with; nothing was stored`);
    }
    if (expect.digest !== undefined && gotDigest !== expect.digest) {
      throw new FerryError('EARCHIVE', `${what} does not match its digest (got ${gotDigest}): the source is corrupt or tampered with; nothing was stored`);
    }
    if (expect.diffId !== undefined && gotDiff !== expect.diffId) {
      throw new FerryError('EARCHIVE', `${what} unpacks to ${gotDiff}, not the diff_id ${expect.diffId} its image config says: the source is corrupt or tampered with; nothing was stored`);
    }
    const rec: LayerRecord = {
      DiffID: gotDiff,
      Size: unpacked.bytes,
      Link: randomLink(),
      Created: new Date().toISOString(),
      CompressedDigests: gotDigest !== gotDiff ? [gotDigest] : [],
    };
    return { rec, digest: gotDigest };
  }

  /** Removes every layer not in `keep` (hex diff IDs): the images' references are the refcounts. */
  removeUnused(keep: Set<string>): string[] {
    const removed: string[] = [];
    for (const rec of this.list()) {
      const hex = digestHex(rec.DiffID);
      if (keep.has(hex)) continue;
      const trash = path.join(this.layersDir, `.rm-${process.pid}-${hex}`);
      fs.renameSync(path.join(this.layersDir, hex), trash);
      if (LINK_RE.test(rec.Link)) fs.rmSync(path.join(this.linksDir, rec.Link), { force: true });
      fs.rmSync(trash, { recursive: true, force: true });
      removed.push(hex);
    }
    return removed;
  }

  /** Staging and trash dirs of dead processes. */
  private sweep(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.layersDir);
    } catch {
      return;
    }
    for (const n of names) {
      const m = /^\.(?:tmp|rm)-(\d+)-/.exec(n);
      if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) fs.rmSync(path.join(this.layersDir, n), { recursive: true, force: true });
    }
  }
}

export function randomLink(): string {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const b = randomBytes(26);
  let s = '';
  for (const x of b) s += abc[x % abc.length];
  return s;
}
