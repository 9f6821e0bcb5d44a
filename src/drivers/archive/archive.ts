/**
 * Ferry's checkpoint archive: one tar stream, compressed with zstd, gzip or nothing.
 *
 *   ferry-archive.json         first: format version, versions, arch (checked before anything
 *                              large is read)
 *   container.json, ctr.log    the container's record and its log
 *   checkpoint/...             CRIU's images (regular files only)
 *   rootfs/...                 the overlay upper dir: added/changed files, whiteouts, xattrs
 *   volumes/NAME/...           named volumes' contents
 *   devshm/...                 a bind-mounted /dev/shm's contents (a container from Podman)
 *   checksums.json             last: sha256 of every member's header and (format 1) content, so
 *                              a truncated or corrupt archive is refused; in format 2 (zstd)
 *                              zstd's frame checksum covers the content (see ARCHIVE_FORMAT)
 *
 * A whole pod's archive (header kind ferry-pod-checkpoint) has pod.json after the header and
 * each member's container.json, ctr.log, checkpoint/, rootfs/ and volumes/ under members/NAME/.
 *
 * Written and read as streams; nothing holds the whole archive in memory. A zstd archive written
 * to a file never has its bytes in JavaScript: this writer fills zstd's pipe itself (tarheader.ts
 * for the headers, sendfile(2) for files). Trees with special
 * files (whiteouts are 0/0 character devices; opaque dirs are xattrs) are read and written by
 * GNU tar, which Node cannot do itself (no mknod, no xattrs), with each entry passing through
 * here to be checksummed and, on import, validated.
 */
import { spawn } from 'node:child_process';
import { createHash, tarStream } from '../../lib/lazy.js';
import type { Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import type tar from 'tar-stream';
import { FerryError } from '../../lib/errors.js';
import { TAR_END, tarHeader, tarPadding } from './tarheader.js';
import { validName } from '../../lib/ids.js';
import { makePipe, sendFile } from '../../lib/libc.js';
import { compressor, compressorBetweenFds, compressorToFd, decompressor, decompressorFromFd, sniff, sniffFd, type Codec, type CodecOptions, type Compression } from './compress.js';

/**
 * The newest format this ferry writes and reads. 1: checksums.json holds the sha256 of every
 * member's metadata and bytes. 2 (zstd only): the bytes are covered by zstd's own frame checksum
 * (XXH64 of the whole uncompressed stream, checked by `zstd -d`), and checksums.json holds the
 * sha256 of every member's metadata alone (so a missing, extra or altered member is still found).
 * Uncompressed and gzip archives are written in format 1.
 */
export const ARCHIVE_FORMAT = 2;
/** The format whose members' bytes are not in checksums.json (zstd's frame checksum covers them). */
export const ZSTD_CHECKED_FORMAT = 2;
/** Read and write CRIU's images in large chunks: memory images are most of an archive. */
const IO_CHUNK = 1 << 20;
/** Files up to this size are read and written whole, synchronously, rather than streamed. */
const SMALL_FILE = 256 << 10;

/** The first size bytes of file (fewer if it shrank: the archive then fails its size check). */
function readPrefix(file: string, size: number): Buffer {
  const buf = Buffer.alloc(size);
  if (size === 0) return buf;
  const fd = fs.openSync(file, 'r');
  try {
    let n = 0;
    while (n < size) {
      const r = fs.readSync(fd, buf, n, size - n, n);
      if (r === 0) break;
      n += r;
    }
    return n === size ? buf : buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}
export const HEADER_MEMBER = 'ferry-archive.json';
export const CHECKSUMS_MEMBER = 'checksums.json';
/** A whole pod's archive: pod.json, then each member's container archive under members/NAME/. */
export const POD_ARCHIVE_KIND = 'ferry-pod-checkpoint';

/** What checksums.json adds in format 2: its sums cover members' metadata; zstd covers the bytes. */
const METADATA_ONLY = { covers: 'metadata', content: 'zstd frame checksum' } as const;

export type Header = Partial<tar.Header> & { name: string };
/** tar-stream's streams are streamx streams: Node-compatible at run time, typed apart. */
const asReadable = (s: unknown): Readable => s as Readable;

/**
 * What a member's checksum covers: its metadata (as a reader sees it: a contiguous file is a
 * file, and only files have a size) and then its bytes, fed to the returned hash.
 */
export function memberHash(h: Header): Hash {
  const type = h.type === 'contiguous-file' ? 'file' : (h.type ?? 'file');
  const meta = {
    type,
    mode: h.mode ?? 0,
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    linkname: h.linkname ?? '',
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
    size: type === 'file' ? (h.size ?? 0) : 0,
    xattrs: xattrsOf(h),
  };
  return createHash("sha256").update(JSON.stringify(meta));
}

function xattrsOf(h: Header): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h.pax ?? {})) if (k.startsWith('SCHILY.xattr.')) out[k] = String(v);
  return out;
}

// ------------------------------------------------------------------------------- writing

/** zstd's pipe: 1 MiB (fs.pipe-max-size's default), so that each round trip moves more. */
const PIPE_SIZE = 1 << 20;
/** How much sendfile moves between two turns of the event loop. */
const SEND_CHUNK = 4 << 20;

/** A regular file's first size bytes, as a member's body (the descriptor stays the caller's). */
class FileBody {
  constructor(
    readonly file: string,
    readonly fd: number,
    readonly size: number,
  ) {}

  /** A stream of its bytes (for a writer that passes them through JavaScript). */
  stream(): Readable {
    // By name: Bun's streams close a descriptor they are given even with autoClose false.
    return fs.createReadStream(this.file, { start: 0, end: this.size - 1, highWaterMark: IO_CHUNK });
  }

  /** Moves its bytes into pipeFd with sendfile(2); returns how many (fewer: the file shrank). */
  async sendTo(pipeFd: number): Promise<number> {
    let n = 0;
    while (n < this.size) {
      const k = sendFile(pipeFd, this.fd, Math.min(SEND_CHUNK, this.size - n));
      if (k === 0) break;
      n += k;
      // Let the rest of the command (the checkpoint's release of the runtime) move on too.
      if (n < this.size) await new Promise((r) => setImmediate(r));
    }
    return n;
  }
}

export interface WriteStats {
  members: number;
  /** Bytes of the tar stream before compression. */
  rawBytes: number;
  /** Bytes written to the output. */
  bytes: number;
}

export class ArchiveWriter {
  private readonly pack = tarStream().pack();
  private readonly sums: Record<string, string> = {};
  private rawBytes = 0;
  private bytes = 0;
  private readonly done: Promise<void>;
  /** The file the compressor writes to itself, if it does (its size is the bytes written). */
  private outFd: number | undefined;
  /** The format written (the caller puts it in the header): ARCHIVE_FORMAT for zstd, else 1. */
  readonly format: number;
  /** Format 1: members' bytes go into their checksums (format 2: zstd's frame checksum covers them). */
  private readonly hashContent: boolean;
  /** The pipe zstd reads, when this writer writes the tar stream itself (see the constructor). */
  private pipeFd: number | undefined;
  private zstd: { done: Promise<void>; kill(): void } | undefined;

  /**
   * out: a stream, or the descriptor of a file opened for writing, which the writer closes.
   * checksums: false for a layout that has none (Podman's). inProcess: compress here (a small
   * archive; see CodecOptions).
   */
  constructor(out: Writable | number, compression: Compression, private readonly opts: { checksums?: boolean } & CodecOptions = {}) {
    this.format = compression === 'zstd' ? ZSTD_CHECKED_FORMAT : 1;
    this.hashContent = this.format === 1;
    this.pack.on('data', (b: unknown) => (this.rawBytes += (b as Buffer).length));
    // A zstd archive written to a file, with nothing to hash: zstd reads a pipe that this
    // writer fills itself, headers by write(2) and files' bytes by sendfile(2), so that those
    // never pass through JavaScript (it only blocks on a full pipe, which zstd is draining).
    const pipe = typeof out === 'number' && compression === 'zstd' && !this.hashContent ? makePipe(PIPE_SIZE) : undefined;
    if (pipe) {
      this.outFd = out as number;
      try {
        this.zstd = compressorBetweenFds(pipe[0], this.outFd);
      } finally {
        fs.closeSync(pipe[0]);
      }
      this.pipeFd = pipe[1];
      this.done = this.zstd.done;
      this.done.catch(() => undefined);
      return;
    }
    const direct = typeof out === 'number' ? compressorToFd(compression, out) : undefined;
    if (direct) {
      this.outFd = out as number;
      this.done = Promise.all([pipeline(asReadable(this.pack), direct.stream), direct.done]).then(() => undefined);
    } else {
      const codec = compressor(compression, { inProcess: opts.inProcess });
      codec.stream.on('data', (b: Buffer) => (this.bytes += b.length));
      const sink = typeof out === 'number' ? fs.createWriteStream('', { fd: out, highWaterMark: IO_CHUNK }) : out;
      this.done = Promise.all([pipeline(asReadable(this.pack), codec.stream, sink), codec.done]).then(() => undefined);
    }
    this.done.catch(() => undefined);
  }

  private async entry(h: Header, body?: Readable | Buffer | FileBody): Promise<void> {
    const key = checkMemberName(h.name);
    // tar-stream writes a zero mode as its default; hash what is written (whiteouts have 0).
    if (!h.mode) h.mode = h.type === 'directory' ? 0o755 : 0o644;
    if (this.sums[key] !== undefined) throw new FerryError('EINTERNAL', `duplicate archive member ${h.name}`);
    const hash = memberHash(h);
    if (this.pipeFd !== undefined) {
      await this.directEntry(h, body);
      this.sums[key] = hash.digest('hex');
      return;
    }
    // A small file (most CRIU images) is read at once: a stream's open, reads and close are a
    // round trip each (~1 ms a file).
    if (body instanceof FileBody) body = body.size <= SMALL_FILE ? readPrefix(body.file, body.size) : body.stream();
    await this.givingOutputsError(
      new Promise<void>((resolve, reject) => {
        const sink = this.pack.entry(h, (err) => (err ? reject(err) : resolve()));
        // The output failing (ENOSPC, closed pipe) destroys the pack and this entry with it.
        (sink as unknown as Writable).on('error', (err) => {
          if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
          reject(err);
        });
        if (body === undefined) return (sink as unknown as Writable).end();
        if (Buffer.isBuffer(body)) {
          if (this.hashContent) hash.update(body);
          return sink.end(body);
        }
        if (this.hashContent) body.on('data', (b: Buffer) => hash.update(b));
        body.on('error', reject);
        body.pipe(sink as unknown as Writable);
      }),
    );
    this.sums[key] = hash.digest('hex');
  }

  /**
   * A member that fails because the output did (ENOSPC, a reader gone) fails with the output's
   * reason: the pack it destroyed only says "already finalized or destroyed".
   */
  private async givingOutputsError(p: Promise<void>): Promise<void> {
    try {
      await p;
    } catch (e) {
      throw await this.outputsError(e);
    }
  }

  /** The output's own failure if it failed (waiting for it briefly), else e. */
  private async outputsError(e: unknown): Promise<unknown> {
    const failed = await Promise.race([this.done.then(() => undefined, (z: Error) => z), new Promise<undefined>((r) => setTimeout(r, 2000))]);
    return failed ?? e;
  }

  /** Writes a member to zstd's pipe: its header, its bytes (a file's by sendfile), its padding. */
  private async directEntry(h: Header, body?: Readable | Buffer | FileBody): Promise<void> {
    const size = h.type === 'file' || h.type === 'contiguous-file' ? (h.size ?? 0) : 0;
    try {
      this.writeRaw(tarHeader(h));
      let n = 0;
      if (Buffer.isBuffer(body)) {
        this.writeRaw(body);
        n = body.length;
      } else if (body instanceof FileBody) {
        n = await body.sendTo(this.pipeFd!);
        this.rawBytes += n;
      } else if (body !== undefined) {
        for await (const b of body) {
          if (n + (b as Buffer).length > size) break;
          this.writeRaw(b as Buffer);
          n += (b as Buffer).length;
        }
      }
      if (n !== size) throw new Error(`${h.name} changed while it was archived (${n} bytes, not ${size})`);
      this.writeRaw(tarPadding(size));
    } catch (e) {
      if (body !== undefined && !Buffer.isBuffer(body) && !(body instanceof FileBody)) body.destroy();
      // A pipe zstd no longer reads (EPIPE): zstd's own reason (ENOSPC, say) is the one to give.
      throw await this.outputsError(e);
    }
  }

  private writeRaw(buf: Buffer): void {
    for (let off = 0; off < buf.length; ) off += fs.writeSync(this.pipeFd!, buf, off, buf.length - off);
    this.rawBytes += buf.length;
  }

  addBuffer(name: string, data: Buffer | string): Promise<void> {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    return this.entry({ name, size: buf.length, mode: 0o600, mtime: new Date(), type: 'file' }, buf);
  }

  addJson(name: string, v: unknown): Promise<void> {
    return this.addBuffer(name, JSON.stringify(v, null, 2) + '\n');
  }

  async addFile(name: string, file: string): Promise<void> {
    const fd = fs.openSync(file, 'r');
    try {
      const st = fs.fstatSync(fd);
      // Only the bytes stat saw: a file that grows meanwhile (the log of a container left
      // running with -R) must not overrun its header's size.
      await this.entry({ name, size: st.size, mode: st.mode & 0o7777, mtime: st.mtime, type: 'file' }, st.size === 0 ? Buffer.alloc(0) : new FileBody(file, fd, st.size));
    } finally {
      fs.closeSync(fd);
    }
  }

  /** A directory entry (mode 0700). */
  addDirEntry(name: string): Promise<void> {
    return this.entry({ name, type: 'directory', mode: 0o700, mtime: new Date() });
  }

  /** A directory of regular files (CRIU's images), recursively. */
  async addPlainDir(prefix: string, dir: string): Promise<void> {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      const name = `${prefix}/${e.name}`;
      if (e.isDirectory()) {
        await this.entry({ name: `${name}/`, type: 'directory', mode: 0o700, mtime: new Date() });
        await this.addPlainDir(name, p);
      } else if (e.isFile()) {
        await this.addFile(name, p);
      }
      // CRIU's images dir holds nothing else worth carrying: a `parent` link to the pre-dump
      // it builds on is not carried; the pre-dumps travel as parents/N and the importer links
      // them again.
    }
  }

  /** Any directory tree (rootfs diff, volume), read by GNU tar with ownership and xattrs. */
  async addTree(prefix: string, dir: string): Promise<void> {
    await this.entry({ name: `${prefix}/`, type: 'directory', mode: fs.statSync(dir).mode & 0o7777, mtime: new Date() });
    // An empty tree (a rootfs without changes, an empty volume) is its root entry alone: no tar.
    if (fs.readdirSync(dir).length === 0) return;
    const child = spawn('tar', ['-c', '-f', '-', '--numeric-owner', '--xattrs', '--xattrs-include=trusted.*', '--xattrs-include=user.*', '-C', dir, '.'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const ex = tarStream().extract();
    const consume = (async () => {
      for await (const e of ex) {
        const h = e.header;
        const rel = h.name.replace(/^\.\/?/, '');
        if (!rel) {
          e.resume();
          continue;
        }
        const pax = Object.fromEntries(Object.entries(h.pax ?? {}).filter(([k]) => k.startsWith('SCHILY.xattr.')));
        const out: Header = {
          name: `${prefix}/${rel}`,
          type: h.type,
          mode: h.mode,
          uid: h.uid,
          gid: h.gid,
          mtime: h.mtime,
          size: h.type === 'file' ? h.size : 0,
          linkname: h.type === 'link' ? `${prefix}/${(h.linkname ?? '').replace(/^\.\//, '')}` : h.linkname,
          devmajor: h.devmajor,
          devminor: h.devminor,
          ...(Object.keys(pax).length ? { pax } : {}),
        };
        if (h.type === 'file' || h.type === 'contiguous-file') await this.entry({ ...out, type: 'file' }, asReadable(e));
        else {
          e.resume();
          await this.entry(out);
        }
      }
    })();
    await Promise.all([pipeline(child.stdout, ex as unknown as Writable), consume]);
    const code = await exited;
    if (code !== 0) throw new FerryError('EARCHIVE', `reading ${dir} failed: ${tarError(stderr)}`);
  }

  /** Writes the checksums member and waits until every byte reached the output. */
  async finish(): Promise<WriteStats> {
    const members = Object.keys(this.sums).length;
    if (this.opts.checksums !== false) await this.addJson(CHECKSUMS_MEMBER, { algorithm: 'sha256', ...(this.hashContent ? {} : METADATA_ONLY), members: this.sums });
    if (this.pipeFd !== undefined) {
      try {
        this.writeRaw(TAR_END);
      } catch (e) {
        await this.done; // zstd's reason first
        throw e;
      }
      fs.closeSync(this.pipeFd);
      this.pipeFd = undefined;
    } else this.pack.finalize();
    await this.done;
    const bytes = this.outFd === undefined ? this.bytes : fs.fstatSync(this.outFd).size;
    this.closeOut();
    return { members, rawBytes: this.rawBytes, bytes };
  }

  /** Abandons the archive (the output is left incomplete; the caller deletes it). */
  abort(e: Error): void {
    if (!this.zstd) this.pack.destroy(e); // (a writer of zstd's pipe never used its pack)
    if (this.pipeFd !== undefined) fs.closeSync(this.pipeFd);
    this.pipeFd = undefined;
    this.zstd?.kill();
    this.closeOut();
  }

  private closeOut(): void {
    if (this.outFd !== undefined) fs.closeSync(this.outFd);
    this.outFd = undefined;
  }
}

// ------------------------------------------------------------------------------- reading

export interface ReadPolicy {
  /** Called with the first member's JSON; throw to refuse the archive before reading on. */
  onHeader(header: Record<string, unknown>): Promise<void> | void;
  /**
   * Reads an archive that does not start with Ferry's header (another engine's layout, told
   * apart by its content): the reader for its members, written below dest. Without it such an
   * archive is refused.
   */
  foreign?(dest: string): ForeignReader;
  /** Decompress a stream here rather than in a `zstd` child (a migration's archive; see CodecOptions). */
  inProcess?: boolean;
}

export interface ReadResult {
  header: Record<string, unknown>;
  members: number;
  compression: Compression;
  /** Top-level sections present: 'rootfs', 'volumes/NAME', 'checkpoint', ... */
  sections: Set<string>;
  /** Read by policy.foreign: another engine's layout. */
  foreign: boolean;
}

function bad(msg: string): FerryError {
  return new FerryError('EARCHIVE', `bad checkpoint archive: ${msg}; nothing was created`);
}

/** Checks an archive member's name; returns its normalized form. */
export function checkMemberName(name: string): string {
  if (!name || name.includes('\0')) throw bad(`a member has an empty or invalid name`);
  if (name.startsWith('/')) throw bad(`member "${name}" has an absolute path`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw bad(`member "${name}" leaves the archive's directory ("..")`);
  return parts.join('/');
}

type Kind = 'file' | 'checkpoint' | 'rootfs' | 'volume';

/**
 * Splits a member name into its section (rootfs, volumes/NAME, checkpoint, parents/N; in a pod
 * archive each under members/NAME/), the section's kind, and the rest.
 */
function sectionOf(name: string, pod: boolean): { section: string; kind: Kind; rest: string } {
  let parts = name.split('/');
  if (parts.length === 1 && [HEADER_MEMBER, CHECKSUMS_MEMBER].includes(name)) return { section: '', kind: 'file', rest: name };
  if (parts.length === 1 && pod && name === 'pod.json') return { section: '', kind: 'file', rest: name };
  let prefix = '';
  if (pod) {
    if (parts[0] !== 'members' || !parts[1] || !validName(parts[1]) || parts.length < 3) throw bad(`unexpected member "${name}"`);
    prefix = `members/${parts[1]}/`;
    parts = parts.slice(2);
  }
  if (parts.length === 1 && ['container.json', 'ctr.log'].includes(parts[0])) return { section: '', kind: 'file', rest: name };
  if (parts[0] === 'checkpoint' || parts[0] === 'rootfs') return { section: prefix + parts[0], kind: parts[0], rest: parts.slice(1).join('/') };
  // The pre-dumps a checkpoint builds on (pre-copy), oldest first: CRIU images too.
  if (parts[0] === 'parents' && /^[1-9][0-9]{0,2}$/.test(parts[1] ?? '')) return { section: `${prefix}parents/${parts[1]}`, kind: 'checkpoint', rest: parts.slice(2).join('/') };
  // A bind-mounted /dev/shm's contents (a container imported from Podman): a tree like a volume.
  if (parts[0] === 'devshm') return { section: prefix + 'devshm', kind: 'volume', rest: parts.slice(1).join('/') };
  if (parts[0] === 'volumes' && parts[1] && validName(parts[1])) return { section: `${prefix}volumes/${parts[1]}`, kind: 'volume', rest: parts.slice(2).join('/') };
  throw bad(`unexpected member "${name}"`);
}

/** One GNU tar extracting a tree section into its directory, fed entry by entry. */
class TreeSink {
  readonly pack = tarStream().pack();
  private readonly exited: Promise<void>;
  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const child = spawn('tar', ['-x', '-f', '-', '--numeric-owner', '--same-permissions', '--same-owner', '--xattrs', '--xattrs-include=*', '--no-overwrite-dir', '-C', dir], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    asReadable(this.pack).pipe(child.stdin);
    child.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve, reject) =>
      child.on('close', (code) => (code === 0 ? resolve() : reject(bad(`extracting ${path.basename(dir)} failed: ${tarError(stderr)}`)))),
    );
    this.exited.catch(() => undefined);
  }
  async finish(): Promise<void> {
    this.pack.finalize();
    await this.exited;
  }
}

/**
 * One tree of an archive (a rootfs diff, a volume's contents), checked entry by entry and
 * extracted by GNU tar into dir: no member below a symbolic link, hard links only to earlier
 * members of the same tree, only files, directories, links and (in a rootfs diff) overlay
 * whiteouts (0/0 character devices), no set-uid root file in a volume. Entry names are relative
 * to the tree; `label` prefixes them in messages.
 */
export class TreeExtract {
  private readonly symlinks = new Set<string>();
  private readonly seen = new Set<string>();
  private sink: TreeSink | undefined;
  constructor(
    private readonly dir: string,
    private readonly kind: 'rootfs' | 'volume',
    private readonly label: string,
  ) {}

  /** Adds one entry (h.name and a hard link's linkname relative to the tree); its bytes also go to hash. */
  async add(h: Header, body: Readable, hash?: Hash): Promise<void> {
    const rest = h.name === '' ? '' : checkMemberName(h.name); // '': the tree's root
    const name = `${this.label}/${rest}`;
    if (!rest) {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      body.resume();
      return;
    }
    // GNU tar starts with the first member below the root: an empty tree (a rootfs with no
    // changes, an empty volume) costs no process.
    const sink = (this.sink ??= new TreeSink(this.dir));
    for (let p = path.posix.dirname(rest); p !== '.'; p = path.posix.dirname(p)) {
      if (this.symlinks.has(p)) throw bad(`member "${name}" lies below the symbolic link "${this.label}/${p}"`);
    }
    let linkname = h.linkname;
    if (h.type === 'link') {
      const target = checkMemberName(h.linkname ?? '');
      if (!this.seen.has(target)) throw bad(`hard link "${name}" points outside its tree`);
      linkname = target;
      if (this.symlinks.has(target)) this.symlinks.add(rest); // a second name for a symlink is one too
    } else if (!['file', 'contiguous-file', 'directory', 'symlink', 'character-device'].includes(h.type ?? 'file')) {
      throw bad(`member "${name}" is a ${h.type}, which a checkpoint never holds`);
    }
    if (h.type === 'symlink') this.symlinks.add(rest);
    if (h.type === 'character-device' && (h.devmajor !== 0 || h.devminor !== 0 || this.kind !== 'rootfs')) {
      throw bad(`member "${name}" is a device node (only overlay whiteouts are allowed)`);
    }
    if ((h.mode ?? 0) & 0o6000 && h.uid === 0 && this.kind !== 'rootfs') throw bad(`member "${name}" is set-uid in a volume`);
    this.seen.add(rest);
    const pax = Object.fromEntries(Object.entries(h.pax ?? {}).filter(([k]) => k.startsWith('SCHILY.xattr.')));
    const out: Header = { ...h, name: rest, linkname, type: h.type === 'contiguous-file' ? 'file' : h.type, ...(Object.keys(pax).length ? { pax } : { pax: undefined }) };
    await new Promise<void>((resolve, reject) => {
      const s = sink.pack.entry(out, (err) => (err ? reject(err) : resolve()));
      if (hash) body.on('data', (b: Buffer) => hash.update(b));
      body.on('error', reject);
      body.pipe(s as unknown as Writable);
    });
  }

  /** Waits until GNU tar has written everything (it fails the whole tree if anything failed). */
  async finish(): Promise<void> {
    if (this.sink) await this.sink.finish();
    else fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
  }

  /** Abandons the extraction. */
  destroy(): void {
    this.sink?.pack.destroy();
  }
}

/**
 * An archive in another engine's layout (no Ferry header first, no checksums): readArchive
 * checks the names and hands each member here; finish() checks that the whole is complete and
 * returns what stands for the header.
 */
export interface ForeignReader {
  member(h: Header, body: Readable): Promise<void>;
  finish(): Promise<Record<string, unknown>>;
  destroy(): void;
}

/**
 * Reads an archive from input into dest (a new, empty directory), validating as it goes:
 * names (no absolute paths, no "..", only known sections), types (CRIU images are regular
 * files; trees may hold links, but never a member below a symlink, and hard links only to
 * earlier members of the same tree), and in the end every member's checksum. On any problem
 * it throws; the caller deletes dest.
 */
export async function readArchive(input: Readable | number, dest: string, policy: ReadPolicy): Promise<ReadResult> {
  // A descriptor is ours to close: at once when a decompressor process has its own copy, or by
  // the stream that reads it.
  // A file (a descriptor) that zstd can read itself, or a stream we read and hand on.
  let compression: Compression;
  let frameChecked: boolean; // a zstd stream whose frame carries a checksum of the content
  let src: Readable; // the archive's bytes as they come, or already decompressed (direct)
  let codec: Codec | undefined; // what decompresses src, unless a process reads the file itself
  let codecDone: Promise<void>;
  if (typeof input === 'number') {
    try {
      ({ compression, checked: frameChecked } = sniffFd(input));
    } catch (e) {
      fs.closeSync(input);
      throw bad(`it cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const direct = decompressorFromFd(compression, input);
    if (direct) {
      fs.closeSync(input);
      src = direct.stream;
      codecDone = direct.done;
    } else {
      src = fs.createReadStream('', { fd: input, start: 0, highWaterMark: IO_CHUNK });
      codec = decompressor(compression);
      codecDone = codec.done;
    }
  } else {
    const sniffed = await sniff(input);
    compression = sniffed.compression;
    frameChecked = sniffed.checked;
    src = sniffed.stream;
    codec = decompressor(compression, undefined, { inProcess: policy.inProcess });
    codecDone = codec.done;
  }
  const ex = tarStream().extract();
  const sums: Record<string, string> = {};
  let header: Record<string, unknown> | undefined;
  let checksums: Record<string, string> | undefined;
  const trees = new Map<string, TreeExtract>();
  const sections = new Set<string>();
  let members = 0;
  let podLayout = false;
  let foreign: ForeignReader | undefined;
  // Whether members' bytes are in their checksums: until the header says format 2, they are.
  let hashContent = true;

  const consume = (async () => {
    for await (const e of ex) {
      const h = e.header;
      const name = checkMemberName(h.name);
      if (members === 0 && name !== HEADER_MEMBER && policy.foreign) foreign = policy.foreign(dest);
      if (foreign) {
        members++;
        await foreign.member({ ...h, name }, asReadable(e));
        continue;
      }
      if (checksums) throw bad(`member "${name}" follows the checksums`);
      if (sums[name] !== undefined) throw bad(`member "${name}" appears twice`);
      const first = members === 0;
      members++;
      const hash = memberHash(h);
      if (first && name !== HEADER_MEMBER) throw bad(`it does not start with ${HEADER_MEMBER} (not a ferry checkpoint archive?)`);
      const { section, kind, rest } = sectionOf(name, podLayout);
      if (section) sections.add(section);

      if (kind === 'file') {
        if (h.type !== 'file') throw bad(`member "${name}" is not a regular file`);
        if ((h.size ?? 0) > 64 * 1024 * 1024 && path.posix.basename(name) !== 'ctr.log') throw bad(`member "${name}" is implausibly large`);
        if (name === HEADER_MEMBER || name === CHECKSUMS_MEMBER) {
          const buf = await readAll(asReadable(e));
          let doc: Record<string, unknown>;
          try {
            doc = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
          } catch {
            throw bad(`${name} is not valid JSON`);
          }
          if (name === HEADER_MEMBER) {
            header = doc;
            podLayout = doc.kind === POD_ARCHIVE_KIND;
            if (doc.format === ZSTD_CHECKED_FORMAT) {
              // Its bytes are vouched for by zstd's frame checksum alone: there must be one.
              if (compression !== 'zstd' || !frameChecked) throw bad(`it is format ${ZSTD_CHECKED_FORMAT}, whose content only zstd's checksum protects, but it is not a zstd stream with a checksum (altered?)`);
              hashContent = false;
            }
            if (hashContent) hash.update(buf);
            await policy.onHeader(doc);
          } else {
            const contentCovered = doc.covers !== 'metadata';
            if (doc.algorithm !== 'sha256' || contentCovered !== hashContent) throw bad(`${CHECKSUMS_MEMBER} does not fit the archive's format (altered?)`);
            checksums = (doc.members ?? {}) as Record<string, string>;
            continue; // not part of its own checksum list
          }
        } else {
          fs.mkdirSync(path.dirname(path.join(dest, name)), { recursive: true, mode: 0o700 });
          await writeFile(asReadable(e), path.join(dest, name), hashContent ? hash : undefined, 0o600);
        }
      } else if (kind === 'checkpoint') {
        if (!rest && h.type !== 'directory') throw bad(`member "${name}" should be a directory of CRIU images`);
        if (h.type === 'directory') {
          fs.mkdirSync(path.join(dest, name), { recursive: true, mode: 0o700 });
          e.resume();
        } else if (h.type === 'file') {
          fs.mkdirSync(path.dirname(path.join(dest, name)), { recursive: true, mode: 0o700 });
          await writeFile(asReadable(e), path.join(dest, name), hashContent ? hash : undefined, 0o600);
        } else {
          throw bad(`member "${name}" is a ${h.type}; CRIU images are regular files`);
        }
      } else {
        // rootfs/ or volumes/NAME/: a tree that GNU tar extracts.
        let tree = trees.get(section);
        if (!tree) {
          tree = new TreeExtract(path.join(dest, section), kind === 'rootfs' ? 'rootfs' : 'volume', section);
          trees.set(section, tree);
        }
        let linkname = h.linkname;
        if (h.type === 'link') {
          const t = sectionOf(checkMemberName(h.linkname ?? ''), podLayout);
          if (t.section !== section) throw bad(`hard link "${name}" points outside its tree`);
          linkname = t.rest;
        }
        await tree.add({ ...h, name: rest, linkname }, asReadable(e), hashContent ? hash : undefined);
      }
      sums[name] = hash.digest('hex');
    }
  })();

  try {
    const piped = codec ? pipeline(src, codec.stream, ex as unknown as Writable) : pipeline(src, ex as unknown as Writable);
    await Promise.all([piped, consume, codecDone]);
  } catch (e) {
    for (const t of trees.values()) t.destroy();
    foreign?.destroy();
    // Stop reading: nothing (a decompressor, stdin) may keep ferry alive after a refusal.
    for (const s of [ex as unknown as Readable, codec?.stream, src, typeof input === 'number' ? undefined : input]) s?.destroy();
    if (e instanceof FerryError) throw e;
    throw bad(`it is corrupt or truncated (${(e as Error).message})`);
  } finally {
    await Promise.allSettled([...trees.values()].map((t) => t.finish()));
  }
  for (const t of trees.values()) await t.finish();
  if (foreign) return { header: await foreign.finish(), members, compression, sections, foreign: true };
  if (!header) throw bad(members ? 'it is empty' : 'it is empty (or not a tar archive)');
  if (!checksums) throw bad('it is truncated (no checksums at the end)');
  for (const [name, sum] of Object.entries(sums)) {
    if (name === CHECKSUMS_MEMBER) continue;
    if (checksums[name] === undefined) throw bad(`member "${name}" is not in the checksum list (tampered?)`);
    if (checksums[name] !== sum) throw bad(`member "${name}" does not match its checksum (corrupt or tampered)`);
  }
  for (const name of Object.keys(checksums)) if (sums[name] === undefined) throw bad(`member "${name}" is missing (truncated?)`);
  return { header, members, compression, sections, foreign: false };
}

/** GNU tar's first real complaint (its last line is only "Exiting with failure status"). */
function tarError(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l && !/Exiting with failure status/.test(l));
  return lines[0] ?? (stderr.trim() || 'tar failed');
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of s) {
    parts.push(b as Buffer);
    n += (b as Buffer).length;
    if (n > 16 * 1024 * 1024) throw bad('a metadata member is too large');
  }
  return Buffer.concat(parts);
}

async function writeFile(s: Readable, file: string, hash: Hash | undefined, mode: number): Promise<void> {
  // Written synchronously as each chunk comes (no round trip through a thread pool per chunk:
  // ~9% less time for a 256 MiB import's archive). 'wx': never write through something that already exists (a link planted earlier).
  const fd = fs.openSync(file, 'wx', mode);
  try {
    for await (const b of s) {
      hash?.update(b as Buffer);
      for (let off = 0; off < (b as Buffer).length; ) off += fs.writeSync(fd, b as Buffer, off);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Runs the archive's code once on a tiny archive, written and read back below dir (removed
 * after): a migration calls it before the freeze, so that loading zlib and tar-stream and the
 * first, slow runs of this code (5-15 ms in a fresh process) are not part of the frozen window.
 */
export async function warmUp(dir: string, o: { write?: boolean; read?: boolean } = { write: true, read: true }): Promise<void> {
  const { PassThrough } = await import('node:stream');
  fs.mkdirSync(path.join(dir, 'src', 'checkpoint'), { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(path.join(dir, 'src', 'checkpoint', 'warm.img'), Buffer.alloc(512, 1));
    const pipe = new PassThrough();
    const chunks: Buffer[] = [];
    pipe.on('data', (b: Buffer) => chunks.push(b));
    const ended = new Promise((resolve) => pipe.on('end', resolve));
    const w = new ArchiveWriter(pipe, 'zstd', { inProcess: true });
    await w.addJson(HEADER_MEMBER, { format: w.format, kind: 'warm-up' });
    await w.addPlainDir('checkpoint', path.join(dir, 'src', 'checkpoint'));
    fs.mkdirSync(path.join(dir, 'src', 'empty'), { mode: 0o700 });
    await w.addTree('rootfs', path.join(dir, 'src', 'empty'));
    await w.finish();
    await ended;
    if (o.read === false) return;
    const input = new PassThrough();
    const reading = readArchive(input, path.join(dir, 'dest'), { onHeader: () => undefined, inProcess: true });
    input.end(Buffer.concat(chunks));
    await reading;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
