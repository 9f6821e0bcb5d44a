import { createHash } from '../lib/lazy.js';
import * as path from 'node:path';
import type { ConmonPaths } from '../drivers/runtime/runc.js';
import { layerPaths, type ContainerLayer } from '../drivers/storage/overlay.js';

export const DEFAULT_ROOT = '/var/lib/ferry';
/** Where `ferry system service` serves the API unless told otherwise. */
export const DEFAULT_API_SOCKET = 'unix:///run/ferry/ferry.sock';

/**
 * Where everything lives. ROOT (default /var/lib/ferry) holds what survives a reboot;
 * RUNROOT (default /run/ferry) holds runtime state: runc's state, conmon files, locks.
 */
export class Paths {
  constructor(readonly root: string, readonly runroot: string) {}

  get images(): string { return path.join(this.root, 'images'); }
  get volumes(): string { return path.join(this.root, 'volumes'); }
  get containers(): string { return path.join(this.root, 'containers'); }
  get checkpoints(): string { return path.join(this.root, 'checkpoints'); }
  get runcRoot(): string { return path.join(this.runroot, 'runc'); }
  get locks(): string { return path.join(this.runroot, 'locks'); }
  get exits(): string { return path.join(this.runroot, 'exits'); }

  /**
   * The container's cgroup. Engines with other roots on the same kernel (a second Ferry, the
   * two "hosts" of a test, a migration between them) may hold a container with the same ID:
   * their cgroups carry the root's tag, so they never share one.
   */
  cgroup(id: string): string {
    return path.resolve(this.root) === DEFAULT_ROOT ? `/ferry/${id}` : `/ferry/${createHash('sha256').update(path.resolve(this.root)).digest('hex').slice(0, 8)}-${id}`;
  }

  containerDir(id: string): string { return path.join(this.containers, id); }
  containerRecord(id: string): string { return path.join(this.containerDir(id), 'container.json'); }
  /** The OCI bundle: config.json, and runc's work dir for restore. */
  bundle(id: string): string { return path.join(this.containerDir(id), 'userdata'); }
  logPath(id: string): string { return path.join(this.bundle(id), 'ctr.log'); }
  layer(id: string): ContainerLayer { return layerPaths(path.join(this.root, 'overlay', id)); }
  /** The container's committed in-place checkpoint. */
  checkpointDir(id: string): string { return path.join(this.containerDir(id), 'checkpoint'); }
  /** Where a checkpoint is written before it is committed by a rename. */
  checkpointTmp(id: string): string { return path.join(this.containerDir(id), 'checkpoint.tmp'); }
  /** A migration's dump of everything but memory (which went to the destination), while frozen. */
  migrateDump(id: string): string { return path.join(this.containerDir(id), 'migrate-dump'); }
  runDir(id: string): string { return path.join(this.runroot, 'containers', id); }
  containerLock(id: string): string { return path.join(this.locks, `ctr-${id}.lock`); }
  /** Held by a foreground `run --rm` until it has the exit code (the --rm removal waits for it). */
  attachLock(id: string): string { return path.join(this.locks, `attach-${id}.lock`); }
  get namesLock(): string { return path.join(this.locks, 'names.lock'); }
  get imagesLock(): string { return path.join(this.locks, 'images.lock'); }
  get volumesLock(): string { return path.join(this.locks, 'volumes.lock'); }
  /**
   * CNI plugins race on bridges and iptables chains, which every Ferry root on this machine
   * (in this network namespace) shares: one network change at a time, machine-wide.
   */
  get networkLock(): string { return '/run/lock/ferry-cni.lock'; }

  conmon(id: string): ConmonPaths {
    const run = this.runDir(id);
    return {
      bundle: this.bundle(id),
      logPath: this.logPath(id),
      pidFile: path.join(run, 'pidfile'),
      conmonPidFile: path.join(run, 'conmon.pid'),
      exitDir: this.exits,
      persistDir: path.join(run, 'persist'),
      socketDir: path.join(this.runroot, 'socket'),
      conmonLog: path.join(run, 'conmon.log'),
    };
  }
}
