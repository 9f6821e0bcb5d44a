/**
 * What `inspect` and `ps --size` show beyond the container record, read from where Ferry keeps
 * it: the OCI spec the container runs with (capabilities, rlimits, mount options, annotations,
 * environment), its image (digest, layer dirs), its volumes' mount points, its pod, its exec
 * sessions and, when asked, its sizes. shapes.ts turns record + facts into Podman's and Docker's
 * JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_CAPS } from '../drivers/runtime/spec.js';
import { CRIU_CONFIG_ANNOTATION } from '../drivers/criu/criu.js';
import { duBytes } from '../lib/fsutil.js';
import type { Engine } from './engine.js';
import { findPod, listPods } from './podstore.js';
import type { PsExtras } from './shapes.js';
import type { ContainerRecord } from './types.js';

export interface SpecMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface ContainerFacts {
  /** The pod's name (the record holds its ID). */
  podName: string;
  /** The pod's infra container (for a member sharing its namespaces). */
  podInfraId: string;
  /** Namespaces the container shares with its pod's infra. */
  podShare: string[];
  imageDigest: string;
  /** The image's layer dirs, top first. */
  lowerDirs: string[];
  effectiveCaps: string[];
  boundingCaps: string[];
  /** Exec sessions running in the container. */
  execIds: string[];
  /** process.env of the spec (what the process gets), else the record's. */
  env: string[];
  /** The spec's mounts by destination. */
  specMounts: Map<string, SpecMount>;
  /** Volume name -> its directory on the host. */
  volumePaths: Map<string, string>;
  rlimits: { Name: string; Soft: number; Hard: number }[];
  annotations: Record<string, string>;
  ociVersion: string;
  cgroupPath: string;
  /** Only when asked (`--size`): the writable layer's bytes and the whole rootfs's. */
  size?: { rootFsSize: number; rwSize: number };
}

interface SpecFile {
  ociVersion?: string;
  process?: { env?: string[]; capabilities?: { effective?: string[]; bounding?: string[] }; rlimits?: { type: string; soft: number; hard: number }[] };
  mounts?: SpecMount[];
  annotations?: Record<string, string>;
  linux?: { cgroupsPath?: string };
}

function readSpec(file: string): SpecFile | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return v && typeof v === 'object' ? (v as SpecFile) : undefined;
  } catch {
    return undefined; // never started: no spec yet
  }
}

const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined);

/** The exec sessions (under a conmon of their own, exec-ID dirs) whose command still runs. */
function liveExecSessions(runDir: string, id: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(runDir).filter((n) => /^exec-[0-9a-f]+$/.test(n));
  } catch {
    return []; // not running: none
  }
  return names
    .filter((n) => {
      const d = path.join(runDir, n);
      if (fs.existsSync(path.join(d, 'exits', id))) return false; // conmon saw it exit
      const pid = Number(readText(path.join(d, 'pid')));
      if (!Number.isInteger(pid) || pid <= 0) return false;
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    })
    .map((n) => n.slice(5));
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Reads the facts of one container (cheap but for `size`, which walks its writable layer). */
export function containerFacts(engine: Engine, r: ContainerRecord, o: { size?: boolean } = {}): ContainerFacts {
  const c = r.config;
  const spec = readSpec(path.join(engine.paths.bundle(c.id), 'config.json')) ?? {};
  const podId = c.pod ?? c.infraOf;
  const pod = podId ? findPod(engine, podId) : undefined;
  const img = engine.images.byId(c.imageId);
  const lowerDirs = img ? [...img.Layers].reverse().map((l) => engine.images.layers.diffDir(l)) : [];
  const specMounts = new Map<string, SpecMount>();
  for (const m of Array.isArray(spec.mounts) ? spec.mounts : []) if (m && typeof m.destination === 'string') specMounts.set(m.destination, m);
  const volumePaths = new Map<string, string>();
  for (const m of c.mounts) {
    if (m.type !== 'volume') continue;
    const v = engine.volumes.find(m.source);
    if (v) volumePaths.set(m.source, v.Mountpoint);
  }
  const execIds = liveExecSessions(engine.paths.runDir(c.id), c.id);
  const rl = Array.isArray(spec.process?.rlimits) ? spec.process.rlimits : [];
  const rlimits = rl.filter((x) => x && typeof x.type === 'string').map((x) => ({ Name: x.type, Soft: Number(x.soft), Hard: Number(x.hard) }));
  const facts: ContainerFacts = {
    podName: pod?.name ?? '',
    podInfraId: pod && c.pod && !c.infraOf ? pod.infraId : '',
    podShare: pod && c.pod && !c.infraOf ? pod.share : [],
    imageDigest: img?.Digest ?? '',
    lowerDirs,
    effectiveCaps: strings(spec.process?.capabilities?.effective) ?? DEFAULT_CAPS,
    boundingCaps: strings(spec.process?.capabilities?.bounding) ?? DEFAULT_CAPS,
    execIds,
    env: strings(spec.process?.env) ?? c.env,
    specMounts,
    volumePaths,
    rlimits,
    // Not the CRIU options file's, which Ferry names in every bundle for itself.
    annotations: spec.annotations && typeof spec.annotations === 'object' ? withoutKey(spec.annotations as Record<string, string>, CRIU_CONFIG_ANNOTATION) : {},
    ociVersion: typeof spec.ociVersion === 'string' ? spec.ociVersion : '1.0.2',
    cgroupPath: typeof spec.linux?.cgroupsPath === 'string' ? spec.linux.cgroupsPath : engine.paths.cgroup(c.id),
  };
  if (o.size) {
    let rwSize = 0;
    try {
      rwSize = duBytes(engine.paths.layer(c.id).upper);
    } catch {
      /* no writable layer (removed, or never made) */
    }
    facts.size = { rwSize, rootFsSize: (img?.Size ?? 0) + rwSize };
  }
  return facts;
}

/** What `ps` shows beyond each record (Podman's PodName; Size when asked), for the CLI and the API. */
export function psExtras(engine: Engine, recs: ContainerRecord[], o: { size?: boolean } = {}): PsExtras[] {
  const pods = new Map(listPods(engine).map((p) => [p.id, p.name]));
  return recs.map((r) => ({ podName: pods.get(r.config.pod ?? r.config.infraOf ?? '') ?? '', size: o.size ? containerFacts(engine, r, { size: true }).size : undefined }));
}

function withoutKey(o: Record<string, string>, k: string): Record<string, string> {
  const { [k]: _drop, ...rest } = o;
  void _drop;
  return rest;
}
