/**
 * Checkpoint and restore of a container in place. The whole flow reads top to bottom:
 *
 *   checkpoint: refuse early -> record op -> runc checkpoint into checkpoint.tmp/ ->
 *               on failure: container still runs, tmp removed, plain-words error ->
 *               on success: metadata written, tmp renamed to checkpoint/ (commit point),
 *               runtime released, state "exited, checkpointed" saved.
 *   restore:    refuse early -> record op -> mount rootfs, write bundle ->
 *               conmon runs `runc restore` -> on failure: nothing left running or mounted,
 *               checkpoint untouched -> on success: state "running, restored" saved,
 *               checkpoint removed unless --keep.
 *
 * A ferry killed half-way leaves state.op behind; repairInterruptedCheckpoint() finishes or
 * rolls back from what is on disk, so no container is "running" in state and dead, and no
 * half-written checkpoint ever looks valid.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { debug } from '../lib/log.js';
import { commitDir, duBytes, mkdirp, readJsonIfExists, writeJsonAtomic } from '../lib/fsutil.js';
import { processAlive, procStartTime, waitFor } from '../lib/proc.js';
import { VERSION } from '../lib/version.js';
import { restoreArgs } from '../drivers/runtime/runc.js';
import { diagnoseCriuLog, readLog } from '../drivers/criu/criu.js';
import { readDumpStats, readRestoreStats, type DumpStats, type RestoreStats } from '../drivers/criu/stats.js';
import type { WriteStats } from '../drivers/archive/archive.js';
import type { PortMapping } from '../drivers/network/cni.js';
import type { Engine } from './engine.js';
import { exportCheckpoint, type ExportOptions } from './portable.js';
import { importCheckpoint, type ImportOptions } from './portable.js';
import type { Selection } from './select.js';
import { findPod, requirePodRestore, resetPodHostname } from './pods.js';

function podInfo(engine: Engine, podId: string | undefined): CheckpointMeta['pod'] {
  const pod = podId ? findPod(engine, podId) : undefined;
  return pod ? { name: pod.name, share: pod.share } : undefined;
}
import type { ContainerConfig, ContainerRecord } from './types.js';

export const CHECKPOINT_FORMAT = 1;
export const META_FILE = 'ferry-checkpoint.json';
const PRE_DIR = 'pre-checkpoint';
/** The directories pre-dumps live in, beside checkpoint/: pre-checkpoint, or pre-1, pre-2, ... */
const PRE_DUMP_NAME = /^pre-(checkpoint|[1-9][0-9]{0,2})$/;

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
  /** Set by a pod checkpoint, which freezes its members before dumping them. */
  podFreeze?: boolean;
}

export interface RestoreOptions {
  keep?: boolean;
  /** A new IP instead of the checkpointed one (then established TCP cannot be restored). */
  ignoreStaticIp?: boolean;
  /** A new MAC address instead of the checkpointed one. */
  ignoreStaticMac?: boolean;
  /** Replaces the published ports. */
  publish?: PortMapping[];
  /** Memory comes from a lazy-pages daemon (post-copy) instead of the images. */
  lazyPages?: boolean;
  /** Runs after the bundle is ready and before runc restore (starts the lazy-pages daemon). */
  beforeRestore?: (bundle: string, imageDir: string) => Promise<void>;
  tcpEstablished?: boolean;
  tcpClose?: boolean;
  fileLocks?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  manageCgroupsMode?: 'soft' | 'full' | 'strict' | 'ignore';
  autoDedup?: boolean;
}

/** What a checkpoint directory says about itself (ferry-checkpoint.json). */
export interface CheckpointMeta {
  formatVersion: number;
  createdAt: string;
  container: ContainerConfig;
  ferryVersion: string;
  criuVersion: string;
  runcVersion: string;
  kernel: string;
  arch: string;
  options: { tcpEstablished: boolean; fileLocks: boolean; extUnixSk: boolean; shellJob: boolean; withPrevious: boolean };
  stats?: DumpStats;
  /** The address the container had, so a restore (here or elsewhere) can keep it. */
  network?: { name: string; ip: string; mac: string; ports: PortMapping[] };
  /** The pod it was checkpointed out of, and the namespaces it shared with it. */
  pod?: { name: string; share: string[] };
}

export interface CheckpointReport {
  id: string;
  name: string;
  path: string;
  /** Archive figures when exported. */
  archive?: WriteStats;
  /** Whole engine operation, including locking, bookkeeping and cleanup. */
  totalMs: number;
  /** The runc checkpoint call alone. */
  runtimeMs: number;
  criu?: DumpStats;
}

export interface RestoreReport {
  id: string;
  name: string;
  totalMs: number;
  runtimeMs: number;
  criu?: RestoreStats;
}

// ------------------------------------------------------------------------- checkpoint

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
  if (o.preCheckpoint && o.withPrevious) throw new FerryError('EINVAL', '--pre-checkpoint and --with-previous cannot be used together: pre-checkpoint first, then checkpoint --with-previous');
  if (o.preCheckpoint || o.withPrevious) await requirePreCopy(engine);
  const parent = o.withPrevious ? o.parentDir ?? PRE_DIR : o.preCheckpoint ? o.parentDir : undefined;
  for (const d of [o.preDumpDir, parent]) if (d !== undefined && !PRE_DUMP_NAME.test(d)) throw new FerryError('EINVAL', `invalid pre-dump directory name "${d}"`);
  if (parent && !fs.existsSync(path.join(engine.paths.containerDir(id), parent, 'inventory.img'))) {
    throw new FerryError('ESTATE', `container ${name} has no pre-checkpoint: run \`ferry container checkpoint --pre-checkpoint ${name}\` first`);
  }

  // 2. Dump into a temporary directory; only a complete dump is ever renamed into place.
  const finalDir = o.preCheckpoint ? path.join(engine.paths.containerDir(id), o.preDumpDir ?? PRE_DIR) : engine.paths.checkpointDir(id);
  const tmp = `${finalDir}.tmp`;
  const workDir = engine.paths.bundle(id);
  // The op is recorded before anything is written, so a ferry killed from here on leaves
  // nothing that the next command's repair does not know about.
  rec.state.op = { name: 'checkpoint', pid: process.pid, startTime: procStartTime(process.pid), since: new Date().toISOString(), args: { ...o } };
  engine.save(rec);
  fs.rmSync(tmp, { recursive: true, force: true });
  mkdirp(tmp, 0o700);
  // A log left by an earlier --keep must not pass for this dump's (repair reads it).
  fs.rmSync(path.join(workDir, o.preCheckpoint ? 'predump.log' : 'dump.log'), { force: true });
  const tr = performance.now();
  const r = await engine.runtime.checkpoint(
    id,
    {
      imagePath: tmp,
      workPath: workDir,
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
    (pid) => {
      rec.state.op!.helperPid = pid;
      engine.save(rec);
    },
  );
  const runtimeMs = performance.now() - tr;
  debug(`checkpoint ${name}: runc checkpoint took ${runtimeMs.toFixed(1)}ms (exit ${r.code})`);
  const logFile = path.join(workDir, o.preCheckpoint ? 'predump.log' : 'dump.log');

  // 3. A failed dump: CRIU resumed the container; make sure, clean up, explain.
  if (r.code !== 0) {
    fs.rmSync(tmp, { recursive: true, force: true });
    const still = await engine.runtime.state(id);
    delete rec.state.op;
    // A pod checkpoint dumps its members frozen: paused is alive too.
    if (!still || (still.status !== 'running' && still.status !== 'paused')) {
      // Should not happen (CRIU resumes tasks on failure), but never leave a lie in state.
      rec.state.status = 'exited';
      rec.state.error = 'the container stopped during a failed checkpoint';
      await engine.releaseRuntime(rec);
    }
    engine.save(rec);
    throw criuFailure('checkpoint', name, r.stderr, logFile);
  }

  // 4. Commit: metadata, then the rename that makes the checkpoint exist.
  const stats = readDumpStats(path.join(workDir, 'stats-dump')); // CRIU writes stats into the work dir
  if (!o.preCheckpoint) {
    writeJsonAtomic(path.join(tmp, META_FILE), await makeMeta(engine, rec, o, stats));
    writeJsonAtomic(path.join(tmp, 'spec.dump'), JSON.parse(fs.readFileSync(path.join(workDir, 'config.json'), 'utf8')));
  }
  commitDir(tmp, finalDir);
  if (!o.keep) fs.rmSync(logFile, { force: true }); // Podman's --keep keeps CRIU's logs
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
      await engine.releaseRuntime(rec, { keepRootfs: true });
      debug(`checkpoint ${name}: runtime released`);
      Object.assign(rec.state, { status: 'exited', pid: 0, conmonPid: 0, exitCode: 0, finishedAt: new Date().toISOString() });
    }
    if (!o.preCheckpoint) {
      Object.assign(rec.state, {
        checkpointed: true,
        checkpointedAt: new Date().toISOString(),
        checkpointPath: finalDir,
        checkpointLog: o.keep ? logFile : undefined,
        error: undefined,
      });
      if (!o.leaveRunning) rec.state.restored = false;
    }
    delete rec.state.op;
    engine.save(rec);
  };
  const [released, exported] = await Promise.allSettled([release(), o.export ? exportCheckpoint(engine, rec, o.export) : Promise.resolve(undefined)]);
  if (released.status === 'rejected') throw released.reason;
  if (exported.status === 'rejected') throw exported.reason;
  const archive: WriteStats | undefined = exported.value;
  if (archive) debug(`checkpoint ${name}: exported ${archive.bytes} bytes`);
  // A --rm container lives on only in its archive (as with Podman).
  if (o.export && rec.config.autoRemove && !o.leaveRunning) await engine.removeFiles(rec);
  return { id, name, path: finalDir, totalMs: performance.now() - t0, runtimeMs, criu: stats, archive };
}

async function requirePreCopy(engine: Engine): Promise<void> {
  const criu = await engine.criu();
  if (!criu.features.memDirtyTrack) {
    throw new FerryError(
      'EUNSUPPORTED',
      'pre-copy needs soft-dirty memory tracking, which this kernel lacks (`criu check --feature mem_dirty_track`): checkpoint without --pre-checkpoint/--with-previous',
    );
  }
}

/** Writes the metadata that makes a CRIU image dir a Ferry checkpoint (lazy dumps use it). */
export async function writeCheckpointMeta(engine: Engine, rec: ContainerRecord, dir: string, o: CheckpointOptions): Promise<void> {
  writeJsonAtomic(path.join(dir, META_FILE), await makeMeta(engine, rec, o, readDumpStats(path.join(engine.paths.bundle(rec.config.id), 'stats-dump'))));
  const spec = path.join(engine.paths.bundle(rec.config.id), 'config.json');
  if (fs.existsSync(spec)) fs.copyFileSync(spec, path.join(dir, 'spec.dump'));
}

async function makeMeta(engine: Engine, rec: ContainerRecord, o: CheckpointOptions, stats?: DumpStats): Promise<CheckpointMeta> {
  const c = rec.config;
  const n = rec.state.net ?? (rec.state.address ? { ...rec.state.address, network: c.network?.name ?? '' } : undefined);
  const criu = await engine.criu();
  const runcVersion = await engine.runtimeVersion();
  return {
    formatVersion: CHECKPOINT_FORMAT,
    createdAt: new Date().toISOString(),
    container: c,
    ferryVersion: VERSION,
    criuVersion: criu.version ?? 'unknown',
    runcVersion,
    kernel: os.release(),
    arch: process.arch,
    options: { tcpEstablished: !!o.tcpEstablished, fileLocks: !!o.fileLocks, extUnixSk: !!o.extUnixSk, shellJob: !!o.shellJob, withPrevious: !!o.withPrevious },
    stats,
    network: c.network?.mode === 'bridge' && n ? { name: n.network, ip: n.ip, mac: n.mac, ports: c.network.ports } : undefined,
    pod: podInfo(engine, c.pod),
  };
}

/** A plain-words error from runc's stderr and CRIU's log, with the log's path for details. */
export function criuFailure(what: 'checkpoint' | 'restore', name: string, stderr: string, logFile: string): FerryError {
  const d = diagnoseCriuLog(readLog(logFile) + '\n' + stderr);
  const cause = d.cause ?? d.firstError ?? stderr.trim().split('\n').pop() ?? 'unknown error';
  const after = what === 'checkpoint' ? 'the container is still running' : 'the checkpoint is kept, so you can retry';
  return new FerryError('ECRIU', `${what} of ${name} failed: ${cause}; ${after} (details: ${logFile})`, { detail: stderr });
}

// ------------------------------------------------------------------------- restore

export async function restore(engine: Engine, ref: string, o: RestoreOptions): Promise<RestoreReport> {
  return engine.withContainer(ref, (rec) => restoreLocked(engine, rec, o));
}

/** restore() for a container whose lock the caller holds. */
export async function restoreLocked(engine: Engine, rec: ContainerRecord, o: RestoreOptions): Promise<RestoreReport> {
  const t0 = performance.now();
  const id = rec.config.id;
  const name = rec.config.name;
  const dir = engine.paths.checkpointDir(id);
  // 1. Refuse what cannot work, before touching anything.
  if (rec.state.status === 'running' || rec.state.status === 'paused') {
    throw new FerryError('ESTATE', `container ${name} is running: checkpoint or stop it before restoring`);
  }
  const meta = readJsonIfExists<CheckpointMeta>(path.join(dir, META_FILE));
  if (!meta) throw new FerryError('ESTATE', `container ${name} has no checkpoint to restore: checkpoint it first with \`ferry container checkpoint ${name}\``);
  await checkCompatible(engine, meta);
  if (rec.config.pod) await requirePodRestore(engine);
  if (o.autoDedup && o.keep) throw new FerryError('EINVAL', '--auto-dedup consumes the checkpoint while restoring, so it cannot be combined with --keep');
  if (o.tcpClose && o.tcpEstablished) throw new FerryError('EINVAL', '--tcp-close and --tcp-established cannot be used together');
  // Established connections live only at the old address.
  const newIp = !!o.ignoreStaticIp || !meta.network?.ip;
  if (newIp && meta.network && o.tcpEstablished) {
    throw new FerryError('EINVAL', '--tcp-established needs the container\'s old IP address, so it cannot be combined with -n/--name or --ignore-static-ip: use --tcp-close');
  }
  if (newIp && meta.network && meta.options.tcpEstablished && !o.tcpClose) {
    throw new FerryError('EINVAL', `the checkpoint holds established TCP connections, which need its old IP address ${meta.network.ip}: restore with --tcp-close to have them closed, or keep the address`);
  }
  // A checkpoint with established connections can only be restored with them (or closed).
  const tcpEstablished = o.tcpEstablished || (meta.options.tcpEstablished && !o.tcpClose);
  if (o.publish && rec.config.network?.mode === 'bridge') rec.config.network.ports = o.publish;
  else if (o.publish?.length) throw new FerryError('EINVAL', `container ${name} is not on a bridge network, so it cannot publish ports`);
  const netReq = {
    ip: newIp ? undefined : meta.network?.ip,
    mac: o.ignoreStaticMac ? undefined : meta.network?.mac,
    ports: rec.config.network?.ports,
  };

  // 2. Prepare: rootfs mounted, bundle written, any stale runtime record gone.
  engine.beginOp(rec, 'restore');
  const logFile = path.join(engine.paths.bundle(id), 'restore.log');
  fs.rmSync(logFile, { force: true });
  let runtimeMs = 0;
  try {
    await engine.runtime.delete(id, true);
    // The lazy-pages daemon (post-copy) starts while the bundle is being prepared.
    const prep = await Promise.allSettled([engine.prepareBundle(rec, netReq), o.beforeRestore?.(engine.paths.bundle(id), dir)]);
    for (const p of prep) if (p.status === 'rejected') throw p.reason;
    debug(`restore ${name}: bundle ready`);
    if (o.tcpClose) useCriuConfig(engine.paths.bundle(id), 'tcp-close\n');
    const tr = performance.now();
    const started = await engine.runtime.createWithConmon({
      id,
      name,
      paths: engine.paths.conmon(id),
      exitCommand: engine.exitCommand(id),
      restore: {
        imagePath: dir,
        runtimeOpts: restoreArgs({
          tcpEstablished,
          tcpClose: o.tcpClose,
          fileLocks: o.fileLocks || meta.options.fileLocks,
          extUnixSk: o.extUnixSk || meta.options.extUnixSk,
          shellJob: o.shellJob || meta.options.shellJob,
          manageCgroupsMode: o.manageCgroupsMode,
          autoDedup: o.autoDedup,
          lazyPages: o.lazyPages,
        }),
      },
    });
    runtimeMs = performance.now() - tr;
    debug(`restore ${name}: conmon + runc restore took ${runtimeMs.toFixed(1)}ms`);
    engine.markRunning(rec, started, { restored: true, restoredAt: new Date().toISOString(), restoreLog: logFile });
  } catch (e) {
    // 3. A failed restore: nothing left running or mounted; the checkpoint stays as it was.
    fs.rmSync(path.join(engine.paths.bundle(id), CRIU_CONF), { force: true });
    await engine.runtime.kill(id, 'KILL', true).catch(() => undefined);
    await engine.releaseRuntime(rec).catch(() => undefined);
    rec.state.error = (e as Error).message;
    engine.endOp(rec);
    if (e instanceof FerryError && (e.code === 'ECRIU' || e.code === 'ERUNTIME')) throw criuFailure('restore', name, e.detail ?? e.message, logFile);
    throw e;
  }

  fs.rmSync(path.join(engine.paths.bundle(id), CRIU_CONF), { force: true });
  // 4. Success: the checkpoint is used up unless --keep.
  const stats = readRestoreStats(path.join(engine.paths.bundle(id), 'stats-restore'));
  if (!o.keep) {
    fs.rmSync(dir, { recursive: true, force: true });
    removePreDumps(engine.paths.containerDir(id));
    rec.state.checkpointPath = undefined;
  }
  engine.endOp(rec);
  const pod = rec.config.pod ? findPod(engine, rec.config.pod) : undefined;
  if (pod) await resetPodHostname(engine, pod);
  return { id, name, totalMs: performance.now() - t0, runtimeMs, criu: stats };
}

const CRIU_CONF = 'criu-restore.conf';

/**
 * CRIU options runc has no flag for (runc 1.1 has no --tcp-close): a CRIU configuration file
 * named by the bundle's `org.criu.config` annotation, which runc hands to CRIU. The file is
 * deleted after the restore (CRIU ignores a missing one), so later dumps of the container,
 * whose runc state keeps the annotation, do not inherit the options.
 */
function useCriuConfig(bundle: string, content: string): void {
  const conf = path.join(bundle, CRIU_CONF);
  fs.writeFileSync(conf, content, { mode: 0o600 });
  const specFile = path.join(bundle, 'config.json');
  const spec = JSON.parse(fs.readFileSync(specFile, 'utf8')) as { annotations?: Record<string, string> };
  spec.annotations = { ...spec.annotations, 'org.criu.config': conf };
  writeJsonAtomic(specFile, spec);
}

/** A checkpoint restores only with a compatible CRIU and CPU: say what differs, up front. */
export async function checkCompatible(engine: Engine, meta: CheckpointMeta): Promise<void> {
  if (meta.formatVersion > CHECKPOINT_FORMAT) {
    throw new FerryError('EINVAL', `the checkpoint has format version ${meta.formatVersion}, newer than this ferry understands (${CHECKPOINT_FORMAT}): upgrade ferry`);
  }
  if (meta.arch !== process.arch) {
    throw new FerryError('EINVAL', `the checkpoint was made on ${meta.arch}, this host is ${process.arch}: restore it on a ${meta.arch} host`);
  }
  const criu = await engine.criu();
  if (!criu.version) throw new FerryError('EDEPEND', 'CRIU is not installed: run `npm run setup` (as root)');
  if (meta.criuVersion !== criu.version) {
    throw new FerryError('EINVAL', `the checkpoint was made with CRIU ${meta.criuVersion}, this host has CRIU ${criu.version}: restore it with the same CRIU version`);
  }
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
    });
  }
  return out;
}

/** Deletes a container's checkpoint; the container itself stays (as an exited container). */
export async function removeCheckpoint(engine: Engine, ref: string): Promise<void> {
  await engine.withContainer(ref, async (rec) => removeCheckpointLocked(engine, rec));
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
  Object.assign(rec.state, { checkpointed: false, checkpointPath: undefined });
  engine.save(rec);
}

// ------------------------------------------------------------------------- pre-dumps

/** Removes every pre-dump beside a container's checkpoint (pre-checkpoint, pre-1, ...). */
export function removePreDumps(containerDir: string): void {
  for (const e of fs.readdirSync(containerDir)) {
    if (PRE_DUMP_NAME.test(e.replace(/\.tmp$/, ''))) fs.rmSync(path.join(containerDir, e), { recursive: true, force: true });
  }
}

/**
 * The pre-dumps a CRIU image dir builds on, oldest first: its `parent` link, that one's, and
 * so on. Each link must name a pre-dump beside it (`../pre-...`); anything else is refused.
 */
export function preDumpChain(imageDir: string): string[] {
  const chain: string[] = [];
  for (let dir = imageDir; ; ) {
    let target: string;
    try {
      target = fs.readlinkSync(path.join(dir, 'parent'));
    } catch {
      return chain.reverse();
    }
    const m = /^\.\.\/([^/]+)\/?$/.exec(target);
    if (!m || !PRE_DUMP_NAME.test(m[1]!)) throw new FerryError('ESTATE', `${path.join(dir, 'parent')} points to ${target}, not to a pre-dump beside it`);
    dir = path.join(path.dirname(imageDir), m[1]!);
    if (chain.includes(dir) || chain.length > 100) throw new FerryError('ESTATE', `the pre-dumps of ${imageDir} link in a loop`);
    chain.push(dir);
  }
}

/**
 * Places pre-dumps (oldest first) beside the image dir checkpoint/ in containerDir as pre-1,
 * pre-2, ..., each linked to the one before, and the checkpoint to the last: the layout CRIU
 * follows to find the pages a dump on top of pre-dumps did not write. The links are made here,
 * never taken from an archive. The sources are moved.
 */
export function placePreDumps(containerDir: string, sources: string[]): void {
  sources.forEach((src, i) => {
    const dir = path.join(containerDir, `pre-${i + 1}`);
    fs.renameSync(src, dir);
    fs.rmSync(path.join(dir, 'parent'), { force: true });
    if (i > 0) fs.symlinkSync(`../pre-${i}`, path.join(dir, 'parent'));
  });
  const link = path.join(containerDir, 'checkpoint', 'parent');
  fs.rmSync(link, { force: true });
  if (sources.length) fs.symlinkSync(`../pre-${sources.length}`, link);
}

/** The memory images a CRIU page server writes (it writes nothing else). */
const PAGE_IMAGE = /^(pages|pagemap)-[0-9]{1,10}\.img$/;

/** The memory an image dir holds so far (its pages-N.img files); 0 for a dir not there (yet). */
export function pageImageBytes(dir: string): number {
  let bytes = 0;
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  for (const f of names) {
    if (!f.startsWith('pages-') || !PAGE_IMAGE.test(f)) continue;
    try {
      bytes += fs.statSync(path.join(dir, f)).size;
    } catch {
      /* gone meanwhile */
    }
  }
  return bytes;
}

/**
 * Moves the memory images a CRIU page server wrote for a dump (a migration's memory, sent
 * while the source dumped) into the rest of that dump's images: regular files with CRIU's
 * page image names only, never replacing one the dump already has.
 */
export function adoptPageImages(from: string, imageDir: string): number {
  let bytes = 0;
  const names = fs.readdirSync(from).filter((f) => PAGE_IMAGE.test(f));
  if (!names.some((f) => f.startsWith('pagemap-'))) throw new FerryError('EARCHIVE', 'the memory of the checkpoint never arrived (no page images from the page server)');
  for (const f of names) {
    const st = fs.lstatSync(path.join(from, f));
    if (!st.isFile()) throw new FerryError('EARCHIVE', `bad page image ${f}: not a regular file`);
    if (fs.existsSync(path.join(imageDir, f))) throw new FerryError('EARCHIVE', `bad checkpoint: ${f} came both in the archive and from the page server`);
    bytes += st.size;
  }
  for (const f of names) fs.renameSync(path.join(from, f), path.join(imageDir, f));
  return bytes;
}

// ------------------------------------------------------------------------- repair

/**
 * A ferry died during a checkpoint. Wait for the runc it started, then: a complete dump is
 * committed (the container is checkpointed, as asked); an incomplete one is deleted and the
 * container is recorded as running or exited according to runc.
 */
export async function repairInterruptedCheckpoint(engine: Engine, rec: ContainerRecord): Promise<void> {
  const op = rec.state.op!;
  const id = rec.config.id;
  const o = (op.args ?? {}) as CheckpointOptions;
  // Wait for the runc it started: the one recorded, and any it had no time to record (killed
  // while spawning it), which would otherwise still be writing into the dump we remove.
  await waitFor(() => !processAlive(op.helperPid) && !engine.runtime.busy(id).length, 120_000, 50);
  const rs = await engine.runtime.state(id);
  const finalDir = o.preCheckpoint ? path.join(engine.paths.containerDir(id), o.preDumpDir ?? PRE_DIR) : engine.paths.checkpointDir(id);
  const tmp = `${finalDir}.tmp`;
  const log = readLog(path.join(engine.paths.bundle(id), o.preCheckpoint ? 'predump.log' : 'dump.log'));
  const complete = fs.existsSync(path.join(tmp, 'inventory.img')) && /dumping finished successfully/i.test(log);
  // Killed after the rename (while waiting for conmon, or before saving): already committed.
  const meta = complete || o.preCheckpoint ? undefined : readJsonIfExists<CheckpointMeta>(path.join(finalDir, META_FILE));
  const committed = !!meta && Date.parse(meta.createdAt) >= Date.parse(op.since);
  if (committed) {
    fs.rmSync(tmp, { recursive: true, force: true });
    Object.assign(rec.state, { checkpointed: true, checkpointedAt: meta.createdAt, checkpointPath: finalDir });
  } else if (complete) {
    if (!o.preCheckpoint) {
      writeJsonAtomic(path.join(tmp, META_FILE), await makeMeta(engine, rec, o, readDumpStats(path.join(engine.paths.bundle(id), 'stats-dump'))));
      const spec = path.join(engine.paths.bundle(id), 'config.json');
      if (fs.existsSync(spec)) fs.copyFileSync(spec, path.join(tmp, 'spec.dump')); // as a normal checkpoint has
    }
    commitDir(tmp, finalDir);
    if (!o.preCheckpoint) Object.assign(rec.state, { checkpointed: true, checkpointedAt: new Date().toISOString(), checkpointPath: finalDir });
  } else {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const alive = (rs?.status === 'running' || rs?.status === 'paused') && processAlive(rs.pid);
  // A pod checkpoint freezes its members while it dumps them: thaw what it left frozen.
  if (alive && rs.status === 'paused' && o.podFreeze) await engine.runtime.resume(id);
  if (alive) return; // still running, nothing else to fix
  await engine.releaseRuntime(rec);
  Object.assign(rec.state, { status: 'exited', pid: 0, conmonPid: 0, finishedAt: new Date().toISOString() });
  if (!complete && !committed) rec.state.exitCode = 137;
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
}

/**
 * Checkpoints the selected containers one by one (`--all`: the live ones); onEach hears of each
 * as it is done (with the reference it was selected by). Refused before any is touched: export
 * options without an export, an export of other than exactly one container, a namespace other
 * than network for emptyNs.
 */
export async function checkpointContainers(engine: Engine, req: CheckpointRequest, onEach?: (ref: string, r: CheckpointReport) => void): Promise<CheckpointReport[]> {
  const { refs, all, latest, ignoreMissing, export: target, compression, ignoreRootfs, ignoreVolumes, ...o } = req;
  if ((ignoreRootfs || ignoreVolumes) && !target) throw new FerryError('EINVAL', '--ignore-rootfs and --ignore-volumes only apply with --export');
  for (const ns of o.emptyNs ?? []) if (ns !== 'network') throw new FerryError('EINVAL', `invalid --empty-ns "${ns}": only network is supported`);
  const opts: CheckpointOptions = { ...o, export: target ? { target, compression: compression ?? 'zstd', ignoreRootfs, ignoreVolumes } : undefined };
  const targets = await engine.select({ refs, all, latest, ignoreMissing }, 'checkpoint');
  if (target && targets.length !== 1) throw new FerryError('EINVAL', '--export takes exactly one container');
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
 * or (import) a new container restored from an archive.
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
}

/**
 * Restores the selected containers one by one (`--all`: the checkpointed ones not running), or
 * imports the archive; onEach hears of each as it is done (with the reference it was selected
 * by, or the new container's ID). Import options are refused without an import, and a
 * selection with one.
 */
export async function restoreContainers(engine: Engine, req: RestoreRequest, onEach?: (ref: string, r: RestoreReport) => void): Promise<RestoreReport[]> {
  const { refs, all, latest, ignoreMissing, import: source, name, ignoreRootfs, ignoreVolumes, allowHostMounts, pod, ...o } = req;
  if (source !== undefined) {
    if (refs?.length || all || latest) throw new FerryError('EINVAL', '--import restores a new container from the archive: do not name containers, --all or --latest with it');
    const r = await importCheckpoint(engine, { ...o, source, name, ignoreRootfs, ignoreVolumes, allowHostMounts, pod });
    onEach?.(r.id, r);
    return [r];
  }
  if (name || ignoreRootfs || ignoreVolumes || allowHostMounts || pod) throw new FerryError('EINVAL', '--name, --ignore-rootfs, --ignore-volumes, --allow-host-mounts and --pod only apply with --import');
  const targets = await engine.select({ refs, all, latest, ignoreMissing }, 'restore');
  const reports: RestoreReport[] = [];
  for (const ref of targets) {
    const r = await restore(engine, ref, o);
    reports.push(r);
    onEach?.(ref, r);
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
