import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
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
