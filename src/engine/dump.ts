/**
 * The one place a container is dumped with CRIU, always through the runtime driver: a
 * checkpoint in place (also with --export, -R, or as a pod member frozen with the others), a
 * pre-copy round, a migration's frozen stop-and-copy (memory sent to the destination's page
 * server while dumping) and a --lazy migration's dump (memory served from here afterwards).
 *
 * The caller has recorded its operation in the container's state before calling (so a ferry
 * killed from then on leaves nothing a repair does not know about); the dump adds CRIU's PID
 * to that record, so that a repair waits for (or stops) the CRIU a dead ferry left working.
 * What a failure means for the container is the caller's to decide: the dump only says why,
 * in plain words, with the path of CRIU's log.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { debug } from '../lib/log.js';
import { containerPids, execSessions, type RuncCheckpointOptions } from '../drivers/runtime/runc.js';
import { findUndumpable, networkLockLines, writeCriuConfig } from '../drivers/criu/criu.js';
import { loadStatsDecoder, readDumpStats, type DumpStats } from '../drivers/criu/stats.js';
import { criuFailure, makeMeta, writeCheckpointMeta } from './checkpoint-dir.js';
import type { Engine } from './engine.js';
import type { CheckpointMetaOptions, ContainerRecord } from './types.js';

export interface DumpRequest {
  /** Where CRIU writes the images. */
  imageDir: string;
  /** What CRIU is asked (as runc's checkpoint flags ask it); parentPath is relative to imageDir. */
  criu: Omit<RuncCheckpointOptions, 'imagePath' | 'workPath' | 'logFile'>;
  /** Make the images a Ferry checkpoint (metadata and spec); absent for a pre-copy round. */
  meta?: CheckpointMetaOptions;
  /**
   * Freeze the container before CRIU starts: CRIU seizes a frozen container at once instead of
   * polling the freezer in 100 ms steps. A dump that leaves it running (or fails) thaws it.
   */
  freeze?: boolean;
  /** Images another engine's CRIU will restore: CRIU's default network lock (see networkLockLines). */
  portable?: boolean;
}

export interface Dump {
  /** CRIU's dump alone (for a lazy dump: until CRIU serves the memory). */
  runtimeMs: number;
  stats?: DumpStats;
  /** CRIU's log of this dump. */
  logFile: string;
  /** A lazy dump: settles once the destination has every page (CRIU then exits). */
  served?: Promise<void>;
  /** performance.now() when the container stopped running: the freeze (or CRIU's start). */
  frozenAt: number;
}

/**
 * Refuses, before anything is frozen, a container holding what CRIU cannot dump (an io_uring
 * instance): CRIU would freeze it and fail with an error nobody can act on ("send_fds failed");
 * and one with an exec session running, which the checkpoint would end.
 */
export function refuseUndumpable(rec: ContainerRecord): void {
  // As Podman: a process started by exec (a shell with its own terminal, say) is outside the
  // process tree CRIU dumps, and would silently end with the checkpoint.
  const x = execSessions(rec.state.pid)[0];
  if (x) {
    throw new FerryError(
      'EUNSUPPORTED',
      `container ${rec.config.name} cannot be checkpointed while an exec session runs in it (process ${x.pid}, ${x.command}): end it first; nothing was frozen and it keeps running`,
    );
  }
  const u = findUndumpable(containerPids(rec.state.pid))[0];
  if (!u) return;
  let holds: string;
  let way: string;
  if (u.kind === 'io_uring') {
    holds = 'uses io_uring';
    const unconfined = rec.config.securityOpt?.includes('seccomp=unconfined');
    // Recent libuv (1.50 in Debian 13's Node.js 20) sets up an io_uring for every event loop; UV_USE_IO_URING=0 does not stop that.
    const node = /^(node|nodejs)$/.test(u.command) ? ' (Node.js falls back to epoll by itself)' : '';
    way = unconfined
      ? `recreate the container without --security-opt seccomp=unconfined: Ferry's filter then denies io_uring and programs fall back to other I/O${node}`
      : `restart it: Ferry now denies io_uring to the containers it starts, and programs fall back to other I/O${node}`;
  } else if (u.kind === 'device') {
    holds = `holds the device ${u.file} open`;
    way = 'the process must close it first (CRIU dumps memory devices such as /dev/null, terminals and /dev/net/tun)';
  } else {
    holds = `holds ${u.file} open, a file opened outside the container (on a mount the container does not have)`;
    way = 'the process must close it first, or open the file itself, inside the container (in its image, a volume or a bind mount)';
  }
  throw new FerryError('EUNSUPPORTED', `container ${rec.config.name} cannot be checkpointed: its process ${u.pid} (${u.command}) ${holds}, which CRIU cannot dump; nothing was frozen and it keeps running. To checkpoint it, ${way}`);
}

export async function dump(engine: Engine, rec: ContainerRecord, req: DumpRequest): Promise<Dump> {
  const id = rec.config.id;
  const name = rec.config.name;
  const op = rec.state.op;
  if (!op || op.pid !== process.pid) throw new FerryError('ESTATE', `internal error: dump of ${name} without its operation recorded`);
  const workDir = engine.paths.bundle(id);
  const logFile = path.join(workDir, req.criu.preDump ? 'predump.log' : 'dump.log');
  // A log left by an earlier --keep must not pass for this dump's (a repair reads it), nor an
  // earlier dump's statistics for this one's.
  fs.rmSync(logFile, { force: true });
  fs.rmSync(path.join(workDir, 'stats-dump'), { force: true });
  writeCriuConfig(workDir, networkLockLines(rec.config.pod ? undefined : rec.config.network?.mode, req.criu.tcpEstablished, req.portable));
  // CRIU's request is made while the container still runs (as runc makes it before CRIU freezes).
  const prepared = engine.runtime.prepareCheckpoint(id, { ...req.criu, imagePath: req.imageDir, workPath: workDir, logFile: path.basename(logFile) });
  const t0 = performance.now();
  if (req.freeze) {
    try {
      await engine.runtime.freeze(id, rec.state.pid);
    } catch (e) {
      prepared.abandon();
      throw e;
    }
  }
  const thaw = async (): Promise<void> => {
    if (req.freeze) await engine.runtime.resume(id);
  };
  let run: ReturnType<typeof prepared.start>;
  try {
    run = prepared.start((pid) => {
      op.helperPid = pid;
      engine.save(rec); // durable: also the op itself, when its caller recorded it without a flush
    });
  } catch (e) {
    await thaw().catch(() => undefined); // CRIU never started: nothing else was touched
    throw e;
  }
  // While CRIU works this process only waits: make now what the checkpoint needs after it (its
  // metadata, with the CRIU and runc versions; the decoder of CRIU's statistics).
  const meta = req.meta ? makeMeta(engine, rec, req.meta) : undefined;
  meta?.catch(() => undefined); // a failed dump never reads it
  loadStatsDecoder();
  const r = await run.ready.catch(async (e: Error) => {
    await thaw().catch(() => undefined); // CRIU could not be started (or waited for)
    throw e;
  });
  const runtimeMs = performance.now() - t0;
  debug(`dump ${name}: CRIU's dump took ${runtimeMs.toFixed(1)}ms (${r ? `exit ${r.code}` : 'serving memory'})`);
  if (r && r.code !== 0) {
    await thaw().catch(() => undefined); // CRIU put the freezer back as it found it: frozen
    throw criuFailure('checkpoint', name, r.stderr, logFile);
  }
  if (req.criu.leaveRunning) await thaw();
  const stats = readDumpStats(path.join(workDir, 'stats-dump'));
  if (meta) writeCheckpointMeta(engine, rec, req.imageDir, { ...(await meta), stats });
  debug(`dump ${name}: metadata written`);
  const served = r
    ? undefined
    : run.done.then((d) => {
        if (d.code !== 0) throw criuFailure('checkpoint', name, d.stderr, logFile);
      });
  served?.catch(() => undefined); // the caller may never wait for it (a failed migration)
  return { runtimeMs, stats, logFile, served, frozenAt: t0 };
}
