import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../../lib/errors.js';
import { runOk } from '../../lib/exec.js';
import { commitDir, duBytes, mkdirp, readJson, readJsonIfExists, writeJsonAtomic } from '../../lib/fsutil.js';

export interface ImageRecord {
  Id: string; // sha256 hex of the imported tarball
  Names: string[]; // e.g. localhost/busybox:latest
  Created: string; // ISO time
  Size: number; // bytes of the unpacked rootfs
  Config: { Env: string[]; Cmd: string[]; WorkingDir: string };
}

// The reference grammar of distribution/reference (case-insensitive here: names are lowercased
// below): [domain[:port]/]component[/component...][:tag].
const NAME_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?';
const REFERENCE_RE = new RegExp(`^(?:${DOMAIN}/)?${NAME_COMPONENT}(?:/${NAME_COMPONENT})*(?::\\w[\\w.-]{0,127})?$`, 'i');

/** Podman's short-name normalisation for local images: busybox -> localhost/busybox:latest. */
export function normalizeImageName(name: string): string {
  let n = name.trim();
  if (!REFERENCE_RE.test(n)) {
    throw new FerryError('EINVAL', `invalid image name "${name}": use letters, digits, '.', '_', '-', '/' and an optional :tag`);
  }
  const lastSlash = n.lastIndexOf('/');
  if (!n.slice(lastSlash + 1).includes(':')) n += ':latest';
  const first = n.split('/')[0]!;
  if (!n.includes('/') || !(first.includes('.') || first.includes(':') || first === 'localhost')) n = `localhost/${n}`;
  return n.toLowerCase();
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Images: a read-only rootfs directory each, made from a rootfs tarball (`ferry import`). */
export class ImageStore {
  constructor(private readonly dir: string) {}

  private imageDir(id: string): string {
    return path.join(this.dir, id);
  }

  rootfs(id: string): string {
    return path.join(this.imageDir(id), 'rootfs');
  }

  list(): ImageRecord[] {
    let ids: string[];
    try {
      ids = fs.readdirSync(this.dir).filter((d) => /^[0-9a-f]{64}$/.test(d));
    } catch {
      return [];
    }
    return ids
      .map((id) => readJsonIfExists<ImageRecord>(path.join(this.imageDir(id), 'image.json')))
      .filter((r): r is ImageRecord => r !== undefined);
  }

  /** Finds an image by full name, short name (busybox, busybox:1) or ID prefix (>= 3 hex). */
  find(ref: string): ImageRecord | undefined {
    const all = this.list();
    let norm: string | undefined;
    try {
      norm = normalizeImageName(ref);
    } catch {
      norm = undefined;
    }
    const byName = all.find((i) => i.Names.includes(ref) || (norm !== undefined && i.Names.includes(norm)));
    if (byName) return byName;
    const r = ref.replace(/^sha256:/, '');
    if (/^[0-9a-f]{3,64}$/.test(r)) {
      const m = all.filter((i) => i.Id.startsWith(r));
      if (m.length === 1) return m[0];
      if (m.length > 1) throw new FerryError('EINVAL', `image ID prefix "${ref}" is ambiguous: give more characters`);
    }
    return undefined;
  }

  get(ref: string): ImageRecord {
    const img = this.find(ref);
    if (!img) throw new FerryError('ENOTFOUND', `image "${ref}" not found: import it with \`ferry import TARBALL ${ref}\``);
    return img;
  }

  /** Imports a rootfs tarball (optionally compressed; tar detects the compression) as an image. */
  async importTarball(tarball: string, name: string | undefined, config: Partial<ImageRecord['Config']> = {}): Promise<ImageRecord> {
    if (!fs.existsSync(tarball)) throw new FerryError('ENOTFOUND', `${tarball}: no such file`);
    const normName = name ? normalizeImageName(name) : undefined;
    const id = await sha256File(tarball);
    mkdirp(this.dir, 0o700);
    const existing = readJsonIfExists<ImageRecord>(path.join(this.imageDir(id), 'image.json'));
    if (existing) {
      if (normName) this.tag(existing, normName);
      return readJson<ImageRecord>(path.join(this.imageDir(id), 'image.json'));
    }
    const tmp = path.join(this.dir, `.tmp-${id}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    mkdirp(path.join(tmp, 'rootfs'));
    try {
      // GNU tar strips leading '/' and refuses members with '..'; owners and modes are kept
      // because a rootfs needs them.
      await runOk(['tar', '-x', '-f', tarball, '-C', path.join(tmp, 'rootfs'), '--numeric-owner', '--xattrs', '--xattrs-include=*'], {
        what: 'unpacking the image tarball',
      });
      const rec: ImageRecord = {
        Id: id,
        Names: [],
        Created: new Date().toISOString(),
        Size: duBytes(path.join(tmp, 'rootfs')),
        Config: { Env: config.Env ?? [`PATH=${DEFAULT_PATH}`], Cmd: config.Cmd ?? ['/bin/sh'], WorkingDir: config.WorkingDir ?? '/' },
      };
      writeJsonAtomic(path.join(tmp, 'image.json'), rec);
      commitDir(tmp, this.imageDir(id));
      if (normName) this.tag(rec, normName);
      return readJson<ImageRecord>(path.join(this.imageDir(id), 'image.json'));
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * Stores an image sent by another ferry (`migrate --with-image`): its record as the sender
   * gave it, its rootfs from a tar stream. The ID is the sender's, so checkpoints that name it
   * restore here; the channel is the user's authenticated ssh session.
   */
  async receive(rec: ImageRecord, tarStream: Readable): Promise<ImageRecord> {
    if (!/^[0-9a-f]{64}$/.test(rec.Id)) throw new FerryError('EINVAL', 'the sender gave an invalid image ID');
    const existing = readJsonIfExists<ImageRecord>(path.join(this.imageDir(rec.Id), 'image.json'));
    if (existing) return existing;
    mkdirp(this.dir, 0o700);
    const tmp = path.join(this.dir, `.tmp-${rec.Id}-${process.pid}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    mkdirp(path.join(tmp, 'rootfs'));
    try {
      const child = spawn('tar', ['-x', '-f', '-', '-C', path.join(tmp, 'rootfs'), '--numeric-owner', '--xattrs', '--xattrs-include=*'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await pipeline(tarStream, child.stdin);
      if ((await exited) !== 0) throw new FerryError('EARCHIVE', `receiving image ${rec.Names[0] ?? rec.Id} failed: ${stderr.trim().split('\n').pop()}`);
      const clean: ImageRecord = { Id: rec.Id, Names: [], Created: rec.Created, Size: duBytes(path.join(tmp, 'rootfs')), Config: rec.Config };
      writeJsonAtomic(path.join(tmp, 'image.json'), clean);
      commitDir(tmp, this.imageDir(rec.Id));
      for (const n of rec.Names) this.tag(clean, normalizeImageName(n));
      return readJson<ImageRecord>(path.join(this.imageDir(rec.Id), 'image.json'));
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** The image's rootfs as a tar stream (for `migrate --with-image`). */
  send(id: string): { stream: Readable; done: Promise<void> } {
    const child = spawn('tar', ['-c', '-f', '-', '--numeric-owner', '--xattrs', '-C', this.rootfs(id), '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const done = new Promise<void>((resolve, reject) =>
      child.on('close', (code) => (code === 0 ? resolve() : reject(new FerryError('EARCHIVE', `reading image ${id.slice(0, 12)} failed: ${stderr.trim().split('\n').pop()}`)))),
    );
    done.catch(() => undefined);
    return { stream: child.stdout, done };
  }

  /** Gives the image a name, taking it away from any other image that had it. */
  tag(img: ImageRecord, name: string): void {
    for (const other of this.list()) {
      if (other.Id !== img.Id && other.Names.includes(name)) {
        other.Names = other.Names.filter((n) => n !== name);
        writeJsonAtomic(path.join(this.imageDir(other.Id), 'image.json'), other);
      }
    }
    if (!img.Names.includes(name)) img.Names.push(name);
    writeJsonAtomic(path.join(this.imageDir(img.Id), 'image.json'), img);
  }

  remove(id: string): void {
    const dir = this.imageDir(id);
    const trash = path.join(this.dir, `.rm-${id}-${process.pid}`);
    fs.renameSync(dir, trash); // atomic: the image is gone for readers at once
    fs.rmSync(trash, { recursive: true, force: true });
  }
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}
