/**
 * What this host offers (`ferry info`, the API's info): the runtime, conmon and CRIU with their
 * versions, which checkpoint modes work here and why others do not, and the store's counts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { run } from '../lib/exec.js';
import { VERSION, bunVersion } from '../lib/version.js';
import { missingFor, type CriuFeatures } from '../drivers/criu/criu.js';
import type { Engine } from './engine.js';

export interface CheckpointSupport {
  modes: { stopAndCopy: boolean; tcpEstablished: boolean; preCopy: boolean; lazyPages: boolean };
  /** One sentence per mode that does not work here: why, and what to do. */
  notes: string[];
}

/** The checkpoint modes CRIU's features allow on this host, and why the others are unavailable. */
export function checkpointSupport(f: CriuFeatures): CheckpointSupport {
  const preCopy = missingFor(f, 'preCopy');
  const lazy = missingFor(f, 'lazyPages');
  return {
    modes: { stopAndCopy: f.check, tcpEstablished: f.check, preCopy: !preCopy, lazyPages: !lazy },
    notes: [
      ...(preCopy ? [`pre-copy (--pre-checkpoint, --pre-copy) is unavailable: it needs ${preCopy}`] : []),
      ...(lazy ? [`lazy pages (--lazy) are unavailable: they need ${lazy}`] : []),
    ],
  };
}

async function versionOf(argv: string[], re: RegExp): Promise<string> {
  try {
    const r = await run(argv);
    return (r.stdout + r.stderr).match(re)?.[1] ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

/** Go's name for this machine's architecture, as Podman reports it. */
export function goArch(arch: string = process.arch): string {
  return arch === 'x64' ? 'amd64' : arch;
}

/** The whole `info` document (Podman's layout: host, store, version). */
export async function hostInfo(engine: Engine) {
  const [runc, conmon, criu] = await Promise.all([
    versionOf([engine.runtime.runc, '--version'], /runc version ([^\s]+)/),
    versionOf([engine.runtime.conmon, '--version'], /conmon version ([^\s]+)/),
    engine.criu(),
  ]);
  const recs = await engine.list({ all: true });
  const support = checkpointSupport(criu.features);
  return {
    host: {
      arch: goArch(),
      kernel: os.release(),
      os: 'linux',
      hostname: os.hostname(),
      cgroupVersion: fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1',
      ociRuntime: { name: 'runc', path: engine.runtime.runc, version: runc },
      conmon: { path: engine.runtime.conmon, version: conmon },
      criu: {
        path: criu.path,
        version: criu.version ?? 'not installed',
        works: criu.features.check,
      },
      checkpointModes: support.modes,
      notes: support.notes,
    },
    store: {
      graphRoot: engine.paths.root,
      runRoot: engine.paths.runroot,
      graphDriverName: 'overlay',
      containerStore: {
        number: recs.length,
        running: recs.filter((r) => r.state.status === 'running').length,
        paused: recs.filter((r) => r.state.status === 'paused').length,
        stopped: recs.filter((r) => r.state.status !== 'running' && r.state.status !== 'paused').length,
      },
      imageStore: { number: engine.images.list().length },
      volumeStore: { number: engine.volumes.list().length },
    },
    version: { Version: VERSION, BunVersion: bunVersion() },
  };
}

export type HostInfo = Awaited<ReturnType<typeof hostInfo>>;
