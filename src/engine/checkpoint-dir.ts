/**
 * What a checkpoint directory holds and says about itself: CRIU's images, Ferry's metadata
 * (ferry-checkpoint.json, spec.dump), the pre-dumps it builds on (pre-checkpoint, pre-1, ...,
 * linked by CRIU's `parent` links) and the memory images a page server wrote. Shared by the
 * checkpoint, restore, export/import and migration modules; it decides nothing about a
 * container's lifecycle.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { writeJsonAtomic } from '../lib/fsutil.js';
import { VERSION } from '../lib/version.js';
import { diagnoseCriuLog, readLog } from '../drivers/criu/criu.js';
import type { DumpStats } from '../drivers/criu/stats.js';
import type { PortMapping } from '../drivers/network/cni.js';
import type { Engine } from './engine.js';
import { findPod } from './podstore.js';
import type { CheckpointMetaOptions, ContainerConfig, ContainerRecord } from './types.js';

export const CHECKPOINT_FORMAT = 1;
export const META_FILE = 'ferry-checkpoint.json';
/** The pre-dump of `checkpoint --pre-checkpoint`, which `--with-previous` builds on. */
export const PRE_DIR = 'pre-checkpoint';
/** The directories pre-dumps live in, beside checkpoint/: pre-checkpoint, or pre-1, pre-2, ... */
export const PRE_DUMP_NAME = /^pre-(checkpoint|[1-9][0-9]{0,2})$/;

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
  options: CheckpointMetaOptions;
  stats?: DumpStats;
  /** The address the container had, so a restore (here or elsewhere) can keep it. */
  network?: { name: string; ip: string; mac: string; ports: PortMapping[] };
  /** The pod it was checkpointed out of, and the namespaces it shared with it. */
  pod?: { name: string; share: string[] };
}

// ------------------------------------------------------------------------- metadata

/** The options a checkpoint records, from whatever subset of them a caller has. */
export function checkpointMetaOptions(o: Partial<Record<Exclude<keyof CheckpointMetaOptions, 'label'>, boolean | undefined>> & { label?: string }): CheckpointMetaOptions {
  return { tcpEstablished: !!o.tcpEstablished, fileLocks: !!o.fileLocks, extUnixSk: !!o.extUnixSk, shellJob: !!o.shellJob, withPrevious: !!o.withPrevious, ...(o.label !== undefined ? { label: o.label } : {}) };
}

/**
 * Writes what makes a CRIU image dir a Ferry checkpoint, once CRIU is done: ferry-checkpoint.json
 * (`meta` from makeMeta, with the statistics of this dump) and the bundle's spec.
 */
export function writeCheckpointMeta(engine: Engine, rec: ContainerRecord, dir: string, meta: CheckpointMeta): void {
  const bundle = engine.paths.bundle(rec.config.id);
  // No fsync: CRIU writes its images beside it without one, so the metadata's alone would make
  // nothing durable; the write stays atomic (a reader sees all of it or none).
  writeJsonAtomic(path.join(dir, META_FILE), meta, 0o644, false);
  const spec = path.join(bundle, 'config.json');
  if (fs.existsSync(spec)) fs.copyFileSync(spec, path.join(dir, 'spec.dump'));
}

export async function makeMeta(engine: Engine, rec: ContainerRecord, o: CheckpointMetaOptions, stats?: DumpStats): Promise<CheckpointMeta> {
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
    options: { ...o },
    stats,
    network: c.network?.mode === 'bridge' && n ? { name: n.network, ip: n.ip, mac: n.mac, ports: c.network.ports } : undefined,
    pod: podInfo(engine, c.pod),
  };
}

function podInfo(engine: Engine, podId: string | undefined): CheckpointMeta['pod'] {
  const pod = podId ? findPod(engine, podId) : undefined;
  return pod ? { name: pod.name, share: pod.share } : undefined;
}

/** A plain-words error from runc's stderr and CRIU's log, with the log's path for details. */
export function criuFailure(what: 'checkpoint' | 'restore', name: string, stderr: string, logFile: string): FerryError {
  const d = diagnoseCriuLog(readLog(logFile) + '\n' + stderr);
  const cause = d.cause ?? d.firstError ?? stderr.trim().split('\n').pop() ?? 'unknown error';
  const after = what === 'checkpoint' ? 'the container is still running' : 'the checkpoint is kept, so you can retry';
  return new FerryError('ECRIU', `${what} of ${name} failed: ${cause}; ${after} (details: ${logFile})`, { detail: stderr });
}

/**
 * A checkpoint restores only with the CRIU that made it ("vdso: ELF header magic mismatch"
 * otherwise) and on the same CPU architecture: says what differs, up front. `from` says where
 * the checkpoint comes from, for the message.
 */
export async function checkCompatible(engine: Engine, c: { formatVersion?: number; arch: string; criuVersion: string | undefined }, from = 'the checkpoint was made'): Promise<void> {
  if (c.formatVersion !== undefined && c.formatVersion > CHECKPOINT_FORMAT) {
    throw new FerryError('EINVAL', `the checkpoint has format version ${c.formatVersion}, newer than this ferry understands (${CHECKPOINT_FORMAT}): upgrade ferry`);
  }
  if (c.arch !== process.arch) {
    throw new FerryError('EINVAL', `${from} on ${c.arch}, this host is ${process.arch}: restore it on a ${c.arch} host`);
  }
  const criu = await engine.criu();
  if (!criu.version) throw new FerryError('EDEPEND', 'CRIU is not installed: run `npm run setup` (as root)');
  if (c.criuVersion !== criu.version) {
    throw new FerryError('EINVAL', `${from} with CRIU ${c.criuVersion}, this host has CRIU ${criu.version}: restore it with the same CRIU version`);
  }
}

// ------------------------------------------------------------------------- pre-dumps and page images

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

/**
 * The memory images a CRIU page server writes (it writes nothing else): each process's
 * pagemap-PID.img, pagemap-shmem-ID.img for shared memory (System V segments by their ID,
 * shared anonymous mappings by their inode; PostgreSQL has both), and the pages-N.img they index.
 */
const PAGE_IMAGE = /^(pages-[0-9]{1,10}|pagemap-[0-9]{1,10}|pagemap-shmem-[0-9]{1,20})\.img$/;

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

