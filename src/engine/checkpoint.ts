/**
 * Checkpoint of a container in place, top to bottom:
 *
 *   refuse early -> record op -> dump into checkpoint.tmp/ (dump.ts) ->
 *   on failure: the container still runs, tmp removed, plain-words error ->
 *   on success: metadata written, tmp renamed to checkpoint/ (commit point), runtime released
 *   (with --export the archive streams out meanwhile), state "exited, checkpointed" saved.
 *
 * A ferry killed half-way leaves the op behind; repairCheckpoint() finishes or rolls back from
 * what is on disk, so no container is "running" in state and dead, and no half-written
 * checkpoint ever looks valid. Restore is restore.ts; what a checkpoint directory holds is
 * checkpoint-dir.ts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { debug } from '../lib/log.js';
import { commitDir, duBytes, readJsonIfExists } from '../lib/fsutil.js';
import { processAlive, waitFor } from '../lib/proc.js';
import { readDumpStats, type DumpStats } from '../drivers/criu/stats.js';
import type { WriteStats } from '../drivers/archive/archive.js';
import { readLog, requireCapability } from '../drivers/criu/criu.js';
import { META_FILE, PRE_DIR, checkpointMetaOptions, PRE_DUMP_NAME, removePreDumps, makeMeta, writeCheckpointMeta, type CheckpointMeta } from './checkpoint-dir.js';
import { dump, refuseUndumpable } from './dump.js';
import type { Engine } from './engine.js';
import { exportCheckpoint, type ExportOptions } from './portable.js';
import { checkPodmanExport, exportPodman } from './podman-export.js';
import { checkpointImageName, checkpointImageScratch, findCheckpointImage, restoreFromImage, storeCheckpointImage } from './checkpoint-image.js';
import { toCheckpointed, toExited, withoutCheckpoint } from './state.js';
import type { ContainerRecord, OpOf } from './types.js';
import { importCheckpoint, type ImportOptions } from './portable.js';
import { restore, type RestoreOptions, type RestoreReport } from './restore.js';
import type { Selection } from './select.js';
import type { PullOptions } from '../drivers/registry/pull.js';
import type { ImageRecord } from '../drivers/storage/images.js';

export interface CheckpointOptions {
  leaveRunning?: boolean;
  /** Keep CRIU's log and work files (Podman's --keep); the checkpoint itself is always kept. */
  keep?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  manageCgroupsMode?: 'soft' | 'full' | 'strict' | 'ignore';
  emptyNs?: string[];
  autoDedup?: boolean;
  /** Pre-copy round: dump memory only, leave the container running. */
  preCheckpoint?: boolean;
  /** Final dump that writes only the pages changed since the pre-checkpoint. */
  withPrevious?: boolean;
  /**
   * Pre-copy in several rounds (migration): the directory in the container's directory a
   * pre-dump goes to (default pre-checkpoint), and the pre-dump a pre-dump or final dump builds
   * on (default for --with-previous: pre-checkpoint). Names match PRE_DUMP_NAME.
   */
  preDumpDir?: string;
  parentDir?: string;
  /** Also write the checkpoint as a portable archive. */
  export?: ExportOptions;
  /** Set by a pod checkpoint, which freezes its members before dumping them (and thaws them). */
  podFreeze?: boolean;
  /** A name for the checkpoint (Docker's checkpoint ID): a restore may ask for it by name. */
  label?: string;
  /** Also store the checkpoint as a checkpoint image of this name (Podman's --create-image). */
  createImage?: string;
}

export interface CheckpointReport {
  id: string;
  name: string;
  path: string;
  /** Archive figures when exported. */
  archive?: WriteStats;
  /** Whole engine operation, including locking, bookkeeping and cleanup. */
  totalMs: number;
  /** CRIU's dump alone. */
  runtimeMs: number;
  criu?: DumpStats;
  /** The checkpoint image made (--create-image): its ID. */
  imageId?: string;
}

// ------------------------------------------------------------------------- checkpoint

/** What a checkpoint's name may be (Docker's rule for checkpoint IDs, bounded). */
export const CHECKPOINT_LABEL = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** The name a checkpoint goes by: the one it was given, or `checkpoint`. */
export function checkpointLabel(meta: Pick<CheckpointMeta, 'options'>): string {
  return meta.options.label ?? 'checkpoint';
}

export async function checkpoint(engine: Engine, ref: string, o: CheckpointOptions): Promise<CheckpointReport> {
  return engine.withContainer(ref, (rec) => checkpointLocked(engine, rec, o));
}

/** checkpoint() for a container whose lock the caller holds (a pod checkpoint holds them all). */
export async function checkpointLocked(engine: Engine, rec: ContainerRecord, o: CheckpointOptions): Promise<CheckpointReport> {
  const t0 = performance.now();
  const id = rec.config.id;
  const name = rec.config.name;
  // 1. Refuse what cannot work, before touching anything.
  if (rec.state.status !== 'running') {
    throw new FerryError('ESTATE', `container ${name} is not running (${rec.state.status}): only a running container can be checkpointed`);
  }
  // As Podman: even with --leave-running, a --rm container's checkpoint would go when it stops.
  if (rec.config.autoRemove && !o.export) {
    throw new FerryError('ESTATE', `container ${name} was started with --rm and would be removed with its checkpoint when it stops: checkpoint it with --export`);
  }
  if (o.export && o.preCheckpoint) throw new FerryError('EINVAL', '--export cannot be used with --pre-checkpoint: export the final checkpoint');
  if (o.export?.format === 'podman') checkPodmanExport(rec);
  // A checkpoint image holds Podman's archive layout: the same refusals, before anything is done.
  const imageName = o.createImage !== undefined ? checkpointImageName(o.createImage) : undefined;
  if (imageName !== undefined) {
    if (o.export) throw new FerryError('EINVAL', '--create-image and --export cannot be used together: make the image, then `ferry save` or push it; the container is still running');
    if (o.preCheckpoint) throw new FerryError('EINVAL', '--create-image cannot be used with --pre-checkpoint: make the image of the final checkpoint; the container is still running');
    checkPodmanExport(rec);
  }
  const exportTo: ExportOptions | undefined = imageName !== undefined ? { target: checkpointImageScratch(engine, id), compression: 'gzip', format: 'podman' } : o.export;
  // An export that cannot be written is refused before the container is stopped.
  if (o.export && typeof o.export.target === 'string' && o.export.target !== '-') {
    const outDir = path.dirname(path.resolve(o.export.target));
    if (!fs.existsSync(outDir) || !fs.statSync(outDir).isDirectory()) {
      throw new FerryError('ENOTFOUND', `cannot export to ${o.export.target}: directory ${outDir} does not exist; the container is still running`);
    }
  }
  if (rec.config.infraOf) {
    throw new FerryError('EUNSUPPORTED', `container ${name} is the infra container of a pod: checkpoint the pod's members instead`);
  }
  if (rec.config.network?.mode === 'host') {
    throw new FerryError('EUNSUPPORTED', `container ${name} uses the host's network (--network host), whose sockets belong to the host: it cannot be checkpointed`);
  }
  refuseUndumpable(rec);
  if (o.label !== undefined && !CHECKPOINT_LABEL.test(o.label)) {
    throw new FerryError('EINVAL', `invalid checkpoint name "${o.label}": use letters, digits, '_', '.', '-', starting with a letter or digit (at most 128)`);
  }
  if (o.label !== undefined && o.preCheckpoint) throw new FerryError('EINVAL', 'a pre-checkpoint cannot be named: name the final checkpoint');
  // A container holds one checkpoint: a named one never silently replaces another.
  const existing = o.label !== undefined ? readJsonIfExists<CheckpointMeta>(path.join(engine.paths.checkpointDir(id), META_FILE)) : undefined;
  if (existing && checkpointLabel(existing) !== o.label) {
    throw new FerryError('EEXIST', `container ${name} already has checkpoint ${checkpointLabel(existing)} (a container holds one): remove it first`);
  }
  if (o.preCheckpoint && o.withPrevious) throw new FerryError('EINVAL', '--pre-checkpoint and --with-previous cannot be used together: pre-checkpoint first, then checkpoint --with-previous');
  if (o.preCheckpoint || o.withPrevious) requireCapability(await engine.criu(), 'preCopy', 'checkpoint without --pre-checkpoint/--with-previous');
  const parent = o.withPrevious ? o.parentDir ?? PRE_DIR : o.preCheckpoint ? o.parentDir : undefined;
  for (const d of [o.preDumpDir, parent]) if (d !== undefined && !PRE_DUMP_NAME.test(d)) throw new FerryError('EINVAL', `invalid pre-dump directory name "${d}"`);
  if (parent && !fs.existsSync(path.join(engine.paths.containerDir(id), parent, 'inventory.img'))) {
    throw new FerryError('ESTATE', `container ${name} has no pre-checkpoint: run \`ferry container checkpoint --pre-checkpoint ${name}\` first`);
  }

  // 2. Dump into a temporary directory; only a complete dump is ever renamed into place.
  const finalDir = o.preCheckpoint ? path.join(engine.paths.containerDir(id), o.preDumpDir ?? PRE_DIR) : engine.paths.checkpointDir(id);
  const tmp = `${finalDir}.tmp`;
  const meta = checkpointMetaOptions(o);
  // The op is recorded before anything is written, so a ferry killed from here on leaves
  // nothing that the next command's repair does not know about. It reaches the disk with the
  // dump's record of runc's PID, right after runc starts and long before CRIU can end the
  // container: the freeze and the spawn do not wait for a flush.
  // A final dump freezes the container first (a pod checkpoint has frozen its members already).
  const freeze = !o.preCheckpoint && !o.podFreeze;
  engine.beginOp(rec, 'checkpoint', { imageDir: finalDir, preDump: !!o.preCheckpoint, frozen: freeze || !!o.podFreeze, meta }, { durable: false });
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
  let d: Awaited<ReturnType<typeof dump>>;
  try {
    d = await dump(engine, rec, {
      imageDir: tmp,
      meta: o.preCheckpoint ? undefined : meta,
      freeze,
      portable: exportTo?.format === 'podman',
      criu: {
        leaveRunning: o.leaveRunning || o.preCheckpoint,
        tcpEstablished: o.tcpEstablished,
        fileLocks: o.fileLocks,
        extUnixSk: o.extUnixSk,
        shellJob: o.shellJob,
        manageCgroupsMode: o.manageCgroupsMode,
        emptyNs: o.emptyNs,
        autoDedup: o.autoDedup,
        preDump: o.preCheckpoint,
        // Relative to the image dir, so it still resolves after tmp is renamed.
        parentPath: parent ? path.join('..', parent) : undefined,
      },
    });
  } catch (e) {
    // 3. A failed dump: CRIU resumed the container; make sure, clean up, explain.
    fs.rmSync(tmp, { recursive: true, force: true });
    const still = await engine.runtime.state(id);
    // A pod checkpoint dumps its members frozen: paused is alive too.
    if (!still || (still.status !== 'running' && still.status !== 'paused')) {
      // Should not happen (CRIU resumes tasks on failure), but never leave a lie in state.
      toExited(rec.state, rec.state.exitCode);
      rec.state.error = 'the container stopped during a failed checkpoint';
      await engine.releaseRuntime(rec);
    }
    engine.endOp(rec);
    throw e;
  }

  // 4. Commit: the rename that makes the checkpoint exist (the dump wrote its metadata).
  commitDir(tmp, finalDir);
  if (!o.keep) fs.rmSync(d.logFile, { force: true }); // Podman's --keep keeps CRIU's logs
  debug(`checkpoint ${name}: committed`);

  // 5. The container is gone unless asked to keep running: release its runtime. Meanwhile
  //    (6.) the export streams out: the checkpoint is committed, so a failed export loses
  //    nothing, and the archive needs neither the network nor the mount being released (in
  //    a migration, this keeps the network teardown out of the downtime).
  const release = async (): Promise<void> => {
    if (!o.leaveRunning && !o.preCheckpoint) {
      // conmon writes the exit file, then runs its exit command, which waits for our lock:
      // wait for the file, not for conmon.
      await engine.waitExit(rec, 5000);
      debug(`checkpoint ${name}: conmon saw the exit`);
      // The rootfs stays mounted until the container is restored (which reuses the mount) or
      // removed: unmounting an overlay syncs the whole upper filesystem, CRIU's fresh images
      // included, which would add a second per 1 GiB of memory to the checkpoint for nothing.
      // runc's record of the dumped container goes with conmon's exit command, which waits for
      // this lock (a `runc delete`, 6-13 ms, that nothing here needs to wait for).
      await engine.releaseRuntime(rec, { keepRootfs: true, deferRuntimeRecord: true });
      debug(`checkpoint ${name}: runtime released`);
      toExited(rec.state, 0);
    }
    if (!o.preCheckpoint) toCheckpointed(rec.state, finalDir, { log: o.keep ? d.logFile : undefined, stopped: !o.leaveRunning });
    engine.endOp(rec);
    if (!o.preCheckpoint) engine.event(rec, 'checkpoint');
  };
  const [released, exported] = await Promise.allSettled([release(), exportTo ? (exportTo.format === 'podman' ? exportPodman(engine, rec, exportTo) : exportCheckpoint(engine, rec, exportTo)) : Promise.resolve(undefined)]);
  let imageId: string | undefined;
  try {
    if (released.status === 'rejected') throw released.reason;
    if (exported.status === 'rejected') throw exported.reason;
    // 7. The archive becomes the checkpoint image's layer (the checkpoint is committed: a
    //    failure keeps it).
    if (imageName !== undefined) imageId = (await storeCheckpointImage(engine, rec, exportTo!.target as string, imageName, readJsonIfExists<CheckpointMeta>(path.join(finalDir, META_FILE))?.criuVersion ?? '')).Id;
  } finally {
    if (imageName !== undefined) fs.rmSync(exportTo!.target as string, { force: true });
  }
  const archive: WriteStats | undefined = imageName === undefined ? exported.value : undefined;
  if (archive) debug(`checkpoint ${name}: exported ${archive.bytes} bytes`);
  // A --rm container lives on only in its archive (as with Podman).
  if (o.export && rec.config.autoRemove && !o.leaveRunning) await engine.removeFiles(rec);
  return { id, name, path: finalDir, totalMs: performance.now() - t0, runtimeMs: d.runtimeMs, criu: d.stats, archive, imageId };
}

// ------------------------------------------------------------------------- listing

export interface CheckpointEntry {
  id: string;
  name: string;
  path: string;
  createdAt: string;
  size: number;
  criuVersion: string;
  tcpEstablished: boolean;
  containerStatus: string;
  /** The name it goes by (checkpointLabel). */
  label: string;
}

/** The checkpoints this host holds (one per container at most). */
export async function listCheckpoints(engine: Engine): Promise<CheckpointEntry[]> {
  const out: CheckpointEntry[] = [];
  for (const rec of await engine.list({ all: true })) {
    const dir = engine.paths.checkpointDir(rec.config.id);
    const meta = readJsonIfExists<CheckpointMeta>(path.join(dir, META_FILE));
    if (!meta) continue;
    out.push({
      id: rec.config.id,
      name: rec.config.name,
      path: dir,
      createdAt: meta.createdAt,
      size: duBytes(dir),
      criuVersion: meta.criuVersion,
      tcpEstablished: meta.options.tcpEstablished,
      containerStatus: rec.state.status,
      label: checkpointLabel(meta),
    });
  }
  return out;
}

/** The checkpoints of one container (none or one), by the name each goes by. */
export async function containerCheckpoints(engine: Engine, ref: string): Promise<CheckpointEntry[]> {
  const id = engine.lookup(ref).config.id;
  return (await listCheckpoints(engine)).filter((c) => c.id === id);
}

/**
 * Deletes a container's checkpoint; the container itself stays (as an exited container).
 * With label, only the checkpoint of that name (refused if it goes by another).
 */
export async function removeCheckpoint(engine: Engine, ref: string, label?: string): Promise<void> {
  await engine.withContainer(ref, async (rec) => {
    if (label !== undefined) requireCheckpointLabel(engine, rec, label);
    await removeCheckpointLocked(engine, rec);
  });
}

/** Refuses unless the container's checkpoint goes by label. */
export function requireCheckpointLabel(engine: Engine, rec: ContainerRecord, label: string): void {
  const meta = readJsonIfExists<CheckpointMeta>(path.join(engine.paths.checkpointDir(rec.config.id), META_FILE));
  if (!meta || checkpointLabel(meta) !== label) throw new FerryError('ENOTFOUND', `container ${rec.config.name} has no checkpoint named ${label}`);
}

/** removeCheckpoint() for a container whose lock the caller holds. */
export async function removeCheckpointLocked(engine: Engine, rec: ContainerRecord): Promise<void> {
  const dir = engine.paths.checkpointDir(rec.config.id);
  if (!fs.existsSync(dir)) throw new FerryError('ENOTFOUND', `container ${rec.config.name} has no checkpoint`);
  const trash = `${dir}.rm`;
  fs.rmSync(trash, { recursive: true, force: true });
  fs.renameSync(dir, trash);
  fs.rmSync(trash, { recursive: true, force: true });
  removePreDumps(engine.paths.containerDir(rec.config.id));
  withoutCheckpoint(rec.state);
  engine.save(rec);
}

// ------------------------------------------------------------------------- repair

/** What a repair finds after a ferry died during a checkpoint (once no runc of ours works on it). */
export interface CheckpointFindings {
  /** The checkpoint dir holds a dump made since the op began (the ferry died after the rename). */
  committed: boolean;
  /** The tmp dir holds a dump CRIU finished (inventory written, "dumping finished" in its log). */
  complete: boolean;
  /** What runc says of the container's processes. */
  runtime: 'running' | 'paused' | 'gone';
  /** The op froze the container for the dump (or its pod checkpoint did). */
  frozen: boolean;
}

export interface CheckpointRepair {
  /** keep: already committed; commit: finish the rename (metadata first); discard: delete tmp. */
  images: 'keep' | 'commit' | 'discard';
  /** Thaw what the dead ferry froze for the dump and left frozen. */
  thaw: boolean;
  /** The container no longer runs: release it, recorded with this exit code (undefined: as it was). */
  exited?: { exitCode: number | undefined };
}

/** The repair decision, from the findings alone. */
export function decideCheckpointRepair(f: CheckpointFindings): CheckpointRepair {
  const images = f.committed ? 'keep' : f.complete ? 'commit' : 'discard';
  if (f.runtime !== 'gone') return { images, thaw: f.runtime === 'paused' && f.frozen };
  // Killed by the dump (not --leave-running) with no usable dump: it died as if SIGKILLed.
  return { images, thaw: false, exited: { exitCode: images === 'discard' ? 137 : undefined } };
}

/**
 * A ferry died during a checkpoint. Wait for the runc it started, then: a complete dump is
 * committed (the container is checkpointed, as asked); an incomplete one is deleted and the
 * container is recorded as running or exited according to runc.
 */
export async function repairCheckpoint(engine: Engine, rec: ContainerRecord, op: OpOf<'checkpoint'>): Promise<void> {
  const id = rec.config.id;
  const { imageDir, preDump, frozen } = op.args;
  // Wait for the runc it started: the one recorded, and any it had no time to record (killed
  // while spawning it), which would otherwise still be writing into the dump we remove.
  await waitFor(() => !processAlive(op.helperPid) && !engine.runtime.busy(id).length, 120_000, 50);
  const rs = await engine.runtime.state(id);
  const tmp = `${imageDir}.tmp`;
  const log = readLog(path.join(engine.paths.bundle(id), preDump ? 'predump.log' : 'dump.log'));
  const complete = fs.existsSync(path.join(tmp, 'inventory.img')) && /dumping finished successfully/i.test(log);
  const meta = complete || preDump ? undefined : readJsonIfExists<CheckpointMeta>(path.join(imageDir, META_FILE));
  const alive = (rs?.status === 'running' || rs?.status === 'paused') && processAlive(rs.pid);
  const plan = decideCheckpointRepair({
    committed: !!meta && Date.parse(meta.createdAt) >= Date.parse(op.since),
    complete,
    runtime: alive ? (rs.status as 'running' | 'paused') : 'gone',
    frozen,
  });
  if (plan.images === 'keep') {
    fs.rmSync(tmp, { recursive: true, force: true });
    toCheckpointed(rec.state, imageDir, { at: meta!.createdAt, stopped: false });
  } else if (plan.images === 'commit') {
    if (!preDump) writeCheckpointMeta(engine, rec, tmp, await makeMeta(engine, rec, op.args.meta, readDumpStats(path.join(engine.paths.bundle(id), 'stats-dump'))));
    commitDir(tmp, imageDir);
    if (!preDump) toCheckpointed(rec.state, imageDir, { stopped: false });
  } else {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (plan.thaw) await engine.runtime.resume(id);
  if (!plan.exited) return; // still running, nothing else to fix
  await engine.releaseRuntime(rec);
  toExited(rec.state, plan.exited.exitCode ?? rec.state.exitCode);
}

// ------------------------------------------------------------------------- as users ask for them

/**
 * A checkpoint as a user asks for it (the CLI's flags, the API's parameters): which containers,
 * and the options, with the export's given flat.
 */
export interface CheckpointRequest extends Selection, Omit<CheckpointOptions, 'export' | 'preDumpDir' | 'parentDir' | 'podFreeze'> {
  /** Also write the checkpoint as an archive: a file, '-' for standard output, or a stream. */
  export?: ExportOptions['target'];
  compression?: ExportOptions['compression'];
  /** With export: leave the container's filesystem changes out of the archive. */
  ignoreRootfs?: boolean;
  /** With export: leave named volumes' contents out of the archive. */
  ignoreVolumes?: boolean;
  /** With export: the archive's layout, Ferry's (default) or Podman's. */
  format?: ExportOptions['format'];
}

/**
 * Checkpoints the selected containers one by one (`--all`: the live ones); onEach hears of each
 * as it is done (with the reference it was selected by). Refused before any is touched: export
 * options without an export, an export of other than exactly one container, a namespace other
 * than network for emptyNs.
 */
export async function checkpointContainers(engine: Engine, req: CheckpointRequest, onEach?: (ref: string, r: CheckpointReport) => void): Promise<CheckpointReport[]> {
  const { refs, all, latest, ignoreMissing, export: target, compression, ignoreRootfs, ignoreVolumes, format, ...o } = req;
  if ((ignoreRootfs || ignoreVolumes) && !target) throw new FerryError('EINVAL', '--ignore-rootfs and --ignore-volumes only apply with --export');
  if (format !== undefined && !['ferry', 'podman'].includes(format)) throw new FerryError('EINVAL', `invalid --format "${String(format)}": use ferry or podman`);
  if (format === 'podman' && !target) throw new FerryError('EINVAL', '--format podman only applies with --export');
  for (const ns of o.emptyNs ?? []) if (ns !== 'network') throw new FerryError('EINVAL', `invalid --empty-ns "${ns}": only network is supported`);
  const opts: CheckpointOptions = { ...o, export: target ? { target, compression: compression ?? 'zstd', ignoreRootfs, ignoreVolumes, format } : undefined };
  const targets = await engine.select({ refs, all, latest, ignoreMissing }, 'checkpoint');
  if (target && targets.length !== 1) throw new FerryError('EINVAL', '--export takes exactly one container');
  if (o.createImage !== undefined && targets.length !== 1) throw new FerryError('EINVAL', '--create-image takes exactly one container');
  const reports: CheckpointReport[] = [];
  for (const ref of targets) {
    const r = await checkpoint(engine, ref, opts);
    reports.push(r);
    onEach?.(ref, r);
  }
  return reports;
}

/**
 * A restore as a user asks for it: the selected containers restored from their checkpoints,
 * or (import) a new container restored from an archive, or new containers restored from
 * checkpoint images (a name that is no container's).
 */
export interface RestoreRequest extends Selection, Omit<RestoreOptions, 'lazyPages' | 'beforeRestore'> {
  /** Restore a new container from this archive (a file, '-' for standard input, or a stream). */
  import?: ImportOptions['source'];
  /** With import: the new container's name (it gets a new ID too). */
  name?: string;
  /** With import: do not restore the archive's filesystem changes. */
  ignoreRootfs?: boolean;
  /** With import: do not restore named volumes' contents. */
  ignoreVolumes?: boolean;
  /** With import: accept the archive's bind mounts of host paths. */
  allowHostMounts?: boolean;
  /** With import: restore into this pod. */
  pod?: string;
  /** With import or a checkpoint image: how to pull a missing image (--tls-verify, --creds, --authfile). */
  pullOptions?: PullOptions & { authfile?: string };
}

/**
 * Restores the selected containers one by one (`--all`: the checkpointed ones not running), or
 * imports the archive; onEach hears of each as it is done (with the reference it was selected
 * by, or the new container's ID). Import options are refused without an import, and a
 * selection with one.
 */
export async function restoreContainers(engine: Engine, req: RestoreRequest, onEach?: (ref: string, r: RestoreReport) => void): Promise<RestoreReport[]> {
  const { refs, all, latest, ignoreMissing, import: source, name, ignoreRootfs, ignoreVolumes, allowHostMounts, pod, pullOptions, ...o } = req;
  if (source !== undefined) {
    if (refs?.length || all || latest) throw new FerryError('EINVAL', '--import restores a new container from the archive: do not name containers, --all or --latest with it');
    const r = await importCheckpoint(engine, { ...o, source, name, ignoreRootfs, ignoreVolumes, allowHostMounts, pod, pullOptions });
    onEach?.(r.id, r);
    return [r];
  }
  // As Podman: a name that is no container's may be a checkpoint image (local, or pulled).
  const images = new Map<string, ImageRecord>();
  if (!all && !latest) {
    for (const ref of refs ?? []) {
      if (engine.find(ref)) continue;
      const img = await findCheckpointImage(engine, ref, pullOptions);
      if (img) images.set(ref, img);
    }
  }
  const importOnly = name || ignoreRootfs || ignoreVolumes || allowHostMounts || pod;
  if (importOnly && !images.size) throw new FerryError('EINVAL', '--name, --ignore-rootfs, --ignore-volumes, --allow-host-mounts and --pod only apply with --import or a checkpoint image');
  if (importOnly && images.size !== (refs ?? []).length) throw new FerryError('EINVAL', '--name, --ignore-rootfs, --ignore-volumes, --allow-host-mounts and --pod apply to checkpoint images: do not name containers with them');
  if (name && images.size > 1) throw new FerryError('EINVAL', '--name gives one new container its name: restore one checkpoint image at a time with it');
  const targets = images.size === (refs ?? []).length && images.size ? [] : await engine.select({ refs: (refs ?? []).filter((r) => !images.has(r)), all, latest, ignoreMissing }, 'restore');
  const reports: RestoreReport[] = [];
  for (const ref of targets) {
    const r = await restore(engine, ref, o);
    reports.push(r);
    onEach?.(ref, r);
  }
  for (const [ref, img] of images) {
    const r = await restoreFromImage(engine, img, ref, { ...o, name, ignoreRootfs, ignoreVolumes, allowHostMounts, pod, pullOptions });
    reports.push(r);
    onEach?.(r.id, r);
  }
  return reports;
}

/** Deletes the checkpoints of the containers named, or every checkpoint on this host (all); onEach hears of each. */
export async function removeCheckpoints(engine: Engine, req: { refs?: string[]; all?: boolean }, onEach?: (ref: string) => void): Promise<string[]> {
  const targets = req.all ? (await listCheckpoints(engine)).map((c) => c.id) : (req.refs ?? []);
  if (!targets.length && !req.all) throw new FerryError('EINVAL', 'give at least one container name or ID, or --all');
  for (const t of targets) {
    await removeCheckpoint(engine, t);
    onEach?.(t);
  }
  return targets;
}
