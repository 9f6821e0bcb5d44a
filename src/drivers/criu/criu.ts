import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import { readJsonIfExists, writeJsonAtomic } from '../../lib/fsutil.js';

/** Where `npm run setup` installs CRIU 4.2 (or a wrapper around a host CRIU that passed its checks). */
export const CRIU_WRAPPER = '/usr/local/lib/ferry/bin/criu';

export const MIN_CRIU = [4, 2] as const;

/**
 * CRIU options for Ferry's own runs of its CRIU, written by setup: the network lock by nftables
 * where CRIU and the kernel have it (one netlink transaction instead of five iptables-restore
 * processes to unlock a restored container's network).
 */
export const CRIU_DEFAULTS = '/usr/local/lib/ferry/etc/criu.conf';

/** The configuration file for CRIU_CONFIG_FILE, when Ferry runs its own CRIU and setup wrote one. */
export function findCriuDefaults(criu: string): string | undefined {
  return criu === CRIU_WRAPPER && fs.existsSync(CRIU_DEFAULTS) ? CRIU_DEFAULTS : undefined;
}

/**
 * Where setup puts the `tar` that CRIU runs for each tmpfs of a container (scripts/criu-tar.c:
 * what such mounts hold without GNU tar and gzip, anything else by GNU tar). Ferry puts it
 * first on the PATH of every CRIU it or runc starts.
 */
export const CRIU_TOOLS = '/usr/local/lib/ferry/criu-path';

/** CRIU_TOOLS when setup built it here. */
export function findCriuTools(): string | undefined {
  try {
    fs.accessSync(path.join(CRIU_TOOLS, 'tar'), fs.constants.X_OK);
    return CRIU_TOOLS;
  } catch {
    return undefined;
  }
}

/** The CRIU binary Ferry uses: $FERRY_CRIU, then Ferry's own install, then PATH. */
export function findCriu(): string {
  if (process.env.FERRY_CRIU) return process.env.FERRY_CRIU;
  if (fs.existsSync(CRIU_WRAPPER)) return CRIU_WRAPPER;
  return 'criu';
}

export interface CriuFeatures {
  /** CRIU runs here at all (`criu check`). */
  check: boolean;
  /** Soft-dirty memory tracking: needed for pre-copy (pre-dump, --with-previous). */
  memDirtyTrack: boolean;
  /** userfaultfd for non-cooperative processes: needed for lazy pages (post-copy). */
  uffdNoncoop: boolean;
  /** fs.pipe-max-size allows the 4 MiB pipes lazy pages asks for. */
  lazyPipeSize: boolean;
}

export interface CriuInfo {
  path: string;
  version?: string; // e.g. 4.2.1
  features: CriuFeatures;
}

/** An open file CRIU cannot dump, in the process that holds it. */
export interface Undumpable {
  pid: number;
  command: string;
  /** io_uring: an io_uring instance; device: a device node CRIU has no dumper for; outside: a file on a mount the container does not have. */
  kind: 'io_uring' | 'device' | 'outside';
  /** The file as /proc/PID/fd shows it; for a device also its numbers (e.g. `/dev/kvm (10:232)`). */
  file: string;
}

/**
 * Character devices CRIU 4.2 dumps itself (dump_chrdev): memory devices (1:*, /dev/null, ...),
 * terminals and pseudo-terminals (4, 5, 128-143), tun (10:200) and autofs (10:235).
 */
export function chrDumpable(major: number, minor: number): boolean {
  if (major === 1 || major === 4 || major === 5 || (major >= 128 && major <= 143)) return true;
  return major === 10 && (minor === 200 || minor === 235);
}

/** Devices a CRIU plugin may dump (amdgpu: kfd, DRM nodes; cuda: nvidia): left to CRIU. */
const PLUGIN_DEVICE = /^(kfd$|dri\/|nvidia)/;

function devName(type: 'char' | 'block', major: number, minor: number): string {
  try {
    return /^DEVNAME=(.*)$/m.exec(fs.readFileSync(`/sys/dev/${type}/${major}:${minor}/uevent`, 'utf8'))?.[1] ?? '';
  } catch {
    return '';
  }
}

/** The mount IDs of a process's mount namespace (cached per namespace). */
function mountIds(pid: number, cache: Map<string, Set<number>>): Set<number> | undefined {
  try {
    const ns = fs.readlinkSync(`/proc/${pid}/ns/mnt`);
    let ids = cache.get(ns);
    if (!ids) {
      ids = new Set(fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter(Boolean).map((l) => Number(l.split(' ')[0])));
      cache.set(ns, ids);
    }
    return ids;
  } catch {
    return undefined; // gone
  }
}

/** What CRIU 4.2 cannot dump of one open file, by its /proc/PID/fd link, or undefined. */
function undumpableFd(pid: number, fd: string, link: string, mounts: Set<number> | undefined): Pick<Undumpable, 'kind' | 'file'> | undefined {
  if (link === 'anon_inode:[io_uring]') return { kind: 'io_uring', file: link };
  // Files with a path; memfds live on a kernel-internal mount and CRIU dumps them by content.
  if (!link.startsWith('/') || link.startsWith('/memfd:')) return undefined;
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(`/proc/${pid}/fd/${fd}`, { bigint: true });
  } catch {
    return undefined; // closed meanwhile
  }
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    const major = Number(((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn));
    const minor = Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn));
    const type = st.isCharacterDevice() ? 'char' : 'block';
    if (type === 'char' && (chrDumpable(major, minor) || PLUGIN_DEVICE.test(devName(type, major, minor)))) return checkMount();
    return { kind: 'device', file: `${link} (${type === 'block' ? 'block ' : ''}${major}:${minor})` };
  }
  return checkMount();

  function checkMount(): Pick<Undumpable, 'kind' | 'file'> | undefined {
    if (!mounts) return undefined;
    let info = '';
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      return undefined;
    }
    const id = /^mnt_id:\s*(\d+)/m.exec(info)?.[1];
    return id !== undefined && !mounts.has(Number(id)) ? { kind: 'outside', file: link } : undefined;
  }
}

/**
 * What of the processes' open files CRIU 4.2 cannot dump (one entry per process and kind): an
 * io_uring instance, a device it has no dumper for (criu/files.c: "Can't dump file N of that
 * type"), a file on a mount outside the process's mount namespace, e.g. passed in over a unix
 * socket ("Can't lookup mount=N for fd=N").
 */
export function findUndumpable(pids: number[]): Undumpable[] {
  const out: Undumpable[] = [];
  const nsMounts = new Map<string, Set<number>>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone
    }
    const mounts = mountIds(pid, nsMounts);
    const seen = new Set<string>();
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const u = undumpableFd(pid, fd, link, mounts);
      if (!u || seen.has(u.kind)) continue;
      seen.add(u.kind);
      let command = '';
      try {
        command = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        /* gone */
      }
      out.push({ pid, command, ...u });
    }
  }
  return out;
}

/** Checkpoint modes that need something of the kernel or host beyond CRIU itself. */
export type Capability = 'preCopy' | 'lazyPages';

/** What this host lacks for a checkpoint mode, in plain words, or undefined when it has it all. */
export function missingFor(f: CriuFeatures, c: Capability): string | undefined {
  if (c === 'preCopy') return f.memDirtyTrack ? undefined : 'soft-dirty memory tracking, which this kernel lacks (`criu check --feature mem_dirty_track`)';
  if (!f.uffdNoncoop) return 'non-cooperative userfaultfd, which this kernel lacks';
  if (!f.lazyPipeSize) return 'fs.pipe-max-size >= 4194304 (`npm run setup` sets it)';
  return undefined;
}

/**
 * Refuses a checkpoint mode this host cannot do: one line saying what is missing (where: on
 * which host, when not this one) and what to do instead.
 */
export function requireCapability(info: CriuInfo, c: Capability, instead: string, where?: string): void {
  const why = missingFor(info.features, c);
  if (why) throw new FerryError('EUNSUPPORTED', `${c === 'preCopy' ? 'pre-copy needs' : 'lazy pages need'}${where ? ` on ${where}` : ''} ${why}: ${instead}`);
}

export function parseCriuVersion(out: string): string | undefined {
  const m = out.match(/Version:\s*([0-9]+(?:\.[0-9]+)*)/);
  return m?.[1];
}

export function versionAtLeast(v: string | undefined, min: readonly number[]): boolean {
  if (!v) return false;
  const parts = v.split('.').map(Number);
  for (let i = 0; i < min.length; i++) {
    const a = parts[i] ?? 0;
    if (a !== min[i]) return a > min[i]!;
  }
  return true;
}

async function feature(criu: string, name: string): Promise<boolean> {
  const r = await run([criu, 'check', '--feature', name]);
  return r.code === 0 && !/not supported|is off|missing/i.test(r.stdout + r.stderr);
}

/**
 * Probes CRIU: version and the features that decide which checkpoint modes work here.
 * Feature checks ask CRIU itself (as runc does) rather than compare kernel versions. The result
 * is cached in cacheFile, keyed by binary, version and kernel, because probing takes ~0.5 s.
 */
export async function probeCriu(cacheFile?: string): Promise<CriuInfo> {
  const criu = findCriu();
  const kernel = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  let stat = '';
  try {
    const s = fs.statSync(criu.includes('/') ? criu : '/nonexistent');
    stat = `${s.mtimeMs}`;
  } catch {
    /* on PATH */
  }
  const key = `${criu}|${stat}|${kernel}`;
  if (cacheFile) {
    const c = readJsonIfExists<{ key: string; info: CriuInfo }>(cacheFile);
    if (c?.key === key) return c.info;
  }
  const v = await run([criu, '--version']).catch(() => undefined);
  const version = v ? parseCriuVersion(v.stdout) : undefined;
  const features: CriuFeatures = { check: false, memDirtyTrack: false, uffdNoncoop: false, lazyPipeSize: false };
  if (version) {
    const [check, dirty, uffd] = await Promise.all([
      run([criu, 'check']).then((r) => r.code === 0),
      feature(criu, 'mem_dirty_track'),
      feature(criu, 'uffd-noncoop'),
    ]);
    features.check = check;
    features.memDirtyTrack = dirty;
    features.uffdNoncoop = uffd;
  }
  features.lazyPipeSize = Number(fs.readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim()) >= 4 * 1024 * 1024;
  const info: CriuInfo = { path: criu, version, features };
  if (cacheFile && version) {
    fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
    writeJsonAtomic(cacheFile, { key, info });
  }
  return info;
}

/** Known CRIU failures, in the words a user needs. The first match wins. */
const DIAGNOSES: { re: RegExp; say: string }[] = [
  { re: /Connected TCP socket|tcp.*established|Can't dump established/i, say: 'the container holds an established TCP connection: add --tcp-established' },
  { re: /Can't lookup mount.*for fd|External file|ext_files|Can't dump file .* outside/i, say: 'a regular file is open outside the container\'s filesystems' },
  { re: /unix socket .* peer|External socket|Can't dump half of stream unix|unix.*external/i, say: 'the container has a UNIX socket connected outside it: add --ext-unix-sk' },
  { re: /iptables-restore.*(not found|No such file)|Unable to lock network|Locking network failed/i, say: 'CRIU could not lock the container\'s network: iptables is missing or failed (run `npm run setup`)' },
  { re: /file lock|Can't dump file locks|flock/i, say: 'a process holds a file lock: add --file-locks' },
  { re: /Tracking memory is not available|mem_dirty_track|soft.dirty/i, say: 'this kernel lacks soft-dirty memory tracking, which pre-copy needs' },
  { re: /vdso: ELF header magic mismatch|Unexpected rt vDSO/i, say: 'the checkpoint was made by a different CRIU version than the one restoring it' },
  { re: /Can't bind inet socket|Address already in use/i, say: 'an address the container listened on is already in use' },
  { re: /Error \(.*\): .*(task|pid) .* (is|has been) (busy|in use)|PID .* is busy|Can't fork for \d+: File exists/i, say: 'a process ID the checkpoint needs is already taken on this host' },
  // Not inside a word: CRIU's "empty mntns", "--emptyns" and "--pretty" are no terminal.
  { re: /(?<![a-z])(tty|pty)/i, say: 'the container has a terminal: add --shell-job' },
  { re: /page-pipe: splice.*Bad file descriptor|Lazy pages transfer FAILED/i, say: 'lazy pages need fs.pipe-max-size >= 4194304: run `npm run setup`' },
  {
    re: /Can't get rlimit \d+: Operation not permitted/i,
    say: "CRIU may not read the resource limits of a process of another user here (root lacks CAP_SYS_RESOURCE): run `npm run setup`, which installs the library Ferry's CRIU reads them through",
  },
];

/**
 * Reads a CRIU log and names the cause in plain words. CRIU's own error lines (`Error (file:line):`,
 * `FAILED`) are read first; only a log without any is searched more loosely, so that an
 * informational line that merely mentions an error (a path like /var/log/nginx/error.log) is
 * never blamed. Ignores the harmless RLIMIT_NOFILE line every CRIU run here logs.
 */
export function diagnoseCriuLog(log: string): { cause?: string; firstError?: string } {
  const all = log.split('\n').filter((l) => !/RLIMIT_NOFILE|rlimit: Can't setup/.test(l));
  const errors = all.filter((l) => /\bError \(|FAIL/.test(l));
  const lines = errors.length ? errors : all.filter((l) => /Error|error|FAIL|Can't/.test(l));
  const text = lines.join('\n');
  for (const d of DIAGNOSES) if (d.re.test(text)) return { cause: d.say, firstError: lines[0]?.trim() };
  return { firstError: lines[0]?.replace(/^\(\s*[0-9.]+\)\s*/, '').trim() };
}

export function readLog(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/**
 * CRIU options runc has no flag for go in a CRIU configuration file that runc hands to CRIU for
 * every dump and restore: the one the bundle's `org.criu.config` annotation names (runc keeps
 * the annotation in its state, so a dump reads it too). Ferry names this file in every bundle
 * and writes it before each dump and restore with that call's options, or removes it (CRIU
 * ignores a missing one).
 */
export const CRIU_CONFIG_FILE = 'criu.conf';
export const CRIU_CONFIG_ANNOTATION = 'org.criu.config';

/** Writes (or, with no lines, removes) the CRIU configuration file of a bundle. */
export function writeCriuConfig(bundle: string, lines: string[]): void {
  const file = path.join(bundle, CRIU_CONFIG_FILE);
  if (!lines.length) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.writeFileSync(file, lines.map((l) => `${l}\n`).join(''), { mode: 0o600 });
}

/**
 * CRIU's network lock (rules put in the container's namespace while it is dumped and taken out
 * when it is restored: by nftables inside CRIU where setup found it (CRIU_DEFAULTS), else
 * iptables-restore children, 15-50 ms of the frozen window) guards the container's connections
 * and sockets against traffic from outside. A
 * container with no network of its own (only loopback) gets none, so unless it keeps
 * established TCP connections (--tcp-established, which CRIU wants locked) the lock is skipped.
 * A dump that another engine's CRIU will restore (`portable`: Podman's archive layout, a
 * checkpoint image) that needs the lock takes CRIU's own default, iptables: the images record
 * the method and the restore uses it, and a CRIU built without nftables cannot.
 */
export function networkLockLines(networkMode: string | undefined, tcpEstablished: boolean | undefined, portable = false): string[] {
  if (networkMode === 'none' && !tcpEstablished) return ['network-lock skip'];
  return portable ? ['network-lock iptables'] : [];
}
