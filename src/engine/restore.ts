/**
 * Restore of a checkpointed container, top to bottom:
 *
 *   refuse early (running, no checkpoint, other CRIU or CPU) -> record op -> mount rootfs,
 *   write bundle -> conmon runs `runc restore` -> on failure: nothing left running or mounted,
 *   checkpoint untouched -> on success: state "running, restored" saved, checkpoint removed
 *   unless --keep.
 *
 * A ferry killed half-way leaves the op behind; repairRestore() adopts what conmon and runc
 * got to (a running container is kept, its checkpoint too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { releaseTraffic } from '../drivers/network/cni.js';
import { debug } from '../lib/log.js';
import { readJsonIfExists } from '../lib/fsutil.js';
import { restoreArgs, type RuncRestoreOptions } from '../drivers/runtime/runc.js';
import { networkLockLines, writeCriuConfig } from '../drivers/criu/criu.js';
import { readRestoreStats, type RestoreStats } from '../drivers/criu/stats.js';
import type { PortMapping } from '../drivers/network/cni.js';
import { META_FILE, checkCompatible, criuFailure, removePreDumps, type CheckpointMeta } from './checkpoint-dir.js';
import type { Engine } from './engine.js';
import { requirePodRestore, resetPodHostname } from './pods.js';
import { findPod } from './podstore.js';
import { toRunning, withoutCheckpoint } from './state.js';
import type { ContainerRecord, OpOf } from './types.js';

/** A restore: runc's (and CRIU's) restore options, and what Ferry decides around them. */
export interface RestoreOptions extends RuncRestoreOptions {
  keep?: boolean;
  /** A new IP instead of the checkpointed one (then established TCP cannot be restored). */
  ignoreStaticIp?: boolean;
  /** A new MAC address instead of the checkpointed one. */
  ignoreStaticMac?: boolean;
  /** Replaces the published ports. */
  publish?: PortMapping[];
  /** Restore only the checkpoint of this name (Docker's `start --checkpoint NAME`). */
  label?: string;
  /** Runs after the bundle is ready and before runc restore (starts the lazy-pages daemon). */
  beforeRestore?: (bundle: string, imageDir: string) => Promise<void>;
  /**
   * Called the moment conmon says the container runs again, before the restore records it (a
   * migration's destination tells the source then: its downtime ends there). The restore can
   * still fail after it (recording the state); it then stops the container as any failure does.
   */
  onRunning?: (id: string) => void;
}

export interface RestoreReport {
  id: string;
  name: string;
  totalMs: number;
  runtimeMs: number;
  criu?: RestoreStats;
}

// ------------------------------------------------------------------------- restore

export async function restore(engine: Engine, ref: string, o: RestoreOptions): Promise<RestoreReport> {
  return engine.withContainer(ref, (rec) => restoreLocked(engine, rec, o));
}

/** restore() for a container whose lock the caller holds. */
export async function restoreLocked(engine: Engine, rec: ContainerRecord, o: RestoreOptions): Promise<RestoreReport> {
  const t0 = performance.now();
  const id = rec.config.id;
  const name = rec.config.name;
  const dir = engine.paths.checkpointDir(id);
  // 1. Refuse what cannot work, before touching anything.
  if (rec.state.status === 'running' || rec.state.status === 'paused') {
    throw new FerryError('ESTATE', `container ${name} is running: checkpoint or stop it before restoring`);
  }
  const meta = readJsonIfExists<CheckpointMeta>(path.join(dir, META_FILE));
  if (!meta) throw new FerryError('ESTATE', `container ${name} has no checkpoint to restore: checkpoint it first with \`ferry container checkpoint ${name}\``);
  if (o.label !== undefined && (meta.options.label ?? 'checkpoint') !== o.label) throw new FerryError('ENOTFOUND', `container ${name} has no checkpoint named ${o.label}`);
  await checkCompatible(engine, meta);
  if (rec.config.pod) await requirePodRestore(engine);
  if (o.autoDedup && o.keep) throw new FerryError('EINVAL', '--auto-dedup consumes the checkpoint while restoring, so it cannot be combined with --keep');
  if (o.tcpClose && o.tcpEstablished) throw new FerryError('EINVAL', '--tcp-close and --tcp-established cannot be used together');
  // Established connections live only at the old address.
  const newIp = !!o.ignoreStaticIp || !meta.network?.ip;
  if (newIp && meta.network && o.tcpEstablished) {
    throw new FerryError('EINVAL', '--tcp-established needs the container\'s old IP address, so it cannot be combined with -n/--name or --ignore-static-ip: use --tcp-close');
  }
  if (newIp && meta.network && meta.options.tcpEstablished && !o.tcpClose) {
    throw new FerryError('EINVAL', `the checkpoint holds established TCP connections, which need its old IP address ${meta.network.ip}: restore with --tcp-close to have them closed, or keep the address`);
  }
  // A checkpoint with established connections can only be restored with them (or closed).
  const tcpEstablished = o.tcpEstablished || (meta.options.tcpEstablished && !o.tcpClose);
  if (o.publish && rec.config.network?.mode === 'bridge') {
    rec.config.network.ports = o.publish.map((p) => ({ ...p }));
    await engine.pickHostPorts(rec.config.network);
  } else if (o.publish?.length) throw new FerryError('EINVAL', `container ${name} is not on a bridge network, so it cannot publish ports`);
  const netReq = {
    ip: newIp ? undefined : meta.network?.ip,
    mac: o.ignoreStaticMac ? undefined : meta.network?.mac,
    ports: rec.config.network?.ports,
    // The connections' peers retransmit into the address: nothing may answer them before CRIU
    // has put the sockets back (a reset would end them), so the new namespace holds its traffic.
    holdTraffic: tcpEstablished,
  };

  // 2. Prepare: rootfs mounted, bundle written, any stale runtime record gone.
  engine.beginOp(rec, 'restore', {});
  const logFile = path.join(engine.paths.bundle(id), 'restore.log');
  fs.rmSync(logFile, { force: true });
  let runtimeMs = 0;
  try {
    await engine.runtime.delete(id, true);
    // The lazy-pages daemon (post-copy) starts while the bundle is being prepared.
    const prep = await Promise.allSettled([engine.prepareBundle(rec, netReq).then(() => debug(`restore ${name}: rootfs mounted, spec written`)), o.beforeRestore?.(engine.paths.bundle(id), dir)]);
    for (const p of prep) if (p.status === 'rejected') throw p.reason;
    debug(`restore ${name}: bundle ready`);
    // CRIU options runc has no flag for (runc 1.1 has no --tcp-close), in the file the bundle's
    // annotation names; removed after the restore, so that later dumps do not inherit them.
    writeCriuConfig(engine.paths.bundle(id), [...(o.tcpClose ? ['tcp-close'] : []), ...networkLockLines(rec.config.pod ? undefined : rec.config.network?.mode, tcpEstablished)]);
    const tr = performance.now();
    const started = await engine.runtime.createWithConmon({
      id,
      name,
      paths: engine.paths.conmon(id),
      exitCommand: engine.exitCommand(id),
      // A terminal's master end was outside the container: CRIU makes a new one and runc hands it to conmon.
      terminal: !!rec.config.tty,
      stdin: !!rec.config.stdin,
      restore: {
        imagePath: dir,
        runtimeOpts: restoreArgs({
          tcpEstablished,
          tcpClose: o.tcpClose,
          fileLocks: o.fileLocks || meta.options.fileLocks,
          extUnixSk: o.extUnixSk || meta.options.extUnixSk,
          shellJob: o.shellJob || meta.options.shellJob,
          manageCgroupsMode: o.manageCgroupsMode,
          autoDedup: o.autoDedup,
          lazyPages: o.lazyPages,
        }),
      },
    });
    runtimeMs = performance.now() - tr;
    debug(`restore ${name}: conmon + runc restore took ${runtimeMs.toFixed(1)}ms`);
    o.onRunning?.(id);
    if (rec.state.trafficHeld && rec.state.net) {
      // The sockets are back: let their peers' retransmissions in.
      await releaseTraffic(rec.state.net.netnsPath);
      delete rec.state.trafficHeld;
    }
    toRunning(rec.state, started, { restored: true, restoredAt: new Date().toISOString(), restoreLog: logFile });
    engine.event(rec, 'restore');
  } catch (e) {
    // 3. A failed restore: nothing left running or mounted; the checkpoint stays as it was.
    writeCriuConfig(engine.paths.bundle(id), []);
    await engine.runtime.kill(id, 'KILL', true).catch(() => undefined);
    await engine.releaseRuntime(rec).catch(() => undefined);
    rec.state.error = (e as Error).message;
    engine.endOp(rec);
    if (e instanceof FerryError && (e.code === 'ECRIU' || e.code === 'ERUNTIME')) throw criuFailure('restore', name, e.detail ?? e.message, logFile);
    throw e;
  }

  writeCriuConfig(engine.paths.bundle(id), []);
  // 4. Success: the checkpoint is used up unless --keep.
  const stats = readRestoreStats(path.join(engine.paths.bundle(id), 'stats-restore'));
  if (!o.keep) {
    engine.discard(dir);
    removePreDumps(engine.paths.containerDir(id));
    withoutCheckpoint(rec.state);
  }
  engine.endOp(rec);
  debug(`restore ${name}: recorded`);
  const pod = rec.config.pod ? findPod(engine, rec.config.pod) : undefined;
  if (pod) await resetPodHostname(engine, pod);
  return { id, name, totalMs: performance.now() - t0, runtimeMs, criu: stats };
}

// ------------------------------------------------------------------------- repair

/**
 * A ferry died during a restore. conmon outlives it and may still be running `runc restore`:
 * wait until runc has written the container's PID or conmon has given up, then adopt what runs
 * (its checkpoint stays, as with --keep: the restore's options are unknown) or release the rest.
 */
export async function repairRestore(engine: Engine, rec: ContainerRecord, _op: OpOf<'restore'>): Promise<void> {
  await engine.waitForConmon(rec);
  await engine.adoptFromRuntime(rec, { restored: true });
}
