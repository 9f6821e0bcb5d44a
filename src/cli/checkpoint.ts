import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { checkpoint, restore, type CheckpointOptions, type CheckpointReport, type RestoreOptions, type RestoreReport } from '../engine/checkpoint.js';
import { collect, getEngine, out, resolveRefs, type Ctx } from './context.js';

/**
 * Runs fn with SIGINT/SIGTERM deferred: a checkpoint or restore cut half-way is how users lose
 * work, so an interrupt lets the current operation finish (or fail cleanly) and then exits 130.
 */
async function uninterruptible<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let interrupted = false;
  const onSignal = (): void => {
    if (!interrupted) process.stderr.write(`ferry: interrupted; finishing the ${what} in progress so that nothing is lost\n`);
    interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (interrupted) process.exitCode = 130;
  }
}

const CGROUP_MODES = ['soft', 'full', 'strict', 'ignore'];

function cgroupMode(v: string | undefined): CheckpointOptions['manageCgroupsMode'] {
  if (v === undefined) return undefined;
  if (!CGROUP_MODES.includes(v)) throw new FerryError('EINVAL', `invalid --manage-cgroups-mode "${v}": use one of ${CGROUP_MODES.join(', ')}`);
  return v as CheckpointOptions['manageCgroupsMode'];
}

interface CheckpointFlags {
  all?: boolean;
  latest?: boolean;
  leaveRunning?: boolean;
  keep?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  printStats?: boolean;
  autoDedup?: boolean;
  manageCgroupsMode?: string;
  extUnixSk?: boolean;
  shellJob?: boolean;
  emptyNs: string[];
  preCheckpoint?: boolean;
  withPrevious?: boolean;
}

interface RestoreFlags {
  all?: boolean;
  latest?: boolean;
  keep?: boolean;
  tcpEstablished?: boolean;
  tcpClose?: boolean;
  fileLocks?: boolean;
  printStats?: boolean;
  autoDedup?: boolean;
  manageCgroupsMode?: string;
  extUnixSk?: boolean;
  shellJob?: boolean;
}

export function registerCheckpointCommands(parent: Command, ctx: Ctx, top: boolean): void {
  const cp = parent
    .command('checkpoint')
    .description('checkpoint one or more running containers: freeze them to disk with their whole process state')
    .argument('[containers...]')
    .option('-a, --all', 'checkpoint all running containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-R, --leave-running', 'leave the container running after the checkpoint')
    .option('-k, --keep', 'keep CRIU\'s log files')
    .option('--tcp-established', 'checkpoint established TCP connections')
    .option('--file-locks', 'checkpoint file locks')
    .option('--print-stats', 'print checkpoint statistics as JSON')
    .option('--auto-dedup', 'deduplicate memory pages against the pre-checkpoint')
    .option('--manage-cgroups-mode <mode>', 'CRIU cgroup mode: soft, full, strict or ignore')
    .option('--ext-unix-sk', 'allow UNIX sockets connected outside the container')
    .option('--shell-job', 'the container has a terminal (shell job)')
    .option('--empty-ns <ns>', 'do not dump this namespace\'s contents (e.g. network; repeatable)', collect, [])
    .option('-P, --pre-checkpoint', 'dump memory only, leaving the container running (pre-copy; needs soft-dirty tracking)')
    .option('--with-previous', 'final checkpoint writing only the memory changed since the pre-checkpoint')
    .action(async (refs: string[], f: CheckpointFlags) => {
      for (const ns of f.emptyNs) if (ns !== 'network') throw new FerryError('EINVAL', `invalid --empty-ns "${ns}": only network is supported`);
      const opts: CheckpointOptions = {
        leaveRunning: f.leaveRunning,
        keep: f.keep,
        tcpEstablished: f.tcpEstablished,
        fileLocks: f.fileLocks,
        autoDedup: f.autoDedup,
        manageCgroupsMode: cgroupMode(f.manageCgroupsMode),
        extUnixSk: f.extUnixSk,
        shellJob: f.shellJob,
        emptyNs: f.emptyNs,
        preCheckpoint: f.preCheckpoint,
        withPrevious: f.withPrevious,
      };
      const engine = getEngine(ctx);
      const targets = await resolveRefs(ctx, refs, f, true);
      const reports: CheckpointReport[] = [];
      await uninterruptible('checkpoint', async () => {
        for (const ref of targets) {
          const r = await checkpoint(engine, ref, opts);
          reports.push(r);
          if (!f.printStats) out(`${f.all ? r.id : ref}\n`);
        }
      });
      if (f.printStats) out(JSON.stringify(statsDoc('checkpoint', reports), null, 4) + '\n');
    });

  const rs = parent
    .command('restore')
    .description('restore one or more checkpointed containers where they left off')
    .argument('[containers...]')
    .option('-a, --all', 'restore all checkpointed containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-k, --keep', 'keep the checkpoint after restoring')
    .option('--tcp-established', 'restore established TCP connections')
    .option('--tcp-close', 'restore with established TCP connections closed')
    .option('--file-locks', 'restore file locks')
    .option('--print-stats', 'print restore statistics as JSON')
    .option('--auto-dedup', 'free checkpoint memory pages as they are restored')
    .option('--manage-cgroups-mode <mode>', 'CRIU cgroup mode: soft, full, strict or ignore')
    .option('--ext-unix-sk', 'allow UNIX sockets connected outside the container')
    .option('--shell-job', 'the container has a terminal (shell job)')
    .action(async (refs: string[], f: RestoreFlags) => {
      const opts: RestoreOptions = {
        keep: f.keep,
        tcpEstablished: f.tcpEstablished,
        tcpClose: f.tcpClose,
        fileLocks: f.fileLocks,
        autoDedup: f.autoDedup,
        manageCgroupsMode: cgroupMode(f.manageCgroupsMode),
        extUnixSk: f.extUnixSk,
        shellJob: f.shellJob,
      };
      const engine = getEngine(ctx);
      let targets: string[];
      if (f.all) {
        if (refs.length || f.latest) throw new FerryError('EINVAL', '--all, --latest and container names cannot be used together: pick one');
        targets = (await engine.list({ all: true })).filter((r) => r.state.checkpointed && r.state.status !== 'running').map((r) => r.config.id);
      } else {
        targets = await resolveRefs(ctx, refs, f);
      }
      const reports: RestoreReport[] = [];
      await uninterruptible('restore', async () => {
        for (const ref of targets) {
          const r = await restore(engine, ref, opts);
          reports.push(r);
          if (!f.printStats) out(`${f.all ? r.id : ref}\n`);
        }
      });
      if (f.printStats) out(JSON.stringify(statsDoc('restore', reports), null, 4) + '\n');
    });

  void cp;
  void rs;
  void top;
}

/** Podman's --print-stats shape (durations in microseconds, CRIU's figures by CRIU's names). */
function statsDoc(kind: 'checkpoint' | 'restore', reports: (CheckpointReport | RestoreReport)[]): object {
  const us = (ms: number): number => Math.round(ms * 1000);
  const snake = (o: object | undefined): Record<string, number> | null =>
    o ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k.replace(/Us$/, '').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v as number])) : null;
  return {
    [`podman_${kind}_duration`]: us(reports.reduce((a, r) => a + r.totalMs, 0)),
    container_statistics: reports.map((r) => ({
      Id: r.id,
      [`runtime_${kind}_duration`]: us(r.runtimeMs),
      engine_duration: us(r.totalMs),
      criu_statistics: snake(r.criu),
    })),
  };
}
