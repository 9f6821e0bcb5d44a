/**
 * Checkpoint images: a checkpoint as a one-layer OCI image, in the layout Podman uses for
 * `podman container checkpoint --create-image` (the layer holds the same files as Podman's
 * export archive: config.dump, spec.dump, checkpoint/, rootfs-diff.tar, ...), annotated with
 * Podman's io.podman.annotations.checkpoint.* and the engine-neutral org.criu.checkpoint.*
 * keys. It is pushed and pulled like any image, and restored as often as wanted.
 *
 *   create:  checkpoint with a Podman-layout export to a scratch file -> the file becomes the
 *            image's layer blob (unpacked into the store like any layer) -> manifest annotated
 *   restore: the image (pulled when missing) must carry Podman's runtime annotation -> its layer
 *            blob is read as a Podman archive by the import path (portable.ts, podman-import.ts:
 *            the same checks as any untrusted archive) -> a new container, restored
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { VERSION } from '../lib/version.js';
import { normalizeImageName, type ImageRecord } from '../drivers/storage/images.js';
import { isShortName } from '../drivers/registry/reference.js';
import type { PullOptions } from '../drivers/registry/pull.js';
import { withLock } from '../lib/lock.js';
import { hostInfo } from './host.js';
import type { Engine, CreateOptions, RunOptions, RunResult } from './engine.js';
import { importCheckpoint, type ImportOptions } from './portable.js';
import type { RestoreReport } from './restore.js';
import type { ContainerRecord } from './types.js';

/** Podman's annotation keys (libpod/define/annotations.go); runtime.name marks a checkpoint image. */
export const PODMAN_CHECKPOINT = 'io.podman.annotations.checkpoint.';
/** The engine-neutral keys (checkpointctl's lib/annotations.go). */
export const CRIU_CHECKPOINT = 'org.criu.checkpoint.';
export const CHECKPOINT_IMAGE_MARK = `${PODMAN_CHECKPOINT}runtime.name`;

/** CRIU's version as Podman records it: an integer, major*10000 + minor*100 + sublevel. */
export function criuVersionNumber(v: string): string {
  const [a = 0, b = 0, c = 0] = v.split('.').map((x) => Number.parseInt(x, 10) || 0);
  return String(a * 10000 + b * 100 + c);
}

/** The host's distribution (ID and VERSION_ID of os-release), as Podman's info gives it. */
function distribution(): { name: string; version: string } {
  let text = '';
  for (const f of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      text = fs.readFileSync(f, 'utf8');
      break;
    } catch {
      /* next */
    }
  }
  const field = (k: string): string => (new RegExp(`^${k}=(.*)$`, 'm').exec(text)?.[1] ?? '').replace(/^"(.*)"$/, '$1');
  return { name: field('ID'), version: field('VERSION_ID') };
}

/** The annotations of a checkpoint image of rec: Podman's keys and the engine-neutral ones. */
export async function checkpointImageAnnotations(engine: Engine, rec: ContainerRecord, criuVersion: string): Promise<Record<string, string>> {
  const c = rec.config;
  const info = await hostInfo(engine);
  const dist = distribution();
  const img = engine.images.byId(c.imageId);
  const host = {
    'criu.version': criuVersionNumber(criuVersion),
    'runtime.name': 'runc',
    'runtime.version': info.host.ociRuntime.version,
    'conmon.version': info.host.conmon.version,
    'host.arch': info.host.arch,
    'host.kernel': info.host.kernel,
    'distribution.version': dist.version,
    'distribution.name': dist.name,
  };
  const podman: Record<string, string> = {
    name: c.name,
    rawImageName: c.imageName,
    rootfsImageID: c.imageId,
    rootfsImageName: c.imageName,
    // podman.version is Podman's own: this image says which engine made it in engine.name.
    ...host,
    'cgroups.version': info.host.cgroupVersion,
  };
  const neutral: Record<string, string> = {
    'engine.name': 'ferry',
    'engine.version': VERSION,
    'container.name': c.name,
    rootfsImageName: c.imageName,
    rootfsImageUserRequested: c.imageName,
    rootfsImageID: c.imageId,
    rawImageName: c.imageName,
    ...(img?.Digest ? { rootfsImageSha: img.Digest } : {}),
    ...host,
    'cgroup.version': info.host.cgroupVersion,
  };
  return {
    ...Object.fromEntries(Object.entries(podman).map(([k, v]) => [PODMAN_CHECKPOINT + k, v])),
    ...Object.fromEntries(Object.entries(neutral).map(([k, v]) => [CRIU_CHECKPOINT + k, v])),
  };
}

/** The image name --create-image gives, checked before anything is checkpointed. */
export function checkpointImageName(name: string): string {
  try {
    return normalizeImageName(name);
  } catch {
    throw new FerryError('EINVAL', `invalid --create-image name "${name}": use letters, digits, '.', '_', '-', '/' and an optional :tag; the container is still running`);
  }
}

/**
 * Stores a Podman-layout checkpoint archive (archive) as the checkpoint image name of rec.
 * The checkpoint is committed already: a failure here keeps it.
 */
export async function storeCheckpointImage(engine: Engine, rec: ContainerRecord, archive: string, name: string, criuVersion: string): Promise<ImageRecord> {
  const annotations = await checkpointImageAnnotations(engine, rec, criuVersion);
  try {
    return await withLock(
      engine.paths.imagesLock,
      () =>
        engine.images.importLayerFile(archive, {
          names: [name],
          what: `the checkpoint of ${rec.config.name}`,
          created: new Date().toISOString(),
          config: {},
          history: { created_by: `ferry container checkpoint --create-image ${name} ${rec.config.name}`, comment: 'checkpoint image' },
          annotations,
        }),
      { what: 'the image store' },
    );
  } catch (e) {
    throw new FerryError('EARCHIVE', `creating checkpoint image ${name} failed: ${(e as Error).message.replace(/[.;]?\s*$/, '')}; the checkpoint is kept on this host (\`ferry container restore ${rec.config.name}\`)`);
  }
}

/** The manifest annotations of an image (none when its manifest cannot be read). */
export function imageAnnotations(engine: Engine, img: ImageRecord): Record<string, string> {
  try {
    const a = engine.images.manifest(img).annotations;
    return a && typeof a === 'object' ? a : {};
  } catch {
    return {};
  }
}

/** Whether img is a checkpoint image: it carries Podman's runtime annotation, as Podman checks. */
export function isCheckpointImage(engine: Engine, img: ImageRecord): boolean {
  return typeof imageAnnotations(engine, img)[CHECKPOINT_IMAGE_MARK] === 'string';
}

/** A name a registry can be asked for (not a short or localhost/ name, not an ID). */
function pullable(ref: string): boolean {
  const plain = ref.split('@')[0]!.replace(/:[\w][\w.-]*$/, '');
  return !isShortName(plain) && !/^localhost(\/|$)/.test(plain) && !/^(sha256:)?[0-9a-f]{3,64}$/.test(ref);
}

/**
 * The checkpoint image ref names, when no container has that name: the local image, or pulled
 * from its registry when missing. Undefined when ref names neither a local image nor a
 * registry's (the caller then says "no such container").
 */
export async function findCheckpointImage(engine: Engine, ref: string, pull: PullOptions & { authfile?: string } = { tlsVerify: true }): Promise<ImageRecord | undefined> {
  let img: ImageRecord | undefined;
  try {
    img = engine.images.find(ref);
  } catch {
    return undefined;
  }
  if (!img && pullable(ref)) img = await engine.pullImage(ref, pull);
  if (!img) return undefined;
  if (!isCheckpointImage(engine, img)) {
    throw new FerryError('EINVAL', `image ${ref} is not a checkpoint image (it has no ${CHECKPOINT_IMAGE_MARK} annotation): run it with \`ferry run\`, or restore a checkpoint image made by \`ferry container checkpoint --create-image\`; nothing was created`);
  }
  return img;
}

/**
 * Restores a new container from a checkpoint image: its one layer, read as a Podman archive
 * with every check an archive gets (names, types, links, inner tars), and its base image found
 * or pulled as for an archive. Each call makes a new container (give each copy a name).
 */
export async function restoreFromImage(engine: Engine, img: ImageRecord, ref: string, o: Omit<ImportOptions, 'source'>): Promise<RestoreReport> {
  const layer = checkpointImageLayer(engine, img, ref, '; nothing was created');
  try {
    return await importCheckpoint(engine, { ...o, source: layer, checkpointImage: true });
  } catch (e) {
    if (e instanceof FerryError && /^bad checkpoint archive: /.test(e.message)) {
      throw new FerryError(e.code, e.message.replace(/^bad checkpoint archive: /, `bad checkpoint image ${ref} (its layer): `), { detail: e.detail });
    }
    throw e;
  }
}

/** The file of a checkpoint image's one layer (its archive); `tail` ends the errors. */
export function checkpointImageLayer(engine: Engine, img: ImageRecord, ref: string, tail = ''): string {
  const man = engine.images.manifest(img);
  const layers = Array.isArray(man.layers) ? man.layers : [];
  if (layers.length !== 1) throw new FerryError('EARCHIVE', `checkpoint image ${ref} has ${layers.length} layers, not the one a checkpoint image has${tail}`);
  const digest = layers[0]!.digest;
  if (!engine.images.hasBlob(digest)) {
    throw new FerryError('ENOTFOUND', `the layer of checkpoint image ${ref} is not stored here (the image came by migration): pull it again${tail}`);
  }
  return engine.images.blobFile(digest);
}

/**
 * `ferry run IMAGE`: a checkpoint image (found locally or pulled, as --pull says) restores a
 * new container from it, as Podman's run does (with the name asked for); any other image runs.
 */
export async function runImage(engine: Engine, o: CreateOptions, r: RunOptions = {}): Promise<RunResult> {
  const img = await engine.imageForRun(o.image, o.pull ?? 'missing', o.pullOptions);
  if (!isCheckpointImage(engine, img)) return engine.run({ ...o, pull: o.pull === 'never' ? 'never' : 'missing' }, r);
  const report = await restoreFromImage(engine, img, o.image, { name: o.name, pullOptions: o.pullOptions });
  return { record: engine.lookup(report.id) };
}

/** A scratch file for the archive a checkpoint image is made of. */
export function checkpointImageScratch(engine: Engine, id: string): string {
  return path.join(engine.paths.containerDir(id), `create-image-${process.pid}.tar.gz`);
}
