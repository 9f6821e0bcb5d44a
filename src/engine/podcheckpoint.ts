/**
 * Whole-pod checkpoint and restore: one consistent cut of every member.
 *
 *   checkpoint: pod and members locked -> every member frozen (cgroup freezer), so none runs
 *               while another is dumped -> each dumped, still frozen, leaving it in place ->
 *               a failure: the dumps made are dropped and every member thawed, as it was ->
 *               all dumped: (unless --leave-running) the frozen members are killed and
 *               released, the infra stopped (its address kept for the restore) -> the pod is
 *               marked checkpointed -> --export writes one archive of the pod and its members.
 *   restore:    infra started again at its old address -> members restored from their
 *               checkpoints, which are kept until every member runs -> a failure: the restored
 *               members are killed, the infra stopped, the checkpoints untouched.
 *   import:     one archive -> a new pod (shared namespaces, hostname, ports as before; under
 *               a new --name, new addresses) -> members placed and restored into it -> a
 *               failure removes the pod and everything made.
 *
 * A ferry killed while the members are frozen leaves pod.op behind: the next pod command
 * (and each member's own repair) thaws them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from '../lib/lazy.js';
import type { Writable } from 'node:stream';
import { FerryError } from '../lib/errors.js';
import { mkdirp, readJson } from '../lib/fsutil.js';
import { validName } from '../lib/ids.js';
import { withLock } from '../lib/lock.js';
import { procStartTime } from '../lib/proc.js';
import { VERSION } from '../lib/version.js';
import { ARCHIVE_FORMAT, HEADER_MEMBER, POD_ARCHIVE_KIND, readArchive, type WriteStats } from '../drivers/archive/archive.js';
import type { Compression } from '../drivers/archive/compress.js';
import type { PortMapping } from '../drivers/network/cni.js';
import { checkpointLocked, removeCheckpointLocked, type CheckpointOptions, type CheckpointReport } from './checkpoint.js';
import { META_FILE, type CheckpointMeta } from './checkpoint-dir.js';
import { restoreLocked, type RestoreOptions, type RestoreReport } from './restore.js';
import { refuseUndumpable } from './dump.js';
import type { Engine } from './engine.js';
import { toCheckpointed } from './state.js';
import { createPod, lockPodNetwork, podMembers, removePod, repairPod, requirePodRestore, resetPodHostname, takeDown } from './pods.js';
import { findPod, getPod, savePod, type PodRecord, type SharedNs } from './podstore.js';
import { checkArchiveHost, openArchiveFile, placeStaged, removePlaced, writeArchive, writeContainerMembers } from './portable.js';
import type { ContainerRecord } from './types.js';

export interface PodCheckpointOptions {
  leaveRunning?: boolean;
  keep?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  export?: { target: string | Writable; compression: Compression; ignoreRootfs?: boolean; ignoreVolumes?: boolean };
}

export interface PodCheckpointReport {
  id: string;
  name: string;
  members: CheckpointReport[];
  /** From freezing the first member to the last dump (the pod's consistent cut). */
  frozenMs: number;
  totalMs: number;
  archive?: WriteStats;
}

export interface PodRestoreReport {
  id: string;
  name: string;
  members: RestoreReport[];
  totalMs: number;
}

export type PodRestoreOptions = Pick<RestoreOptions, 'keep' | 'tcpEstablished' | 'tcpClose' | 'fileLocks' | 'ignoreStaticIp' | 'ignoreStaticMac'>;

/** What pod.json of a pod archive says. */
interface PodDoc {
  name: string;
  share: SharedNs[];
  hostname: string;
  network?: { name?: string; ports: PortMapping[] };
  address?: { ip: string; mac: string };
  members: string[];
  tcpEstablished: boolean;
}

interface PodArchiveHeader {
  format: number;
  kind: typeof POD_ARCHIVE_KIND;
  createdAt: string;
  ferryVersion: string;
  criuVersion: string;
  runcVersion: string;
  arch: string;
  pod: { name: string };
  members: { name: string; imageId: string; imageName: string }[];
}

function podLock(engine: Engine, id: string): string {
  return path.join(engine.paths.locks, `pod-${id}.lock`);
}

/** Runs fn with every container in ids locked, taken in one order so two callers cannot deadlock. */
async function withContainers<T>(engine: Engine, ids: string[], fn: (recs: ContainerRecord[]) => Promise<T>): Promise<T> {
  const order = [...ids].sort();
  const held = new Map<string, ContainerRecord>();
  const step = (i: number): Promise<T> =>
    i === order.length
      ? fn(ids.map((id) => held.get(id)!))
      : engine.withContainer(order[i]!, async (rec) => {
          held.set(order[i]!, rec);
          return step(i + 1);
        });
  return step(0);
}

// ------------------------------------------------------------------------- checkpoint

export async function checkpointPod(engine: Engine, ref: string, o: PodCheckpointOptions): Promise<PodCheckpointReport> {
  const t0 = performance.now();
  const first = getPod(engine, ref);
  if (o.export && typeof o.export.target === 'string' && o.export.target !== '-') {
    const dir = path.dirname(path.resolve(o.export.target));
    if (!fs.existsSync(dir)) throw new FerryError('ENOTFOUND', `cannot export to ${o.export.target}: directory ${dir} does not exist; the pod is still running`);
  }
  return withLock(podLock(engine, first.id), async () => {
    const pod = await repairPod(engine, getPod(engine, first.id));
    const infra = engine.find(pod.infraId);
    if (!infra || infra.state.status !== 'running') throw new FerryError('ESTATE', `pod ${pod.name} is not running: only a running pod can be checkpointed (\`ferry pod start ${pod.name}\`)`);
    const listed = podMembers(pod, await engine.list({ all: true }));
    if (!listed.length) throw new FerryError('ESTATE', `pod ${pod.name} has no containers to checkpoint`);
    return withContainers(engine, listed.map((m) => m.config.id), async (recs) => {
      const idle = recs.filter((r) => r.state.status !== 'running');
      if (idle.length) {
        throw new FerryError('ESTATE', `${idle.map((r) => `${r.config.name} (${r.state.status})`).join(', ')} of pod ${pod.name} ${idle.length > 1 ? 'are' : 'is'} not running: start or remove ${idle.length > 1 ? 'them' : 'it'} before checkpointing the pod`);
      }
      for (const r of recs) refuseUndumpable(r); // before anything is recorded or frozen
      pod.op = { name: 'checkpoint', pid: process.pid, startTime: procStartTime(process.pid), since: new Date().toISOString() };
      savePod(engine, pod);
      const each: CheckpointOptions = { leaveRunning: true, keep: o.keep, tcpEstablished: o.tcpEstablished, fileLocks: o.fileLocks, podFreeze: true };
      const reports: CheckpointReport[] = [];
      const tf = performance.now();
      try {
        for (const r of recs) await engine.runtime.freeze(r.config.id, r.state.pid);
        for (const r of recs) reports.push(await checkpointLocked(engine, r, each));
      } catch (e) {
        // Nothing changed while frozen: drop the dumps made and let the pod run on.
        for (const r of recs.slice(0, reports.length)) await removeCheckpointLocked(engine, r).catch(() => undefined);
        for (const r of recs) await engine.runtime.resume(r.config.id).catch(() => undefined);
        delete pod.op;
        savePod(engine, pod);
        const why = e instanceof Error ? e.message : String(e);
        throw new FerryError(e instanceof FerryError ? e.code : 'ECRIU', `checkpoint of pod ${pod.name} failed: ${why.replace(/; the container is still running/, '')}; every container of the pod is still running`, { detail: e instanceof FerryError ? e.detail : undefined });
      }
      const frozenMs = performance.now() - tf;
      const address = infra.state.net ? { ip: infra.state.net.ip, mac: infra.state.net.mac } : infra.state.address;
      const members = recs.map((r) => r.config.id);
      if (o.leaveRunning) {
        for (const r of recs) await engine.runtime.resume(r.config.id);
      } else {
        // Every dump is committed: from here a killed ferry's repair finishes the job (stops
        // the members still frozen) rather than thawing them, so the pod is never half-stopped.
        Object.assign(pod.op, { phase: 'stopping', members, address, tcpEstablished: !!o.tcpEstablished });
        savePod(engine, pod);
        for (const r of recs) await takeDown(engine, r);
        await engine.stop(pod.infraId, 0);
      }
      pod.checkpoint = { at: new Date().toISOString(), members, address, tcpEstablished: !!o.tcpEstablished };
      delete pod.op;
      savePod(engine, pod);
      const archive = o.export ? await exportPod(engine, pod, recs, o.export) : undefined;
      return { id: pod.id, name: pod.name, members: reports, frozenMs, totalMs: performance.now() - t0, archive };
    });
  });
}

/** Writes a checkpointed pod and its members as one archive. Caller holds the locks. */
async function exportPod(engine: Engine, pod: PodRecord, recs: ContainerRecord[], o: NonNullable<PodCheckpointOptions['export']>): Promise<WriteStats> {
  const meta = readJson<CheckpointMeta>(path.join(engine.paths.checkpointDir(recs[0]!.config.id), META_FILE));
  const infra = engine.find(pod.infraId);
  const header: PodArchiveHeader = {
    format: ARCHIVE_FORMAT, // the writer's own, when written (1 unless zstd)
    kind: POD_ARCHIVE_KIND,
    createdAt: new Date().toISOString(),
    ferryVersion: VERSION,
    criuVersion: meta.criuVersion,
    runcVersion: meta.runcVersion,
    arch: meta.arch,
    pod: { name: pod.name },
    members: recs.map((r) => ({ name: r.config.name, imageId: r.config.imageId, imageName: r.config.imageName })),
  };
  const doc: PodDoc = {
    name: pod.name,
    share: pod.share,
    hostname: pod.hostname,
    network: infra?.config.network?.mode === 'bridge' ? { name: infra.config.network.name, ports: infra.config.network.ports } : undefined,
    address: pod.checkpoint?.address,
    members: recs.map((r) => r.config.name),
    tcpEstablished: !!pod.checkpoint?.tcpEstablished,
  };
  return writeArchive(
    o.target,
    o.compression,
    async (w) => {
      await w.addJson(HEADER_MEMBER, { ...header, format: w.format });
      await w.addJson('pod.json', doc);
      for (const r of recs) await writeContainerMembers(engine, r, w, `members/${r.config.name}/`, o);
    },
    (why) => new FerryError('EARCHIVE', `exporting pod ${pod.name} failed: ${why}; its checkpoint is kept on this host (\`ferry pod restore ${pod.name}\`)`),
  );
}

// ------------------------------------------------------------------------- restore

export async function restorePod(engine: Engine, ref: string, o: PodRestoreOptions): Promise<PodRestoreReport> {
  const t0 = performance.now();
  const first = getPod(engine, ref);
  return withLock(podLock(engine, first.id), async () => {
    const pod = await repairPod(engine, getPod(engine, first.id));
    const cp = pod.checkpoint;
    if (!cp) throw new FerryError('ESTATE', `pod ${pod.name} has no checkpoint to restore: checkpoint it first with \`ferry pod checkpoint ${pod.name}\``);
    await requirePodRestore(engine);
    const missing = cp.members.filter((id) => !engine.find(id));
    if (missing.length) throw new FerryError('ENOTFOUND', `${missing.length} container(s) of pod ${pod.name}'s checkpoint were removed: the pod cannot be restored as a whole; restore the others one by one`);
    return withContainers(engine, cp.members, async (recs) => {
      const running = recs.filter((r) => r.state.status === 'running' || r.state.status === 'paused');
      if (running.length) throw new FerryError('ESTATE', `${running.map((r) => r.config.name).join(', ')} of pod ${pod.name} ${running.length > 1 ? 'are' : 'is'} running: stop the pod before restoring it (\`ferry pod stop ${pod.name}\`)`);
      const noCp = recs.filter((r) => !fs.existsSync(path.join(engine.paths.checkpointDir(r.config.id), META_FILE)));
      if (noCp.length) throw new FerryError('ESTATE', `${noCp.map((r) => r.config.name).join(', ')} of pod ${pod.name} no longer ${noCp.length > 1 ? 'have' : 'has'} a checkpoint: the pod cannot be restored as a whole`);
      const reports = await restoreMembers(engine, pod, recs, o, o.ignoreStaticIp ? undefined : cp.address);
      delete pod.checkpoint;
      savePod(engine, pod);
      return { id: pod.id, name: pod.name, members: reports, totalMs: performance.now() - t0 };
    });
  });
}

/**
 * Starts the pod's infra (at address, if given) and restores every member into it, keeping
 * their checkpoints until all run; on a failure takes everything down again and rethrows.
 */
async function restoreMembers(engine: Engine, pod: PodRecord, recs: ContainerRecord[], o: PodRestoreOptions, address: { ip: string; mac: string } | undefined): Promise<RestoreReport[]> {
  const tcp = o.tcpEstablished || (pod.checkpoint?.tcpEstablished && !o.tcpClose);
  if (tcp && pod.checkpoint?.address && address?.ip !== pod.checkpoint.address.ip) {
    throw new FerryError('EINVAL', `the pod's checkpoint holds established TCP connections, which need its old IP address ${pod.checkpoint.address.ip}: restore with --tcp-close to have them closed, or keep the address`);
  }
  const infra = engine.find(pod.infraId);
  if (!infra) throw new FerryError('ENOTFOUND', `the infra container of pod ${pod.name} is gone: the pod cannot be restored`);
  if (infra.state.status !== 'running') await engine.start(pod.infraId, { address: o.ignoreStaticMac && address ? { ip: address.ip, mac: '' } : address });
  const reports: RestoreReport[] = [];
  const done: ContainerRecord[] = [];
  // Connections between members come back only if no packet flows until both ends exist.
  const unlock = tcp ? await lockPodNetwork(pod, engine.find(pod.infraId)!) : undefined;
  try {
    try {
      for (const r of recs) {
        reports.push(await restoreLocked(engine, r, { tcpEstablished: o.tcpEstablished, tcpClose: o.tcpClose, fileLocks: o.fileLocks, keep: true }));
        done.push(r);
      }
    } finally {
      await unlock?.();
    }
  } catch (e) {
    for (const r of done) {
      await takeDown(engine, r).catch(() => undefined);
      toCheckpointed(r.state, engine.paths.checkpointDir(r.config.id), { at: r.state.checkpointedAt, stopped: true });
      engine.save(r);
    }
    await engine.stop(pod.infraId, 0).catch(() => undefined);
    const why = e instanceof Error ? e.message : String(e);
    throw new FerryError(e instanceof FerryError ? e.code : 'ECRIU', `restore of pod ${pod.name} failed: ${why}; the pod's checkpoint is kept`, { detail: e instanceof FerryError ? e.detail : undefined });
  }
  if (!o.keep) for (const r of recs) await removeCheckpointLocked(engine, r);
  await resetPodHostname(engine, pod);
  return reports;
}

// ------------------------------------------------------------------------- import

export interface PodImportOptions extends PodRestoreOptions {
  source: string;
  /** A new name for the pod (then it gets new addresses). */
  name?: string;
  ignoreRootfs?: boolean;
  ignoreVolumes?: boolean;
  allowHostMounts?: boolean;
}

/** Imports a pod archive as a new pod and restores all its members. On failure nothing is left behind. */
export async function importPod(engine: Engine, o: PodImportOptions): Promise<PodRestoreReport> {
  const t0 = performance.now();
  if (o.name !== undefined && !validName(o.name)) throw new FerryError('EINVAL', `invalid pod name "${o.name}": use letters, digits, '_', '.', '-'`);
  await requirePodRestore(engine);
  // A file is read by its descriptor (readArchive closes it).
  const input = o.source === '-' ? process.stdin : openArchiveFile(o.source);
  const staging = path.join(engine.paths.root, `.import-${process.pid}-${randomBytes(6).toString('hex')}`);
  mkdirp(staging, 0o700);
  let pod: PodRecord | undefined;
  const placed: ContainerRecord[] = [];
  const volumes: string[] = [];
  try {
    await readArchive(input, staging, {
      onHeader: async (h) => {
        const hdr = h as unknown as PodArchiveHeader;
        if ((hdr.kind as string) === 'ferry-checkpoint') throw new FerryError('EINVAL', "this archive holds one container's checkpoint, not a pod's: restore it with `ferry container restore --import`; nothing was created");
        if (hdr.kind !== POD_ARCHIVE_KIND) throw new FerryError('EARCHIVE', 'not a ferry pod checkpoint archive; nothing was created');
        await checkArchiveHost(engine, hdr, hdr.members ?? []);
        const name = o.name ?? hdr.pod?.name;
        if (typeof name !== 'string' || !validName(name)) throw new FerryError('EARCHIVE', 'bad pod archive: invalid pod name; nothing was created');
        if (findPod(engine, name)) throw new FerryError('EEXIST', `the pod name "${name}" is already in use: pass --name with another name; nothing was created`);
        for (const m of hdr.members ?? []) {
          if (engine.find(m.name)) throw new FerryError('EEXIST', `the pod's container name "${m.name}" is already in use on this host: remove that container first; nothing was created`);
        }
      },
    });
    const doc = readJson<PodDoc>(path.join(staging, 'pod.json'));
    if (!Array.isArray(doc.members) || !doc.members.length || !doc.members.every((n) => validName(n) && fs.existsSync(path.join(staging, 'members', n, 'container.json')))) {
      throw new FerryError('EARCHIVE', 'bad pod archive: its member list does not match its contents; nothing was created');
    }
    const renamed = o.name !== undefined && o.name !== doc.name;
    const ports = (doc.network?.ports ?? []).map((p) => `${p.hostIP ? `${p.hostIP}:` : ''}${p.hostPort}:${p.containerPort}/${p.protocol}`);
    pod = await createPod(engine, { name: o.name ?? doc.name, share: [doc.share.join(',')], hostname: doc.hostname, publish: ports, network: doc.network?.name });
    for (const n of doc.members) placed.push(await placeStaged(engine, path.join(staging, 'members', n), { ignoreRootfs: o.ignoreRootfs, ignoreVolumes: o.ignoreVolumes, allowHostMounts: o.allowHostMounts }, pod, volumes));
    fs.rmSync(staging, { recursive: true, force: true });
    pod.checkpoint = { at: new Date().toISOString(), members: placed.map((r) => r.config.id), address: doc.address, tcpEstablished: doc.tcpEstablished };
    savePod(engine, pod);
    const address = renamed || o.ignoreStaticIp ? undefined : doc.address;
    const p = pod;
    const reports = await withContainers(engine, placed.map((r) => r.config.id), (recs) => restoreMembers(engine, p, recs, o, address));
    delete pod.checkpoint;
    savePod(engine, pod);
    return { id: pod.id, name: pod.name, members: reports, totalMs: performance.now() - t0 };
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    if (typeof input !== 'number') input.destroy();
    await removePlaced(engine, placed, volumes);
    if (pod) await removePod(engine, pod.id, true).catch(() => undefined);
    if (e instanceof FerryError && /the pod's checkpoint is kept/.test(e.message)) {
      throw new FerryError(e.code, e.message.replace("the pod's checkpoint is kept", 'the archive is unchanged and nothing was created'), { detail: e.detail });
    }
    throw e;
  }
}

// ------------------------------------------------------------------------- as users ask for them

/** A pod checkpoint as a user asks for it (the CLI's flags, the API's parameters), the export's options given flat. */
export interface PodCheckpointRequest extends Omit<PodCheckpointOptions, 'export'> {
  /** Also write the pod as one archive: a file, '-' for standard output, or a stream. */
  export?: string | Writable;
  compression?: Compression;
  /** With export: leave the members' filesystem changes out of the archive. */
  ignoreRootfs?: boolean;
  /** With export: leave named volumes' contents out of the archive. */
  ignoreVolumes?: boolean;
}

/** checkpointPod() for a request; export options without an export are refused. */
export async function checkpointPodRequest(engine: Engine, ref: string, req: PodCheckpointRequest): Promise<PodCheckpointReport> {
  const { export: target, compression, ignoreRootfs, ignoreVolumes, ...o } = req;
  if ((ignoreRootfs || ignoreVolumes) && !target) throw new FerryError('EINVAL', '--ignore-rootfs and --ignore-volumes only apply with --export');
  return checkpointPod(engine, ref, { ...o, export: target ? { target, compression: compression ?? 'zstd', ignoreRootfs, ignoreVolumes } : undefined });
}

/** A pod restore as a user asks for it: a checkpointed pod, or (import) a pod archive as a new pod. */
export interface PodRestoreRequest extends PodRestoreOptions {
  pod?: string;
  /** The pod archive to restore as a new pod (a file, or '-' for standard input). */
  import?: string;
  /** With import: a new name for the pod (its members get new addresses). */
  name?: string;
  ignoreRootfs?: boolean;
  ignoreVolumes?: boolean;
  allowHostMounts?: boolean;
}

/** restorePod() or importPod() for a request: a pod or an archive (not both), import options only with an import. */
export async function restorePodRequest(engine: Engine, req: PodRestoreRequest): Promise<PodRestoreReport> {
  const { pod, import: source, name, ignoreRootfs, ignoreVolumes, allowHostMounts, ...o } = req;
  if (source && pod) throw new FerryError('EINVAL', 'give either a pod or --import FILE, not both');
  if (!source && !pod) throw new FerryError('EINVAL', 'name the pod to restore, or give --import FILE');
  if (!source && (name || ignoreRootfs || ignoreVolumes || allowHostMounts)) throw new FerryError('EINVAL', '--name, --ignore-rootfs, --ignore-volumes and --allow-host-mounts only apply with --import');
  if (o.tcpClose && o.tcpEstablished) throw new FerryError('EINVAL', '--tcp-close and --tcp-established cannot be used together');
  return source ? importPod(engine, { ...o, source, name, ignoreRootfs, ignoreVolumes, allowHostMounts }) : restorePod(engine, pod!, o);
}
