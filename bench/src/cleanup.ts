// Removing everything the bench made: at the end, after a failure, and on a second Ctrl-C (so
// all of it is synchronous). Every engine and the migration hosts register here as they appear.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { podmanTraces, removePodmanTraces } from './engines/podman.js';
import { errorMessage, log, mountsUnder } from './proc.js';

export interface Cleanable {
  readonly name: string;
  /** Synchronous: removes the containers it still has. */
  cleanup(): void;
}

export class Cleanup {
  private readonly engines = new Map<string, Cleanable>();
  /** Podman's traces outside its --root that were there before this run (they stay). */
  private readonly podmanBefore = podmanTraces();
  private tmp: string | undefined;
  private migrationHosts: (() => void) | undefined;
  private done = false;

  track(key: string, e: Cleanable): void {
    this.engines.set(key, e);
  }

  /** The temporary dir: unmounted below and deleted. */
  setTempDir(dir: string): void {
    this.tmp = dir;
  }

  /** The migration hosts' synchronous teardown while they exist; undefined once they are gone. */
  setMigrationHosts(teardown: (() => void) | undefined): void {
    this.migrationHosts = teardown;
  }

  /** Runs once; later calls do nothing. */
  run(): void {
    if (this.done) return;
    this.done = true;
    const hosts = this.migrationHosts;
    this.migrationHosts = undefined;
    try {
      hosts?.();
    } catch (err) {
      log(`bench: cleanup of the migration hosts: ${errorMessage(err)}`);
    }
    for (const e of this.engines.values()) {
      try {
        e.cleanup();
      } catch (err) {
        log(`bench: cleanup of ${e.name}: ${errorMessage(err)}`);
      }
    }
    const tmp = this.tmp;
    if (tmp) {
      for (const m of mountsUnder(tmp).sort().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
      // conmon's exit command (`ferry container cleanup`) may still be finishing for a container
      // just removed and recreate a directory: look again a few times.
      for (let i = 0; i < 5 && fs.existsSync(tmp); i++) {
        if (i) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
        fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 3 });
      }
    }
    removePodmanTraces(this.podmanBefore);
  }
}
