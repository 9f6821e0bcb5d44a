/**
 * What a container uses, read from its cgroup (v1 or v2, found through /proc/PID/cgroup of its
 * init) and its network namespace (/proc/PID/net/dev): the numbers behind `ferry stats`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Usage {
  /** CPU time of all its processes, in nanoseconds. */
  cpuNs: number;
  memUsage: number;
  /** Its memory limit, or the host's memory when it has none. */
  memLimit: number;
  netIn: number;
  netOut: number;
  blockRead: number;
  blockWrite: number;
  pids: number;
}

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

const num = (s: string | undefined): number => {
  const n = Number((s ?? '').trim());
  return Number.isFinite(n) ? n : 0;
};

/** controller -> cgroup dir of the process (v1), and '' -> its v2 dir (unified). */
function cgroupDirs(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (read(`/proc/${pid}/cgroup`) ?? '').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '') {
      const base = fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
      out.set('', path.join(base, m[2]!));
    } else {
      for (const c of m[1]!.split(',')) out.set(c, path.join('/sys/fs/cgroup', m[1]!, m[2]!));
    }
  }
  return out;
}

/** The received and sent bytes of every interface but lo, in the namespace of pid. */
function netBytes(pid: number): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of (read(`/proc/${pid}/net/dev`) ?? '').split('\n').slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (!m || m[1] === 'lo') continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    rx += f[0] ?? 0;
    tx += f[8] ?? 0;
  }
  return { rx, tx };
}

/** Usage of the cgroup of pid (the container's init); undefined when it is gone. */
export function cgroupUsage(pid: number): Usage | undefined {
  const dirs = cgroupDirs(pid);
  if (!dirs.size) return undefined;
  const net = netBytes(pid);
  const hostMem = os.totalmem();
  const v1 = (c: string, f: string): string | undefined => (dirs.has(c) ? read(path.join(dirs.get(c)!, f)) : undefined);
  if (dirs.has('memory') || dirs.has('cpuacct')) {
    const memStat = statMap(v1('memory', 'memory.stat'));
    const limit = num(v1('memory', 'memory.limit_in_bytes'));
    let rd = 0;
    let wr = 0;
    for (const line of (v1('blkio', 'blkio.throttle.io_service_bytes') ?? '').split('\n')) {
      const [, op, n] = line.trim().split(/\s+/);
      if (op === 'Read') rd += Number(n);
      else if (op === 'Write') wr += Number(n);
    }
    return {
      cpuNs: num(v1('cpuacct', 'cpuacct.usage')),
      // As Podman (and Docker) count it: the page cache that can be dropped is left out.
      memUsage: Math.max(0, num(v1('memory', 'memory.usage_in_bytes')) - (memStat.get('total_inactive_file') ?? 0)),
      memLimit: limit > 0 && limit < hostMem ? limit : hostMem,
      netIn: net.rx,
      netOut: net.tx,
      blockRead: rd,
      blockWrite: wr,
      pids: num(v1('pids', 'pids.current')) || (v1('pids', 'cgroup.procs') ?? '').split('\n').filter(Boolean).length,
    };
  }
  const dir = dirs.get('');
  if (!dir) return undefined;
  const f = (name: string): string | undefined => read(path.join(dir, name));
  const cpu = statMap(f('cpu.stat'));
  const mem = statMap(f('memory.stat'));
  const max = f('memory.max')?.trim();
  let rd = 0;
  let wr = 0;
  for (const line of (f('io.stat') ?? '').split('\n')) {
    for (const kv of line.split(/\s+/)) {
      const [k, v] = kv.split('=');
      if (k === 'rbytes') rd += Number(v);
      if (k === 'wbytes') wr += Number(v);
    }
  }
  return {
    cpuNs: (cpu.get('usage_usec') ?? 0) * 1000,
    memUsage: Math.max(0, num(f('memory.current')) - (mem.get('inactive_file') ?? 0)),
    memLimit: max && max !== 'max' && Number(max) < hostMem ? Number(max) : hostMem,
    netIn: net.rx,
    netOut: net.tx,
    blockRead: rd,
    blockWrite: wr,
    pids: num(f('pids.current')),
  };
}

function statMap(s: string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of (s ?? '').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) m.set(k, Number(v));
  }
  return m;
}

/** The PIDs (host's) of every process in the cgroup of pid. */
export function cgroupPids(pid: number): number[] {
  const dirs = cgroupDirs(pid);
  const dir = dirs.get('pids') ?? dirs.get('freezer') ?? dirs.get('memory') ?? dirs.get('');
  const procs = dir ? read(path.join(dir, 'cgroup.procs')) : undefined;
  const pids = (procs ?? '').split('\n').filter(Boolean).map(Number);
  return pids.length ? pids.sort((a, b) => a - b) : [pid];
}

/**
 * How many processes the kernel's OOM killer has killed in the cgroup at cgroupsPath (the
 * spec's linux.cgroupsPath; cgroupfs layout), while it exists: v1's memory.oom_control, v2's
 * memory.events.
 */
export function oomKills(cgroupsPath: string): number {
  for (const [file, re] of [
    [path.join('/sys/fs/cgroup/memory', cgroupsPath, 'memory.oom_control'), /^oom_kill (\d+)$/m],
    [path.join('/sys/fs/cgroup', cgroupsPath, 'memory.events'), /^oom_kill (\d+)$/m],
  ] as const) {
    const m = re.exec(read(file) ?? '');
    if (m) return Number(m[1]);
  }
  return 0;
}
