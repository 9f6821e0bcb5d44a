/**
 * Images: an OCI image config and manifest (content-addressed blobs) naming layers that
 * layers.ts stores once each. An image's ID is its config's sha256, as in Podman.
 *
 *   DIR/blobs/sha256/<hex>     configs and manifests, verified against their digest
 *   DIR/<id>/image.json        the record: names, digests, layers (base first), config
 *   DIR/layers/, DIR/l/        see layers.ts
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomBytes } from '../../lib/lazy.js';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../../lib/errors.js';
import { commitDir, mkdirp, readJsonIfExists, writeFileAtomic, writeJsonAtomic } from '../../lib/fsutil.js';
import { LayerStore, Meter, digestHex, randomLink, type LayerRecord } from './layers.js';

/** The runtime part of an image config (OCI `config`), as the image gives it. */
export interface ImageConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

/** An OCI image config (also what Docker's schema 2 config holds). */
export interface OciImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  config?: ImageConfig;
  rootfs: { type: string; diff_ids: string[] };
  history?: { created?: string; created_by?: string; author?: string; comment?: string; empty_layer?: boolean }[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageRecord {
  Id: string; // sha256 hex of the config blob
  Digest: string; // sha256:<hex> of the manifest blob
  Names: string[]; // e.g. localhost/busybox:latest, 127.0.0.1:5000/app:1
  RepoDigests: string[]; // NAME@sha256:...
  Created: string; // ISO: the config's created, else when it was stored
  Size: number; // bytes of its layers, uncompressed
  Layers: string[]; // diff_id hex, base first
  Config: ImageConfig;
  Architecture: string;
  Os: string;
  ManifestType: string;
}

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeign: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

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

/** The host's platform in OCI's words. */
export function hostPlatform(): { os: string; architecture: string; variant?: string } {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[os.arch()] ?? os.arch();
  return { os: 'linux', architecture: arch, ...(arch === 'arm64' ? { variant: 'v8' } : {}) };
}

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Checks what an image config must hold for Ferry to use it (it comes from outside). */
export function parseImageConfig(blob: Buffer, what: string): OciImageConfig {
  let c: OciImageConfig;
  try {
    c = JSON.parse(blob.toString('utf8')) as OciImageConfig;
  } catch {
    throw new FerryError('EARCHIVE', `${what}: the image config is not JSON`);
  }
  const strings = (x: unknown): boolean => x === undefined || x === null || (Array.isArray(x) && x.every((s) => typeof s === 'string'));
  const problem =
    typeof c !== 'object' || c === null ? 'it is not an object'
    : typeof c.rootfs !== 'object' || c.rootfs === null || !Array.isArray(c.rootfs.diff_ids) ? 'rootfs.diff_ids is missing'
    : !c.rootfs.diff_ids.every((d) => typeof d === 'string' && /^sha256:[0-9a-f]{64}$/.test(d)) ? 'rootfs.diff_ids holds a digest that is not sha256'
    : c.config !== undefined && (typeof c.config !== 'object') ? 'config is not an object'
    : c.config && !(strings(c.config.Env) && strings(c.config.Cmd) && strings(c.config.Entrypoint)) ? 'config.Env/Cmd/Entrypoint are not string lists'
    : c.config && c.config.WorkingDir !== undefined && typeof c.config.WorkingDir !== 'string' ? 'config.WorkingDir is not a string'
    : c.config && c.config.User !== undefined && typeof c.config.User !== 'string' ? 'config.User is not a string'
    : undefined;
  if (problem) throw new FerryError('EARCHIVE', `${what}: the image config is malformed (${problem})`);
  return c;
}

/** Validates a record another ferry sent (migrate --with-image). Returns the problem, if any. */
export function imageRecordProblem(v: Record<string, unknown>): string | undefined {
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === 'string');
  return typeof v.Id !== 'string' || !/^[0-9a-f]{64}$/.test(v.Id) ? 'Id'
    : typeof v.Digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(v.Digest) ? 'Digest'
    : !strings(v.Names) ? 'Names'
    : !strings(v.RepoDigests) ? 'RepoDigests'
    : typeof v.Created !== 'string' ? 'Created'
    : typeof v.Size !== 'number' || !(v.Size >= 0) ? 'Size'
    : !strings(v.Layers) || !v.Layers.every((l) => /^[0-9a-f]{64}$/.test(l)) ? 'Layers'
    : typeof v.Config !== 'object' || v.Config === null ? 'Config'
    : typeof v.Architecture !== 'string' || typeof v.Os !== 'string' ? 'Architecture'
    : undefined;
}

export class ImageStore {
  readonly layers: LayerStore;

  constructor(private readonly dir: string) {
    this.layers = new LayerStore(dir);
  }

  private imageDir(id: string): string {
    return path.join(this.dir, id);
  }

  private blobPath(hex: string): string {
    return path.join(this.dir, 'blobs', 'sha256', hex);
  }

  /** A stored blob (config or manifest) by its digest. */
  blob(digest: string): Buffer {
    const p = this.blobPath(digestHex(digest));
    try {
      return fs.readFileSync(p);
    } catch {
      throw new FerryError('ENOTFOUND', `blob ${digest.slice(0, 19)} is missing from the image store: pull or import the image again`);
    }
  }

  /** Stores a blob after checking it has the digest it is stored under. */
  putBlob(data: Buffer, digest?: string): string {
    const hex = sha256(data);
    if (digest !== undefined && digest !== `sha256:${hex}`) {
      throw new FerryError('EARCHIVE', `a blob does not match its digest ${digest} (got sha256:${hex}): the source is corrupt or tampered with; nothing was stored`);
    }
    const p = this.blobPath(hex);
    if (!fs.existsSync(p)) {
      mkdirp(path.dirname(p), 0o700);
      writeFileAtomic(p, data, 0o644);
    }
    return `sha256:${hex}`;
  }

  hasBlob(digest: string): boolean {
    return fs.existsSync(this.blobPath(digestHex(digest)));
  }

  blobFile(digest: string): string {
    return this.blobPath(digestHex(digest));
  }

  /** Moves a file whose digest was verified into the blob store. */
  adoptBlob(file: string, digest: string): void {
    const p = this.blobPath(digestHex(digest));
    mkdirp(path.dirname(p), 0o700);
    fs.chmodSync(file, 0o644);
    fs.renameSync(file, p);
  }

  /** Stores a blob from a stream once its size and digest match (a layer's blob whose layer is stored already). */
  async putBlobStream(src: Readable, digest: string, size: number, what: string): Promise<void> {
    const dir = mkdirp(path.join(this.dir, 'blobs', 'sha256'), 0o700);
    const tmp = path.join(dir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      const meter = new Meter(size, what);
      await pipeline(src, meter, fs.createWriteStream(tmp, { mode: 0o644 }));
      const got = `sha256:${meter.hash.digest('hex')}`;
      if (meter.bytes !== size || got !== digest) throw new FerryError('EARCHIVE', `${what} does not match its digest (got ${got}, ${meter.bytes} bytes): the source is corrupt or tampered with; nothing was stored`);
      fs.renameSync(tmp, this.blobPath(digestHex(digest)));
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  config(img: ImageRecord): OciImageConfig {
    return JSON.parse(this.blob(`sha256:${img.Id}`).toString('utf8')) as OciImageConfig;
  }

  manifest(img: ImageRecord): ImageManifest {
    return JSON.parse(this.blob(img.Digest).toString('utf8')) as ImageManifest;
  }

  list(): ImageRecord[] {
    let ids: string[];
    try {
      ids = fs.readdirSync(this.dir).filter((d) => /^[0-9a-f]{64}$/.test(d));
    } catch {
      return [];
    }
    const out: ImageRecord[] = [];
    for (const id of ids) {
      const r = readJsonIfExists<ImageRecord>(path.join(this.imageDir(id), 'image.json'));
      if (!r) continue;
      if (!Array.isArray(r.Layers)) {
        throw new FerryError(
          'EUNSUPPORTED',
          `the image store ${this.dir} was made by an older Ferry (one rootfs per image): remove its containers and that directory, then import or pull the images again`,
        );
      }
      out.push(r);
    }
    return out;
  }

  byId(id: string): ImageRecord | undefined {
    return this.list().find((i) => i.Id === id);
  }

  /** Finds an image by full name, short name (busybox, busybox:1), NAME@digest or ID prefix (>= 3 hex). */
  find(ref: string): ImageRecord | undefined {
    const all = this.list();
    const at = ref.indexOf('@');
    if (at > 0) {
      const digest = ref.slice(at + 1);
      let repo: string;
      try {
        repo = normalizeImageName(ref.slice(0, at)).replace(/:latest$/, '');
      } catch {
        return undefined;
      }
      return all.find((i) => i.RepoDigests.includes(`${repo}@${digest}`) || (i.Digest === digest && i.Names.some((n) => n.slice(0, n.lastIndexOf(':')) === repo)));
    }
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
    if (!img) throw new FerryError('ENOTFOUND', `image "${ref}" not found: pull it with \`ferry pull\`, or import a rootfs tarball with \`ferry import TARBALL ${ref}\``);
    return img;
  }

  /** The overlay lower dirs of an image (relative to `cwd`, top layer first). */
  lowerDirs(img: ImageRecord): { cwd: string; lower: string[] } {
    return this.layers.lowerDirs(img.Layers);
  }

  /**
   * Imports a rootfs tarball (optionally compressed) as a one-layer image. The config holds no
   * time, so the same tarball is the same image (same ID) on every host.
   */
  async importTarball(tarball: string, name: string | undefined, config: ImageConfig = {}): Promise<ImageRecord> {
    if (!fs.existsSync(tarball)) throw new FerryError('ENOTFOUND', `${tarball}: no such file`);
    const normName = name ? normalizeImageName(name) : undefined;
    return this.importLayerFile(tarball, {
      names: normName ? [normName] : [],
      what: 'the image tarball',
      config: { Env: config.Env ?? [`PATH=${DEFAULT_PATH}`], Cmd: config.Cmd ?? ['/bin/sh'], WorkingDir: config.WorkingDir ?? '/' },
      history: { created_by: 'ferry import', comment: 'imported from a rootfs tarball' },
    });
  }

  /**
   * Stores a tar file (optionally compressed) as a one-layer image: the layer is unpacked
   * through the sanitizer, and the file kept as the layer's blob (push and save send it as it
   * is), with the config, history entry and manifest annotations given.
   */
  async importLayerFile(
    file: string,
    o: { names: string[]; what: string; config: ImageConfig; history: NonNullable<OciImageConfig['history']>[number]; created?: string; annotations?: Record<string, string> },
  ): Promise<ImageRecord> {
    mkdirp(this.dir, 0o700);
    // Copied by the kernel while it is unpacked, then stored under the digest the unpacking computed.
    mkdirp(path.join(this.dir, 'blobs', 'sha256'), 0o700);
    const tmpBlob = path.join(this.dir, 'blobs', `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    const copied = fs.promises.copyFile(file, tmpBlob);
    copied.catch(() => undefined);
    let layer: LayerRecord;
    let blob: { digest: string; size: number; mediaType: string };
    try {
      const r = await this.layers.unpackDigest(fs.createReadStream(file), {}, o.what);
      await copied;
      layer = r.rec;
      blob = { digest: r.digest, size: fs.statSync(tmpBlob).size, mediaType: layerMediaType(tmpBlob) };
      fs.renameSync(tmpBlob, this.blobPath(digestHex(r.digest)));
    } catch (e) {
      await copied.catch(() => undefined);
      fs.rmSync(tmpBlob, { force: true });
      this.collect();
      throw e;
    }
    const plat = hostPlatform();
    const cfg: OciImageConfig = {
      ...(o.created ? { created: o.created } : {}),
      architecture: plat.architecture,
      os: plat.os,
      config: o.config,
      rootfs: { type: 'layers', diff_ids: [layer.DiffID] },
      history: [{ ...(o.created ? { created: o.created } : {}), ...o.history }],
    };
    const configBlob = Buffer.from(JSON.stringify(cfg));
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: `sha256:${sha256(configBlob)}`, size: configBlob.length },
      layers: [{ mediaType: blob.mediaType, digest: blob.digest, size: blob.size }],
      ...(o.annotations ? { annotations: o.annotations } : {}),
    };
    return this.commit({ config: configBlob, manifest: Buffer.from(JSON.stringify(manifest)), names: o.names, repoDigests: [] });
  }

  /**
   * Records an image whose layers are all stored: writes its config and manifest blobs and its
   * record (or adds names to the one that exists).
   */
  commit(o: { config: Buffer; manifest: Buffer; names: string[]; repoDigests: string[]; configDigest?: string; manifestDigest?: string }): ImageRecord {
    const cfg = parseImageConfig(o.config, 'the image');
    const layers = cfg.rootfs.diff_ids.map(digestHex);
    const recs: LayerRecord[] = layers.map((h) => {
      const l = this.layers.get(h);
      if (!l) throw new FerryError('EINTERNAL', `layer sha256:${h.slice(0, 12)} is not stored`);
      return l;
    });
    const configDigest = this.putBlob(o.config, o.configDigest);
    const manifestDigest = this.putBlob(o.manifest, o.manifestDigest);
    const id = digestHex(configDigest);
    const existing = readJsonIfExists<ImageRecord>(path.join(this.imageDir(id), 'image.json'));
    let rec: ImageRecord;
    if (existing) {
      rec = existing;
      for (const d of o.repoDigests) if (!rec.RepoDigests.includes(d)) rec.RepoDigests.push(d);
      writeJsonAtomic(path.join(this.imageDir(id), 'image.json'), rec);
    } else {
      rec = {
        Id: id,
        Digest: manifestDigest,
        Names: [],
        RepoDigests: [...o.repoDigests],
        Created: cfg.created && !Number.isNaN(Date.parse(cfg.created)) ? cfg.created : new Date().toISOString(),
        // As Podman counts it: the layers, plus the config and manifest it stores (the
        // manifest under two keys), so the same image has the same size in both.
        Size: recs.reduce((s, l) => s + l.Size, 0) + o.config.length + 2 * o.manifest.length,
        Layers: layers,
        Config: cfg.config ?? {},
        Architecture: cfg.architecture ?? '',
        Os: cfg.os ?? '',
        ManifestType: (JSON.parse(o.manifest.toString('utf8')) as { mediaType?: string }).mediaType ?? MEDIA.ociManifest,
      };
      const tmp = path.join(this.dir, `.tmp-${id}-${process.pid}`);
      fs.rmSync(tmp, { recursive: true, force: true });
      mkdirp(tmp, 0o700);
      writeJsonAtomic(path.join(tmp, 'image.json'), rec);
      commitDir(tmp, this.imageDir(id));
    }
    for (const n of o.names) this.tag(rec, n);
    if (existing && existing.Digest !== manifestDigest) this.collect(); // the same image by another manifest: its blobs are not kept
    return rec;
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

  untag(img: ImageRecord, name: string): void {
    img.Names = img.Names.filter((n) => n !== name);
    writeJsonAtomic(path.join(this.imageDir(img.Id), 'image.json'), img);
  }

  /** Removes an image, then every layer and blob no remaining image uses. */
  remove(id: string): void {
    const dir = this.imageDir(id);
    const trash = path.join(this.dir, `.rm-${id}-${process.pid}`);
    fs.renameSync(dir, trash); // atomic: the image is gone for readers at once
    fs.rmSync(trash, { recursive: true, force: true });
    this.collect();
  }

  /** Layers and blobs that no image references (the references are the refcounts). */
  collect(): void {
    const imgs = this.list();
    this.layers.removeUnused(new Set(imgs.flatMap((i) => i.Layers)));
    const keep = new Set(imgs.flatMap((i) => [i.Id, digestHex(i.Digest)]));
    for (const i of imgs) {
      try {
        for (const l of this.manifest(i).layers) keep.add(digestHex(l.digest));
      } catch {
        // a missing or unreadable manifest keeps nothing more
      }
    }
    const blobs = path.join(this.dir, 'blobs', 'sha256');
    let names: string[] = [];
    try {
      names = fs.readdirSync(blobs);
    } catch {
      return;
    }
    for (const n of names) if (!keep.has(n) && !n.startsWith('.tmp-')) fs.rmSync(path.join(blobs, n), { force: true });
  }

  /**
   * Stores an image sent by another ferry (`migrate --with-image`): its record, then a tar
   * stream holding config.json, manifest.json and each layer as <hex>/... (its stored diff,
   * whiteouts included). The channel is the user's authenticated session; the config and
   * manifest are still checked against the record's digests.
   */
  async receive(rec: ImageRecord, tarStream: Readable): Promise<ImageRecord> {
    const problem = imageRecordProblem(rec as unknown as Record<string, unknown>);
    if (problem) throw new FerryError('EINVAL', `the sender gave an invalid image record (${problem})`);
    const have = this.byId(rec.Id);
    if (have) return have;
    mkdirp(this.dir, 0o700);
    const tmp = path.join(this.layers.layersDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirp(tmp, 0o700);
    try {
      const child = spawn('tar', ['-x', '-f', '-', '-C', tmp, '--numeric-owner', '--xattrs', '--xattrs-include=*'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await pipeline(tarStream, child.stdin!);
      if ((await exited) !== 0) throw new FerryError('EARCHIVE', `receiving image ${rec.Names[0] ?? rec.Id} failed: ${stderr.trim().split('\n').pop()}`);
      const configBlob = fs.readFileSync(path.join(tmp, 'config.json'));
      const manifestBlob = fs.readFileSync(path.join(tmp, 'manifest.json'));
      const cfg = parseImageConfig(configBlob, 'the image sent');
      for (const diffId of cfg.rootfs.diff_ids) {
        const hex = digestHex(diffId);
        if (this.layers.has(hex)) continue;
        const layerTmp = path.join(tmp, hex);
        if (!fs.existsSync(path.join(layerTmp, 'diff'))) throw new FerryError('EARCHIVE', `the sender left out layer ${diffId.slice(0, 19)}`);
        const sent = readJsonIfExists<Partial<LayerRecord>>(path.join(layerTmp, 'layer.json'));
        writeJsonAtomic(path.join(layerTmp, 'layer.json'), {
          DiffID: diffId,
          Size: typeof sent?.Size === 'number' && sent.Size >= 0 ? sent.Size : 0,
          Link: randomLink(),
          Created: new Date().toISOString(),
          CompressedDigests: Array.isArray(sent?.CompressedDigests) ? sent.CompressedDigests.filter((d) => typeof d === 'string' && /^sha256:[0-9a-f]{64}$/.test(d)) : [],
        } satisfies LayerRecord);
        fs.renameSync(layerTmp, path.join(this.layers.layersDir, hex));
      }
      const img = this.commit({ config: configBlob, manifest: manifestBlob, names: [], repoDigests: rec.RepoDigests, configDigest: `sha256:${rec.Id}`, manifestDigest: rec.Digest });
      for (const n of rec.Names) this.tag(img, normalizeImageName(n));
      return this.byId(rec.Id)!;
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }

  /** Whether a layer (the hex of its diff ID) is stored here. */
  hasLayer(hex: string): boolean {
    return this.layers.has(hex);
  }

  /**
   * The image as receive() takes it: a tar stream of its config, manifest and layers, but for
   * the layers in skip (those the other host has).
   */
  send(id: string, skip: ReadonlySet<string> = new Set()): { stream: Readable; done: Promise<void> } {
    const img = this.byId(id);
    if (!img) throw new FerryError('ENOTFOUND', `image ${id.slice(0, 12)} is gone from this host`);
    const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-send-'));
    fs.writeFileSync(path.join(stage, 'config.json'), this.blob(`sha256:${img.Id}`));
    fs.writeFileSync(path.join(stage, 'manifest.json'), this.blob(img.Digest));
    const args = ['-c', '-f', '-', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', stage, 'config.json', 'manifest.json', '-C', this.layers.layersDir];
    for (const l of img.Layers) if (!skip.has(l)) args.push(`${l}/layer.json`, `${l}/diff`);
    const child = spawn('tar', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const done = new Promise<void>((resolve, reject) =>
      child.on('close', (code) => {
        fs.rmSync(stage, { recursive: true, force: true });
        if (code === 0) resolve();
        else reject(new FerryError('EARCHIVE', `reading image ${id.slice(0, 12)} failed: ${stderr.trim().split('\n').pop()}`));
      }),
    );
    done.catch(() => undefined);
    return { stream: child.stdout!, done };
  }
}

/** A layer blob's media type from its first bytes. */
export function layerMediaType(file: string): string {
  const head = Buffer.alloc(4);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  return head[0] === 0x1f && head[1] === 0x8b ? MEDIA.ociLayerGzip : head.readUInt32LE(0) === 0xfd2fb528 ? MEDIA.ociLayerZstd : MEDIA.ociLayer;
}
