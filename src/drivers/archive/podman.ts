/**
 * Podman's checkpoint archive (`podman container checkpoint --export`), read and written; and
 * the Kubernetes checkpoint archives CRI-O and containerd write for the kubelet, read in the same
 * pass (the same layout, from libpod's: see below for what differs).
 *
 *   config.dump            libpod's ContainerConfig (JSON)
 *   spec.dump              the container's OCI runtime spec (JSON)
 *   network.status         the network status per network (JSON; null without a network)
 *   stats-dump             CRIU's dump statistics
 *   ctr.log                the container's log (k8s-file)
 *   criu-restore.conf      a CRIU configuration for Podman's runc (Ferry's older exports; now in artifacts/)
 *   checkpoint/...         CRIU's images
 *   rootfs-diff.tar        files added or changed in the container's root filesystem (a tar)
 *   deleted.files          paths deleted from it (a JSON array)
 *   volumes/NAME.tar       each named volume's contents (a tar)
 *   devshm-checkpoint.tar  the container's private /dev/shm (a tar)
 *   artifacts/             libpod's per-container artifacts (not used)
 *   criu-restore.conf      CRIU options for the restore (Ferry's export writes one; not used)
 *
 * The format has no header and no checksums: it is told apart by content (config.dump and
 * spec.dump as libpod writes them), and read with the same checks as Ferry's own archives: the
 * member names (readArchive), only known members, CRIU images as regular files, and the inner
 * tars checked entry by entry like Ferry's trees (TreeExtract) while GNU tar extracts them:
 *
 *   rootfs-diff.tar, deleted.files -> rootfs/  (an overlay upper dir: deletions are whiteouts)
 *   volumes/NAME.tar               -> volumes/NAME/
 *   devshm-checkpoint.tar          -> devshm/
 *   checkpoint/                    -> checkpoint/
 *   config.dump, spec.dump, network.status, stats-dump, ctr.log -> themselves
 *
 * Kubernetes' archives (CRI-O's and containerd's CheckpointContainer) differ in:
 *   - config.dump: checkpointctl's reduced ContainerConfig (id, name, rootfsImage,
 *     rootfsImageRef, rootfsImageName, runtime, createdTime, checkpointedTime), not libpod's;
 *   - spec.dump's io.container.manager annotation: "cri-o" for CRI-O, absent for containerd
 *     (checkpointctl: "libpod" is Podman, "cri-o" CRI-O, anything else containerd);
 *   - containerd adds status.dump (the CRI ContainerStatus, which its restore requires), status,
 *     dump.log and container.log, and writes its members in name order (checkpoint/ first);
 *   - containerd's rootfs-diff.tar is its rw layer as an OCI layer: gzip-compressed, deletions
 *     as .wh. whiteouts (no deleted.files). CRI-O's is Podman's (a plain tar + deleted.files).
 * So the dump files may come after the large members; the header is then checked when they
 * come (or at the end), still before anything is created.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import type * as Zlib from 'node:zlib';
import { PassThrough, Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../../lib/errors.js';
import { validName } from '../../lib/ids.js';
import { tarStream, zlib } from '../../lib/lazy.js';
import { HEADER_MEMBER, checkMemberName, TreeExtract, type ForeignReader, type Header } from './archive.js';

export const PODMAN_KIND = 'podman-checkpoint';
/** Members holding JSON metadata: read whole, so they are kept small. */
const METADATA = ['config.dump', 'spec.dump', 'network.status', 'deleted.files', 'stats-dump', 'status.dump', 'status'];
/** Logs: the container's (kept as ctr.log), CRIU's dump.log (not needed). */
const LOGS = ['ctr.log', 'container.log', 'dump.log'];
const METADATA_MAX = 16 * 1024 * 1024;
/** The CRIU configuration file a Podman-layout archive written by Ferry carries (podman-export.ts). */
export const CRIU_RESTORE_CONF = 'criu-restore.conf';

const asReadable = (s: unknown): Readable => s as Readable;

function bad(msg: string): FerryError {
  return new FerryError('EARCHIVE', `bad checkpoint archive: ${msg}; nothing was created`);
}

/** The engine that wrote a Podman-layout archive, as checkpointctl names it. */
export type CheckpointEngine = 'Podman' | 'CRI-O' | 'containerd';

/**
 * Which engine wrote a checkpoint, from spec.dump's io.container.manager annotation, as
 * checkpointctl tells: "libpod" Podman, "cri-o" CRI-O, anything else containerd (which sets none).
 */
export function checkpointEngine(spec: Record<string, unknown>): CheckpointEngine {
  const a = spec.annotations;
  const m = a && typeof a === 'object' ? (a as Record<string, unknown>)['io.container.manager'] : undefined;
  return m === 'libpod' ? 'Podman' : m === 'cri-o' ? 'CRI-O' : 'containerd';
}

/** What a Podman-layout archive's header stands for: its config.dump and spec.dump, once both are read. */
export interface PodmanHeader {
  kind: typeof PODMAN_KIND;
  engine: CheckpointEngine;
  config: Record<string, unknown>;
  spec: Record<string, unknown>;
}

/**
 * True when config.dump and spec.dump are what libpod writes: a container's config with its ID,
 * name and image, and an OCI spec (checkpointctl tells Podman's apart by the spec's
 * io.container.manager annotation; Podman's own restore needs only the config).
 */
export function isPodmanDump(config: unknown, spec: unknown): boolean {
  if (!config || typeof config !== 'object' || !spec || typeof spec !== 'object') return false;
  const c = config as Record<string, unknown>;
  const s = spec as Record<string, unknown>;
  return typeof c.id === 'string' && typeof c.name === 'string' && (typeof c.rootfsImageName === 'string' || typeof c.rootfs === 'string') && typeof s.process === 'object' && s.process !== null;
}

/**
 * Reads a Podman archive's members into dest. onHeader runs as soon as config.dump and
 * spec.dump are in (Podman writes them before the CRIU images and the file system), so an
 * archive this host cannot restore is refused before the large members are read.
 */
export class PodmanReader implements ForeignReader {
  private readonly seen = new Set<string>();
  private readonly docs = new Map<string, unknown>();
  private headerDone = false;
  private rootfs: TreeExtract | undefined;
  private readonly trees: TreeExtract[] = [];
  /** deleted.files, applied once the rootfs diff is in (at the end). */
  private pendingDeleted: unknown;
  /** Whether rootfs-diff.tar was an OCI layer (gzip, .wh. whiteouts: containerd's). */
  private layerDiff = false;

  /**
   * The members may come in any order (Podman's archive: the dump files first; containerd's:
   * name order; a checkpoint image's layer: any), so nothing waits for the header; it is
   * checked as soon as both dump files are in, or at the end.
   */
  constructor(
    private readonly dest: string,
    private readonly onHeader: (h: PodmanHeader) => Promise<void> | void,
  ) {}

  private async header(): Promise<void> {
    if (this.headerDone) return;
    const config = this.docs.get('config.dump');
    const spec = this.docs.get('spec.dump');
    if (config === undefined || spec === undefined) {
      throw bad(`it does not start with ${HEADER_MEMBER} and is not a Podman checkpoint either (no ${config === undefined ? 'config.dump' : 'spec.dump'})`);
    }
    if (!isPodmanDump(config, spec)) throw bad('its config.dump and spec.dump are not what Podman, CRI-O or containerd write (not a checkpoint archive?)');
    this.headerDone = true;
    const s = spec as Record<string, unknown>;
    await this.onHeader({ kind: PODMAN_KIND, engine: checkpointEngine(s), config: config as Record<string, unknown>, spec: s });
  }

  async member(h: Header, body: Readable): Promise<void> {
    const name = h.name; // already checked and normalized by readArchive
    if (name === CRIU_RESTORE_CONF) {
      // The CRIU configuration Ferry's own Podman-layout export adds for Podman's runc: not
      // needed here, never extracted.
      if (h.type !== 'file' || (h.size ?? 0) > METADATA_MAX) throw bad(`member "${name}" is not a small regular file`);
      body.resume();
      return;
    }
    if (name === '' || name === 'artifacts' || name.startsWith('artifacts/')) {
      // The bundle dir itself, and libpod's artifacts: not needed, never extracted.
      if (!['directory', 'file'].includes(h.type ?? 'file')) throw bad(`member "${name}" is a ${h.type}`);
      body.resume();
      return;
    }
    if (name === 'criu-restore.conf') {
      // CRIU options for Podman's restore (Ferry's Podman-layout export writes one): not needed here.
      if (h.type !== 'file' || (h.size ?? 0) > 64 * 1024) throw bad(`member "${name}" is not a small regular file`);
      body.resume();
      return;
    }
    if (this.seen.has(name)) throw bad(`member "${name}" appears twice`);
    this.seen.add(name);
    const top = name.split('/')[0]!;
    if (METADATA.includes(name)) {
      if (h.type !== 'file') throw bad(`member "${name}" is not a regular file`);
      if ((h.size ?? 0) > METADATA_MAX) throw bad(`member "${name}" is implausibly large`);
      const buf = await readAll(body);
      if (name === 'stats-dump') {
        fs.writeFileSync(path.join(this.dest, name), buf, { mode: 0o600, flag: 'wx' });
        return;
      }
      let doc: unknown;
      try {
        doc = JSON.parse(buf.toString('utf8'));
      } catch {
        throw bad(`${name} is not valid JSON`);
      }
      this.docs.set(name, doc);
      if (name === 'deleted.files') this.pendingDeleted = doc;
      else if (name === 'status') return; // containerd's own status file: not needed
      else fs.writeFileSync(path.join(this.dest, name), buf, { mode: 0o600, flag: 'wx' });
      if (this.docs.has('config.dump') && this.docs.has('spec.dump')) await this.header();
      return;
    }
    if (name === 'devshm-checkpoint.tar') {
      // Podman writes it first, before the dump files.
      await this.innerTar(h, body, this.tree('devshm', 'volume', name));
      return;
    }
    // Podman writes the large members after the two dump files; containerd writes its members
    // in name order (checkpoint/ first), and a checkpoint image's layer in any order: the
    // header is then checked as soon as both dump files are in, or at the end.
    if (LOGS.includes(name)) {
      if (h.type !== 'file') throw bad(`member "${name}" is not a regular file`);
      if (name === 'dump.log' || this.seen.has(name === 'ctr.log' ? 'container.log' : 'ctr.log')) body.resume();
      else await writeFile(body, path.join(this.dest, 'ctr.log'));
    } else if (top === 'checkpoint') {
      const file = path.join(this.dest, name);
      if (h.type === 'directory') {
        fs.mkdirSync(file, { recursive: true, mode: 0o700 });
        body.resume();
      } else if (h.type === 'file' && name !== 'checkpoint') {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        await writeFile(body, file);
      } else {
        throw bad(`member "${name}" is a ${h.type}; CRIU images are regular files`);
      }
    } else if (name === 'rootfs-diff.tar') {
      await this.innerTar(h, body, (this.rootfs = this.tree('rootfs', 'rootfs', name)), true);
    } else if (top === 'volumes' && name !== 'volumes') {
      const m = /^volumes\/([^/]+)\.tar$/.exec(name);
      if (!m || !validName(m[1]!)) throw bad(`unexpected member "${name}"`);
      await this.innerTar(h, body, this.tree(path.join('volumes', m[1]!), 'volume', name));
    } else if (name === 'volumes' && h.type === 'directory') {
      body.resume();
    } else if (top === 'pre-checkpoint') {
      throw new FerryError('EARCHIVE', 'this Podman archive holds a pre-checkpoint (podman container checkpoint -P): export the final checkpoint; nothing was created');
    } else if (top === 'pod.options' || top === 'pod.dump') {
      throw new FerryError('EARCHIVE', 'this Podman archive holds a pod checkpoint, which ferry cannot import; nothing was created');
    } else {
      if (!this.headerDone && !this.docs.has('config.dump')) await this.header(); // not a checkpoint: says so
      throw bad(`unexpected member "${name}"`);
    }
  }

  private tree(dir: string, kind: 'rootfs' | 'volume', label: string): TreeExtract {
    const t = new TreeExtract(path.join(this.dest, dir), kind, label);
    this.trees.push(t);
    return t;
  }

  /**
   * An inner tar (rootfs diff, volume, /dev/shm): every entry checked, then extracted by GNU
   * tar. A rootfs diff may also be an OCI layer (containerd's rw layer: gzip-compressed, its
   * deletions as .wh.NAME files and opaque directories as DIR/.wh..wh..opq), turned into the
   * overlay's whiteouts (0/0 character devices, the trusted.overlay.opaque attribute).
   */
  private async innerTar(h: Header, body: Readable, tree: TreeExtract, layer = false): Promise<void> {
    if (h.type !== 'file') throw bad(`member "${h.name}" is not a regular file`);
    const ex = tarStream().extract();
    const gz = layer ? gunzipIfGzip(() => (this.layerDiff = true)) : undefined;
    const consume = (async () => {
      let dir: Header | undefined; // a directory held back one entry: its opaque marker follows it
      const flush = async (): Promise<void> => {
        if (dir) await tree.add(dir, emptyBody());
        dir = undefined;
      };
      for await (const e of ex) {
        const eh = e.header as Header;
        const rest = checkMemberName(eh.name);
        const linkname = eh.type === 'link' ? checkMemberName(eh.linkname ?? '') : eh.linkname;
        const base = path.posix.basename(rest);
        if (this.layerDiff && base.startsWith('.wh.')) {
          asReadable(e).resume();
          const parent = path.posix.dirname(rest);
          if (base === '.wh..wh..opq') {
            if (!dir || dir.name !== parent) throw bad(`${h.name}: the opaque marker "${rest}" does not follow its directory`);
            dir.pax = { ...(dir.pax ?? {}), 'SCHILY.xattr.trusted.overlay.opaque': 'y' };
            await flush();
            continue;
          }
          await flush();
          const target = checkMemberName(path.posix.join(parent, base.slice(4)));
          if (!target || base === '.wh.') throw bad(`${h.name}: bad whiteout "${rest}"`);
          await tree.add({ name: target, type: 'character-device', devmajor: 0, devminor: 0, mode: 0o600, uid: 0, gid: 0, size: 0, mtime: new Date() }, emptyBody());
          continue;
        }
        await flush();
        if (this.layerDiff && eh.type === 'directory' && rest) {
          asReadable(e).resume();
          dir = { ...eh, name: rest, linkname };
          continue;
        }
        await tree.add({ ...eh, name: rest, linkname }, asReadable(e));
      }
      await flush();
    })();
    try {
      await Promise.all([gz ? pipeline(body, gz, ex as unknown as Writable) : pipeline(body, ex as unknown as Writable), consume]);
    } catch (e) {
      ex.destroy();
      if (e instanceof FerryError) throw e;
      throw bad(`${h.name} is corrupt or truncated (${(e as Error).message})`);
    }
  }

  /**
   * deleted.files: the paths to remove from the image's files, as whiteouts in the rootfs
   * diff (after the diff's own files, as Podman removes them after applying the diff).
   */
  private async deleted(doc: unknown): Promise<void> {
    if (!Array.isArray(doc) || doc.some((p) => typeof p !== 'string')) throw bad('deleted.files is not a list of paths');
    if (!doc.length) return;
    const tree = (this.rootfs ??= this.tree('rootfs', 'rootfs', 'deleted.files'));
    for (const p of doc as string[]) {
      const rel = checkMemberName(p.replace(/^\/+/, ''));
      if (!rel) throw bad(`deleted.files names the root directory`);
      const wh = new PassThrough();
      wh.end();
      await tree.add({ name: rel, type: 'character-device', devmajor: 0, devminor: 0, mode: 0o600, uid: 0, gid: 0, size: 0, mtime: new Date() }, wh);
    }
  }

  async finish(): Promise<Record<string, unknown>> {
    try {
      return await this.complete();
    } catch (e) {
      this.destroy(); // GNU tar may be extracting a tree still
      throw e;
    }
  }

  private async complete(): Promise<Record<string, unknown>> {
    if (!this.headerDone) await this.header();
    const engine = checkpointEngine(this.docs.get('spec.dump') as Record<string, unknown>);
    if (engine === 'containerd' && !this.docs.has('status.dump')) {
      throw bad('it looks like containerd\'s (no io.container.manager annotation) but has no status.dump, which containerd writes and its restore requires');
    }
    if (this.pendingDeleted !== undefined) await this.deleted(this.pendingDeleted);
    for (const t of this.trees) await t.finish();
    if (!fs.existsSync(path.join(this.dest, 'checkpoint', 'inventory.img'))) {
      throw bad('it holds no complete CRIU checkpoint (checkpoint/inventory.img is missing: truncated?)');
    }
    return { kind: PODMAN_KIND, engine, config: this.docs.get('config.dump'), spec: this.docs.get('spec.dump') };
  }

  destroy(): void {
    for (const t of this.trees) t.destroy();
  }
}

function emptyBody(): Readable {
  const p = new PassThrough();
  p.end();
  return p;
}

/**
 * A stream that passes its input on, gunzipped when it starts with gzip's magic (onGzip is
 * then called before the first byte goes on).
 */
function gunzipIfGzip(onGzip: () => void): Transform {
  let gunzip: Zlib.Gunzip | undefined;
  let decided = false;
  const t: Transform = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (!decided) {
        decided = true;
        if (chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) {
          onGzip();
          gunzip = zlib().createGunzip();
          gunzip.on('data', (b: Buffer) => t.push(b));
          gunzip.on('error', (e) => t.destroy(e));
        }
      }
      if (gunzip) gunzip.write(chunk, () => cb());
      else cb(null, chunk);
    },
    flush(cb) {
      if (!gunzip) return cb();
      gunzip.once('end', () => cb());
      gunzip.end();
    },
  });
  return t;
}

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of s) {
    parts.push(b as Buffer);
    n += (b as Buffer).length;
    if (n > METADATA_MAX) throw bad('a metadata member is too large');
  }
  return Buffer.concat(parts);
}

async function writeFile(s: Readable, file: string): Promise<void> {
  // 'wx': never write through something that already exists (a link planted earlier).
  await pipeline(s, fs.createWriteStream(file, { flags: 'wx', mode: 0o600, highWaterMark: 1 << 20 }));
}

// ------------------------------------------------------------------------------- writing

/**
 * A directory tree as an uncompressed tar (entries "./", "./NAME", ...: how Podman writes a
 * volume), read by GNU tar with numeric owners and xattrs.
 */
export function treeTar(dir: string): { stream: Readable; done: Promise<void> } {
  return gnuTar(['-c', '-f', '-', '--numeric-owner', '--xattrs', '--xattrs-include=user.*', '-C', dir, '.'], `reading ${dir}`);
}

/**
 * An overlay upper dir as Podman carries a container's changes: the files added or changed as
 * an uncompressed tar (written to outFile; overlay's own xattrs left out), and the paths of the
 * whiteouts (deleted) and of the opaque directories (deleted and made again: the caller adds
 * what the image had there).
 */
export async function upperToDiff(upper: string, outFile: string): Promise<{ deleted: string[]; opaque: string[] }> {
  const src = gnuTar(['-c', '-f', '-', '--numeric-owner', '--xattrs', '--xattrs-include=trusted.*', '--xattrs-include=user.*', '-C', upper, '.'], `reading ${upper}`);
  const ex = tarStream().extract();
  const pack = tarStream().pack();
  const deleted: string[] = [];
  const opaque: string[] = [];
  const written = pipeline(asReadable(pack), fs.createWriteStream(outFile, { mode: 0o600 }));
  const consume = (async () => {
    for await (const e of ex) {
      const h = e.header as Header;
      const rel = h.name.replace(/^\.\/?/, '').replace(/\/$/, '');
      if (!rel) {
        e.resume();
        continue;
      }
      const xattrs = Object.entries(h.pax ?? {}).filter(([k]) => k.startsWith('SCHILY.xattr.'));
      if (h.type === 'character-device' && h.devmajor === 0 && h.devminor === 0) {
        deleted.push(`/${rel}`);
        e.resume();
        continue;
      }
      if (h.type === 'directory' && xattrs.some(([k, v]) => k === 'SCHILY.xattr.trusted.overlay.opaque' && String(v) === 'y')) opaque.push(rel);
      const pax = Object.fromEntries(xattrs.filter(([k]) => !k.startsWith('SCHILY.xattr.trusted.')));
      const out: Header = { ...h, name: h.type === 'directory' ? `${rel}/` : rel, linkname: h.type === 'link' ? (h.linkname ?? '').replace(/^\.\//, '') : h.linkname, ...(Object.keys(pax).length ? { pax } : { pax: undefined }) };
      await new Promise<void>((resolve, reject) => {
        const s = pack.entry(out, (err) => (err ? reject(err) : resolve()));
        const body = asReadable(e);
        body.on('error', reject);
        body.pipe(s as unknown as Writable);
      });
    }
    pack.finalize();
  })();
  try {
    await Promise.all([pipeline(src.stream, ex as unknown as Writable), consume, src.done, written]);
  } catch (e) {
    pack.destroy();
    throw e;
  }
  return { deleted, opaque };
}

function gnuTar(argv: string[], what: string, input?: string): { stream: Readable; done: Promise<void> } {
  const child = spawn('tar', argv, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (input !== undefined) child.stdin!.end(input);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<void>((resolve, reject) =>
    child.on('close', (code) => (code === 0 ? resolve() : reject(new FerryError('EARCHIVE', `${what} failed: ${stderr.trim().split('\n')[0] ?? `tar exit ${code}`}`)))),
  );
  done.catch(() => undefined);
  return { stream: child.stdout!, done };
}
