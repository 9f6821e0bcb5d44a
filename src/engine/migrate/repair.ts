/**
 * The repair of a migration's source side whose ferry was killed while the container was
 * frozen for it (stop-and-copy) or while CRIU held its memory (--lazy). The destination rolls
 * back whenever the channel goes before the commit, so before the commit the container belongs
 * here: it runs on, unharmed. After the commit nobody here knows whether the destination kept
 * it, so it stays frozen and the error names both ways out.
 */
import * as fs from 'node:fs';
import { processAlive, waitFor } from '../../lib/proc.js';
import { releaseTraffic } from '../../drivers/network/cni.js';
import type { Engine } from '../engine.js';
import { withoutCheckpoint } from '../state.js';
import type { ContainerRecord, MigrateOpArgs, OpOf } from '../types.js';

export interface MigrationRepair {
  /** Stop the runc and CRIU still serving a lazy dump's memory to a destination that is gone. */
  stopCriu: boolean;
  /** The lazy dump's images hold no memory: they are no checkpoint, delete them. */
  dropLazyImages: boolean;
  /** Thaw the container and let its traffic flow: it belongs here. */
  thaw: boolean;
  /** After the commit: it stays frozen, and the state's error names both ways out. */
  ambiguous: boolean;
}

/** The repair decision for the source side, from what the op recorded. */
export function decideMigrationRepair(args: MigrateOpArgs): MigrationRepair {
  const committed = args.phase === 'committing';
  return { stopCriu: args.mode === 'lazy' && !committed, dropLazyImages: args.mode === 'lazy' && !committed, thaw: !committed, ambiguous: committed };
}

export async function repairMigration(engine: Engine, rec: ContainerRecord, op: OpOf<'migrate'>): Promise<string | void> {
  const id = rec.config.id;
  const plan = decideMigrationRepair(op.args);
  if (plan.thaw) await reclaimBeforeCommit(engine, rec, plan);
  else await waitFor(() => !processAlive(op.helperPid) && !engine.runtime.busy(id).length, 120_000, 50);
  fs.rmSync(engine.paths.migrateDump(id), { recursive: true, force: true });
  await engine.adoptFromRuntime(rec);
  if (!plan.ambiguous) return;
  const rs = await engine.runtime.state(id);
  const status = rs && (rs.status === 'running' || rs.status === 'paused') && processAlive(rs.pid) ? rs.status : 'gone';
  return afterCommit(rec.config.name, op.args.destination, status);
}

/**
 * Before the commit the container belongs here: stops the CRIU of a lazy dump (its tasks,
 * seized but not killed, run on with their memory where it was) and drops that dump's images
 * (no memory: no checkpoint), then thaws the container and lets its traffic flow. Used by the
 * repair of a killed source and by a source whose migration fails. Caller holds the lock.
 */
export async function reclaimBeforeCommit(engine: Engine, rec: ContainerRecord, plan: Pick<MigrationRepair, 'stopCriu' | 'dropLazyImages'>): Promise<void> {
  const id = rec.config.id;
  if (plan.stopCriu) for (const pid of engine.runtime.busy(id)) killGroup(pid);
  // Nothing is decided while a runc of ours may still be working on the container.
  await waitFor(() => !engine.runtime.busy(id).length, 120_000, 50);
  if (plan.dropLazyImages) {
    fs.rmSync(engine.paths.checkpointDir(id), { recursive: true, force: true });
    withoutCheckpoint(rec.state);
  }
  if ((await engine.runtime.state(id))?.status === 'paused') await engine.runtime.resume(id);
  if (rec.state.trafficHeld && rec.state.net) await releaseTraffic(rec.state.net.netnsPath).catch(() => undefined);
  delete rec.state.trafficHeld;
  engine.save(rec);
}

/** What the state says after a repair past the commit, by what became of the copy here. */
function afterCommit(name: string, destination: string, status: string): string {
  const head = `a ferry migrate to ${destination} was interrupted after its commit`;
  if (status === 'paused') return `${head}: the container is paused here; if it runs there, \`ferry rm -f ${name}\` here, otherwise \`ferry unpause ${name}\``;
  // A lazy dump's CRIU either served every page (the copy here is gone) or failed and let it run.
  if (status === 'running') return `${head}: its memory could not all be sent, so it runs here again; if it also runs there, remove one copy (\`ferry rm -f ${name}\`)`;
  return `${head}: its memory was sent and the copy here is gone; it runs there (check with \`ferry ps\` there)`;
}

/** SIGKILL to the process group a detached runc leads (runc and the CRIU it started). */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
