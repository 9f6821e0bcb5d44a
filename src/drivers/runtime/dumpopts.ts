/**
 * What `runc checkpoint` (runc 1.1) asks of CRIU for a container, built here from runc's own
 * record of it (state.json), so that Ferry can ask CRIU itself and get the images runc would
 * have made: `runc restore` (Ferry's, or Podman's for an exported checkpoint) finds the same
 * external mounts, namespaces and descriptors it looks for. Each rule below names runc's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';
import { resolveIn } from '../../lib/fsutil.js';
import { CG_MODE, type CriuDumpOpts } from '../criu/swrk.js';
import type { RuncCheckpointOptions } from './runc.js';

/** The parts of runc's state.json (libcontainer's State) a dump needs. */
export interface RuncStateFile {
  init_process_pid: number;
  config: {
    rootfs: string;
    mounts?: { destination: string; device: string; source?: string }[] | null;
    mask_paths?: string[] | null;
    devices?: { path: string }[] | null;
    namespaces?: { type: string; path?: string }[] | null;
    labels?: string[] | null;
  };
  cgroup_paths?: Record<string, string> | null;
  /** The init's standard descriptors at creation ("pipe:[N]", "/dev/null"): descriptors.json. */
  external_descriptors?: string[] | null;
}

/** What dumpOptions needs from this host and this process. */
export interface DumpContext {
  imagesDirFd: number;
  workDirFd: number;
  statusFd?: number;
  /** Base names of the host's cgroup v1 mount points (cgroupV1Mounts); empty on cgroup v2. */
  cgroupMounts: string[];
  /** Whether a path in the container (as its init sees it) is a directory; undefined: it does not exist. */
  isDir: (p: string) => boolean | undefined;
}

const CLONE_NEWNET = 0x40000000;
const EMPTY_NS: Record<string, number> = { network: CLONE_NEWNET };

/** runc's checkpoint request (Checkpoint, setPageServer, setManageCgroupsMode, setEmptyNsMask). */
export function dumpOptions(st: RuncStateFile, o: RuncCheckpointOptions, ctx: DumpContext): CriuDumpOpts {
  const c = st.config;
  const rootfs = c.rootfs;
  // Annotations, as runc keeps them: "key=value".
  const labels = new Map<string, string>();
  for (const l of c.labels ?? []) {
    const i = l.indexOf('=');
    if (i > 0) labels.set(l.slice(0, i), l.slice(i + 1));
  }
  // runc does not manage network devices: the network namespace is always dumped empty.
  let emptyNs = CLONE_NEWNET;
  for (const ns of o.emptyNs ?? []) {
    const f = EMPTY_NS[ns];
    if (f === undefined) throw new FerryError('EINVAL', `namespace "${ns}" cannot be dumped empty (--empty-ns): only "network" can`);
    emptyNs |= f;
  }
  const external: string[] = [];
  // Namespaces the container joined by path (a pod's, a CNI network's): external, keyed as runc keys them.
  for (const [type, name] of [
    ['NEWNET', 'net'],
    ['NEWPID', 'pid'],
  ] as const) {
    const p = c.namespaces?.find((n) => n.type === type)?.path;
    if (p) external.push(`${name}[${fs.statSync(p).ino}]:extRoot${name[0]!.toUpperCase()}${name.slice(1)}NS`);
  }
  const freezer = st.cgroup_paths?.freezer ?? st.cgroup_paths?.[''];
  const extMnt: [string, string][] = [];
  // Keyed by the mount point with its links resolved inside the rootfs, as runc's securejoin does.
  const dumpMount = (dest: string): void => {
    let d = dest.startsWith(rootfs) ? dest.slice(rootfs.length) : dest;
    try {
      d = resolveIn((p) => rootfs + p, d);
    } catch {
      // a link loop: runc keeps the path as written
    }
    extMnt.push([d, d]);
  };
  const opts: CriuDumpOpts = {
    imagesDirFd: ctx.imagesDirFd,
    workDirFd: ctx.workDirFd,
    pid: st.init_process_pid,
    logFile: o.logFile ?? 'dump.log',
    logLevel: 4,
    root: rootfs,
    manageCgroups: true,
    notifyScripts: false, // runc's notifications serve runc's state (and pre-Ferry network setups): none here
    shellJob: !!o.shellJob,
    leaveRunning: !!o.leaveRunning,
    tcpEstablished: !!o.tcpEstablished,
    extUnixSk: !!o.extUnixSk,
    fileLocks: !!o.fileLocks,
    emptyNs,
    orphanPtsMaster: true,
    autoDedup: !!o.autoDedup,
    lazyPages: !!o.lazyPages,
    extMnt,
    external,
    freezeCgroup: freezer || undefined,
  };
  // handleCriuConfigurationFile: the annotation's file, or runc's own when there is none.
  const cfg = labels.get('org.criu.config');
  if (cfg === undefined) opts.configFile = '/etc/criu/runc.conf';
  else if (cfg !== '') opts.configFile = cfg;
  if (o.pageServer) {
    const i = o.pageServer.lastIndexOf(':');
    const address = o.pageServer.slice(0, i).replace(/^\[(.*)\]$/, '$1');
    const port = Number(o.pageServer.slice(i + 1));
    if (i <= 0 || !address || !Number.isInteger(port) || port <= 0 || port > 65535) throw new FerryError('EINVAL', `page server "${o.pageServer}" is not ADDRESS:PORT`);
    opts.pageServer = { address, port };
  }
  if (o.parentPath) {
    opts.parentImg = o.parentPath;
    opts.trackMem = true;
  }
  if (o.manageCgroupsMode) opts.manageCgroupsMode = CG_MODE[o.manageCgroupsMode];
  if (o.lazyPages && ctx.statusFd !== undefined) opts.statusFd = ctx.statusFd;
  if (o.preDump) return opts; // runc: "no need to dump all this in pre-dump"
  const hasCgroupns = !!c.namespaces?.some((n) => n.type === 'NEWCGROUP');
  for (const m of c.mounts ?? []) {
    if (m.device === 'bind') dumpMount(m.destination);
    // cgroup v1 without a cgroup namespace: one bind mount per hierarchy, external.
    else if (m.device === 'cgroup' && !hasCgroupns) for (const b of ctx.cgroupMounts) dumpMount(path.join(m.destination, b));
  }
  // Masked files are bind mounts of /dev/null (masked directories are tmpfs, which CRIU dumps).
  for (const p of c.mask_paths ?? []) {
    if (ctx.isDir(p) === false) extMnt.push([p, '/dev/null']);
  }
  for (const d of c.devices ?? []) dumpMount(d.path);
  return opts;
}

/**
 * Base names of the host's cgroup v1 hierarchies that hold a controller of this process's
 * cgroups (runc's GetCgroupMounts(false)): empty on a cgroup v2 host.
 */
export function cgroupV1Mounts(): string[] {
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) return [];
  let mine: Set<string>;
  let info: string;
  try {
    mine = new Set(
      fs
        .readFileSync('/proc/self/cgroup', 'utf8')
        .split('\n')
        .flatMap((l) => (l.split(':')[1] ?? '').split(','))
        .filter((s) => s !== ''),
    );
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  const found = new Set<string>();
  for (const line of info.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const [fstype, , superOpts] = post.split(' ');
    if (fstype !== 'cgroup') continue;
    const subs = (superOpts ?? '').split(',').filter((s) => mine.has(s)); // "name=systemd" as /proc/self/cgroup writes it
    if (subs.length === 0) continue;
    const mountpoint = (pre.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push(path.basename(mountpoint));
    for (const s of subs) found.add(s);
    if (found.size >= mine.size) break;
  }
  return out;
}

/** Whether p (a path in the container of init pid) is a directory, following links; undefined when it does not exist. */
export function isDirIn(pid: number, p: string): boolean | undefined {
  try {
    return fs.statSync(`/proc/${pid}/root/${p}`).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
