import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';
import { mkdirp, readJsonIfExists, writeJsonAtomic } from '../../lib/fsutil.js';
import { validName } from '../../lib/ids.js';

export interface VolumeRecord {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  /** Made for an image's VOLUME (Podman's anonymous volumes). */
  Anonymous?: boolean;
  /** The image's files at its path are copied in at the first start (then false). */
  NeedsCopyUp?: boolean;
}

/** Named volumes: a directory each under the root, bind-mounted into containers. */
export class VolumeStore {
  constructor(private readonly dir: string) {}

  private volDir(name: string): string {
    return path.join(this.dir, name);
  }

  list(): VolumeRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir).filter((n) => !n.startsWith('.'));
    } catch {
      return [];
    }
    return names.map((n) => readJsonIfExists<VolumeRecord>(path.join(this.volDir(n), 'volume.json'))).filter((v): v is VolumeRecord => !!v);
  }

  find(name: string): VolumeRecord | undefined {
    if (!validName(name)) return undefined;
    return readJsonIfExists<VolumeRecord>(path.join(this.volDir(name), 'volume.json'));
  }

  get(name: string): VolumeRecord {
    const v = this.find(name);
    if (!v) throw new FerryError('ENOTFOUND', `no volume named "${name}": create it with \`ferry volume create ${name}\``);
    return v;
  }

  create(name: string, labels: Record<string, string> = {}, opts: { ifMissing?: boolean; anonymous?: boolean } = {}): VolumeRecord {
    if (!validName(name)) throw new FerryError('EINVAL', `invalid volume name "${name}": use letters, digits, '_', '.', '-', starting with a letter or digit`);
    const existing = this.find(name);
    if (existing) {
      if (opts.ifMissing) return existing;
      throw new FerryError('EEXIST', `volume "${name}" already exists`);
    }
    const d = this.volDir(name);
    mkdirp(path.join(d, '_data'));
    const rec: VolumeRecord = { Name: name, Driver: 'local', Mountpoint: path.join(d, '_data'), CreatedAt: new Date().toISOString(), Labels: labels, ...(opts.anonymous ? { Anonymous: true, NeedsCopyUp: true } : {}) };
    writeJsonAtomic(path.join(d, 'volume.json'), rec);
    return rec;
  }

  /** The copy-up is done: later starts leave the volume's data alone. */
  copiedUp(name: string): void {
    const v = this.get(name);
    writeJsonAtomic(path.join(this.volDir(name), 'volume.json'), { ...v, NeedsCopyUp: false });
  }

  remove(name: string): void {
    this.get(name);
    const trash = path.join(this.dir, `.rm-${name}-${process.pid}`);
    fs.renameSync(this.volDir(name), trash);
    fs.rmSync(trash, { recursive: true, force: true });
  }
}
