// The one interface every engine is measured through: Ferry and Podman through their CLIs,
// bare runc + CRIU by hand. Each operation returns the milliseconds it took (what a figure
// records) and throws when the engine's command failed.
import * as path from 'node:path';
import { readDumpStats } from '../../../src/drivers/criu/stats.js';
import type { HostPair, NetHost } from '../../../test/helpers/hosts.js';
import type { EngineName } from '../options.js';
import { errorMessage, log } from '../proc.js';
import type { BenchContext, Mark, OutputSource, Workload } from '../workloads.js';

export interface Engine extends OutputSource {
  readonly name: EngineName;
  /** The engine's version line, known after setup. */
  readonly version: string | undefined;
  /** Imports the workloads' images (or unpacks them) and checks the engine works. */
  setup(ctx: BenchContext): Promise<void>;
  /** `run -d`: the workload in a container of its image (busybox, Redis) without networking. */
  run(name: string, w: Workload): Promise<number>;
  /** `rm -f`: kill and remove at once. */
  rm(name: string): Promise<number>;
  ps(): Promise<number>;
  /** The peak RSS (MiB) of one `ps` (bare: `runc list`), untimed; undefined without GNU time. */
  psPeakMiB?(): Promise<number | undefined>;
  inspect(name: string): Promise<number>;
  /** `images`: the engine's image list (bare runc has none). */
  images?(): Promise<number>;
  /** Checkpoint in place: the container stops, its images stay on this host. */
  checkpoint(name: string): Promise<number>;
  restore(name: string): Promise<number>;
  /**
   * CRIU's memwrite_time (ms) in the container's last checkpoint: read, untimed, from the
   * stats-dump file CRIU wrote in the work dir; undefined where there is none.
   */
  criuWriteMs?(name: string): Promise<number | undefined>;
  /** Checkpoint into a zstd-compressed archive `file`. */
  export(name: string, file: string): Promise<number>;
  /** Restore the archive `file` as a new container `newName`. */
  import(file: string, newName: string, w: Workload): Promise<number>;
  /** What the container printed so far. */
  output(name: string): Promise<string>;
  /** Synchronous last resort: removes every container the engine still has (exit, Ctrl-C). */
  cleanup(): void;
}

export type MigrationMode = 'stop' | 'lazy';

/** One migration by a baseline engine (times in ms). */
export interface MigrationSample {
  /** From the freeze on the source to the container running on the destination. */
  downtime: number;
  /** The whole migration. */
  total: number;
  /** What went over the link. */
  bytes: number;
  /**
   * The last number the workload printed on the source before the freeze, read afterwards in
   * the untimed pause (with whatever else is left to do untimed on the source). Redis's mark is
   * its digest, taken before the migration: this still does the untimed rest.
   */
  mark(): Promise<Mark>;
}

/** A baseline engine living on one of the two migration hosts. */
export interface HostEngine extends Engine {
  readonly host: NetHost;
  /** Moves `name` from this host to the same engine on the other one. */
  migrate(pair: HostPair, to: this, name: string, w: Workload, mode: MigrationMode): Promise<MigrationSample>;
  /** Removes whatever is left of `name` here (running, or checkpointed and stopped); never throws. */
  discard(name: string): Promise<void>;
}

/** The bare baseline's ssh and Podman's scp options: the same key and options Ferry's migrate gets. */
export function sshOptions(pair: HostPair): string[] {
  return ['-i', pair.key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
}

/** `nsenter` into a migration host's network namespace (never `ip netns exec`, which hides the cgroup tree from runc). */
export const inNetns = (h: NetHost): string[] => ['nsenter', `--net=/run/netns/${h.netns}`];

export async function rmQuiet(e: Engine, name: string): Promise<void> {
  try {
    await e.rm(name);
  } catch (err) {
    log(`  (${e.name}: removing ${name} failed: ${errorMessage(err)})`);
  }
}

let seq = 0;
/** A container name not used before in this run. */
export const uniq = (base: string): string => `${base}-${++seq}`;

/** CRIU's memwrite_time (ms) from the stats-dump file in a checkpoint's work dir, if it is there. */
export function criuWriteMsIn(workDir: string): number | undefined {
  const us = readDumpStats(path.join(workDir, 'stats-dump'))?.memwriteTimeUs;
  return us === undefined ? undefined : us / 1000;
}
