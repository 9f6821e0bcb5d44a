/**
 * Resource limits (run/create --memory, --memory-swap, --cpus, --cpu-shares, --pids-limit,
 * --ulimit, --shm-size) and restart policies (--restart): parsed and checked here, with
 * Podman's rules, into what the container record keeps; the runtime spec is built from it at
 * every start and restore.
 */
import { FerryError } from '../lib/errors.js';
import type { Resources, RestartPolicy, Ulimit } from './types.js';

/** The limits as a user gives them (strings, as on the command line or in an API body). */
export interface ResourceFlags {
  memory?: string;
  memorySwap?: string;
  cpus?: string;
  cpuShares?: string;
  pidsLimit?: string;
  ulimit?: string[];
  shmSize?: string;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** 64m, 1g, 512k, 1048576 (bytes), as Podman reads sizes (binary units). */
export function parseSize(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) throw new FerryError('EINVAL', `invalid ${flag} "${s}": give a size such as 64m, 1g or a number of bytes`);
  return Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
}

const RLIMITS = ['as', 'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio', 'rttime', 'sigpending', 'stack'];

/** TYPE=SOFT[:HARD] (-1: unlimited), as Podman's --ulimit; the name becomes RLIMIT_TYPE. */
export function parseUlimit(s: string): Ulimit {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(s.trim());
  const bad = (why: string): FerryError => new FerryError('EINVAL', `invalid --ulimit "${s}": ${why}`);
  if (!m) throw bad(`use TYPE=SOFT[:HARD], e.g. nofile=1024:2048 (types: ${RLIMITS.join(', ')})`);
  if (!RLIMITS.includes(m[1]!)) throw bad(`unknown type; use one of ${RLIMITS.join(', ')}`);
  const soft = Number(m[2]);
  const hard = m[3] !== undefined ? Number(m[3]) : soft;
  if (soft < -1 || hard < -1) throw bad('give -1 (unlimited) or a number >= 0');
  if (hard !== -1 && (soft === -1 || soft > hard)) throw bad('the soft limit must not be above the hard one');
  return { Name: `RLIMIT_${m[1]!.toUpperCase()}`, Soft: soft, Hard: hard };
}

/** Checks every limit and returns what the record keeps (undefined: none given). */
export function parseResources(f: ResourceFlags): Resources | undefined {
  const r: Resources = {};
  if (f.memory !== undefined) {
    r.memory = parseSize(f.memory, '--memory');
    if (r.memory < 6 * 1024 * 1024) throw new FerryError('EINVAL', `--memory ${f.memory} is too small: give at least 6m`);
  }
  if (f.memorySwap !== undefined) {
    if (r.memory === undefined) throw new FerryError('EINVAL', '--memory-swap needs --memory: give both (--memory-swap is memory plus swap)');
    r.memorySwap = f.memorySwap.trim() === '-1' ? -1 : parseSize(f.memorySwap, '--memory-swap');
    if (r.memorySwap !== -1 && r.memorySwap < r.memory) throw new FerryError('EINVAL', `--memory-swap ${f.memorySwap} is below --memory ${f.memory}: it counts memory plus swap, so give at least as much (or -1 for unlimited swap)`);
  } else if (r.memory !== undefined) {
    r.memorySwap = 2 * r.memory; // Podman's default: as much swap as memory
  }
  if (f.cpus !== undefined) {
    const n = Number(f.cpus);
    if (!/^\d*\.?\d+$/.test(f.cpus.trim()) || !(n > 0)) throw new FerryError('EINVAL', `invalid --cpus "${f.cpus}": give a number of CPUs above 0, such as 0.5 or 2`);
    r.nanoCpus = Math.round(n * 1e9);
    if (r.nanoCpus < 1e7) throw new FerryError('EINVAL', `--cpus ${f.cpus} is too small: give at least 0.01`);
  }
  if (f.cpuShares !== undefined) {
    const n = Number(f.cpuShares);
    if (!/^\d+$/.test(f.cpuShares.trim()) || n < 2 || n > 262144) throw new FerryError('EINVAL', `invalid --cpu-shares "${f.cpuShares}": give a whole number from 2 to 262144 (default 1024)`);
    r.cpuShares = n;
  }
  if (f.pidsLimit !== undefined) {
    const n = Number(f.pidsLimit);
    if (!/^-?\d+$/.test(f.pidsLimit.trim()) || n < -1 || n === 0) throw new FerryError('EINVAL', `invalid --pids-limit "${f.pidsLimit}": give a number of processes above 0, or -1 for unlimited`);
    r.pidsLimit = n;
  }
  if (f.ulimit?.length) {
    const seen = new Map<string, Ulimit>();
    for (const u of f.ulimit) {
      const p = parseUlimit(u);
      seen.set(p.Name, p);
    }
    r.ulimits = [...seen.values()];
  }
  if (f.shmSize !== undefined) {
    r.shmSize = parseSize(f.shmSize, '--shm-size');
    if (r.shmSize <= 0) throw new FerryError('EINVAL', `invalid --shm-size "${f.shmSize}": give a size above 0, such as 64m`);
  }
  return Object.keys(r).length ? r : undefined;
}

/** no | on-failure[:N] | always | unless-stopped, as Podman's --restart. */
export function parseRestartPolicy(s: string): RestartPolicy {
  const m = /^(no|on-failure|always|unless-stopped)(?::(\d+))?$/.exec(s.trim());
  if (!m) throw new FerryError('EINVAL', `invalid --restart "${s}": use no, on-failure[:MAX_RETRIES], always or unless-stopped`);
  if (m[2] !== undefined && m[1] !== 'on-failure') throw new FerryError('EINVAL', `invalid --restart "${s}": only on-failure takes a retry count`);
  return { Name: m[1] as RestartPolicy['Name'], MaximumRetryCount: m[2] !== undefined ? Number(m[2]) : 0 };
}

/** The spec's linux.resources parts and process.rlimits for these limits. */
export function specResources(r: Resources | undefined): { resources: Record<string, unknown>; rlimits?: { type: string; soft: number | string; hard: number | string }[]; shmSize?: number } {
  const out: Record<string, unknown> = {};
  if (!r) return { resources: out };
  if (r.memory !== undefined) out.memory = { limit: r.memory, ...(r.memorySwap !== undefined ? { swap: r.memorySwap } : {}) };
  if (r.nanoCpus !== undefined || r.cpuShares !== undefined) {
    out.cpu = {
      ...(r.cpuShares !== undefined ? { shares: r.cpuShares } : {}),
      ...(r.nanoCpus !== undefined ? { quota: Math.round(r.nanoCpus / 1e4), period: 100000 } : {}),
    };
  }
  if (r.pidsLimit !== undefined) out.pids = { limit: r.pidsLimit };
  // -1 is RLIM_INFINITY (2^64-1), which a JS number cannot hold: see specJson.
  const lim = (n: number): number | string => (n === -1 ? RLIM_INFINITY : n);
  const rlimits = r.ulimits?.map((u) => ({ type: u.Name, soft: lim(u.Soft), hard: lim(u.Hard) }));
  return { resources: out, ...(rlimits ? { rlimits } : {}), ...(r.shmSize !== undefined ? { shmSize: r.shmSize } : {}) };
}

const RLIM_INFINITY = '@RLIM_INFINITY@';

/** The spec as JSON, with RLIM_INFINITY written as the exact uint64 runc expects. */
export function specJson(spec: object): string {
  return JSON.stringify(spec, null, 2).replaceAll(`"${RLIM_INFINITY}"`, '18446744073709551615');
}

/**
 * The cgroup limits of an OCI spec (a Podman checkpoint's spec.dump), as the record keeps them;
 * values that are not sane numbers are left out. (Its rlimits are not taken: CRIU restores the
 * processes' own, and Podman's defaults may exceed what this host lets Ferry raise.)
 */
export function resourcesFromSpec(spec: Record<string, unknown>): Resources | undefined {
  const res = ((spec.linux as Record<string, unknown> | undefined)?.resources ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const n = (v: unknown, min: number): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= min ? v : undefined);
  const r: Resources = {};
  const memory = n(res.memory?.limit, 1);
  if (memory !== undefined) {
    r.memory = memory;
    const swap = res.memory?.swap === -1 ? -1 : n(res.memory?.swap, memory);
    if (swap !== undefined) r.memorySwap = swap;
  }
  const quota = n(res.cpu?.quota, 1);
  const period = n(res.cpu?.period, 1);
  if (quota !== undefined && period !== undefined) r.nanoCpus = Math.round((quota / period) * 1e9);
  const shares = n(res.cpu?.shares, 2);
  if (shares !== undefined) r.cpuShares = shares;
  const pids = n(res.pids?.limit, 1);
  if (pids !== undefined) r.pidsLimit = pids;
  return Object.keys(r).length ? r : undefined;
}
