/**
 * Container records without containers, for unit tests of the engine's rules: an engine over a
 * scratch root, and records in any state. A "live" record names the test's own process as its
 * conmon, so the engine sees it alive and never tries to repair it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../../src/engine/engine.js';
import { openEngine } from '../../src/engine/index.js';
import { initialState, type ContainerRecord, type ContainerStatus } from '../../src/engine/types.js';
import { procStartTime } from '../../src/lib/proc.js';

export function scratchEngine(dir: string, name: string): Engine {
  const d = path.join(dir, name);
  return openEngine({ root: path.join(d, 'root'), runroot: path.join(d, 'run') });
}

let seq = 0;

/** Writes a container record (each one created a second after the one before); returns its ID. */
export function fakeContainer(engine: Engine, name: string, status: ContainerStatus, o: { checkpointed?: boolean; exitCode?: number } = {}): string {
  const id = (++seq).toString(16).padStart(4, '0').repeat(16);
  const live = status === 'running' || status === 'paused';
  const rec: ContainerRecord = {
    config: {
      id,
      name,
      created: new Date(Date.UTC(2024, 0, 1, 0, 0, seq)).toISOString(),
      imageId: 'f'.repeat(64),
      imageName: 'localhost/busybox:latest',
      command: ['true'],
      env: [],
      workdir: '/',
      hostname: id.slice(0, 12),
      mounts: [],
      autoRemove: false,
      labels: {},
      stopSignal: 'TERM',
      stopTimeout: 10,
    },
    state: { ...initialState(), status, checkpointed: !!o.checkpointed, exitCode: o.exitCode ?? 0, ...(live ? { pid: process.pid, conmonPid: process.pid, conmonStartTime: procStartTime(process.pid) } : {}) },
  };
  fs.mkdirSync(path.join(engine.paths.containerDir(id), 'userdata'), { recursive: true });
  engine.save(rec);
  return id;
}
