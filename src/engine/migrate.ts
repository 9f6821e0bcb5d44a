/**
 * Live migration of a running container to another host, in one command.
 *
 * Source (`ferry migrate CTR ssh://host`)            Destination (`ferry system migrate-receive`)
 *   1. hello: what the container needs          ->    checks image, name, IP, CRIU, arch, lazy
 *                                               <-    ready | error (nothing frozen yet)
 *   (--pre-copy) pre-dump rounds while running  ->    each stored aside
 *      until they stop converging               <-    pre-dump-stored | error
 *   2. freeze and dump: stop-and-copy sends    ->    (its CRIU page server writes the memory)
 *      the memory to the destination's page           streams the archive into a new container,
 *      server while dumping, then the rest of         adds the memory, restores it (with --lazy:
 *      the dump as the archive; --lazy dumps all      restores at once, faulting pages in
 *      but memory, which a page server here serves    through the tunnel)
 *                                               <-    restored (downtime ends) | error
 *   3. commit                                   ->    keeps the container
 *                                               <-    committed
 *   4. source removes its copy
 *
 * Exactly once: until the source has sent commit, a failure anywhere puts the container back
 * running on the source (stop-and-copy: the container was only frozen, and is thawed; lazy and
 * pre-copy: restored from the local checkpoint), and the destination removes whatever it made
 * (it also rolls back if the channel closes before commit). If the channel is lost after commit
 * was sent, nobody can know whether it arrived: the source keeps its frozen container (or its
 * checkpoint), does not run it, and says so.
 *
 * Pre-copy: each round writes the memory changed since the round before (soft-dirty tracking);
 * the final dump (or lazy dump) then writes only what changed since the last round, and the
 * destination links the rounds under the restored checkpoint as CRIU expects (parent links).
 *
 * Post-copy caveat: once a --lazy destination runs the container, its memory still partly
 * lives on the source until every page is sent; losing the source then loses the container.
 *
 * Transport (a Link): ssh running `ferry system migrate-receive` (ssh://), or a TLS-PSK
 * connection to `ferry system service` (ferry://, see service.ts), which hands it to the same
 * receiveMigration(). The protocol above is the same on both; memory goes through a tunnel of
 * the same link (ssh -L / -R, or the service's pages connection), between CRIUs that listen on
 * loopback only.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../lib/errors.js';
import { debug } from '../lib/log.js';
import { processAlive, procStartTime, waitExit } from '../lib/proc.js';
import { withTimeout } from '../lib/async.js';
import { freePort } from '../lib/net.js';
import { countingTap } from '../lib/stream.js';
import { runSyncOk } from '../lib/exec.js';
import { FrameReader, FrameWriter, LineReader } from '../drivers/transport/channel.js';
import { BYE_TIMEOUT_MS, COMMIT_TIMEOUT_MS, PAGE_SERVER_FINISH_MS, PRE_DUMP_KIND, REPLY_TIMEOUT_MS, parseReply, parseSourceMessage, type Hello, type Reply, type Restored, type SourceMessage, isTunnelPort } from './migrate/protocol.js';
import { openLink, parseDestination, type Destination, type DestinationOptions, type PagesMode } from '../drivers/transport/link.js';
import type { Compression } from '../drivers/archive/compress.js';
import type { CriuInfo } from '../drivers/criu/criu.js';
import { criuLogReason, startLazyPages, startPageServer, type PageServer } from '../drivers/criu/daemons.js';
import { ARCHIVE_FORMAT, HEADER_MEMBER, readArchive } from '../drivers/archive/archive.js';
import { guardLoopbackPort, holdTraffic, sweepLoopbackGuards } from '../drivers/network/cni.js';
import { checkpoint, criuFailure, pageImageBytes, removePreDumps, restore, writeCheckpointMeta } from './checkpoint.js';
import { exportCheckpoint, importCheckpoint, writeArchive } from './portable.js';
import { takeDown } from './pods.js';
import type { ContainerRecord } from './types.js';
import type { Engine } from './engine.js';

export interface MigrateOptions extends DestinationOptions {
  lazy?: boolean;
  preCopy?: number;
  tcpEstablished?: boolean;
  compression?: Compression;
  /** Send the image too when the destination lacks it. */
  withImage?: boolean;
  onProgress?: (p: Progress) => void;
}

export interface Progress {
  phase: 'connecting' | 'checking' | 'pre-copy' | 'freezing' | 'transferring' | 'restoring' | 'committing' | 'pages' | 'done';
  bytes: number;
}

export interface MigrateReport {
  container: string;
  destination: string;
  mode: 'stop-and-copy' | 'lazy' | 'pre-copy' | 'pre-copy+lazy';
  /** From freezing on the source to running on the destination. */
  downtimeMs: number;
  totalMs: number;
  bytesSent: number;
  newId: string;
  /** The pre-copy rounds: memory pages in each round's images, bytes sent, time taken (while running). */
  preCopyRounds: PreCopyRound[];
}

export interface PreCopyRound {
  pages: number;
  bytes: number;
  ms: number;
}

/** A round that writes no more than this many pages leaves little for the final dump. */
const PRE_COPY_SMALL_PAGES = 256;
/** A round writing at least this share of the one before is not converging. */
const PRE_COPY_CONVERGING = 0.75;

/**
 * Whether another pre-copy round is worth it, given the pages each round so far wrote: not
 * past max rounds, not when the last round was already small, and not when the rounds have
 * stopped shrinking (memory is dirtied about as fast as it is sent: more rounds only delay).
 */
export function anotherPreCopyRound(pages: number[], max: number): boolean {
  const n = pages.length;
  if (n >= max) return false;
  const last = pages[n - 1] ?? Infinity;
  if (last <= PRE_COPY_SMALL_PAGES) return false;
  if (n >= 2 && last >= PRE_COPY_CONVERGING * pages[n - 2]!) return false;
  return true;
}


// ------------------------------------------------------------------------------ source

export async function migrate(engine: Engine, ref: string, o: MigrateOptions): Promise<MigrateReport> {
  const t0 = performance.now();
  const progress = (phase: Progress['phase'], bytes = 0): void => o.onProgress?.({ phase, bytes });
  const dest = parseDestination(o);
  const host = dest.host;
  const rec = await engine.inspect(ref);
  const name = rec.config.name;
  if (rec.state.status !== 'running') throw new FerryError('ESTATE', `container ${name} is not running: only a running container can be migrated`);
  if (rec.config.network?.mode === 'host') throw new FerryError('EUNSUPPORTED', `container ${name} uses the host's network, which cannot move to another host`);
  if (rec.config.mounts.some((m) => m.type === 'bind')) {
    throw new FerryError('EUNSUPPORTED', `container ${name} bind-mounts host paths (${rec.config.mounts.filter((m) => m.type === 'bind').map((m) => m.source).join(', ')}), which do not move with it: use named volumes`);
  }
  if (rec.config.pod) {
    throw new FerryError('EUNSUPPORTED', `container ${name} is in a pod, whose namespaces stay here: export it and restore it with --import --pod on the other host`);
  }
  const criu = await engine.criu();
  if (o.preCopy !== undefined) {
    if (!Number.isInteger(o.preCopy) || o.preCopy < 1) throw new FerryError('EINVAL', `invalid number of pre-copy rounds: ${o.preCopy}`);
    if (!criu.features.memDirtyTrack) {
      throw new FerryError('EUNSUPPORTED', 'pre-copy needs soft-dirty memory tracking, which this kernel lacks (`criu check --feature mem_dirty_track`): migrate without --pre-copy, or with --lazy');
    }
  }
  if (o.lazy && !(criu.features.uffdNoncoop && criu.features.lazyPipeSize)) {
    throw new FerryError('EUNSUPPORTED', criu.features.uffdNoncoop ? 'lazy migration needs fs.pipe-max-size >= 4194304 on this host: run `npm run setup`' : 'lazy migration needs userfaultfd, which this kernel lacks: migrate without --lazy');
  }

  // Stop-and-copy sends memory from CRIU to a CRIU page server on the destination while it
  // dumps, through the link's tunnel; the archive then carries everything else.
  const pages: PagesMode = o.lazy ? 'lazy' : o.preCopy ? 'none' : 'page-server';

  // 1. Connect and let the destination check everything before anything is frozen.
  progress('connecting');
  const pagesPort = pages === 'none' ? 0 : await freePort();
  // CRIU's ends of the memory tunnel take the first connection that comes: only root may make it.
  await sweepLoopbackGuards((pid) => processAlive(pid));
  const unguard = pages === 'none' ? undefined : await guardLoopbackPort(pagesPort, []);
  try {
    return await migrateOverLink(engine, o, { rec, name, host, dest, criu, pages, pagesPort, t0, progress });
  } finally {
    await unguard?.().catch(() => undefined);
  }
}

/** What migrate() has decided before it connects. */
interface Plan {
  rec: ContainerRecord;
  name: string;
  host: string;
  dest: Destination;
  criu: CriuInfo;
  pages: PagesMode;
  pagesPort: number;
  t0: number;
  progress: (phase: Progress['phase'], bytes?: number) => void;
}

/** Steps 1-4 of the protocol, over a link to the destination. */
async function migrateOverLink(engine: Engine, o: MigrateOptions, p: Plan): Promise<MigrateReport> {
  const { rec, name, host, dest, criu, pages, pagesPort, t0, progress } = p;
  const link = await openLink(dest, o, pages, pagesPort);
  const writer = new FrameWriter<SourceMessage>(link.output);
  const replies = new LineReader(link.input, parseReply);
  let bytes = 0;
  /** What the destination's page server has received so far (it says so while the dump runs). */
  let pageBytes = 0;
  replies.onProgress = (m) => {
    pageBytes = m.pageBytes;
    progress('transferring', bytes + pageBytes);
  };
  const lost = (): FerryError => {
    const why = link.lostReason();
    return new FerryError('ERUNTIME', `lost the connection to ${link.where}${why ? `: ${why}` : ''}`);
  };
  let restoredHere = false;
  let lazyDumpStarted = false;
  /** The container was frozen here for a stop-and-copy (and is thawed by any failure before the commit). */
  let frozen = false;
  let dumpP: Promise<unknown> | undefined;
  const preCopyRounds: PreCopyRound[] = [];
  try {
    const meta = rec.state.address;
    await writer.send({
      type: 'hello',
      name,
      imageId: rec.config.imageId,
      imageName: rec.config.imageName,
      network: rec.config.network?.mode === 'bridge' ? rec.config.network.name ?? 'ferry' : undefined,
      ip: meta?.ip,
      criuVersion: criu.version,
      arch: process.arch,
      lazy: !!o.lazy,
      lazyPort: pages === 'lazy' && link.remotePagesPort ? link.remotePagesPort : undefined,
      pageServer: pages === 'page-server',
      pageServerPort: pages === 'page-server' && link.remotePagesPort ? link.remotePagesPort : undefined,
      withImage: !!o.withImage,
      volumes: rec.config.mounts.filter((m) => m.type === 'volume').map((m) => m.source),
    });
    progress('checking');
    const ready = await replies.next(REPLY_TIMEOUT_MS);
    if (!ready) throw lost();
    if (ready.type === 'error') throw new FerryError('ESTATE', `${host} refused the migration: ${ready.message}; ${name} was not touched`);
    if (ready.type !== 'ready') throw new FerryError('ERUNTIME', `unexpected reply from ${host}: ${ready.type}`);
    await link.ready();
    debug(`migrate ${name}: ${host} is ready`);
    if (ready.needImage) {
      // --with-image: the image's rootfs goes first, while the container still runs.
      progress('transferring');
      const img = engine.images.list().find((i) => i.Id === rec.config.imageId);
      if (!img) throw new FerryError('ENOTFOUND', `the image of ${name} is gone from this host`);
      await writer.send({ type: 'image', image: img });
      const src = engine.images.send(img.Id);
      const sink = writer.dataStream();
      await Promise.all([pipeline(src.stream, sink), src.done]);
      const got = await replies.next(REPLY_TIMEOUT_MS);
      if (!got) throw lost();
      if (got.type === 'error') throw new FerryError('ESTATE', `${host} could not store the image: ${got.message}; ${name} was not touched`);
      if (got.type !== 'image-stored') throw new FerryError('ERUNTIME', `unexpected reply from ${host}: ${got.type}`);
    }

    const dataStream = (phase: Progress['phase']): Writable => {
      const data = writer.dataStream();
      data.on('error', () => undefined); // destroyed on purpose when the destination gives up
      return countingTap(data, (n) => {
        bytes += n;
        progress(phase, bytes);
      });
    };

    // (--pre-copy) Rounds of memory while the container runs, each only what changed since
    // the round before, until they stop converging.
    let parent: string | undefined;
    for (let k = 1; o.preCopy && (k === 1 || anotherPreCopyRound(preCopyRounds.map((r) => r.pages), o.preCopy)); k++) {
      progress('pre-copy', bytes);
      const tr = performance.now();
      const before = bytes;
      const dir = `pre-${k}`;
      await checkpoint(engine, rec.config.id, { preCheckpoint: true, preDumpDir: dir, parentDir: parent });
      parent = dir;
      const pages = Math.ceil(pageImageBytes(path.join(engine.paths.containerDir(rec.config.id), dir)) / 4096);
      await writer.send({ type: 'pre-dump', round: k });
      await writeArchive(
        dataStream('pre-copy'),
        o.compression ?? 'zstd',
        async (w) => {
          await w.addJson(HEADER_MEMBER, { format: ARCHIVE_FORMAT, kind: PRE_DUMP_KIND, round: k, container: name });
          await w.addPlainDir(`parents/${k}`, path.join(engine.paths.containerDir(rec.config.id), dir));
        },
        (why) => new FerryError('ERUNTIME', `sending pre-copy round ${k} failed: ${why}`),
      );
      const stored = await replies.next(REPLY_TIMEOUT_MS);
      if (!stored) throw lost();
      if (stored.type === 'error') throw new FerryError('ESTATE', `${host} could not store pre-copy round ${k}: ${stored.message}`);
      if (stored.type !== 'pre-dump-stored' || stored.round !== k) throw new FerryError('ERUNTIME', `unexpected reply from ${host}: ${stored.type}`);
      preCopyRounds.push({ pages, bytes: bytes - before, ms: performance.now() - tr });
      debug(`migrate ${name}: pre-copy round ${k}: ${pages} pages, ${bytes - before} bytes`);
    }

    // 2. Freeze and stream.
    progress('freezing', bytes);
    debug(`migrate ${name}: freezing`);
    const commit = async (): Promise<void> => {
      progress('committing', bytes + pageBytes);
      await writer.send({ type: 'commit' });
      const committed = await replies.next(COMMIT_TIMEOUT_MS).catch(() => undefined);
      if (!committed || committed.type !== 'committed') {
        const here =
          pages === 'page-server'
            ? `if it does not run there, \`ferry unpause ${name}\` here (it is paused here); if it does, \`ferry rm -f ${name}\` here`
            : `if it does not run, \`ferry container restore ${name}\` here (its checkpoint is kept)`;
        throw Object.assign(new FerryError('ERUNTIME', `the connection to ${host} was lost after the commit was sent: ${name} may be running there. Check with \`ferry ps\` there; ${here}`), { ambiguous: true });
      }
    };
    const counted = dataStream('transferring');
    await writer.send({ type: 'archive' });
    let downtimeMs: number;
    let restored: Restored;
    let lazyDump: LazyDump | undefined;
    if (pages === 'page-server') {
      frozen = true;
      ({ downtimeMs, restored } = await engine.withContainer(rec.config.id, (locked) =>
        frozenStopAndCopy(engine, locked, {
          pagesPort,
          tcpEstablished: o.tcpEstablished,
          target: counted,
          compression: o.compression ?? 'zstd',
          reply: replies.next(),
          host,
          destination: o.destination,
          lost,
          commit,
          onSent: () => progress('restoring', bytes + pageBytes),
        }),
      ));
      pageBytes = restored.pageBytes || pageBytes;
    } else {
      const tFreeze = performance.now();
      // The destination may answer (fail) while we still stream: watch for that, or a stalled
      // channel would block the export forever.
      const replyP = replies.next();
      const exportP = (async () => {
        const target = { target: counted, compression: o.compression ?? 'zstd', withoutPreDumps: true } as const;
        if (o.lazy) {
          lazyDump = await lazyCheckpoint(engine, rec.config.id, pagesPort, o.tcpEstablished, parent);
          lazyDumpStarted = true;
          await engine.withContainer(rec.config.id, async (r) => {
            await exportCheckpoint(engine, r, target);
          });
        } else {
          await checkpoint(engine, rec.config.id, { tcpEstablished: o.tcpEstablished, withPrevious: !!parent, parentDir: parent, export: target });
        }
      })();
      dumpP = exportP;
      exportP.catch(() => undefined);
      // The archive is complete once its stream has ended; the checkpoint may still be releasing
      // the source's runtime then, which the destination does not wait for.
      const sent = new Promise<void>((resolve) => counted.once('finish', () => resolve()));
      await archiveSent(sent, exportP, replyP, counted, { host, name, lost });
      progress('restoring', bytes);
      debug(`migrate ${name}: archive sent (${bytes} bytes)`);
      restored = await restoredReply(replyP, { host, name, lost });
      downtimeMs = performance.now() - tFreeze;
      debug(`migrate ${name}: running on ${host} after ${downtimeMs.toFixed(1)}ms of downtime`);

      // 3. Commit. From here on the destination owns the container.
      await commit();
    }
    if (lazyDump) {
      progress('pages', bytes);
      await lazyDump.done; // every page has been served
      const pagesDone = await replies.next(REPLY_TIMEOUT_MS).catch((e: Error) => ({ type: 'error' as const, message: e.message }));
      if (pagesDone?.type === 'error') process.stderr.write(`ferry: warning: ${pagesDone.message}\n`);
    }
    bytes += pageBytes;
    // 4. The container now lives on the destination only, and so do its volumes' data:
    //    volumes no other container here uses moved with it.
    const late = await dumpP?.then(() => undefined, (e: Error) => e);
    if (late) process.stderr.write(`ferry: warning: after the checkpoint of ${name}: ${late.message}\n`);
    await engine.remove(rec.config.id, { force: true });
    const others = await engine.list({ all: true });
    for (const m of rec.config.mounts) {
      if (m.type !== 'volume' || others.some((r) => r.config.mounts.some((x) => x.type === 'volume' && x.source === m.source))) continue;
      await engine.removeVolume(m.source).catch(() => undefined);
    }
    await writer.send({ type: 'bye' }).catch(() => undefined);
    link.end();
    progress('done', bytes);
    const mode = o.preCopy ? (o.lazy ? 'pre-copy+lazy' : 'pre-copy') : o.lazy ? 'lazy' : 'stop-and-copy';
    return { container: name, destination: o.destination, mode, downtimeMs, totalMs: performance.now() - t0, bytesSent: bytes, newId: restored.id, preCopyRounds };
  } catch (e) {
    if ((e as { ambiguous?: boolean }).ambiguous) {
      link.destroy();
      throw e;
    }
    // Before commit: tell the destination to drop what it made, and run the container here again
    // (once the checkpoint, which may still be releasing the runtime, has settled).
    await writer.send({ type: 'abort' }).catch(() => undefined);
    link.end();
    await dumpP?.catch(() => undefined);
    const now = await engine.inspect(rec.config.id).catch(() => undefined);
    if (now && now.state.status !== 'running' && now.state.checkpointed) {
      // After a lazy dump the memory is only in the local page server: fault it back in here.
      let localDaemon: ChildProcess | undefined;
      const hook = lazyDumpStarted ? lazyRestoreHook(engine, pagesPort, (d) => (localDaemon = d)) : undefined;
      await restore(engine, rec.config.id, { beforeRestore: hook, lazyPages: !!hook }).then(
        () => (restoredHere = true),
        (re: Error) => process.stderr.write(`ferry: could not restart ${name} here: ${re.message}\n`),
      );
      if (localDaemon) await waitExit(localDaemon, 120_000);
    } else if (now?.state.status === 'running' && frozen) {
      restoredHere = true; // it was frozen, and thawed again
    } else if (now?.state.status === 'running' && preCopyRounds.length) {
      // Failed before freezing: it runs on, and its pre-copy rounds are of no more use.
      await engine.withContainer(rec.config.id, async () => removePreDumps(engine.paths.containerDir(rec.config.id))).catch(() => undefined);
    }
    await link.closed(5000);
    const msg = (e as Error).message;
    throw new FerryError((e as FerryError).code ?? 'ERUNTIME', `migration of ${name} failed: ${msg}${restoredHere ? `; ${name} is running here again` : ''}`);
  }
}

// ------------------------------------------------------------------------------ freeze (source)

interface Peer {
  host: string;
  name: string;
  lost: () => FerryError;
}

/**
 * Waits until the archive has gone out (sent). Throws if the export failed, or the
 * destination answered before it was all sent (always an error, or the channel went).
 */
async function archiveSent(sent: Promise<void>, exportP: Promise<unknown>, replyP: Promise<Reply | undefined>, stream: Writable, p: Peer): Promise<void> {
  const first = await Promise.race([sent.then(() => 'sent' as const), exportP.then(() => 'sent' as const, () => 'failed' as const), replyP.then(() => 'reply' as const, () => 'reply' as const)]);
  if (first === 'sent') return;
  const early = first === 'reply' ? await replyP.catch((e: Error) => e) : undefined;
  stream.destroy(new Error('the destination stopped the transfer'));
  const err = await exportP.then(() => undefined, (e: Error) => e);
  if (early instanceof Error) throw early;
  if (early?.type === 'error') throw new FerryError('ECRIU', `${p.host} could not take ${p.name}: ${early.message}`);
  if (first === 'reply' && !early) throw p.lost();
  throw err ?? p.lost();
}

/** The destination's answer once it has the archive: `restored`, or a thrown error. */
async function restoredReply(replyP: Promise<Reply | undefined>, p: Peer): Promise<Restored> {
  const restored = await withTimeout(replyP, REPLY_TIMEOUT_MS);
  if (!restored) throw p.lost();
  if (restored.type === 'error') throw new FerryError('ECRIU', `${p.host} could not restore ${p.name}: ${restored.message}`);
  if (restored.type !== 'restored') throw new FerryError('ERUNTIME', `unexpected reply from ${p.host}: ${restored.type}`);
  return restored;
}

interface FrozenCopy {
  /** This host's loopback port that leads to the destination's CRIU page server. */
  pagesPort: number;
  tcpEstablished?: boolean;
  /** Where the archive (everything but memory) goes. */
  target: Writable;
  compression: Compression;
  /** The destination's answer to the archive. */
  reply: Promise<Reply | undefined>;
  host: string;
  destination: string;
  lost: () => FerryError;
  /** Sends commit and waits for committed; throws an `ambiguous` error when no answer comes. */
  commit: () => Promise<void>;
  /** The archive has gone out: the destination restores now. */
  onSent: () => void;
}

/**
 * Stop-and-copy with no copy of the memory on this host: the container is frozen, CRIU dumps
 * it leaving it frozen (a --leave-running dump of a frozen container) and sends its memory to
 * the destination's page server as it goes, the rest of the dump follows as an archive. The
 * frozen container is the way back: until the commit is sent, any failure thaws it, unharmed
 * (the destination removes what it made); once the destination has committed it is killed
 * while still frozen. With --tcp-established its network is held from before the freeze, so
 * that neither this kernel's ACKs after the dump nor the close of its sockets reach the peer.
 * Caller holds the container's lock; the migrate op records the phase for a repair.
 */
async function frozenStopAndCopy(engine: Engine, rec: ContainerRecord, f: FrozenCopy): Promise<{ downtimeMs: number; restored: Restored }> {
  const id = rec.config.id;
  const name = rec.config.name;
  if (rec.state.status !== 'running') throw new FerryError('ESTATE', `container ${name} is no longer running (${rec.state.status}); nothing was frozen`);
  const dir = engine.paths.migrateDump(id);
  const workDir = engine.paths.bundle(id);
  rec.state.op = { name: 'migrate', pid: process.pid, startTime: procStartTime(process.pid), since: new Date().toISOString(), args: { phase: 'freezing', destination: f.destination } };
  engine.save(rec);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.rmSync(path.join(workDir, 'dump.log'), { force: true });
  const peer = { host: f.host, name, lost: f.lost };
  let committing = false;
  let release: (() => Promise<void>) | undefined;
  const tFreeze = performance.now();
  try {
    if (f.tcpEstablished && rec.state.net) {
      rec.state.trafficHeld = true; // recorded first: a repair releases it (or finds nothing to release)
      engine.save(rec);
      release = await holdTraffic(rec.state.net.netnsPath);
    }
    await engine.runtime.pause(id);
    const r = await engine.runtime.checkpoint(id, { imagePath: dir, workPath: workDir, leaveRunning: true, tcpEstablished: f.tcpEstablished, pageServer: `127.0.0.1:${f.pagesPort}` }, (pid) => {
      rec.state.op!.helperPid = pid;
      engine.save(rec);
    });
    debug(`migrate ${name}: dumped in ${(performance.now() - tFreeze).toFixed(1)}ms (exit ${r.code}), memory sent to the page server`);
    if (r.code !== 0) throw criuFailure('checkpoint', name, r.stderr, path.join(workDir, 'dump.log'));
    await writeCheckpointMeta(engine, rec, dir, { tcpEstablished: f.tcpEstablished });
    const exportP = exportCheckpoint(engine, rec, { target: f.target, compression: f.compression, imageDir: dir });
    exportP.catch(() => undefined);
    await archiveSent(exportP.then(() => undefined), exportP, f.reply, f.target, peer);
    debug(`migrate ${name}: archive sent`);
    f.onSent();
    const restored = await restoredReply(f.reply, peer);
    const downtimeMs = performance.now() - tFreeze;
    debug(`migrate ${name}: running on ${f.host} after ${downtimeMs.toFixed(1)}ms of downtime`);

    // 3. Commit. Once it is sent, the frozen copy here must never run again.
    committing = true;
    rec.state.op!.args = { ...rec.state.op!.args, phase: 'committing' };
    engine.save(rec);
    await f.commit();
    await takeDown(engine, rec).catch((e: Error) => process.stderr.write(`ferry: warning: stopping the frozen copy of ${name} here: ${e.message}\n`));
    fs.rmSync(dir, { recursive: true, force: true });
    delete rec.state.op;
    engine.save(rec);
    return { downtimeMs, restored };
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    if (committing) {
      // Nobody knows whether the destination kept it: stay frozen, say so (the error does).
      Object.assign(rec.state, { status: 'paused', error: `a migration to ${f.destination} lost its connection after the commit` });
    } else {
      await engine.runtime.resume(id).catch(() => undefined);
      await release?.().catch(() => undefined);
      delete rec.state.trafficHeld;
    }
    delete rec.state.op;
    engine.save(rec);
    throw e;
  }
}

// ------------------------------------------------------------------------------ lazy (source)

interface LazyDump {
  /** Resolves when CRIU has served every page and exited. */
  done: Promise<void>;
  abort(): void;
}

/**
 * Dumps everything but memory; CRIU then serves pages on 127.0.0.1:port (reached by the
 * destination only through the ssh tunnel or the ferry service's pages connection) until the
 * destination has them all.
 */
async function lazyCheckpoint(engine: Engine, id: string, port: number, tcpEstablished?: boolean, parent?: string): Promise<LazyDump> {
  let result: LazyDump | undefined;
  await engine.withContainer(id, async (rec) => {
    const dir = engine.paths.checkpointDir(id);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const workDir = engine.paths.bundle(id);
    // runc wants a writable descriptor for --status-fd: a FIFO, written by runc, read here.
    const fifo = path.join(engine.paths.runDir(id), 'lazy-status');
    fs.rmSync(fifo, { force: true });
    runSyncOk(['mkfifo', '-m', '600', fifo]);
    const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const writeFd = fs.openSync(fifo, fs.constants.O_WRONLY);
    const status = new net.Socket({ fd: readFd, readable: true, writable: false });
    const child = spawn(
      engine.runtime.runc,
      [...engine.runtime.globalArgs(), 'checkpoint', '--image-path', dir, '--work-path', workDir, '--lazy-pages', '--page-server', `127.0.0.1:${port}`, '--status-fd', '3', ...(tcpEstablished ? ['--tcp-established'] : []), ...(parent ? ['--parent-path', path.join('..', parent)] : []), id],
      { stdio: ['ignore', 'ignore', 'pipe', writeFd], detached: true },
    );
    fs.closeSync(writeFd);
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    exited.then(() => status.destroy());
    const ready = new Promise<void>((resolve, reject) => {
      status.once('data', () => resolve());
      status.on('error', () => undefined);
      exited.then((code) => reject(new FerryError('ECRIU', `lazy checkpoint failed: ${stderr.trim().split('\n').pop() ?? `exit ${code}`} (details: ${path.join(workDir, 'dump.log')})`)));
    });
    await ready;
    // Memory stays on this host, in CRIU, until the destination has faulted it all in.
    await writeCheckpointMeta(engine, rec, dir, { tcpEstablished: !!tcpEstablished, withPrevious: !!parent });
    rec.state.checkpointed = true;
    rec.state.checkpointedAt = new Date().toISOString();
    engine.save(rec);
    result = { done: exited.then(() => undefined), abort: () => child.kill('SIGKILL') };
  });
  return result!;
}

/** A restore's beforeRestore hook that starts `criu lazy-pages` for it, faulting pages in from 127.0.0.1:port. */
function lazyRestoreHook(engine: Engine, port: number, started: (d: ChildProcess) => void): (bundle: string, imageDir: string) => Promise<void> {
  return async (bundle, imageDir) => started(await startLazyPages(engine.runtime.cfg.criuPath ?? 'criu', port, bundle, imageDir));
}

// ------------------------------------------------------------------------------ destination

/**
 * The destination end (`ferry system migrate-receive`): frames in on input, JSON lines out.
 * Everything it makes is removed again unless the source commits.
 */
export interface ReceiveOptions {
  /**
   * The loopback port this host's `criu lazy-pages` dials to reach the source's page server.
   * Default: the port the source sent in hello (its `ssh -R` forward). The service opens one
   * of its own, tunnelled to the source; close() is called when the session ends.
   */
  lazyEndpoint?: (hello: Hello) => Promise<{ port: number; close(): void }>;
  /**
   * Stop-and-copy: the page server listens on this loopback port; the service connects the
   * source's memory tunnel to it. Without it (ssh), the page server listens on the port the
   * source sent in hello (its `ssh -L` forward leads there).
   */
  pageServerTunnel?: (port: number) => { close(): void };
}

export async function receiveMigration(engine: Engine, input: Readable, output: Writable, opts: ReceiveOptions = {}): Promise<number> {
  const endpoints: Endpoint[] = [];
  try {
    return await receive(engine, input, output, opts, (e) => endpoints.push(e));
  } finally {
    for (const e of endpoints.reverse()) await (async () => e.close())().catch(() => undefined);
  }
}

/** Something a session set up that goes when it ends (a tunnel end, a loopback guard). */
interface Endpoint {
  close(): unknown;
}

/** The source's messages, as the destination reads them. */
interface Inbox {
  /**
   * The next message, or undefined when the source has gone (or after ms). A message that
   * fails its check is answered with `error` and ends the session as the source going would.
   */
  next(ms: number): Promise<SourceMessage | undefined>;
  /** The archive that follows an `image`, `pre-dump` or `archive` message. */
  archive(): Readable;
}

async function receive(engine: Engine, input: Readable, output: Writable, opts: ReceiveOptions, setEndpoint: (e: Endpoint) => void): Promise<number> {
  const frames = new FrameReader(input, parseSourceMessage);
  const reply = (m: Reply): void => {
    output.write(JSON.stringify(m) + '\n');
  };
  const inbox: Inbox = {
    next: (ms) =>
      frames.next(ms).catch((e: Error) => {
        reply({ type: 'error', message: e.message });
        return undefined;
      }),
    archive: () => frames.archive(),
  };
  const hello = await inbox.next(REPLY_TIMEOUT_MS);
  if (!hello || hello.type !== 'hello') return 1;
  // What arrives besides the archive (pre-copy rounds, the page server's memory images) is
  // kept here until the archive's checkpoint claims it. Named like an import's staging dir,
  // so that a later ferry sweeps it if this one is killed.
  const stage = path.join(engine.paths.root, `.import-${process.pid}-migrate-${randomBytes(6).toString('hex')}`);
  const session: { pageServer?: PageServer } = {};
  try {
    return await receiveChecked(engine, inbox, reply, hello, opts, stage, session, setEndpoint);
  } finally {
    session.pageServer?.kill();
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/** Checks everything before the source freezes anything; then the image if asked, then the archive. */
async function receiveChecked(
  engine: Engine,
  frames: Inbox,
  reply: (m: Reply) => void,
  hello: Hello,
  opts: ReceiveOptions,
  stage: string,
  session: { pageServer?: PageServer },
  setEndpoint: (e: Endpoint) => void,
): Promise<number> {
  const name = hello.name;
  let lazyPort = hello.lazyPort;
  let needImage = false;
  try {
    // 1. Checks, before the source freezes anything.
    const criu = await engine.criu();
    if (!criu.version || !criu.features.check) throw new FerryError('EDEPEND', 'CRIU does not work on this host: run `npm run setup`');
    if (hello.criuVersion !== criu.version) throw new FerryError('EINVAL', `the source has CRIU ${String(hello.criuVersion)}, this host has ${criu.version}: use the same version on both`);
    if (hello.arch !== process.arch) throw new FerryError('EINVAL', `the source is ${hello.arch}, this host is ${process.arch}`);
    needImage = !engine.images.list().some((i) => i.Id === hello.imageId);
    if (needImage && !hello.withImage) {
      throw new FerryError('ENOTFOUND', `image ${hello.imageName} is not on ${os.hostname()}: import it there first, or migrate with --with-image`);
    }
    if (engine.find(name)) throw new FerryError('EEXIST', `the name ${name} is already in use on ${os.hostname()}`);
    for (const v of hello.volumes) {
      if (engine.volumes.find(v)) throw new FerryError('EEXIST', `volume ${v} already exists on ${os.hostname()}: remove it there first (the container brings its own)`);
    }
    if (hello.network && !engine.networks.find(hello.network)) throw new FerryError('ENOTFOUND', `network ${hello.network} does not exist on ${os.hostname()}`);
    if (hello.ip && hello.network) {
      const holder = (await engine.list()).find((r) => r.state.net?.ip === hello.ip);
      if (holder) throw new FerryError('EEXIST', `IP address ${hello.ip} is in use by container ${holder.config.name} on ${os.hostname()}`);
    }
    if (hello.lazy && !(criu.features.uffdNoncoop && criu.features.lazyPipeSize)) {
      throw new FerryError('EUNSUPPORTED', criu.features.uffdNoncoop ? `fs.pipe-max-size is below 4194304 on ${os.hostname()}: run \`npm run setup\` there` : `${os.hostname()} lacks userfaultfd for lazy pages`);
    }
    // The memory tunnel's loopback ends take the first connection that comes: only root (and
    // the user who ssh'd in to sudo this ferry, whose sshd makes the tunnel's connections).
    const guard = async (port: number): Promise<void> => setEndpoint({ close: await guardLoopbackPort(port, sudoUid()) });
    if (hello.lazy || hello.pageServer) await sweepLoopbackGuards((pid) => processAlive(pid));
    if (hello.lazy && opts.lazyEndpoint) {
      const ep = await opts.lazyEndpoint(hello);
      setEndpoint(ep);
      lazyPort = ep.port;
    }
    if (hello.lazy) {
      if (!isTunnelPort(lazyPort)) throw new FerryError('EINVAL', `invalid lazy pages port ${String(lazyPort)}`);
      await guard(lazyPort);
    }
    if (hello.pageServer) {
      // Stop-and-copy: the source's CRIU sends the memory here while it dumps.
      const port = opts.pageServerTunnel ? await freePort() : hello.pageServerPort;
      if (!isTunnelPort(port)) throw new FerryError('EINVAL', `invalid page server port ${String(port)}`);
      await guard(port);
      session.pageServer = await startPageServer(engine.runtime.cfg.criuPath ?? 'criu', stage, port);
      if (opts.pageServerTunnel) setEndpoint(opts.pageServerTunnel(port));
    }
    reply({ type: 'ready', needImage });
    debug(`receive ${name}: ready`);
  } catch (e) {
    reply({ type: 'error', message: (e as Error).message });
    return 1;
  }
  if (needImage) {
    const m = await frames.next(REPLY_TIMEOUT_MS);
    if (!m || m.type !== 'image') return 1;
    try {
      await engine.images.receive(m.image, frames.archive());
      reply({ type: 'image-stored' });
    } catch (e) {
      reply({ type: 'error', message: (e as Error).message });
      return 1;
    }
  }

  return receiveArchive(engine, frames, reply, hello, stage, lazyPort, session.pageServer);
}

/** The user sudo ran this ferry for, if any. */
function sudoUid(): number[] {
  const u = Number(process.env.SUDO_UID);
  return process.env.SUDO_UID && Number.isInteger(u) && u > 0 ? [u] : [];
}

async function receiveArchive(engine: Engine, frames: Inbox, reply: (m: Reply) => void, hello: Hello, stage: string, lazyPort: number | undefined, pageServer: PageServer | undefined): Promise<number> {
  let lazyDaemon: ChildProcess | undefined;
  const preDumps: string[] = [];
  let begin = await frames.next(REPLY_TIMEOUT_MS);
  while (begin?.type === 'pre-dump') {
    const k = preDumps.length + 1;
    try {
      if (begin.round !== k) throw new FerryError('EINVAL', `pre-copy round ${begin.round} came when round ${k} was due`);
      const dir = path.join(stage, String(k));
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const r = await readArchive(frames.archive(), dir, {
        onHeader: (h) => {
          if (h.kind !== PRE_DUMP_KIND || h.round !== k) throw new FerryError('EARCHIVE', `pre-copy round ${k} is not a pre-dump archive`);
        },
      });
      if ([...r.sections].some((sec) => sec !== `parents/${k}`)) throw new FerryError('EARCHIVE', `pre-copy round ${k} holds more than its pre-dump`);
      preDumps.push(path.join(dir, 'parents', String(k)));
      reply({ type: 'pre-dump-stored', round: k });
      debug(`receive ${hello.name}: pre-copy round ${k} stored`);
    } catch (e) {
      reply({ type: 'error', message: (e as Error).message });
      return 1;
    }
    begin = await frames.next(REPLY_TIMEOUT_MS);
  }

  // 2. The archive, straight into a new container, restored.
  if (!begin || begin.type !== 'archive') return 1;
  debug(`receive ${hello.name}: archive begins`);
  let id: string | undefined;
  // While the source dumps, say how much memory has arrived (its progress bar shows it).
  let pageBytes = 0;
  const ticker = pageServer ? setInterval(() => reply({ type: 'progress', pageBytes: pageImageBytes(pageServer.dir) }), 250) : undefined;
  void pageServer?.done.then(() => clearInterval(ticker));
  try {
    const r = await importCheckpoint(engine, {
      source: frames.archive(),
      tcpEstablished: undefined,
      beforeRestore: hello.lazy && lazyPort ? lazyRestoreHook(engine, lazyPort, (d) => (lazyDaemon = d)) : undefined,
      lazyPages: hello.lazy,
      preDumps,
      pageImages: pageServer
        ? async () => {
            const code = await withTimeout(pageServer.done, PAGE_SERVER_FINISH_MS);
            if (code !== 0) throw new FerryError('ECRIU', `the page server receiving the memory ${code === undefined ? 'did not finish' : `failed (exit ${code})`}: ${criuLogReason(pageServer.log) ?? 'no log'}`);
            pageBytes = pageImageBytes(pageServer.dir);
            return pageServer.dir;
          }
        : undefined,
    });
    id = r.id;
    clearInterval(ticker);
    reply({ type: 'restored', id, pageBytes });
    debug(`receive ${hello.name}: restored`);
  } catch (e) {
    clearInterval(ticker);
    lazyDaemon?.kill('SIGKILL');
    reply({ type: 'error', message: (e as Error).message });
    return 1;
  }

  // 3. Keep it only if the source commits; otherwise remove it (exactly once).
  const commit = await frames.next(COMMIT_TIMEOUT_MS);
  if (!commit || commit.type !== 'commit') {
    lazyDaemon?.kill('SIGKILL');
    await engine.remove(id, { force: true }).catch(() => undefined);
    return 1;
  }
  reply({ type: 'committed' });
  if (lazyDaemon) {
    const d = lazyDaemon;
    await new Promise<void>((resolve) => (d.exitCode !== null ? resolve() : d.on('close', () => resolve())));
    reply({ type: 'pages-done' });
  }
  await frames.next(BYE_TIMEOUT_MS); // bye
  return 0;
}

