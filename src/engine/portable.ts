/**
 * Portable checkpoints: export a checkpointed container as one archive, and import an archive
 * as a new container that is restored where it left off, on this or another host, as many
 * times as wanted (each copy with its own name).
 *
 *   export: (container checkpointed, lock held) -> header -> container.json, ctr.log ->
 *           checkpoint/ -> rootfs/ (upper dir) -> volumes/ -> checksums -> output renamed
 *           into place (a file) or flushed (stdout)
 *   import: stream into a staging dir, validating names, types and checksums; refuse an
 *           incompatible archive from its header before reading on -> check image, name,
 *           volumes, host mounts -> move the staged parts into a new container ->
 *           restore() -> on any failure remove everything the import made
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from '../lib/lazy.js';
import type { Readable, Writable } from 'node:stream';
import { FerryError } from '../lib/errors.js';
import { debug } from '../lib/log.js';
import { mkdirp, readJson, readJsonIfExists, writeJsonAtomic } from '../lib/fsutil.js';
import { newId, validName } from '../lib/ids.js';
import { withLock } from '../lib/lock.js';
import { VERSION } from '../lib/version.js';
import { ArchiveWriter, ARCHIVE_FORMAT, HEADER_MEMBER, POD_ARCHIVE_KIND, readArchive, type WriteStats } from '../drivers/archive/archive.js';
import type { Compression } from '../drivers/archive/compress.js';
import { PodmanReader, type PodmanHeader } from '../drivers/archive/podman.js';
import { archiveContainerName, checkPodmanArchive, stagePodman } from './podman-import.js';
import { createLayer } from '../drivers/storage/overlay.js';
import { requirePodRestore } from './pods.js';
import { getPod, type PodRecord } from './podstore.js';
import { META_FILE, adoptPageImages, checkCompatible, placePreDumps, preDumpChain, type CheckpointMeta } from './checkpoint-dir.js';
import { restore, type RestoreOptions, type RestoreReport } from './restore.js';
import type { Engine } from './engine.js';
import { ENGINE_MOUNTS, engineMountFile, type ContainerRecord } from './types.js';
import type { PullOptions } from '../drivers/registry/pull.js';
import { isShortName } from '../drivers/registry/reference.js';

export interface ExportOptions {
  /** A file path, '-' for standard output, or a stream (a migration channel). */
  target: string | Writable;
  compression: Compression;
  ignoreRootfs?: boolean;
  ignoreVolumes?: boolean;
  /** Leave out the pre-dumps the checkpoint builds on (a pre-copy migration sent them ahead). */
  withoutPreDumps?: boolean;
  /** The CRIU images to send instead of the committed checkpoint (a migration's frozen dump). */
  imageDir?: string;
  /** The archive's layout: Ferry's (default), or Podman's for `podman container restore --import`. */
  format?: 'ferry' | 'podman';
  /** Compress here rather than in a `zstd` child: a small archive (a migration's without its memory). */
  inProcess?: boolean;
}

export interface ArchiveHeader {
  format: number;
  kind: 'ferry-checkpoint';
  createdAt: string;
  ferryVersion: string;
  criuVersion: string;
  runcVersion: string;
  kernel: string;
  arch: string;
  container: { id: string; name: string; imageId: string; imageName: string };
  includes: { rootfs: boolean; volumes: string[] };
}

/** Writes the container's committed checkpoint as an archive. Caller holds the container's lock. */
export async function exportCheckpoint(engine: Engine, rec: ContainerRecord, o: ExportOptions): Promise<WriteStats> {
  const id = rec.config.id;
  const dir = o.imageDir ?? engine.paths.checkpointDir(id);
  const meta = readJson<CheckpointMeta>(path.join(dir, META_FILE));
  const volumes = exportedVolumes(rec, o);
  const header: ArchiveHeader = {
    format: ARCHIVE_FORMAT, // the writer's own, when written (1 unless zstd)
    kind: 'ferry-checkpoint',
    createdAt: new Date().toISOString(),
    ferryVersion: VERSION,
    criuVersion: meta.criuVersion,
    runcVersion: meta.runcVersion,
    kernel: os.release(),
    arch: meta.arch,
    container: { id, name: rec.config.name, imageId: rec.config.imageId, imageName: rec.config.imageName },
    includes: { rootfs: !o.ignoreRootfs, volumes },
  };

  return writeArchive(
    o.target,
    o.compression,
    async (w) => {
      await w.addJson(HEADER_MEMBER, { ...header, format: w.format });
      await writeContainerMembers(engine, rec, w, '', o);
    },
    (why) => new FerryError('EARCHIVE', `exporting ${rec.config.name} failed: ${why}; the checkpoint is kept on this host (\`ferry container restore ${rec.config.name}\`)`),
    { inProcess: o.inProcess },
  );
}

/**
 * Opens an archive to read: a regular file as a descriptor (a decompressor can read it
 * itself), anything else (a pipe such as /dev/stdin) as a stream. Says plainly what is wrong.
 */
export function openArchiveFile(file: string): number | Readable {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FerryError('ENOTFOUND', `${file}: no such file`);
    throw new FerryError('EINVAL', `cannot read ${file}: ${code ?? (e as Error).message}`);
  }
  const st = fs.fstatSync(fd);
  if (st.isFile()) return fd;
  if (st.isDirectory()) {
    fs.closeSync(fd);
    throw new FerryError('EINVAL', `${file} is a directory, not a checkpoint archive`);
  }
  return fs.createReadStream('', { fd });
}

/**
 * Writes an archive, its members added by fill, to target: a file (written beside its name and
 * renamed when complete: never half an archive), '-' for standard output, or a stream (a
 * migration channel). On failure a partial file is removed and failed(why) is thrown.
 */
export async function writeArchive(
  target: string | Writable,
  compression: Compression,
  fill: (w: ArchiveWriter) => Promise<void>,
  failed: (why: string) => FerryError,
  opts: { checksums?: boolean; inProcess?: boolean } = {},
): Promise<WriteStats> {
  const file = typeof target === 'string' && target !== '-' ? path.resolve(target) : undefined;
  if (file && !fs.existsSync(path.dirname(file))) {
    throw new FerryError('ENOTFOUND', `cannot export to ${file}: directory ${path.dirname(file)} does not exist`);
  }
  const tmp = file ? `${file}.tmp-${process.pid}` : '';
  const fd = file ? fs.openSync(tmp, 'w', 0o600) : undefined;
  const w = new ArchiveWriter(fd ?? (target === '-' ? process.stdout : (target as Writable)), compression, opts);
  try {
    await fill(w);
    const stats = await w.finish();
    if (file) fs.renameSync(tmp, file);
    return stats;
  } catch (e) {
    w.abort(e as Error);
    if (file) fs.rmSync(tmp, { force: true });
    throw failed((e as Error).message);
  }
}

/**
 * What any checkpoint archive's header asks of this host, refused before anything large is
 * read: a format this ferry reads, the same CRIU and CPU, and the images its containers use.
 */
export async function checkArchiveHost(
  engine: Engine,
  hdr: { format: unknown; arch: string; criuVersion: string },
  images: { imageId: string; imageName: string }[],
  pull: PullOptions & { authfile?: string } = { tlsVerify: true },
): Promise<void> {
  if (typeof hdr.format !== 'number' || hdr.format > ARCHIVE_FORMAT) {
    throw new FerryError('EARCHIVE', `the archive has format version ${String(hdr.format)}, this ferry reads up to ${ARCHIVE_FORMAT}: upgrade ferry; nothing was created`);
  }
  await checkCompatible(engine, { arch: hdr.arch, criuVersion: hdr.criuVersion });
  for (const m of images) {
    if (engine.images.byId(m.imageId)) continue;
    const needs = `the archive needs image ${m.imageName} (ID ${String(m.imageId).slice(0, 12)}), which this host does not have`;
    // An image named by a registry is pulled, as Podman does; it must be the very same image.
    if (typeof m.imageName === 'string' && isPullable(m.imageName)) {
      let img;
      try {
        img = await engine.pullImage(m.imageName, pull);
      } catch (e) {
        throw new FerryError('ENOTFOUND', `${needs}, and pulling it failed (${(e as Error).message.replace(/[.;:]?\s*$/, '')}): pull, load or import it first; nothing was created`);
      }
      if (img.Id === m.imageId) continue;
      throw new FerryError('ENOTFOUND', `${needs}: ${m.imageName} in its registry is now another image (ID ${img.Id.slice(0, 12)}); load or pull the archive's image first; nothing was created`);
    }
    throw new FerryError('ENOTFOUND', `${needs}: import it first (or pull or load it); nothing was created`);
  }
}

/** A name a registry can be asked for (not a short or localhost/ name, not an ID). */
function isPullable(name: string): boolean {
  const plain = name.split('@')[0]!.replace(/:[\w][\w.-]*$/, '');
  return !isShortName(plain) && !/^localhost(\/|$)/.test(plain);
}

/** The volumes an export of rec carries. */
export function exportedVolumes(rec: ContainerRecord, o: { ignoreVolumes?: boolean }): string[] {
  return o.ignoreVolumes ? [] : rec.config.mounts.filter((m) => m.type === 'volume').map((m) => m.source);
}

/**
 * A checkpointed container's members (record, log, CRIU images, the pre-dumps they build on,
 * rootfs, volumes) under prefix. A migration that sent the pre-dumps already leaves them out.
 */
export async function writeContainerMembers(engine: Engine, rec: ContainerRecord, w: ArchiveWriter, prefix: string, o: { ignoreRootfs?: boolean; ignoreVolumes?: boolean; withoutPreDumps?: boolean; imageDir?: string }): Promise<void> {
  const id = rec.config.id;
  const images = o.imageDir ?? engine.paths.checkpointDir(id);
  await w.addJson(`${prefix}container.json`, { config: rec.config });
  if (fs.existsSync(engine.paths.logPath(id))) await w.addFile(`${prefix}ctr.log`, engine.paths.logPath(id));
  await w.addPlainDir(`${prefix}checkpoint`, images);
  if (!o.withoutPreDumps) {
    for (const [i, d] of preDumpChain(images).entries()) await w.addPlainDir(`${prefix}parents/${i + 1}`, d);
  }
  debug(`export ${rec.config.name}: record, log and CRIU images written`);
  if (!o.ignoreRootfs) await w.addTree(`${prefix}rootfs`, engine.paths.layer(id).upper);
  debug(`export ${rec.config.name}: rootfs diff written`);
  for (const v of exportedVolumes(rec, o)) await w.addTree(`${prefix}volumes/${v}`, engine.volumes.get(v).Mountpoint);
  const shm = path.join(engine.paths.bundle(id), engineMountFile('/dev/shm'));
  if (rec.config.engineMounts?.includes('/dev/shm') && fs.existsSync(shm)) await w.addTree(`${prefix}devshm`, shm);
}

export interface ImportOptions extends RestoreOptions {
  /** A file path, '-' for standard input, or a stream (a migration channel). */
  source: string | Readable;
  name?: string;
  ignoreRootfs?: boolean;
  ignoreVolumes?: boolean;
  /** Allow the archive's bind mounts of host paths (never done without asking). */
  allowHostMounts?: boolean;
  /** Restore into this pod (the container must have been checkpointed out of a pod). */
  pod?: string;
  /** Pre-dumps the archive's checkpoint builds on that came separately (a pre-copy migration), oldest first. */
  preDumps?: string[];
  /**
   * The checkpoint's memory came separately (a migration's page server): resolves, once all
   * of it has arrived, with the directory holding its page images.
   */
  pageImages?: () => Promise<string>;
  /** How to pull the archive's image when this host lacks it (as Podman does). */
  pullOptions?: PullOptions & { authfile?: string };
  /** A checkpoint image's layer: only Podman's layout is valid, its files in any order. */
  checkpointImage?: boolean;
  /** Decompress the stream here rather than in a `zstd` child (a migration's archive). */
  inProcess?: boolean;
}

export type { RestoreOptions };

/**
 * Checks a staged container (dir holds container.json, checkpoint/, rootfs/, volumes/, as read
 * from an archive) against this host and places it as a new, checkpointed container: refused
 * before anything is created when it cannot be. Volumes it creates are added to createdVolumes
 * as they are made, so that a caller can undo them.
 */
export async function placeStaged(
  engine: Engine,
  dir: string,
  o: { name?: string; ignoreRootfs?: boolean; ignoreVolumes?: boolean; allowHostMounts?: boolean; preDumps?: string[] },
  targetPod: PodRecord | undefined,
  createdVolumes: string[],
): Promise<ContainerRecord> {
  const stored = readJson<{ config: ContainerRecord['config'] }>(path.join(dir, 'container.json')).config;
  const meta = readJsonIfExists<CheckpointMeta>(path.join(dir, 'checkpoint', META_FILE));
  if (!meta) throw new FerryError('EARCHIVE', 'bad checkpoint archive: it holds no checkpoint metadata; nothing was created');
  // A checkpoint dumped on top of pre-dumps needs them all: carried as parents/1..N, or sent
  // ahead by a pre-copy migration.
  const carried = fs.existsSync(path.join(dir, 'parents')) ? fs.readdirSync(path.join(dir, 'parents')).sort((x, y) => Number(x) - Number(y)) : [];
  if (carried.some((n, i) => n !== String(i + 1))) throw new FerryError('EARCHIVE', `bad checkpoint archive: its pre-dumps are not numbered 1..${carried.length}; nothing was created`);
  const preDumps = [...carried.map((n) => path.join(dir, 'parents', n)), ...(o.preDumps ?? [])];
  if (carried.length && o.preDumps?.length) throw new FerryError('EARCHIVE', 'bad checkpoint archive: it carries pre-dumps that were also sent separately; nothing was created');
  if (meta.options.withPrevious && !preDumps.length) {
    throw new FerryError('EARCHIVE', 'bad checkpoint archive: its checkpoint was dumped on top of a pre-checkpoint (--with-previous) that it does not carry; nothing was created');
  }
  if (!meta.options.withPrevious && preDumps.length) throw new FerryError('EARCHIVE', 'bad checkpoint archive: it carries pre-dumps that its checkpoint does not build on; nothing was created');

  // 2. What the archive asks of this host: pod, image, name, volumes, host paths.
  if (stored.infraOf) throw new FerryError('EARCHIVE', 'the archive holds a pod infra container, which is never checkpointed; nothing was created');
  if (meta.pod && !targetPod) {
    throw new FerryError('EINVAL', `the container was checkpointed out of pod ${meta.pod.name}: restore it into a pod with --pod POD; nothing was created`);
  }
  if (!meta.pod && targetPod) {
    throw new FerryError('EINVAL', 'the container was not in a pod when it was checkpointed, so it cannot be restored into one (its PID namespace is its own); nothing was created');
  }
  if (meta.pod && targetPod) {
    await requirePodRestore(engine);
    const missing = meta.pod.share.filter((ns) => !targetPod.share.includes(ns as never));
    if (missing.length) {
      throw new FerryError('EINVAL', `pod ${targetPod.name} does not share the ${missing.join(', ')} namespace${missing.length > 1 ? 's' : ''} that the container shared in pod ${meta.pod.name}: use a pod created with --share ${meta.pod.share.join(',')}; nothing was created`);
    }
  }
  const hostMounts = stored.mounts.filter((m) => m.type === 'bind');
  if (hostMounts.length && !o.allowHostMounts) {
    throw new FerryError(
      'ESTATE',
      `the archive bind-mounts host path ${hostMounts.map((m) => m.source).join(', ')} into the container: pass --allow-host-mounts if you trust it; nothing was created`,
    );
  }
  if (stored.network?.mode === 'bridge' && !engine.networks.find(stored.network.name ?? 'ferry')) {
    throw new FerryError('ENOTFOUND', `the archive's container is on network "${stored.network.name}", which this host does not have: create it with \`ferry network create\`; nothing was created`);
  }
  for (const m of stored.mounts) {
    // Anything but these three would be set up as a bind mount of its source: refuse it.
    if (!['volume', 'bind', 'tmpfs'].includes(m.type)) throw new FerryError('EARCHIVE', `bad checkpoint archive: a mount of unknown type "${String(m.type)}"; nothing was created`);
    if (m.type === 'bind' && !fs.existsSync(m.source)) throw new FerryError('ENOTFOUND', `bind mount source ${m.source} does not exist on this host; nothing was created`);
    if (m.type === 'volume' && !validName(m.source)) throw new FerryError('EARCHIVE', `bad checkpoint archive: invalid volume name "${m.source}"; nothing was created`);
  }
  for (const dest of stored.engineMounts ?? []) {
    if (!Object.hasOwn(ENGINE_MOUNTS, dest)) throw new FerryError('EARCHIVE', `bad checkpoint archive: a mount of the engine's own at "${String(dest)}"; nothing was created`);
  }
  const carriedVolumes = stored.mounts.filter((m) => m.type === 'volume' && fs.existsSync(path.join(dir, 'volumes', m.source))).map((m) => m.source);
  if (!o.ignoreVolumes) {
    for (const v of carriedVolumes) {
      if (engine.volumes.find(v)) {
        throw new FerryError('EEXIST', `volume "${v}" already exists on this host: remove it, or pass --ignore-volumes to use it as it is; nothing was created`);
      }
    }
  }
  // An archive exported with --ignore-rootfs has no rootfs/: the image's files are used.

  // 3. Place the container: record, checkpoint, log, rootfs, volumes.
  const created = await withLock(
    engine.paths.namesLock,
    async () => {
      const name = o.name ?? stored.name;
      if (typeof name !== 'string' || !validName(name)) throw new FerryError('EARCHIVE', `bad checkpoint archive: invalid container name "${String(name)}"; nothing was created`);
      if (engine.find(name)) throw new FerryError('EEXIST', `the container name "${name}" is already in use: pass -n/--name with another name; nothing was created`);
      const keepId = o.name === undefined && !fs.existsSync(engine.paths.containerDir(stored.id)) && /^[0-9a-f]{64}$/.test(stored.id);
      const id = keepId ? stored.id : newId();
      const config = { ...stored, id, name, created: new Date().toISOString(), pod: targetPod?.id };
      const rec: ContainerRecord = {
        config,
        state: { status: 'exited', pid: 0, conmonPid: 0, exitCode: 0, checkpointed: true, checkpointedAt: meta.createdAt, restored: false },
      };
      const cdir = engine.paths.containerDir(id);
      const tmp = path.join(engine.paths.containers, `.tmp-${id}`);
      fs.rmSync(tmp, { recursive: true, force: true });
      mkdirp(path.join(tmp, 'userdata'), 0o700);
      fs.renameSync(path.join(dir, 'checkpoint'), path.join(tmp, 'checkpoint'));
      placePreDumps(tmp, preDumps);
      if (fs.existsSync(path.join(dir, 'ctr.log'))) fs.renameSync(path.join(dir, 'ctr.log'), path.join(tmp, 'userdata', 'ctr.log'));
      // The contents of a bind-mounted /dev/shm (a Podman archive's devshm-checkpoint.tar).
      if (stored.engineMounts?.includes('/dev/shm') && fs.existsSync(path.join(dir, 'devshm'))) {
        fs.renameSync(path.join(dir, 'devshm'), path.join(tmp, 'userdata', engineMountFile('/dev/shm')));
        fs.chmodSync(path.join(tmp, 'userdata', engineMountFile('/dev/shm')), 0o1777);
      }
      rec.state.checkpointPath = path.join(cdir, 'checkpoint');
      writeJsonAtomic(path.join(tmp, 'container.json'), rec, 0o600);
      const layer = engine.paths.layer(id);
      fs.rmSync(layer.dir, { recursive: true, force: true });
      createLayer(layer.dir);
      if (!o.ignoreRootfs && fs.existsSync(path.join(dir, 'rootfs'))) {
        fs.rmSync(layer.upper, { recursive: true, force: true });
        fs.renameSync(path.join(dir, 'rootfs'), layer.upper);
      }
      fs.renameSync(tmp, cdir); // the container exists from here on
      return rec;
    },
    { what: 'the container name registry' },
  );
  if (!o.ignoreVolumes) {
    for (const v of carriedVolumes) {
      const vol = engine.volumes.create(v);
      createdVolumes.push(v);
      fs.rmSync(vol.Mountpoint, { recursive: true, force: true });
      fs.renameSync(path.join(dir, 'volumes', v), vol.Mountpoint);
    }
  }
  // Volumes whose contents did not travel (or were ignored) start empty, as with `run -v`.
  for (const m of stored.mounts) {
    if (m.type === 'volume' && !engine.volumes.find(m.source)) {
      engine.volumes.create(m.source);
      createdVolumes.push(m.source);
    }
  }
  return created;
}


/** Imports an archive as a new container and restores it. On failure nothing is left behind. */
export async function importCheckpoint(engine: Engine, o: ImportOptions): Promise<RestoreReport> {
  if (o.name !== undefined && !validName(o.name)) {
    throw new FerryError('EINVAL', `invalid container name "${o.name}": use letters, digits, '_', '.', '-', starting with a letter or digit`);
  }
  // A file is read by its descriptor (a decompressor may read it itself; readArchive closes it).
  let input: Readable | number;
  if (o.source === '-') input = process.stdin;
  else if (typeof o.source !== 'string') input = o.source;
  else input = openArchiveFile(o.source);
  // Named after this process, so that a later ferry can sweep it if this one is killed.
  const staging = path.join(engine.paths.root, `.import-${process.pid}-${randomBytes(6).toString('hex')}`);
  mkdirp(staging, 0o700);
  let created: ContainerRecord | undefined;
  const createdVolumes: string[] = [];
  try {
    // 1. Read and verify everything into staging; refuse early from the header.
    const read = await readArchive(input, staging, {
      inProcess: o.inProcess,
      // Podman's layout, told apart by its content (no Ferry header first).
      foreign: (dest) => new PodmanReader(dest, (h) => checkPodmanArchive(engine, h, o)),
      onHeader: async (h) => {
        const hdr = h as unknown as ArchiveHeader;
        if (o.checkpointImage) throw new FerryError('EARCHIVE', 'bad checkpoint archive: it holds a Ferry archive, not the files of Podman\'s checkpoint layout; nothing was created');
        if ((hdr.kind as string) === POD_ARCHIVE_KIND) throw new FerryError('EINVAL', 'this archive holds a whole pod: restore it with `ferry pod restore --import`; nothing was created');
        if (hdr.kind !== 'ferry-checkpoint') throw new FerryError('EARCHIVE', 'not a ferry checkpoint archive; nothing was created');
        await checkArchiveHost(engine, hdr, [hdr.container], o.pullOptions);
        const name = o.name ?? hdr.container.name;
        if (engine.find(name)) throw new FerryError('EEXIST', `the container name "${name}" is already in use: pass -n/--name with another name; nothing was created`);
      },
    });
    debug('import: archive read and verified');
    if (read.foreign) {
      if (o.pod !== undefined) throw new FerryError('EINVAL', 'a container from a Podman archive cannot be restored into a pod (--pod); nothing was created');
      if (o.preDumps?.length || o.pageImages) throw new FerryError('EARCHIVE', 'a Podman archive cannot be part of a migration; nothing was created');
      const header = read.header as unknown as PodmanHeader;
      // A copy under a new name gets a new address (below): its old one need not fit here.
      const renamed = o.name !== undefined && o.name !== archiveContainerName(header);
      await stagePodman(engine, staging, header, { ignoreStaticIp: o.ignoreStaticIp || renamed });
    }
    if (o.pageImages) adoptPageImages(await o.pageImages(), path.join(staging, 'checkpoint'));
    const targetPod = o.pod !== undefined ? getPod(engine, o.pod) : undefined;
    const renamedFrom = readJson<{ config: ContainerRecord['config'] }>(path.join(staging, 'container.json')).config.name;
    created = await placeStaged(engine, staging, o, targetPod, createdVolumes);
    fs.rmSync(staging, { recursive: true, force: true });
    debug(`import: placed as ${created.config.id.slice(0, 12)}`);

    // 4. Restore through the same path as an in-place restore. A copy under a new name gets a
    //    new address: two containers cannot share one.
    const renamed = o.name !== undefined && o.name !== renamedFrom;
    return await restore(engine, created.config.id, { ...o, ignoreStaticIp: o.ignoreStaticIp || renamed, ignoreStaticMac: o.ignoreStaticMac || renamed });
  } catch (e) {
    // A bad archive or a failed restore creates nothing: undo every step above.
    fs.rmSync(staging, { recursive: true, force: true });
    let message = e instanceof Error ? e.message : String(e);
    if (created) {
      const id = created.config.id;
      // The error names CRIU's log, which goes with the container: keep a copy outside it.
      const log = path.join(engine.paths.bundle(id), 'restore.log');
      if (message.includes(log) && fs.existsSync(log)) {
        const kept = path.join(os.tmpdir(), `ferry-import-${id.slice(0, 12)}-restore.log`);
        try {
          fs.copyFileSync(log, kept);
          message = message.replace(log, kept);
        } catch {
          /* the message keeps the original path */
        }
      }
    }
    await removePlaced(engine, created ? [created] : [], createdVolumes);
    if (typeof input !== 'number' && input !== process.stdin && typeof o.source === 'string') input.destroy();
    if (e instanceof FerryError && e.code === 'ECRIU') {
      throw new FerryError('ECRIU', message.replace('the checkpoint is kept, so you can retry', 'the archive is unchanged and nothing was created'), { detail: e.detail });
    }
    throw e;
  }
}

/** Undoes placeStaged (and a restore that followed): the containers and volumes go. */
export async function removePlaced(engine: Engine, recs: ContainerRecord[], volumes: string[]): Promise<void> {
  for (const rec of recs) {
    const id = rec.config.id;
    await engine.remove(id, { force: true }).catch(() => undefined);
    fs.rmSync(engine.paths.containerDir(id), { recursive: true, force: true });
    fs.rmSync(engine.paths.layer(id).dir, { recursive: true, force: true });
  }
  for (const v of volumes) {
    try {
      engine.volumes.remove(v);
    } catch {
      /* already gone */
    }
  }
}
