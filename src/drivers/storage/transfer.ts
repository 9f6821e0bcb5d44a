/**
 * `ferry save` and `ferry load`: images as docker-archive (`docker save` / `podman save`), OCI
 * archive or OCI layout directory. A loaded archive is untrusted input: its tar is checked
 * member by member (tar.ts) before it is unpacked into a staging dir, nothing is read through
 * a link that leads out of it, every blob is checked against its digest and every layer
 * against its diff_id, and a failure stores nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from '../../lib/lazy.js';
import { spawn } from 'node:child_process';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, isFerryError } from '../../lib/errors.js';
import { mkdirp } from '../../lib/fsutil.js';
import { decompressor, sniff } from '../archive/compress.js';
import { LayerSanitizer } from './tar.js';
import { Meter, digestHex } from './layers.js';
import { hostPlatform, layerMediaType, MEDIA, normalizeImageName, parseImageConfig, sha256, type Descriptor, type ImageManifest, type ImageRecord, type ImageStore } from './images.js';

export type SaveFormat = 'docker-archive' | 'oci-archive' | 'oci-dir';
export const SAVE_FORMATS: SaveFormat[] = ['docker-archive', 'oci-archive', 'oci-dir'];

const JSON_MAX = 8 << 20;

function bad(why: string): FerryError {
  return new FerryError('EARCHIVE', `cannot load the archive: ${why}; nothing was stored`);
}

/** A path inside dir, refusing one that leads (through links) out of it, and non-files. */
function inside(dir: string, rel: string, what: string): string {
  if (typeof rel !== 'string' || rel.startsWith('/') || rel.split('/').includes('..')) throw bad(`${what} "${String(rel)}" is not a path inside the archive`);
  let real: string;
  try {
    real = fs.realpathSync(path.join(dir, rel));
  } catch {
    throw bad(`${what} ${rel} is missing`);
  }
  const root = fs.realpathSync(dir);
  if (!real.startsWith(`${root}/`)) throw bad(`${what} ${rel} leads out of the archive`);
  if (!fs.statSync(real).isFile()) throw bad(`${what} ${rel} is not a file`);
  return real;
}

function readJsonIn<T>(dir: string, rel: string, what: string): { raw: Buffer; value: T } {
  const f = inside(dir, rel, what);
  if (fs.statSync(f).size > JSON_MAX) throw bad(`${what} is too large`);
  const raw = fs.readFileSync(f);
  try {
    return { raw, value: JSON.parse(raw.toString('utf8')) as T };
  } catch {
    throw bad(`${what} is not JSON`);
  }
}

/** Unpacks an archive stream (plain, gzip or zstd) into dir through the member checks. */
async function extract(input: Readable, dir: string): Promise<void> {
  const { compression, stream } = await sniff(input);
  const codec = decompressor(compression, 'cannot load the archive: its compressed data is corrupt; nothing was stored');
  codec.done.catch(() => undefined);
  const child = spawn('tar', ['-x', '-f', '-', '-C', dir, '--no-same-owner', '--no-same-permissions'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  try {
    await Promise.all([pipeline(stream, codec.stream, new LayerSanitizer({ allowDevices: false, whiteouts: false }), child.stdin!), codec.done]);
  } catch (e) {
    child.kill('SIGKILL');
    await exited.catch(() => undefined);
    if (isFerryError(e) && e.message.startsWith('cannot load')) throw e;
    throw bad((e as Error).message);
  }
  const code = await exited;
  if (code !== 0) throw bad(stderr.trim().split('\n').pop() || `tar exit ${code}`);
}

interface Loaded {
  config: Buffer;
  manifest: Buffer;
  names: string[];
}

/** Loads every image of an OCI layout directory (index entries, nested indexes by platform). */
async function loadOci(store: ImageStore, dir: string): Promise<Loaded[]> {
  const index = readJsonIn<{ manifests?: unknown }>(dir, 'index.json', 'index.json').value;
  if (!Array.isArray(index.manifests) || !index.manifests.length) throw bad('its index.json lists no image');
  const blob = (d: Descriptor, what: string): Buffer => {
    const f = inside(dir, `blobs/sha256/${digestHex(d.digest)}`, what);
    const b = fs.readFileSync(f);
    if (`sha256:${sha256(b)}` !== d.digest) throw bad(`${what} ${d.digest.slice(0, 19)}… does not match its digest`);
    return b;
  };
  const out: Loaded[] = [];
  const plat = hostPlatform();
  for (const entry of index.manifests as Descriptor[]) {
    checkDesc(entry, 'index.json');
    let d = entry;
    if (d.mediaType === MEDIA.ociIndex || d.mediaType === MEDIA.dockerList) {
      const nested = JSON.parse(blob(d, 'an index').toString('utf8')) as { manifests?: Descriptor[] };
      const pick = (nested.manifests ?? []).find((m) => m.platform?.os === plat.os && m.platform?.architecture === plat.architecture);
      if (!pick) throw bad(`it has no image for ${plat.os}/${plat.architecture}`);
      d = checkDesc(pick, 'an index');
    }
    const manifest = blob(d, 'a manifest');
    const m = JSON.parse(manifest.toString('utf8')) as ImageManifest;
    if (!m.config || !Array.isArray(m.layers)) throw bad('a manifest is malformed');
    const config = blob(checkDesc(m.config, 'a manifest'), 'a config');
    const cfg = parseImageConfig(config, 'the archive');
    if (cfg.rootfs.diff_ids.length !== m.layers.length) throw bad('a manifest and its config list different numbers of layers');
    for (const [i, l] of m.layers.entries()) {
      checkDesc(l, 'a manifest');
      const diffId = cfg.rootfs.diff_ids[i]!;
      if (store.layers.has(digestHex(diffId))) {
        if (!store.hasBlob(l.digest)) {
          const f = inside(dir, `blobs/sha256/${digestHex(l.digest)}`, 'a layer');
          await keepCopy(store, f, l.digest, l.size);
        }
        continue;
      }
      const f = inside(dir, `blobs/sha256/${digestHex(l.digest)}`, 'a layer');
      await store.layers.unpackBlob(fs.createReadStream(f), { digest: l.digest, size: l.size, diffId }, `layer ${l.digest.slice(0, 19)}…`, (file, dg) => store.adoptBlob(file, dg));
    }
    const ref = entry.annotations?.['org.opencontainers.image.ref.name'];
    out.push({ config, manifest, names: ref && validName(ref) ? [normalizeImageName(ref)] : [] });
  }
  return out;
}

/** A verified copy of a blob whose layer is stored already (so push and save have it). */
async function keepCopy(store: ImageStore, file: string, digest: string, size: number): Promise<void> {
  const tmp = `${store.blobFile(digest)}.tmp-${process.pid}`;
  mkdirp(path.dirname(tmp), 0o700);
  const meter = new Meter(size, 'a layer');
  await pipeline(fs.createReadStream(file), meter, fs.createWriteStream(tmp));
  if (`sha256:${meter.hash.digest('hex')}` !== digest) {
    fs.rmSync(tmp, { force: true });
    throw bad(`layer ${digest.slice(0, 19)}… does not match its digest`);
  }
  fs.renameSync(tmp, store.blobFile(digest));
}

/** A docker-archive's RepoTags are Docker's names: a short one is on Docker Hub (as Podman reads it). */
function dockerName(t: string): string {
  const first = t.split('/')[0]!;
  const short = !t.includes('/') || !(first.includes('.') || first.includes(':') || first === 'localhost');
  return normalizeImageName(short ? `docker.io/${t.includes('/') ? '' : 'library/'}${t}` : t);
}

function validName(n: string): boolean {
  try {
    normalizeImageName(n);
    return n.includes('/') || n.includes(':');
  } catch {
    return false;
  }
}

function checkDesc(d: Descriptor, what: string): Descriptor {
  if (typeof d !== 'object' || d === null || typeof d.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw bad(`${what} holds a malformed descriptor`);
  }
  return d;
}

/** Loads the images of a docker-archive (`docker save`, `podman save`). */
async function loadDocker(store: ImageStore, dir: string): Promise<Loaded[]> {
  const list = readJsonIn<unknown>(dir, 'manifest.json', 'manifest.json').value;
  if (!Array.isArray(list) || !list.length) throw bad('its manifest.json lists no image');
  const out: Loaded[] = [];
  for (const item of list as { Config?: unknown; RepoTags?: unknown; Layers?: unknown }[]) {
    if (typeof item.Config !== 'string' || !Array.isArray(item.Layers)) throw bad('its manifest.json is malformed');
    const { raw: config } = readJsonIn<unknown>(dir, item.Config, 'the config');
    const cfg = parseImageConfig(config, 'the archive');
    if (cfg.rootfs.diff_ids.length !== item.Layers.length) throw bad('its manifest.json and config list different numbers of layers');
    const layers: Descriptor[] = [];
    for (const [i, rel] of (item.Layers as unknown[]).entries()) {
      const diffId = cfg.rootfs.diff_ids[i]!;
      const f = inside(dir, rel as string, 'a layer');
      const size = fs.statSync(f).size;
      let digest: string | undefined;
      const known = store.layers.get(digestHex(diffId));
      if (known) {
        // Stored already: keep its blob as this archive has it, verified against the diff_id when uncompressed.
        const m = new Meter();
        await pipeline(fs.createReadStream(f), m, new PassThrough().resume());
        digest = `sha256:${m.hash.digest('hex')}`;
        if (!store.hasBlob(digest)) await keepCopy(store, f, digest, size);
      } else {
        const rec = await store.layers.unpackBlob(fs.createReadStream(f), { diffId }, `layer ${i + 1} of ${item.Config}`, (file, dg) => {
          digest = dg;
          store.adoptBlob(file, dg);
        });
        digest ??= rec.CompressedDigests[0] ?? rec.DiffID;
      }
      layers.push({ mediaType: layerMediaType(f), digest: digest!, size });
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: `sha256:${sha256(config)}`, size: config.length },
      layers,
    };
    const tags = Array.isArray(item.RepoTags) ? (item.RepoTags as unknown[]).filter((t): t is string => typeof t === 'string' && validName(t)) : [];
    out.push({ config, manifest: Buffer.from(JSON.stringify(manifest)), names: tags.map(dockerName) });
  }
  return out;
}

/**
 * Loads images from a file, a stream or an OCI layout directory into the store. Returns the
 * images with the names they got.
 */
export async function loadImages(store: ImageStore, input: { dir: string } | { stream: Readable }): Promise<{ img: ImageRecord; names: string[] }[]> {
  mkdirp(store.layers.layersDir, 0o700);
  const staging = path.join(store.layers.layersDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}.load`);
  try {
    let dir: string;
    if ('dir' in input) dir = input.dir;
    else {
      mkdirp(staging, 0o700);
      await extract(input.stream, staging);
      dir = staging;
    }
    let loaded: Loaded[];
    if (fs.existsSync(path.join(dir, 'index.json')) && fs.existsSync(path.join(dir, 'oci-layout'))) loaded = await loadOci(store, dir);
    else if (fs.existsSync(path.join(dir, 'manifest.json'))) loaded = await loadDocker(store, dir);
    else throw bad('it is neither a docker-archive (manifest.json) nor an OCI layout (oci-layout, index.json)');
    return loaded.map((l) => ({ img: store.commit({ config: l.config, manifest: l.manifest, names: l.names, repoDigests: [] }), names: l.names }));
  } catch (e) {
    store.collect();
    throw e;
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * Writes images as an archive (to `out`) or an OCI layout directory (at `dir`), each blob as
 * it is stored; a docker-archive gets each layer uncompressed, checked against its diff_id.
 */
export async function saveImages(store: ImageStore, imgs: { img: ImageRecord; name?: string }[], format: SaveFormat, target: { dir: string } | { out: Writable }): Promise<void> {
  for (const { img } of imgs) {
    for (const d of [...store.manifest(img).layers, store.manifest(img).config]) {
      if (!store.hasBlob(d.digest)) throw new FerryError('ENOTFOUND', `blob ${d.digest.slice(0, 19)}… of ${img.Names[0] ?? img.Id.slice(0, 12)} is not stored here (the image came by migration): pull or load it again to save it`);
    }
  }
  const stage = 'dir' in target ? target.dir : fs.mkdtempSync(path.join(store.layers.layersDir, `.tmp-${process.pid}-save-`));
  try {
    mkdirp(stage, 0o755);
    if (format === 'docker-archive') await stageDocker(store, imgs, stage);
    else stageOci(store, imgs, stage);
    if ('out' in target) {
      const members = fs.readdirSync(stage).sort();
      const child = spawn('tar', ['-c', '-f', '-', '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', stage, ...members], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', resolve);
      });
      await pipeline(child.stdout!, target.out, { end: false });
      const code = await exited;
      if (code !== 0) throw new FerryError('EARCHIVE', `writing the archive failed: ${stderr.trim().split('\n').pop()}`);
    }
  } catch (e) {
    if ('dir' in target) fs.rmSync(stage, { recursive: true, force: true });
    throw e;
  } finally {
    if (!('dir' in target)) fs.rmSync(stage, { recursive: true, force: true });
  }
}

function linkOrCopy(src: string, dst: string): void {
  try {
    fs.linkSync(src, dst);
  } catch {
    fs.copyFileSync(src, dst);
  }
}

function stageOci(store: ImageStore, imgs: { img: ImageRecord; name?: string }[], dir: string): void {
  const blobs = mkdirp(path.join(dir, 'blobs', 'sha256'));
  const manifests: Descriptor[] = [];
  const put = (digest: string): void => {
    const dst = path.join(blobs, digestHex(digest));
    if (!fs.existsSync(dst)) linkOrCopy(store.blobFile(digest), dst);
  };
  for (const { img, name } of imgs) {
    const m = store.manifest(img);
    for (const d of [...m.layers, m.config]) put(d.digest);
    put(img.Digest);
    const size = fs.statSync(store.blobFile(img.Digest)).size;
    manifests.push({ mediaType: m.mediaType ?? img.ManifestType, digest: img.Digest, size, ...(name ? { annotations: { 'org.opencontainers.image.ref.name': name } } : {}) });
  }
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests }));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

async function stageDocker(store: ImageStore, imgs: { img: ImageRecord; name?: string }[], dir: string): Promise<void> {
  const list: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  for (const { img, name } of imgs) {
    const m = store.manifest(img);
    const cfgFile = `${img.Id}.json`;
    linkOrCopy(store.blobFile(m.config.digest), path.join(dir, cfgFile));
    const layers: string[] = [];
    for (const [i, d] of m.layers.entries()) {
      const diff = img.Layers[i]!;
      const file = `${diff}.tar`;
      layers.push(file);
      const dst = path.join(dir, file);
      if (fs.existsSync(dst)) continue;
      const { compression, stream } = await sniff(fs.createReadStream(store.blobFile(d.digest)));
      const codec = decompressor(compression, `layer ${d.digest.slice(0, 19)}… in the store is corrupt`);
      codec.done.catch(() => undefined);
      const meter = new Meter();
      await Promise.all([pipeline(stream, codec.stream, meter, fs.createWriteStream(dst)), codec.done]);
      if (meter.hash.digest('hex') !== diff) throw new FerryError('EARCHIVE', `layer ${d.digest.slice(0, 19)}… in the store does not match its diff_id: pull or load the image again`);
    }
    list.push({ Config: cfgFile, RepoTags: name ? [name] : img.Names, Layers: layers });
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(list));
}
