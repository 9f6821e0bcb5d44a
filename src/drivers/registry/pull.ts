/**
 * Pull: manifest (an index or list resolved to the platform), config, then each layer the
 * store lacks, streamed through its digest check and the layer sanitizer into its own
 * directory. The image is recorded only when every blob matched its digest.
 */
import { FerryError } from '../../lib/errors.js';
import { hostPlatform, MEDIA, parseImageConfig, type Descriptor, type ImageManifest, type ImageRecord, type ImageStore } from '../storage/images.js';
import { digestHex } from '../storage/layers.js';
import { RegistryClient, type ClientOptions } from './client.js';
import { referenceString, repository, type ImageReference } from './reference.js';

export interface PullOptions extends ClientOptions {
  /** os/arch[/variant]; the host's by default. */
  platform?: string;
  /** Progress lines (Podman's words), e.g. to stderr; none with -q. */
  progress?: (line: string) => void;
  /** Bytes of a blob received so far, as they arrive (a terminal's live progress). */
  bytes?: (digest: string, received: number, total: number) => void;
}

const LAYER_TYPES = new Set<string>([MEDIA.ociLayer, MEDIA.ociLayerGzip, MEDIA.ociLayerZstd, MEDIA.dockerLayer, 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip']);
const CONFIG_MAX = 8 << 20;
const PARALLEL = 3;

export function parsePlatform(p: string | undefined): { os: string; architecture: string; variant?: string } {
  if (p === undefined) return hostPlatform();
  const parts = p.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => !/^[a-z0-9_]+$/.test(x))) throw new FerryError('EINVAL', `invalid --platform "${p}": use OS/ARCH[/VARIANT], e.g. linux/amd64`);
  return { os: parts[0]!, architecture: parts[1]!, ...(parts[2] ? { variant: parts[2] } : {}) };
}

function parseJson<T>(b: Buffer, what: string): T {
  try {
    return JSON.parse(b.toString('utf8')) as T;
  } catch {
    throw new FerryError('EARCHIVE', `${what} is not JSON`);
  }
}

function checkDescriptor(d: unknown, what: string): Descriptor {
  const x = d as Descriptor;
  if (typeof x !== 'object' || x === null || typeof x.mediaType !== 'string' || typeof x.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(x.digest) || !Number.isSafeInteger(x.size) || x.size < 0) {
    throw new FerryError('EARCHIVE', `${what} holds a malformed descriptor`);
  }
  return x;
}

export async function pullImage(store: ImageStore, ref: ImageReference, o: PullOptions): Promise<ImageRecord> {
  const say = o.progress ?? (() => undefined);
  const client = new RegistryClient(ref, o);
  const want = parsePlatform(o.platform);
  const name = referenceString(ref);
  say(`Trying to pull ${name}...`);
  let top = await client.manifest(ref.digest ?? ref.tag!);
  const repoDigests = [`${repository(ref)}@${top.digest}`];
  let m = top;
  if (top.mediaType === MEDIA.ociIndex || top.mediaType === MEDIA.dockerList) {
    const idx = parseJson<{ manifests?: unknown[] }>(top.body, `the index of ${name}`);
    const list = (Array.isArray(idx.manifests) ? idx.manifests : []).map((d) => checkDescriptor(d, `the index of ${name}`));
    const match = list.filter((d) => d.platform?.os === want.os && d.platform?.architecture === want.architecture);
    const pick = match.find((d) => want.variant === undefined || d.platform?.variant === undefined || d.platform.variant === want.variant) ?? match[0];
    if (!pick) {
      const have = list.map((d) => `${d.platform?.os}/${d.platform?.architecture}${d.platform?.variant ? `/${d.platform.variant}` : ''}`).join(', ');
      throw new FerryError('ENOTFOUND', `${name} has no image for ${want.os}/${want.architecture} (it has ${have || 'none'}): choose one with --platform`);
    }
    m = await client.manifest(pick.digest);
    if (m.mediaType !== MEDIA.ociManifest && m.mediaType !== MEDIA.dockerManifest) throw new FerryError('EUNSUPPORTED', `${name}: an index pointing to an index is not supported`);
    repoDigests.push(`${repository(ref)}@${m.digest}`);
    top = m;
  } else if (top.mediaType !== MEDIA.ociManifest && top.mediaType !== MEDIA.dockerManifest) {
    throw new FerryError('EUNSUPPORTED', `${name} is a ${top.mediaType || 'untyped'} artifact, not a container image`);
  }
  say('Getting image source signatures');
  const man = parseJson<ImageManifest>(m.body, `the manifest of ${name}`);
  if (man.schemaVersion !== 2 || !Array.isArray(man.layers)) throw new FerryError('EARCHIVE', `the manifest of ${name} is malformed (no layers)`);
  const cfgDesc = checkDescriptor(man.config, `the manifest of ${name}`);
  const layers = man.layers.map((d) => checkDescriptor(d, `the manifest of ${name}`));
  for (const l of layers) {
    if (!LAYER_TYPES.has(l.mediaType)) throw new FerryError('EUNSUPPORTED', `${name} has a layer of type ${l.mediaType}, which Ferry does not unpack`);
  }
  if (cfgDesc.size > CONFIG_MAX) throw new FerryError('EARCHIVE', `the config of ${name} is too large (${cfgDesc.size} bytes)`);
  const configBlob = await client.blobBuffer(cfgDesc.digest, CONFIG_MAX);
  const cfg = parseImageConfig(configBlob, name);
  if (cfg.rootfs.diff_ids.length !== layers.length) throw new FerryError('EARCHIVE', `${name}: its manifest lists ${layers.length} layers but its config ${cfg.rootfs.diff_ids.length}`);
  if (cfg.os && cfg.architecture && (cfg.os !== want.os || cfg.architecture !== want.architecture)) {
    throw new FerryError('EUNSUPPORTED', `${name} is an image for ${cfg.os}/${cfg.architecture}, not ${want.os}/${want.architecture}: choose another tag or --platform`);
  }
  // Layers the store lacks, a few at a time; all must arrive before the image exists.
  const todo = layers.map((d, i) => ({ d, diffId: cfg.rootfs.diff_ids[i]! }));
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < todo.length && !failed) {
      const { d, diffId } = todo[next++]!;
      const have = store.layers.get(digestHex(diffId));
      if (have && store.hasBlob(d.digest)) {
        say(`Copying blob ${d.digest.slice(7, 19)} skipped: already exists`);
        continue;
      }
      if (have) {
        // The layer came as another blob (other compression, an import): keep this one too,
        // so push and save send the image as its manifest says.
        try {
          await store.putBlobStream(await client.blob(d.digest), d.digest, d.size, `layer ${d.digest.slice(0, 19)}…`);
        } catch (e) {
          failed = true;
          throw e;
        }
        store.layers.noteDigest(have, d.digest);
        say(`Copying blob ${d.digest.slice(7, 19)} done`);
        continue;
      }
      try {
        const body = await client.blob(d.digest);
        const onBytes = o.bytes ? (n: number): void => o.bytes!(d.digest, n, d.size) : undefined;
        await store.layers.unpackBlob(body, { digest: d.digest, size: d.size, diffId }, `layer ${d.digest.slice(0, 19)}…`, (f) => store.adoptBlob(f, d.digest), onBytes);
      } catch (e) {
        failed = true;
        throw e;
      }
      say(`Copying blob ${d.digest.slice(7, 19)} done`);
    }
  };
  // Every worker settles before a failure is reported (the caller then frees what they stored).
  const settled = await Promise.allSettled(Array.from({ length: Math.min(PARALLEL, todo.length) }, worker));
  const bad = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  say(`Copying config ${cfgDesc.digest.slice(7, 19)} done`);
  say('Writing manifest to image destination');
  say('Storing signatures');
  return store.commit({
    config: configBlob,
    manifest: m.body,
    names: ref.tag ? [`${repository(ref)}:${ref.tag}`] : [],
    repoDigests,
    configDigest: cfgDesc.digest,
    manifestDigest: m.digest,
  });
}
