/**
 * Offline inspection of a checkpoint (`ferry checkpoint inspect|show`, checkpointctl's
 * `inspect`, `show` and `memparse --search`): a container's committed checkpoint, a checkpoint
 * image (its layer), or an archive (Ferry's, Podman's, CRI-O's or containerd's) read into a
 * private staging directory with the same checks as an import and deleted afterwards. Nothing runs, nothing is restored, no container is created or changed.
 * The result has checkpointctl's JSON field names.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from '../lib/lazy.js';
import { FerryError } from '../lib/errors.js';
import { duBytes, mkdirp, readJsonIfExists } from '../lib/fsutil.js';
import { readArchive, POD_ARCHIVE_KIND } from '../drivers/archive/archive.js';
import { PodmanReader, type PodmanHeader } from '../drivers/archive/podman.js';
import { archiveContainerName } from './podman-import.js';
import { checkpointImageLayer, isCheckpointImage } from './checkpoint-image.js';
import type { ImageRecord } from '../drivers/storage/images.js';
import { readDumpStats, type DumpStats } from '../drivers/criu/stats.js';
import { ImageDir, type Process } from '../drivers/criu/explore.js';
import { META_FILE, pageImageBytes, type CheckpointMeta } from './checkpoint-dir.js';
import { openArchiveFile } from './portable.js';
import type { Engine } from './engine.js';
import type { ContainerRecord } from './types.js';

type Json = Record<string, unknown>;

export interface InspectOptions {
  psTree?: boolean;
  psTreeCmd?: boolean;
  psTreeEnv?: boolean;
  files?: boolean;
  sockets?: boolean;
  mounts?: boolean;
  stats?: boolean;
  all?: boolean;
  /** Only this process (and its children) in the tree, files and sockets. */
  pid?: number;
}

export interface PsNode {
  pid: number;
  command: string;
  cmdline?: string;
  task_state?: string;
  environment_variables?: Record<string, string>;
  children?: PsNode[];
}

export interface InspectNetwork {
  name: string;
  interfaces: Record<string, { ip?: string; mac?: string; gateway?: string }>;
}

/** checkpointctl's DisplayNode (its `inspect --format json` shape), plus `target`. */
export interface CheckpointInfo {
  container_name: string;
  image: string;
  id: string;
  runtime: string;
  created: string;
  checkpointed?: string;
  engine: string;
  ip?: string;
  mac?: string;
  networks?: InspectNetwork[];
  checkpoint_size: { total_size?: number; memory_pages_size?: number; root_fs_diff_size?: number };
  statistics?: { freezing_time?: number; frozen_time?: number; memdump_time?: number; memwrite_time?: number; pages_scanned?: number; pages_written?: number };
  process_tree?: PsNode;
  file_descriptors?: { pid: number; open_files?: { type: string; fd: string; path: string }[] }[];
  sockets?: { pid: number; open_sockets?: { protocol: string; data: Record<string, string | number> }[] }[];
  mounts?: { destination: string; type: string; source: string }[];
  /** A Kubernetes container's pod (CRI-O's and containerd's archives). */
  metadata?: { pod_name?: string; kubernetes_namespace?: string };
  /** What was inspected: the container's name or the archive's path. */
  target: string;
}

/** A checkpoint opened for reading: its CRIU images and what its metadata says. */
interface Opened {
  imageDir: string;
  info: Omit<CheckpointInfo, 'checkpoint_size' | 'target'>;
  stats?: DumpStats;
  spec?: Json;
  rootfsDiffSize: number;
}

/** Whether a target names an archive file (a path with a '/', or a file here that no container is named after). */
function isFileTarget(engine: Engine, target: string): boolean {
  if (target.includes('/')) return true;
  return !engine.find(target) && fs.existsSync(target);
}

/** A local image named ref, when no container is (undefined when there is none). */
function findImage(engine: Engine, ref: string): ImageRecord | undefined {
  try {
    return engine.images.find(ref);
  } catch {
    return undefined;
  }
}

/**
 * Opens TARGET (a container with a checkpoint, a checkpoint image, or an archive), runs fn, and
 * removes any staging.
 */
export async function withCheckpoint<T>(engine: Engine, target: string, fn: (o: Opened) => T | Promise<T>): Promise<T> {
  let file = target;
  let image: string | undefined;
  if (!isFileTarget(engine, target)) {
    // Locked: no checkpoint, restore or rm changes the images while they are read.
    if (engine.find(target)) return engine.withContainer(target, async (rec) => fn(openContainer(engine, rec)));
  }
  if (!isFileTarget(engine, target) || (!fs.existsSync(target) && findImage(engine, target))) {
    const img = findImage(engine, target);
    if (!img) throw new FerryError('ENOTFOUND', `no container, checkpoint image or archive file "${target}": name a container with a checkpoint (\`ferry checkpoint ls\`), a checkpoint image or an archive's path`);
    if (!isCheckpointImage(engine, img)) throw new FerryError('EINVAL', `image ${target} is not a checkpoint image: name one made by \`ferry container checkpoint --create-image\`, a container with a checkpoint or an archive`);
    // Its one layer is an archive in Podman's layout.
    file = checkpointImageLayer(engine, img, target);
    image = target;
  }
  const staging = path.join(engine.paths.root, `.import-${process.pid}-inspect-${randomBytes(6).toString('hex')}`);
  mkdirp(staging, 0o700);
  try {
    return await fn(await openArchive(file, staging, image));
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function openContainer(engine: Engine, rec: ContainerRecord): Opened {
  const c = rec.config;
  const dir = engine.paths.checkpointDir(c.id);
  const meta = readJsonIfExists<CheckpointMeta>(path.join(dir, META_FILE));
  if (!meta) throw new FerryError('ENOTFOUND', `container ${c.name} has no checkpoint: checkpoint it first (\`ferry container checkpoint ${c.name}\`) or name an archive`);
  return {
    imageDir: dir,
    info: ferryInfo(meta, c, path.basename(engine.runtime.runc)),
    stats: meta.stats,
    spec: readJsonIfExists<Json>(path.join(dir, 'spec.dump')),
    rootfsDiffSize: safeDu(engine.paths.layer(c.id).upper),
  };
}

function ferryInfo(meta: CheckpointMeta, c: { id: string; name: string; imageName: string; created: string }, runtime: string): Opened['info'] {
  const n = meta.network;
  return {
    container_name: c.name,
    image: c.imageName,
    id: c.id,
    runtime,
    created: c.created,
    checkpointed: meta.createdAt,
    engine: 'Ferry',
    ...(n?.ip ? { ip: n.ip } : {}),
    ...(n?.mac ? { mac: n.mac } : {}),
    ...(n?.ip ? { networks: [{ name: n.name, interfaces: { eth0: { ip: n.ip, mac: n.mac } } }] } : {}),
  };
}

/** Opens an archive file (image: the checkpoint image whose layer it is). */
async function openArchive(file: string, staging: string, image?: string): Promise<Opened> {
  const read = await readArchive(openArchiveFile(file), staging, {
    foreign: (dest) => new PodmanReader(dest, () => undefined),
    onHeader: (h) => {
      if (image !== undefined) throw new FerryError('EARCHIVE', `bad checkpoint image ${image}: its layer holds a Ferry archive, not Podman's checkpoint layout`);
      if (h.kind === POD_ARCHIVE_KIND) throw new FerryError('EINVAL', `${file} holds a whole pod: inspect its containers' checkpoints after \`ferry pod restore --import\``);
      if (h.kind !== 'ferry-checkpoint') throw new FerryError('EARCHIVE', `${file} is not a checkpoint archive`);
    },
  });
  const imageDir = path.join(staging, 'checkpoint');
  const rootfsDiffSize = safeDu(path.join(staging, 'rootfs'));
  if (read.foreign) {
    const h = read.header as unknown as PodmanHeader;
    const config = h.config;
    const str = (v: unknown): string => (typeof v === 'string' ? v : '');
    const ann = (h.spec.annotations && typeof h.spec.annotations === 'object' ? h.spec.annotations : {}) as Record<string, unknown>;
    const networks = podmanNetworks(readJsonIfExists<unknown>(path.join(staging, 'network.status')));
    const first = networks.flatMap((n) => Object.values(n.interfaces))[0];
    // As checkpointctl reads them: CRI-O's creation time and IP from its annotations, the pod
    // from the Kubernetes annotations (CRI-O's) or containerd's sandbox annotations.
    const crio = h.engine === 'CRI-O';
    const ip = first?.ip ?? (crio ? str(ann['io.kubernetes.cri-o.IP.0']) : '');
    const pod = crio ? str(ann['io.kubernetes.pod.name']) : h.engine === 'containerd' ? str(ann['io.kubernetes.cri.sandbox-name']) : '';
    const ns = crio ? str(ann['io.kubernetes.pod.namespace']) : h.engine === 'containerd' ? str(ann['io.kubernetes.cri.sandbox-namespace']) : '';
    return {
      imageDir,
      info: {
        container_name: archiveContainerName(h),
        image: str(config.rootfsImageName) || str(config.rootfsImageRef),
        id: str(config.id),
        runtime: str(config.runtime) || 'runc',
        created: (crio && str(ann['io.kubernetes.cri-o.Created'])) || str(config.createdTime),
        ...(str(config.checkpointedTime) && !str(config.checkpointedTime).startsWith('0001-') ? { checkpointed: str(config.checkpointedTime) } : {}),
        engine: h.engine,
        ...(ip ? { ip } : {}),
        ...(first?.mac ? { mac: first.mac } : {}),
        ...(networks.length ? { networks } : {}),
        ...(pod || ns ? { metadata: { ...(pod ? { pod_name: pod } : {}), ...(ns ? { kubernetes_namespace: ns } : {}) } } : {}),
      },
      stats: readDumpStats(path.join(staging, 'stats-dump')),
      spec: h.spec,
      rootfsDiffSize,
    };
  }
  const meta = readJsonIfExists<CheckpointMeta>(path.join(imageDir, META_FILE));
  const rec = readJsonIfExists<ContainerRecord>(path.join(staging, 'container.json'));
  if (!meta || !rec) throw new FerryError('EARCHIVE', `bad checkpoint archive ${file}: it has no ${!meta ? `checkpoint/${META_FILE}` : 'container.json'}`);
  return { imageDir, info: ferryInfo(meta, rec.config, 'runc'), stats: meta.stats, spec: readJsonIfExists<Json>(path.join(imageDir, 'spec.dump')), rootfsDiffSize };
}

/** Podman's network.status: network name -> {interfaces: {NAME: {subnets: [{ipnet, gateway}], mac_address}}}. */
function podmanNetworks(doc: unknown): InspectNetwork[] {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return [];
  const out: InspectNetwork[] = [];
  for (const [name, v] of Object.entries(doc as Json)) {
    const ifaces = (v as Json | null)?.interfaces;
    if (!ifaces || typeof ifaces !== 'object') continue;
    const interfaces: InspectNetwork['interfaces'] = {};
    for (const [ifname, i] of Object.entries(ifaces as Json)) {
      const subnet = ((i as Json)?.subnets as Json[] | undefined)?.[0];
      const ipnet = typeof subnet?.ipnet === 'string' ? subnet.ipnet.split('/')[0] : undefined;
      interfaces[ifname] = {
        ...(ipnet ? { ip: ipnet } : {}),
        ...(typeof (i as Json)?.mac_address === 'string' ? { mac: (i as Json).mac_address as string } : {}),
        ...(typeof subnet?.gateway === 'string' ? { gateway: subnet.gateway } : {}),
      };
    }
    out.push({ name, interfaces });
  }
  return out;
}

function safeDu(dir: string): number {
  try {
    return fs.existsSync(dir) ? duBytes(dir) : 0;
  } catch {
    return 0;
  }
}

function filesBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isFile()) n += fs.statSync(path.join(dir, e.name)).size;
  return n;
}

/** Everything `inspect` shows about one checkpoint. */
export async function inspectCheckpoint(engine: Engine, target: string, o: InspectOptions): Promise<CheckpointInfo> {
  return withCheckpoint(engine, target, (c) => describe(c, target, o));
}

export function describe(c: Opened, target: string, o: InspectOptions): CheckpointInfo {
  const all = !!o.all;
  const info: CheckpointInfo = {
    ...c.info,
    checkpoint_size: {
      total_size: filesBytes(c.imageDir),
      ...(pageImageBytes(c.imageDir) ? { memory_pages_size: pageImageBytes(c.imageDir) } : {}),
      ...(c.rootfsDiffSize ? { root_fs_diff_size: c.rootfsDiffSize } : {}),
    },
    target,
  };
  if (c.stats) {
    const s = c.stats;
    info.statistics = { freezing_time: s.freezingTimeUs, frozen_time: s.frozenTimeUs, memdump_time: s.memdumpTimeUs, memwrite_time: s.memwriteTimeUs, pages_scanned: s.pagesScanned, pages_written: s.pagesWritten };
  } else if (o.stats) {
    throw new FerryError('ENOTFOUND', `${target}: the checkpoint has no CRIU statistics (stats-dump)`);
  }
  const wantTree = all || o.psTree || o.psTreeCmd || o.psTreeEnv || o.pid !== undefined;
  if (wantTree || o.files || o.sockets) {
    const images = new ImageDir(c.imageDir);
    let root = images.processTree();
    if (o.pid !== undefined) {
      const found = findProcess(root, o.pid);
      if (!found) throw new FerryError('ENOTFOUND', `no process with PID ${o.pid} in the checkpoint: see the PIDs with \`ferry checkpoint inspect --ps-tree ${target}\``);
      root = found;
    }
    const procs = flatten(root);
    if (wantTree) info.process_tree = psNode(images, root, { cmd: all || !!o.psTreeCmd, env: all || !!o.psTreeEnv });
    if (all || o.files) {
      info.file_descriptors = procs.map((p) => {
        const files = images.openFiles(p);
        return { pid: p.pid, ...(files.length ? { open_files: files } : {}) };
      });
    }
    if (all || o.sockets) {
      info.sockets = procs
        .map((p) => {
          const sks = images.sockets(p).map((s): { protocol: string; data: Record<string, string | number> } => ({
            protocol: s.protocol,
            data:
              s.family === 'UNIX'
                ? { type: 'UNIX', ...(s.address ? { address: s.address } : {}), ...(s.state ? { state: s.state } : {}), ...(s.type ? { socket_type: s.type } : {}) }
                : { type: s.protocol, state: s.state ?? '', src: s.src ?? '', src_port: s.srcPort ?? 0, dst: s.dst ?? '', dst_port: s.dstPort ?? 0 },
          }));
          return { pid: p.pid, ...(sks.length ? { open_sockets: sks } : {}) };
        })
        .filter((s) => s.open_sockets);
    }
  }
  if (all || o.mounts) {
    const mounts = Array.isArray(c.spec?.mounts) ? (c.spec.mounts as Json[]) : [];
    info.mounts = mounts.map((m) => ({ destination: String(m.destination ?? ''), type: String(m.type ?? ''), source: String(m.source ?? '') }));
  }
  return info;
}

function psNode(images: ImageDir, p: Process, o: { cmd: boolean; env: boolean }): PsNode {
  const node: PsNode = { pid: p.pid, command: p.comm, task_state: p.taskState };
  const alive = p.taskState === 'Alive' || p.taskState === 'Stopped';
  if (alive && o.cmd) {
    const argv = images.cmdline(p.pid);
    if (argv) node.cmdline = argv.join(' ');
  }
  if (alive && o.env) {
    const env = images.environment(p.pid);
    if (env) node.environment_variables = Object.fromEntries(env.filter((e) => e.indexOf('=') > 0).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  }
  if (p.children.length) node.children = p.children.map((ch) => psNode(images, ch, o));
  return node;
}

function findProcess(p: Process, pid: number): Process | undefined {
  if (p.pid === pid) return p;
  for (const c of p.children) {
    const f = findProcess(c, pid);
    if (f) return f;
  }
  return undefined;
}

function flatten(p: Process): Process[] {
  return [p, ...p.children.flatMap(flatten)];
}

// --------------------------------------------------------------------------- memory search

export interface MemoryMatch {
  pid: number;
  command: string;
  /** The address of the match in the process. */
  address: number;
  match: string;
  /** The match with `context` bytes either side, non-printable bytes as '.'. */
  instance: string;
}

/** Finds a string or a regular expression in the dumped memory (checkpointctl `memparse --search`). */
export async function searchCheckpointMemory(engine: Engine, target: string, o: { search?: string; regex?: string; pid?: number; context?: number; max?: number }): Promise<MemoryMatch[]> {
  let re: RegExp;
  if (o.regex !== undefined) {
    try {
      re = new RegExp(o.regex, 'g');
    } catch (e) {
      throw new FerryError('EINVAL', `invalid --search-regex: ${(e as Error).message}`);
    }
  } else if (o.search) {
    re = new RegExp(o.search.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g');
  } else {
    throw new FerryError('EINVAL', 'give --search STRING or --search-regex RE');
  }
  const context = o.context ?? 0;
  const max = o.max ?? 1000;
  return withCheckpoint(engine, target, (c) => {
    const images = new ImageDir(c.imageDir);
    let procs = flatten(images.processTree());
    if (o.pid !== undefined) {
      procs = procs.filter((p) => p.pid === o.pid);
      if (!procs.length) throw new FerryError('ENOTFOUND', `no process with PID ${o.pid} in the checkpoint: see the PIDs with \`ferry checkpoint inspect --ps-tree ${target}\``);
    }
    const out: MemoryMatch[] = [];
    for (const p of procs) {
      for (const region of images.memory(p.pid)) {
        // latin1: one character per byte, so string offsets are byte offsets.
        const text = region.bytes.toString('latin1');
        re.lastIndex = 0;
        for (let m = re.exec(text); m; m = re.exec(text)) {
          if (m[0] === '') {
            re.lastIndex++;
            continue;
          }
          const lo = Math.max(0, m.index - context);
          const hi = Math.min(text.length, m.index + m[0].length + context);
          out.push({ pid: p.pid, command: p.comm, address: region.vaddr + m.index, match: printable(m[0]), instance: printable(text.slice(lo, hi)) });
          if (out.length >= max) return out;
        }
      }
    }
    return out;
  });
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '.');
}

// --------------------------------------------------------------------------- diff

export interface DiffProcess {
  pid: number;
  command: string;
  cmdline?: string;
}
export interface DiffFile {
  path: string;
  type: string;
  pid: number;
  fd: string;
}
export interface DiffSocket {
  pid: number;
  protocol: string;
  type: string;
  address?: string;
  state?: string;
  source?: string;
  src_port?: number;
  dest?: string;
  dst_port?: number;
}
interface Changes<T> {
  added?: T[];
  removed?: T[];
  modified?: T[];
  unchanged?: T[];
}

/** checkpointctl's `diff` result (its JSON field names). */
export interface CheckpointDiff {
  container_id: string;
  container_name: string;
  image: string;
  checkpoint_a: { created: string; total_size: number };
  checkpoint_b: { created: string; total_size: number };
  process_changes: Changes<DiffProcess>;
  file_changes?: Changes<DiffFile>;
  memory_changes: { size_change_bytes: number; size_change_mb: number };
  socket_changes?: Changes<DiffSocket>;
  summary: string;
}

/** Keyed comparison: what B has that A has not, what A had that B has not, and (optionally) the rest. */
function compare<T>(a: T[], b: T[], key: (x: T) => string, changed: (x: T, y: T) => boolean, unchanged: boolean): Changes<T> {
  const ma = new Map(a.map((x) => [key(x), x]));
  const mb = new Map(b.map((x) => [key(x), x]));
  const out: Required<Changes<T>> = { added: [], removed: [], modified: [], unchanged: [] };
  for (const [k, y] of mb) {
    const x = ma.get(k);
    if (!x) out.added.push(y);
    else if (changed(x, y)) out.modified.push(y);
    else out.unchanged.push(y);
  }
  for (const [k, x] of ma) if (!mb.has(k)) out.removed.push(x);
  const res: Changes<T> = {};
  if (out.added.length) res.added = out.added;
  if (out.removed.length) res.removed = out.removed;
  if (out.modified.length) res.modified = out.modified;
  if (unchanged && out.unchanged.length) res.unchanged = out.unchanged;
  return res;
}

function flatPs(p: PsNode | undefined, cmd: boolean): DiffProcess[] {
  if (!p) return [];
  return [{ pid: p.pid, command: p.command, ...(cmd && p.cmdline !== undefined ? { cmdline: p.cmdline } : {}) }, ...(p.children ?? []).flatMap((c) => flatPs(c, cmd))];
}

/**
 * Compares two checkpoints of the same container (`ferry checkpoint diff A B`, checkpointctl's
 * `diff`): processes (by PID), open files and sockets (by PID and what they are), memory size.
 */
export async function diffCheckpoints(engine: Engine, a: string, b: string, o: { psTreeCmd?: boolean; psTreeEnv?: boolean; files?: boolean; sockets?: boolean; showUnchanged?: boolean }): Promise<CheckpointDiff> {
  const want: InspectOptions = { psTree: true, psTreeCmd: o.psTreeCmd, psTreeEnv: o.psTreeEnv, files: o.files, sockets: o.sockets };
  const A = await inspectCheckpoint(engine, a, want);
  const B = await inspectCheckpoint(engine, b, want);
  if (A.id !== B.id) throw new FerryError('EINVAL', `${a} and ${b} are checkpoints of different containers (${A.id.slice(0, 12)}, ${B.id.slice(0, 12)}): diff compares two checkpoints of the same container`);
  const u = !!o.showUnchanged;
  const files = (i: CheckpointInfo): DiffFile[] => (i.file_descriptors ?? []).flatMap((f) => (f.open_files ?? []).map((x) => ({ path: x.path, type: x.type, pid: f.pid, fd: x.fd })));
  const sockets = (i: CheckpointInfo): DiffSocket[] =>
    (i.sockets ?? []).flatMap((s) =>
      (s.open_sockets ?? []).map((x) => {
        const d = x.data;
        return d.type === 'UNIX'
          ? { pid: s.pid, protocol: x.protocol, type: 'UNIX', ...(d.address ? { address: String(d.address) } : {}), ...(d.state ? { state: String(d.state) } : {}) }
          : { pid: s.pid, protocol: x.protocol, type: String(d.type), state: String(d.state), source: String(d.src), src_port: Number(d.src_port), dest: String(d.dst), dst_port: Number(d.dst_port) };
      }),
    );
  const memA = A.checkpoint_size.memory_pages_size ?? 0;
  const memB = B.checkpoint_size.memory_pages_size ?? 0;
  const result: CheckpointDiff = {
    container_id: A.id,
    container_name: A.container_name,
    image: A.image,
    checkpoint_a: { created: A.checkpointed ?? A.created, total_size: A.checkpoint_size.total_size ?? 0 },
    checkpoint_b: { created: B.checkpointed ?? B.created, total_size: B.checkpoint_size.total_size ?? 0 },
    process_changes: compare(flatPs(A.process_tree, !!o.psTreeCmd), flatPs(B.process_tree, !!o.psTreeCmd), (p) => String(p.pid), (x, y) => x.command !== y.command || x.cmdline !== y.cmdline, u),
    memory_changes: { size_change_bytes: memB - memA, size_change_mb: Math.round(((memB - memA) / 1024 / 1024) * 100) / 100 },
    summary: '',
  };
  if (o.files) result.file_changes = compare(files(A), files(B), (f) => `${f.pid}:${f.fd}:${f.path}`, () => false, u);
  if (o.sockets) {
    result.socket_changes = compare(sockets(A), sockets(B), (s) => `${s.pid}:${s.protocol}:${s.type}:${s.address ?? ''}:${s.state ?? ''}:${s.source ?? ''}:${s.src_port ?? ''}:${s.dest ?? ''}:${s.dst_port ?? ''}`, () => false, u);
  }
  const n = (c: Changes<unknown> | undefined, k: keyof Changes<unknown>): number => c?.[k]?.length ?? 0;
  const lines = [`Checkpoint comparison for container ${A.container_name}`];
  const pc = result.process_changes;
  lines.push(`Processes: +${n(pc, 'added')} -${n(pc, 'removed')} ~${n(pc, 'modified')}`);
  if (result.file_changes) lines.push(`Files: +${n(result.file_changes, 'added')} -${n(result.file_changes, 'removed')}`);
  if (result.socket_changes) lines.push(`Sockets: +${n(result.socket_changes, 'added')} -${n(result.socket_changes, 'removed')}`);
  const mb = result.memory_changes.size_change_mb;
  lines.push(`Memory: ${mb >= 0 ? '+' : ''}${mb.toFixed(2)} MB`);
  result.summary = lines.join('\n');
  return result;
}
