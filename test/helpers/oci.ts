/**
 * Builds image layers and OCI image layouts for tests: layer tarballs are written by Python's
 * tarfile (an independent tar writer, able to make the hostile members Ferry must refuse), the
 * layout is what `skopeo copy oci:DIR:TAG ...` reads.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

export type Member =
  | { name: string; type: 'file'; data?: string; mode?: number; uid?: number }
  | { name: string; type: 'dir'; mode?: number }
  | { name: string; type: 'symlink' | 'hardlink'; target: string }
  | { name: string; type: 'char'; major: number; minor: number };

const PY = `
import sys, json, tarfile, io
spec = json.load(open(sys.argv[1]))
t = tarfile.open(sys.argv[2], 'w', format=tarfile.PAX_FORMAT)
for m in spec:
    i = tarfile.TarInfo(m['name'])
    i.mtime = 1700000000
    i.uid = m.get('uid', 0); i.gid = 0
    data = None
    ty = m['type']
    if ty == 'file':
        data = m.get('data', '').encode(); i.size = len(data); i.mode = m.get('mode', 0o644)
    elif ty == 'dir':
        i.type = tarfile.DIRTYPE; i.mode = m.get('mode', 0o755)
    elif ty == 'symlink':
        i.type = tarfile.SYMTYPE; i.linkname = m['target']; i.mode = 0o777
    elif ty == 'hardlink':
        i.type = tarfile.LNKTYPE; i.linkname = m['target']
    elif ty == 'char':
        i.type = tarfile.CHRTYPE; i.devmajor = m['major']; i.devminor = m['minor']; i.mode = 0o600
    t.addfile(i, io.BytesIO(data) if data is not None else None)
t.close()
`;

/** An uncompressed layer tarball with exactly these members, in this order. */
export function layerTar(members: Member[], dir: string): Buffer {
  fs.mkdirSync(dir, { recursive: true });
  const spec = path.join(dir, `spec-${process.pid}-${Math.random().toString(36).slice(2)}.json`);
  const out = `${spec}.tar`;
  fs.writeFileSync(spec, JSON.stringify(members));
  const r = spawnSync('python3', ['-c', PY, spec, out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 tarfile failed: ${r.stderr}`);
  const b = fs.readFileSync(out);
  fs.rmSync(spec);
  fs.rmSync(out);
  return b;
}

export const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface LayoutImage {
  /** Layers as uncompressed tarballs, base first. */
  layers: Buffer[];
  compression?: 'gzip' | 'none';
  config?: Record<string, unknown>;
  architecture?: string;
  /** The manifest's annotations (a checkpoint image's). */
  annotations?: Record<string, string>;
}

/**
 * Writes an OCI image layout at dir holding one image tagged `tag`; returns the config's and
 * manifest's digests.
 */
export function writeLayout(dir: string, tag: string, img: LayoutImage): { configDigest: string; manifestDigest: string; diffIds: string[] } {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer): { digest: string; size: number } => {
    const d = sha(b);
    fs.writeFileSync(path.join(blobs, d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const docker = false; // Docker schema 2: have skopeo convert (Registry.push's format)
  const gz = (img.compression ?? 'gzip') === 'gzip';
  const layerDescs = img.layers.map((l) => {
    const blob = gz ? zlib.gzipSync(l) : l;
    return {
      mediaType: docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : gz ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar',
      ...put(blob),
    };
  });
  const diffIds = img.layers.map((l) => sha(l));
  const config = {
    created: '2024-01-01T00:00:00Z',
    architecture: img.architecture ?? 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'], ...(img.config ?? {}) },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: img.layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
  };
  const cfg = put(Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: docker ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json', ...cfg },
    layers: layerDescs,
    ...(img.annotations ? { annotations: img.annotations } : {}),
  };
  const man = put(Buffer.from(JSON.stringify(manifest)));
  if (tag === '') return { configDigest: cfg.digest, manifestDigest: man.digest, diffIds };
  const indexFile = path.join(dir, 'index.json');
  const index = fs.existsSync(indexFile) ? (JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: unknown[] }) : { schemaVersion: 2, manifests: [] as unknown[] };
  index.manifests.push({ mediaType: manifest.mediaType, ...man, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(indexFile, JSON.stringify(index));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { configDigest: cfg.digest, manifestDigest: man.digest, diffIds };
}

/**
 * A multi-platform image: each image's blobs, then an OCI index naming them by platform,
 * tagged `tag` in the layout. Returns the index's digest.
 */
export function writeMultiPlatform(dir: string, tag: string, images: (LayoutImage & { architecture: string })[]): string {
  const manifests = images.map((img) => {
    const { manifestDigest } = writeLayout(dir, '', img);
    const size = fs.statSync(path.join(dir, 'blobs', 'sha256', manifestDigest.slice(7))).size;
    return { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size, platform: { architecture: img.architecture, os: 'linux' } };
  });
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
  const d = sha(index);
  fs.writeFileSync(path.join(dir, 'blobs', 'sha256', d.slice(7)), index);
  const indexFile = path.join(dir, 'index.json');
  const top = fs.existsSync(indexFile) ? (JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: unknown[] }) : { schemaVersion: 2, manifests: [] as unknown[] };
  top.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: d, size: index.length, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(indexFile, JSON.stringify(top));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return d;
}

/** The busybox rootfs tarball's members re-rooted as a layer (used as a base layer). */
export function readFileLayer(tarball: string): Buffer {
  return fs.readFileSync(tarball);
}

/**
 * What a Ferry root's image store holds, as names (images, layers, link names, blobs): a failed
 * pull or load must leave it exactly as it was.
 */
export function storedImageFiles(root: string): string[] {
  const ls = (d: string): string[] => {
    try {
      return fs.readdirSync(path.join(root, 'images', d)).map((x) => `${d}/${x}`);
    } catch {
      return [];
    }
  };
  return [...ls('.').filter((x) => /[0-9a-f]{64}$/.test(x)), ...ls('layers'), ...ls('l'), ...ls('blobs/sha256')].sort();
}
