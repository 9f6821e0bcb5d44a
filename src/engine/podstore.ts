/**
 * The pod records (ROOT/pods/ID.json) and the namespaces a member joins: data only, no
 * lifecycle (that is pods.ts). The Engine reads pods through this module, so it never imports
 * the pod lifecycle that drives it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { mkdirp, readJsonIfExists, writeJsonAtomic } from '../lib/fsutil.js';
import type { Paths } from './paths.js';
import type { ContainerRecord } from './types.js';

/** Anything that knows where Ferry's state lives (the Engine does). */
interface HasPaths {
  readonly paths: Paths;
}

export type SharedNs = 'net' | 'ipc' | 'uts';
export const SHAREABLE: SharedNs[] = ['net', 'ipc', 'uts'];
export interface PodRecord {
  id: string;
  name: string;
  created: string;
  infraId: string;
  share: SharedNs[];
  hostname: string;
  /** The command line that created it (Podman's CreateCommand). */
  createCommand?: string[];
  /** Set while the whole pod is checkpointed (`ferry pod checkpoint`): its members and address. */
  checkpoint?: { at: string; members: string[]; address?: { ip: string; mac: string }; tcpEstablished: boolean };
  /**
   * A pod checkpoint in flight: while `freezing`, a killed ferry leaves members frozen (repair
   * thaws them); once `stopping`, every dump is committed (repair stops the rest, as asked).
   */
  op?: {
    name: 'checkpoint';
    pid: number;
    startTime?: number;
    since: string;
    phase?: 'stopping';
    members?: string[];
    address?: { ip: string; mac: string };
    tcpEstablished?: boolean;
  };
}

function podsDir(engine: HasPaths): string {
  return path.join(engine.paths.root, 'pods');
}

function podFile(engine: HasPaths, id: string): string {
  return path.join(podsDir(engine), `${id}.json`);
}

export function savePod(engine: HasPaths, pod: PodRecord): void {
  mkdirp(podsDir(engine), 0o700);
  writeJsonAtomic(podFile(engine, pod.id), pod);
}

/** Deletes a pod's record (the pod is gone). */
export function removePodRecord(engine: HasPaths, id: string): void {
  fs.rmSync(podFile(engine, id), { force: true });
}

export function listPods(engine: HasPaths): PodRecord[] {
  let files: string[];
  try {
    files = fs.readdirSync(podsDir(engine)).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  return files.map((f) => readJsonIfExists<PodRecord>(path.join(podsDir(engine), f))).filter((p): p is PodRecord => !!p);
}

export function findPod(engine: HasPaths, ref: string): PodRecord | undefined {
  const all = listPods(engine);
  return all.find((p) => p.id === ref || p.name === ref) ?? (/^[0-9a-f]{3,}$/.test(ref) ? all.filter((p) => p.id.startsWith(ref)).at(0) : undefined);
}

export function getPod(engine: HasPaths, ref: string): PodRecord {
  const p = findPod(engine, ref);
  if (!p) throw new FerryError('ENOTFOUND', `no pod with name or ID "${ref}" found: see \`ferry pod ps\``);
  return p;
}

/** Namespace paths a member of pod joins (the infra must be running). */
export function podNamespaces(pod: PodRecord, infra: ContainerRecord): Partial<Record<'network' | 'ipc' | 'uts', string>> {
  const pid = infra.state.pid;
  const ns: Partial<Record<'network' | 'ipc' | 'uts', string>> = {};
  if (pod.share.includes('net')) ns.network = infra.state.net?.netnsPath ?? `/proc/${pid}/ns/net`;
  if (pod.share.includes('ipc')) ns.ipc = `/proc/${pid}/ns/ipc`;
  if (pod.share.includes('uts')) ns.uts = `/proc/${pid}/ns/uts`;
  return ns;
}
