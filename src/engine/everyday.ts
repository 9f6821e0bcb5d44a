/**
 * The everyday read-only looks into containers: `stats` (its cgroup and network namespace),
 * `top` (its processes, as Podman's descriptors, or the container's own ps), `diff` (the
 * overlay's upper dir: what a checkpoint's rootfs part carries).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { getXattr } from '../lib/libc.js';
import { cgroupPids, cgroupUsage, type Usage } from '../drivers/runtime/cgroup.js';
import type { Engine } from './engine.js';
import type { ContainerRecord } from './types.js';

export interface StatsSample extends Usage {
  id: string;
  name: string;
  /** CPU % since the previous sample (the first: since the container started). */
  cpuPercent: number;
  /** CPU % averaged over its whole run. */
  avgCpu: number;
  memPercent: number;
  /** When this sample was taken (ms), for the next one's CPU %. */
  at: number;
  /** The host's CPU time (all CPUs; user to steal, as Docker counts it) when it was taken, in nanoseconds: Docker's system_cpu_usage. */
  systemNs: number;
  onlineCpus: number;
}

/** The host's total CPU time from /proc/stat, in nanoseconds (as Docker's system_cpu_usage). */
function hostCpuNs(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1, 9).reduce((a, b) => a + (Number(b) || 0), 0);
  return (ticks / TICKS) * 1e9;
}

const live = (r: ContainerRecord): boolean => r.state.status === 'running' || r.state.status === 'paused';

/**
 * One sample of each container's usage: those named (each must run), or every running one.
 * `previous` (the last samples, by ID) makes CPU % the use since then.
 */
export async function containerStats(engine: Engine, refs: string[], previous?: Map<string, StatsSample>): Promise<StatsSample[]> {
  const recs = refs.length ? await Promise.all(refs.map((r) => engine.inspect(r))) : await engine.list();
  const out: StatsSample[] = [];
  for (const rec of recs) {
    if (!live(rec)) {
      if (refs.length) throw new FerryError('ESTATE', `container ${rec.config.name} is not running: start it first (stats reads a running container's cgroup)`);
      continue;
    }
    const u = cgroupUsage(rec.state.pid);
    if (!u) continue; // it just exited
    const at = Date.now();
    const started = Date.parse(rec.state.startedAt ?? '') || at;
    const prev = previous?.get(rec.config.id);
    const since = prev ? prev.at : started;
    const cpuBefore = prev ? prev.cpuNs : 0;
    const pct = (ns: number, ms: number): number => (ms > 0 ? Math.max(0, (ns / 1e6 / ms) * 100) : 0);
    out.push({
      ...u,
      id: rec.config.id,
      name: rec.config.name,
      cpuPercent: pct(u.cpuNs - cpuBefore, at - since),
      avgCpu: pct(u.cpuNs, at - started),
      memPercent: u.memLimit ? (u.memUsage / u.memLimit) * 100 : 0,
      at,
      systemNs: hostCpuNs(),
      onlineCpus: os.cpus().length,
    });
  }
  return out;
}

/** Podman's (psgo's) descriptors for `top`: the name and its header. */
const DESCRIPTORS: Record<string, string> = {
  args: 'COMMAND', comm: 'COMMAND', etime: 'ELAPSED', group: 'GROUP', hgroup: 'HGROUP', hpid: 'HPID',
  huser: 'HUSER', nice: 'NI', pcpu: '%CPU', pgid: 'PGID', pid: 'PID', ppid: 'PPID', rss: 'RSS',
  state: 'STATE', time: 'TIME', tty: 'TTY', user: 'USER', vsz: 'VSZ',
};
const DEFAULT_DESCRIPTORS = ['user', 'pid', 'ppid', 'pcpu', 'etime', 'tty', 'time', 'args'];

/** A Go duration as Podman prints it: 1.649262482s, 24.406903ms, 1m2.5s, 0s. */
export function goDuration(ns: number): string {
  ns = Math.round(ns);
  if (ns === 0) return '0s';
  if (ns < 1000) return `${ns}ns`;
  if (ns < 1e6) return `${trim((ns / 1e3).toFixed(3))}µs`;
  if (ns < 1e9) return `${trim((ns / 1e6).toFixed(6))}ms`;
  const h = Math.floor(ns / 3.6e12);
  const m = Math.floor((ns % 3.6e12) / 6e10);
  const s = trim(((ns % 6e10) / 1e9).toFixed(9));
  return `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${s}s`;
}
const trim = (s: string): string => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);

/** Names by ID from a passwd or group file of the container's. */
function idNames(file: string): Map<number, string> {
  const m = new Map<number, string>();
  try {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && /^\d+$/.test(f[2]!)) m.set(Number(f[2]), f[0]!);
    }
  } catch {
    // no such file: numbers
  }
  return m;
}

interface Proc {
  hpid: number;
  nspid: number;
  ppid: number;
  pgid: number;
  uid: number;
  gid: number;
  state: string;
  nice: number;
  cpuTicks: number;
  startTicks: number;
  tty: number;
  vszKiB: number;
  rssKiB: number;
  comm: string;
  args: string;
}

function readProc(pid: number): Proc | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const f = stat.slice(close + 2).split(' '); // f[0] is field 3 (state)
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (k: string): string[] => (new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/);
    const nspids = field('NSpid');
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
    return {
      hpid: pid,
      nspid: Number(nspids[nspids.length - 1]) || pid,
      ppid: Number(f[1]),
      pgid: Number(f[2]),
      tty: Number(f[4]),
      cpuTicks: Number(f[11]) + Number(f[12]),
      nice: Number(f[16]),
      startTicks: Number(f[19]),
      vszKiB: Math.floor(Number(f[20]) / 1024),
      rssKiB: Number(f[21]) * 4,
      state: f[0]!,
      uid: Number(field('Uid')[1]),
      gid: Number(field('Gid')[1]),
      comm,
      args: cmdline.length ? cmdline.join(' ') : `[${comm}]`,
    };
  } catch {
    return undefined; // exited meanwhile
  }
}

const TICKS = 100; // USER_HZ on Linux

/**
 * The container's processes as `ferry top` shows them: a header row, then one row per process.
 * Arguments are Podman's descriptors (`pid,args` or `pid args`); anything else (ps options such
 * as `-ef`) runs the container's own ps, as Podman does.
 */
export async function containerTop(engine: Engine, ref: string, args: string[]): Promise<string[][]> {
  const rec = await engine.inspect(ref);
  if (rec.state.status !== 'running' && rec.state.status !== 'paused') throw new FerryError('ESTATE', `container ${rec.config.name} is not running: start it first`);
  const wanted = args.flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean);
  const unknown = wanted.filter((d) => !(d in DESCRIPTORS));
  if (unknown.length) {
    if (!args.some((a) => a.startsWith('-'))) {
      throw new FerryError('EINVAL', `unknown top descriptor "${unknown[0]}": use ${Object.keys(DESCRIPTORS).join(', ')}, or ps options such as -ef`);
    }
    const r = await engine.runtime.execOutput(rec.config.id, ['ps', ...args]);
    if (r.code !== 0) throw new FerryError('ERUNTIME', `ps ${args.join(' ')} failed in container ${rec.config.name}: ${(r.stderr.trim().split('\n').pop() ?? '') || 'does its image have ps?'}`);
    // Columns as ps's header names them; the last (the command) keeps its spaces.
    const lines = r.stdout.split('\n').filter((l) => l.trim());
    const n = lines[0]?.trim().split(/\s+/).length ?? 1;
    return lines.map((l) => {
      const words = l.trim().split(/\s+/);
      return [...words.slice(0, n - 1), words.slice(n - 1).join(' ')];
    });
  }
  const descs = wanted.length ? wanted : DEFAULT_DESCRIPTORS;
  const procs = cgroupPids(rec.state.pid).map(readProc).filter((p): p is Proc => !!p);
  const ns = new Map(procs.map((p) => [p.hpid, p.nspid]));
  const root = engine.paths.layer(rec.config.id).merged;
  const users = idNames(path.join(root, 'etc/passwd'));
  const groups = idNames(path.join(root, 'etc/group'));
  const hostUsers = idNames('/etc/passwd');
  const hostGroups = idNames('/etc/group');
  const uptime = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  const rows = procs.map((p) => {
    const elapsed = Math.max(0, uptime - p.startTicks / TICKS);
    const value: Record<string, () => string> = {
      args: () => p.args,
      comm: () => p.comm,
      etime: () => goDuration(elapsed * 1e9),
      group: () => groups.get(p.gid) ?? String(p.gid),
      hgroup: () => hostGroups.get(p.gid) ?? String(p.gid),
      hpid: () => String(p.hpid),
      huser: () => hostUsers.get(p.uid) ?? String(p.uid),
      nice: () => String(p.nice),
      pcpu: () => (elapsed > 0 ? ((p.cpuTicks / TICKS / elapsed) * 100).toFixed(3) : '0.000'),
      pgid: () => String(ns.get(p.pgid) ?? 0),
      pid: () => String(p.nspid),
      ppid: () => String(ns.get(p.ppid) ?? 0),
      rss: () => String(p.rssKiB),
      state: () => p.state,
      time: () => goDuration((p.cpuTicks / TICKS) * 1e9),
      tty: () => ttyName(p.tty),
      user: () => users.get(p.uid) ?? String(p.uid),
      vsz: () => String(p.vszKiB),
    };
    return descs.map((d) => value[d]!());
  });
  return [descs.map((d) => DESCRIPTORS[d]!), ...rows];
}

function ttyName(nr: number): string {
  if (!nr) return '?';
  const major = (nr >> 8) & 0xfff;
  const minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
  return major === 136 ? `pts/${minor}` : major === 4 ? `tty${minor}` : '?';
}

export interface Change {
  path: string;
  /** A: added, C: changed, D: deleted. */
  kind: 'A' | 'C' | 'D';
}

/** What Podman leaves out of a diff: the files the engine itself puts in every container. */
const ENGINE_PATHS = new Set(['/dev', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/etc/mtab', '/proc', '/run', '/run/.containerenv', '/run/secrets', '/run/notify', '/sys']);

/**
 * The changes in a container's filesystem against its image, from its overlay's upper dir
 * (which exists whether it runs or not): whiteouts are deletions; a path the image has is
 * changed, one it lacks added. Mount points of its volumes and tmpfs are left out, as Podman
 * does. Sorted by path.
 */
export async function containerDiff(engine: Engine, ref: string): Promise<Change[]> {
  const rec = await engine.inspect(ref);
  const img = engine.images.list().find((i) => i.Id === rec.config.imageId);
  if (!img) throw new FerryError('ENOTFOUND', `the image of container ${rec.config.name} is gone: diff compares with it`);
  const { cwd, lower } = engine.images.lowerDirs(img);
  const lowers = lower.map((l) => path.resolve(cwd, l)); // top first
  const upper = engine.paths.layer(rec.config.id).upper;
  const skip = new Set([...ENGINE_PATHS, ...rec.config.mounts.map((m) => m.destination), ...(rec.config.engineMounts ?? [])]);
  const inImage = (rel: string): boolean => {
    for (const l of lowers) {
      let st: fs.Stats;
      try {
        st = fs.lstatSync(path.join(l, rel));
      } catch {
        continue;
      }
      return !(st.isCharacterDevice() && st.rdev === 0); // a lower layer's whiteout: gone
    }
    return false;
  };
  const out: Change[] = [];
  // Below an opaque directory (deleted and made again) nothing of the image shows through.
  const walk = (rel: string, hidden = false): void => {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(upper, rel));
    } catch {
      return;
    }
    for (const name of names) {
      const r = path.posix.join(rel, name);
      const abs = `/${r}`;
      if (skip.has(abs)) continue;
      const st = fs.lstatSync(path.join(upper, r));
      if (st.isCharacterDevice() && st.rdev === 0) {
        if (!hidden && inImage(r)) out.push({ path: abs, kind: 'D' });
        continue;
      }
      const opaque = st.isDirectory() && getXattr(path.join(upper, r), 'trusted.overlay.opaque') === 'y';
      const old = !hidden && inImage(r);
      // As Podman: an opaque directory the image had was deleted (its new contents are added).
      out.push({ path: abs, kind: old ? (opaque ? 'D' : 'C') : 'A' });
      if (st.isDirectory()) walk(r, hidden || opaque);
    }
  };
  walk('');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
