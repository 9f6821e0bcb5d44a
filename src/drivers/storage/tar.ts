/**
 * An image layer is untrusted input. LayerSanitizer reads a layer's tar stream, checks every
 * member, turns OCI whiteouts into overlay ones, and writes a new, normalised tar stream that
 * says exactly what was checked (GNU tar then writes it into the layer's own directory):
 *
 * - names: no absolute paths, no `..`, no NUL; `./` prefixes dropped;
 * - nothing is written through a symlink made earlier in the layer, and hard links name a
 *   regular file made earlier in the layer (so no link leads out of the layer's directory);
 * - `.wh.NAME` becomes a character device 0/0 (overlay's whiteout), `.wh..wh..opq` sets
 *   `trusted.overlay.opaque=y` on its directory;
 * - device nodes only when running as root; member types other than files, dirs, links,
 *   devices and FIFOs (sparse, multi-volume, ...) are refused;
 * - extended attributes: only `user.*` and `security.capability` pass (no `trusted.overlay.*`).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { FerryError } from '../../lib/errors.js';

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export interface TarEntry {
  path: string; // normalised, relative, '' for the layer's root
  type: string; // '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Record<string, string>;
}

function readString(b: Buffer, off: number, len: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end === -1 || end > off + len ? off + len : end);
}

function readNumber(b: Buffer, off: number, len: number): number {
  if (b[off]! & 0x80) {
    // base-256 (GNU): big-endian, first byte's top bit is the marker.
    let v = b[off]! & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[off + i]!;
    if (!Number.isSafeInteger(v)) throw bad('a number in a tar header is out of range');
    return v;
  }
  const s = readString(b, off, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw bad('a tar header has a malformed number');
  return parseInt(s, 8);
}

/** The reason alone: the layer store says which layer and that nothing was stored. */
function bad(why: string): FerryError {
  return new FerryError('EARCHIVE', why);
}

function checksumOk(h: Buffer): boolean {
  const want = readNumber(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  return sum === want;
}

/** Normalises a member name; refuses absolute names and `..`. Returns '' for the root. */
export function normalizeMemberPath(raw: string): string {
  if (raw.includes('\0')) throw bad(`member name ${JSON.stringify(raw)} holds a NUL byte`);
  if (raw.startsWith('/')) throw bad(`member ${JSON.stringify(raw)} has an absolute path`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw bad(`member ${JSON.stringify(raw)} leads out of the layer ('..')`);
  return parts.join('/');
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp === -1) break;
    const len = parseInt(data.toString('ascii', i, sp), 10);
    if (!(len > 0) || i + len > data.length) throw bad('a pax header is malformed');
    const rec = data.toString('utf8', sp + 1, i + len - 1); // without the trailing newline
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

// ---------------------------------------------------------------- writing

function writeString(b: Buffer, off: number, len: number, s: string): void {
  b.write(s, off, len, 'utf8');
}

function writeOctal(b: Buffer, off: number, len: number, v: number): void {
  writeString(b, off, len, v.toString(8).padStart(len - 1, '0'));
}

function fitsOctal(v: number, len: number): boolean {
  return v >= 0 && v < 8 ** (len - 1);
}

function header(name: string, type: string, e: { mode: number; uid: number; gid: number; mtime: number; size: number; linkname: string; devmajor: number; devminor: number }): Buffer {
  const h = Buffer.alloc(BLOCK);
  writeString(h, 0, 100, name);
  writeOctal(h, 100, 8, e.mode & 0o7777);
  writeOctal(h, 108, 8, fitsOctal(e.uid, 8) ? e.uid : 0);
  writeOctal(h, 116, 8, fitsOctal(e.gid, 8) ? e.gid : 0);
  writeOctal(h, 124, 12, fitsOctal(e.size, 12) ? e.size : 0);
  writeOctal(h, 136, 12, fitsOctal(e.mtime, 12) ? Math.max(0, Math.floor(e.mtime)) : 0);
  h.write(type, 156, 1, 'ascii');
  writeString(h, 157, 100, e.linkname);
  h.write('ustar\0', 257, 6, 'ascii');
  h.write('00', 263, 2, 'ascii');
  writeOctal(h, 329, 8, e.devmajor);
  writeOctal(h, 337, 8, e.devminor);
  h.fill(32, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  writeString(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

function pad(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK;
}

/** The header block(s) of one member: a pax header first when a field does not fit ustar. */
export function entryHeaders(e: TarEntry): Buffer {
  const name = e.path === '' ? './' : e.type === '5' ? `${e.path}/` : e.path;
  const pax: string[] = [];
  const ascii = (s: string): boolean => /^[\x20-\x7e]*$/.test(s);
  if (Buffer.byteLength(name) > 99 || !ascii(name)) pax.push(paxRecord('path', name));
  if (Buffer.byteLength(e.linkname) > 99 || !ascii(e.linkname)) pax.push(paxRecord('linkpath', e.linkname));
  if (!fitsOctal(e.size, 12)) pax.push(paxRecord('size', String(e.size)));
  if (!fitsOctal(e.uid, 8)) pax.push(paxRecord('uid', String(e.uid)));
  if (!fitsOctal(e.gid, 8)) pax.push(paxRecord('gid', String(e.gid)));
  for (const [k, v] of Object.entries(e.xattrs)) pax.push(paxRecord(`SCHILY.xattr.${k}`, v));
  const main = header(ascii(name) ? name.slice(0, 99) : 'pax-named', e.type, e);
  if (!pax.length) return main;
  const data = Buffer.from(pax.join(''));
  const ph = header('PaxHeader', 'x', { mode: 0o644, uid: 0, gid: 0, mtime: 0, size: data.length, linkname: '', devmajor: 0, devminor: 0 });
  return Buffer.concat([ph, data, Buffer.alloc(pad(data.length)), main]);
}

// ---------------------------------------------------------------- the sanitizer

const ALLOWED_XATTR = (k: string): boolean => k.startsWith('user.') || k === 'security.capability';

export interface SanitizeOptions {
  /** Device nodes are allowed (root only: they are refused otherwise). */
  allowDevices: boolean;
  /** Turn `.wh.` names into overlay whiteouts (layers from images); false: refuse none, keep names. */
  whiteouts: boolean;
}

type State = 'header' | 'data' | 'meta' | 'pad' | 'end';

export class LayerSanitizer extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private state: State = 'header';
  private remaining = 0; // data bytes left of the current member
  private padLeft = 0;
  private metaKind = ''; // 'x' | 'g' | 'L' | 'K'
  private metaChunks: Buffer[] = [];
  private pax: Record<string, string> = {};
  private longName: string | undefined;
  private longLink: string | undefined;
  private passData = false;
  private readonly files = new Set<string>();
  private readonly symlinks = new Set<string>();
  private readonly dirs = new Map<string, TarEntry>();
  private readonly opaque = new Set<string>();
  /** Members seen (for tests and messages). */
  members = 0;

  constructor(private readonly o: SanitizeOptions) {
    super();
  }

  /** What one input chunk produced: handed on as one buffer (one write to tar, not one per member). */
  private pending: Buffer[] = [];

  private out(b: Buffer): void {
    this.pending.push(b);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      if (this.buf.length && this.buf.length < BLOCK && chunk.length > BLOCK - this.buf.length) {
        // A header cut by the chunk's start: complete that one block (not a copy of the chunk).
        const need = BLOCK - this.buf.length;
        this.buf = Buffer.concat([this.buf, chunk.subarray(0, need)]);
        this.consume();
        chunk = chunk.subarray(need);
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.consume();
      const p = this.pending;
      this.pending = [];
      if (p.length) this.push(p.length === 1 ? p[0] : Buffer.concat(p));
      cb();
    } catch (e) {
      this.pending = [];
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.state !== 'end' && !(this.state === 'header' && this.buf.length === 0 && this.members > 0)) {
      cb(bad(this.members === 0 ? 'it is not a tar archive' : 'the tar stream is truncated'));
      return;
    }
    // Opaque markers become a directory entry carrying the xattr, after the directory's own.
    for (const d of this.opaque) {
      const prev = this.dirs.get(d);
      const e: TarEntry = { path: d, type: '5', mode: prev?.mode ?? 0o755, uid: prev?.uid ?? 0, gid: prev?.gid ?? 0, mtime: prev?.mtime ?? 0, size: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: { ...(prev?.xattrs ?? {}), 'trusted.overlay.opaque': 'y' } };
      this.push(entryHeaders(e));
    }
    this.push(Buffer.alloc(BLOCK * 2));
    cb();
  }

  private consume(): void {
    for (;;) {
      if (this.state === 'end') {
        this.buf = Buffer.alloc(0); // trailing zero blocks / padding: ignored
        return;
      }
      if (this.state === 'data' || this.state === 'meta') {
        if (this.remaining > 0) {
          if (!this.buf.length) return;
          const n = Math.min(this.remaining, this.buf.length);
          const part = this.buf.subarray(0, n);
          if (this.state === 'meta') this.metaChunks.push(part);
          else if (this.passData) this.out(part); // a view: the upstream buffer is never reused
          this.buf = this.buf.subarray(n);
          this.remaining -= n;
          if (this.remaining > 0) return;
        }
        if (this.state === 'meta') this.endMeta();
        else if (this.passData && this.padLeft) this.out(Buffer.alloc(this.padLeft)); // our output pads the same
        this.state = 'pad';
      }
      if (this.state === 'pad') {
        const n = Math.min(this.padLeft, this.buf.length);
        this.buf = this.buf.subarray(n);
        this.padLeft -= n;
        if (this.padLeft > 0) return;
        this.state = 'header';
      }
      if (this.buf.length < BLOCK) return;
      const h = this.buf.subarray(0, BLOCK);
      this.buf = this.buf.subarray(BLOCK);
      if (h.equals(ZERO_BLOCK)) {
        this.state = 'end';
        continue;
      }
      this.onHeader(h);
    }
  }

  private endMeta(): void {
    const data = Buffer.concat(this.metaChunks);
    this.metaChunks = [];
    if (this.metaKind === 'x') this.pax = { ...this.pax, ...parsePax(data) };
    else if (this.metaKind === 'L') this.longName = readString(data, 0, data.length);
    else if (this.metaKind === 'K') this.longLink = readString(data, 0, data.length);
    // 'g' (global pax): only comments in practice; ignored.
  }

  private onHeader(h: Buffer): void {
    let sumOk = false;
    try {
      sumOk = checksumOk(h);
    } catch {
      sumOk = false;
    }
    if (!sumOk) throw bad(this.members === 0 ? 'it is not a tar archive' : 'a tar header checksum is wrong (corrupt layer)');
    const type = String.fromCharCode(h[156]!) === '\0' ? '0' : String.fromCharCode(h[156]!);
    let size = readNumber(h, 124, 12);
    if (this.pax.size !== undefined) size = Number(this.pax.size);
    if (!Number.isSafeInteger(size) || size < 0) throw bad('a member has an invalid size');
    this.padLeft = pad(size);
    this.remaining = size;
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > 1 << 20) throw bad('a tar metadata header is too large');
      this.metaKind = type;
      this.state = 'meta';
      return;
    }
    this.members++;
    const magic = h.toString('ascii', 257, 262);
    let name = readString(h, 0, 100);
    const prefix = magic === 'ustar' ? readString(h, 345, 155) : '';
    if (prefix) name = `${prefix}/${name}`;
    if (this.longName !== undefined) name = this.longName;
    if (this.pax.path !== undefined) name = this.pax.path;
    let linkname = readString(h, 157, 100);
    if (this.longLink !== undefined) linkname = this.longLink;
    if (this.pax.linkpath !== undefined) linkname = this.pax.linkpath;
    const xattrs: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.pax)) {
      if (k.startsWith('GNU.sparse')) throw bad(`member ${JSON.stringify(name)} is a sparse file (unsupported)`);
      if (k.startsWith('SCHILY.xattr.') && ALLOWED_XATTR(k.slice(13))) xattrs[k.slice(13)] = v;
    }
    const num = (k: string, fallback: number): number => {
      const v = this.pax[k];
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw bad(`member ${JSON.stringify(name)} has an invalid ${k}`);
      return Math.floor(n);
    };
    const e: TarEntry = {
      path: normalizeMemberPath(name),
      type: type === '7' ? '0' : type,
      mode: readNumber(h, 100, 8),
      uid: num('uid', readNumber(h, 108, 8)),
      gid: num('gid', readNumber(h, 116, 8)),
      mtime: num('mtime', readNumber(h, 136, 12)),
      size,
      linkname,
      devmajor: type === '3' || type === '4' ? readNumber(h, 329, 8) : 0,
      devminor: type === '3' || type === '4' ? readNumber(h, 337, 8) : 0,
      xattrs,
    };
    this.pax = {};
    this.longName = undefined;
    this.longLink = undefined;
    this.state = 'data';
    this.onEntry(e);
  }

  private underSymlink(p: string): string | undefined {
    let i = p.indexOf('/');
    while (i !== -1) {
      const anc = p.slice(0, i);
      if (this.symlinks.has(anc)) return anc;
      i = p.indexOf('/', i + 1);
    }
    return undefined;
  }

  private onEntry(e: TarEntry): void {
    const shown = JSON.stringify(e.path);
    if (!'0123456'.includes(e.type) || e.type.length !== 1) throw bad(`member ${shown} has an unsupported type '${e.type}'`);
    const via = this.underSymlink(e.path);
    if (via !== undefined) throw bad(`member ${shown} would be written through the symlink ${JSON.stringify(via)}`);
    this.passData = false;
    if (e.type !== '0') {
      if (e.size !== 0 && e.type !== '1') throw bad(`member ${shown} has data but is not a regular file`);
      // A hard link's size is 0 in practice; its data (if any) is skipped.
      if (e.type === '1') e.size = 0;
    }
    if (e.path === '') return; // the layer's root: ours
    const base = e.path.slice(e.path.lastIndexOf('/') + 1);
    const dir = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '';
    if (this.o.whiteouts && base.startsWith('.wh.')) {
      if (base === '.wh..wh..opq') {
        this.opaque.add(dir);
        return;
      }
      if (base.startsWith('.wh..wh.')) return; // aufs bookkeeping
      const target = (dir ? `${dir}/` : '') + base.slice(4);
      normalizeMemberPath(target);
      if (!this.o.allowDevices) throw bad(`whiteout ${shown} needs a device node, which only root can make: run as root`);
      this.forget(target);
      this.out(entryHeaders({ ...e, path: target, type: '3', mode: 0, size: 0, linkname: '', devmajor: 0, devminor: 0, xattrs: {} }));
      return;
    }
    if ((e.type === '3' || e.type === '4') && !this.o.allowDevices) throw bad(`member ${shown} is a device node, which only root may unpack`);
    if (e.type === '1') {
      const target = normalizeMemberPath(e.linkname);
      if (!this.files.has(target)) throw bad(`hard link ${shown} points to ${JSON.stringify(e.linkname)}, which is not a file earlier in the layer`);
      e.linkname = target;
    }
    if (e.type === '2' && e.linkname.includes('\0')) throw bad(`symlink ${shown} has a NUL byte in its target`);
    // A directory replaced by something else: what was made below it is gone (a later hard
    // link must not name it, since the path may now lead through a symlink).
    if (this.dirs.has(e.path) && e.type !== '5') this.forgetBelow(e.path);
    this.forget(e.path);
    if (e.type === '0' || e.type === '1') this.files.add(e.path);
    else if (e.type === '2') this.symlinks.add(e.path);
    else if (e.type === '5') this.dirs.set(e.path, e);
    this.out(entryHeaders(e));
    this.passData = e.type === '0' && e.size > 0;
  }

  private forgetBelow(dir: string): void {
    const prefix = `${dir}/`;
    for (const set of [this.files, this.symlinks]) for (const p of set) if (p.startsWith(prefix)) set.delete(p);
    for (const p of this.dirs.keys()) if (p.startsWith(prefix)) this.dirs.delete(p);
  }

  /** A later member replaces an earlier one of the same name. */
  private forget(p: string): void {
    this.files.delete(p);
    this.symlinks.delete(p);
    this.dirs.delete(p);
  }
}
