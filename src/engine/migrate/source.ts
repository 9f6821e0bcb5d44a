/**
 * The source end of a live migration (`ferry migrate CTR ssh://host | ferry://host:port`),
 * as the sequence of its phases (the messages are in protocol.ts). Each phase registers what
 * a failure from then on undoes (its rollback) before it does anything that needs one; the
 * one catch runs the rollback registered last:
 *
 *   phase                                   a failure from then on
 *   1. connect; the destination checks      nothing here was touched
 *   2. (--with-image) the image first       nothing here was touched
 *   3. (--pre-copy) rounds while running    the container runs on; its rounds are dropped
 *   4. freeze and send:
 *      stop-and-copy                        the frozen container is thawed (frozenStopAndCopy
 *                                           does it, under the container's lock)
 *      after pre-copy                       the container is restored from its local checkpoint
 *                                           if the dump got that far
 *      lazy                                 the lazy dump's CRIU, which holds the container and
 *                                           all its memory here, is stopped: it runs on
 *   5. commit, once sent                    nobody can know whether it arrived: the container
 *                                           stays stopped here (paused, or checkpointed) and the
 *                                           error says how to find out and what to do
 *   6. committed: clean up here             nothing to undo: the container runs there
 *
 * Before the commit is sent, every rollback first tells the destination to drop what it made
 * (abort; it does so as well when the channel closes or the commit does not come). So the
 * container runs in exactly one place in the end, or, if the channel is lost after the commit
 * was sent, in at most one, and the error says which to check.
 *
 * Memory travels by the mode (PagesMode): stop-and-copy sends it from CRIU's dump straight to
 * a page server on the destination, through the link's tunnel, and the archive carries the
 * rest; --lazy sends the archive without it and serves the destination's page faults from a
 * page server here until every page has gone; after --pre-copy it is in the archive (only what
 * changed since the last round).
 *
 * Post-copy caveat: once a --lazy destination runs the container, its memory still partly
 * lives on the source until every page is sent; losing the source then loses the container.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../../lib/errors.js';
import { debug } from '../../lib/log.js';
import { processAlive, waitExit } from '../../lib/proc.js';
import { withTimeout } from '../../lib/async.js';
import { freePort } from '../../lib/net.js';
import { countingTap } from '../../lib/stream.js';
import { FrameWriter, LineReader } from '../../drivers/transport/channel.js';
import { openLink, parseDestination, type DestinationOptions, type Link, type PagesMode } from '../../drivers/transport/link.js';
import type { Compression } from '../../drivers/archive/compress.js';
import { requireCapability, type CriuInfo } from '../../drivers/criu/criu.js';
import { startLazyPages } from '../../drivers/criu/daemons.js';
import { residentBytes } from '../../drivers/runtime/runc.js';
import { HEADER_MEMBER, warmUp } from '../../drivers/archive/archive.js';
import { randomBytes } from '../../lib/lazy.js';
import { guardLoopbackPort, holdTraffic, sweepLoopbackGuards } from '../../drivers/network/cni.js';
import { checkpoint } from '../checkpoint.js';
import { checkpointMetaOptions, pageImageBytes, removePreDumps } from '../checkpoint-dir.js';
import { dump, refuseUndumpable } from '../dump.js';
import { restore } from '../restore.js';
import { toCheckpointed, toPaused } from '../state.js';
import { reclaimBeforeCommit } from './repair.js';
import { exportCheckpoint, writeArchive } from '../portable.js';
import { takeDown } from '../pods.js';
import type { ContainerRecord } from '../types.js';
import type { Engine } from '../engine.js';
import { COMMIT_TIMEOUT_MS, PRE_DUMP_KIND, REPLY_TIMEOUT_MS, parseReply, type Ready, type Reply, type Restored, type SourceMessage } from './protocol.js';
import { anotherPreCopyRound, checkPreCopyRounds } from './precopy.js';
import { writeErr } from '../../lib/stdio.js';

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

export async function migrate(engine: Engine, ref: string, o: MigrateOptions): Promise<MigrateReport> {
  const t0 = performance.now();
  checkPreCopyRounds(o.preCopy);
  const dest = parseDestination(o);
  const rec = await engine.inspect(ref);
  refuseImmovable(rec);
  const criu = await engine.criu();
  refuseUnsupported(criu, o);
  // Stop-and-copy sends memory from CRIU to a CRIU page server on the destination while it
  // dumps, through the link's tunnel; the archive then carries everything else. Not for a
  // container with little memory: there CRIU's page-server client costs more than it saves (it
  // corks its socket and sends its last command unpushed, so each dump waits ~200 ms for TCP's
  // cork timer), and the pages simply go in the archive.
  const pages: PagesMode = o.lazy ? 'lazy' : o.preCopy || residentBytes(rec.state.pid) < PAGE_SERVER_MIN_BYTES ? 'none' : 'page-server';

  o.onProgress?.({ phase: 'connecting', bytes: 0 });
  const pagesPort = pages === 'none' ? 0 : await freePort();
  // CRIU's ends of the memory tunnel take the first connection that comes: only root may make it.
  await sweepLoopbackGuards((pid) => processAlive(pid));
  const unguard = pages === 'none' ? undefined : await guardLoopbackPort(pagesPort, []);
  try {
    // The checkpoint's metadata names runc's version: asked now (and cached), not while frozen.
    const runcVersion = engine.runtimeVersion().catch(() => undefined);
    // The archive's code run once on a tiny archive, so that its first run is not in the window.
    const warm = warmUp(path.join(engine.paths.root, `.import-${process.pid}-warm-${randomBytes(4).toString('hex')}`), { read: false }).catch(() => undefined);
    const link = await openLink(dest, o, pages, pagesPort);
    await Promise.all([runcVersion, warm]);
    return await runPhases(new Session(engine, o, { rec, host: dest.host, criu, pages, pagesPort, t0 }, link));
  } finally {
    await unguard?.().catch(() => undefined);
  }
}

/**
 * Below this much resident memory a stop-and-copy migration sends the pages in its archive
 * rather than through a page server. Measured here (bench/README.md): a tiny container's
 * downtime is ~190 ms shorter without the page server; at 64 MiB the page server's overlap of
 * dumping and sending saves ~480 ms of the total.
 */
export const PAGE_SERVER_MIN_BYTES = 16 << 20;

/** What cannot move to another host at all, refused before anything else happens. */
function refuseImmovable(rec: ContainerRecord): void {
  const name = rec.config.name;
  if (rec.state.status !== 'running') throw new FerryError('ESTATE', `container ${name} is not running: only a running container can be migrated`);
  refuseUndumpable(rec);
  if (rec.config.network?.mode === 'host') throw new FerryError('EUNSUPPORTED', `container ${name} uses the host's network, which cannot move to another host`);
  if (rec.config.mounts.some((m) => m.type === 'bind')) {
    throw new FerryError('EUNSUPPORTED', `container ${name} bind-mounts host paths (${rec.config.mounts.filter((m) => m.type === 'bind').map((m) => m.source).join(', ')}), which do not move with it: use named volumes`);
  }
  if (rec.config.pod) {
    throw new FerryError('EUNSUPPORTED', `container ${name} is in a pod, whose namespaces stay here: export it and restore it with --import --pod on the other host`);
  }
}

/** What this host's kernel and CRIU cannot do of what was asked. */
function refuseUnsupported(criu: CriuInfo, o: MigrateOptions): void {
  if (o.preCopy !== undefined) requireCapability(criu, 'preCopy', 'migrate without --pre-copy, or with --lazy');
  if (o.lazy) requireCapability(criu, 'lazyPages', 'migrate without --lazy');
}

/** What migrate() has decided before it connects. */
interface Plan {
  rec: ContainerRecord;
  /** For messages: the destination's host. */
  host: string;
  criu: CriuInfo;
  pages: PagesMode;
  /** This host's loopback end of the memory tunnel (0 when memory goes in the archive). */
  pagesPort: number;
  t0: number;
}

// ------------------------------------------------------------------------------ phases

/** One migration in progress, as its phases share it. */
class Session {
  readonly writer: FrameWriter<SourceMessage>;
  readonly replies: LineReader<Reply>;
  /** Archive bytes sent so far. */
  bytes = 0;
  /** What the destination's page server has received so far (it says so while the dump runs). */
  pageBytes = 0;
  readonly rounds: PreCopyRound[] = [];
  /** What a failure now undoes: each phase registers its own (onFailure). */
  rollback: Rollback = { kind: 'untouched' };
  /** The final dump, lazy or after pre-copy, which may still be settling when the archive has gone. */
  dump?: Promise<unknown>;

  constructor(
    readonly engine: Engine,
    readonly o: MigrateOptions,
    readonly p: Plan,
    readonly link: Link,
  ) {
    this.writer = new FrameWriter<SourceMessage>(link.output);
    this.replies = new LineReader(link.input, parseReply);
    this.replies.onProgress = (m) => {
      this.pageBytes = m.pageBytes;
      this.progress('transferring', this.bytes + this.pageBytes);
    };
  }

  get id(): string {
    return this.p.rec.config.id;
  }

  get name(): string {
    return this.p.rec.config.name;
  }

  get host(): string {
    return this.p.host;
  }

  onFailure(r: Rollback): void {
    this.rollback = r;
  }

  progress(phase: Progress['phase'], bytes = 0): void {
    this.o.onProgress?.({ phase, bytes });
  }

  lost(): FerryError {
    const why = this.link.lostReason();
    return new FerryError('ERUNTIME', `lost the connection to ${this.link.where}${why ? `: ${why}` : ''}`);
  }

  peer(): Peer {
    return { host: this.host, name: this.name, lost: () => this.lost() };
  }

  /** The destination's next reply, to be awaited later: a refused one rejects only where it is awaited. */
  laterReply(): Promise<Reply | undefined> {
    const p = this.replies.next();
    p.catch(() => undefined);
    return p;
  }

  /** An archive's way out, counted into bytes and the progress of phase. */
  dataStream(phase: Progress['phase']): Writable {
    const data = this.writer.dataStream();
    data.on('error', () => undefined); // destroyed on purpose when the destination gives up
    return countingTap(data, (n) => {
      this.bytes += n;
      this.progress(phase, this.bytes);
    });
  }
}

/** The phases in order; a failure in any runs the rollback registered last. */
async function runPhases(s: Session): Promise<MigrateReport> {
  try {
    const ready = await connectAndCheck(s);
    if (ready.needImage) await sendImage(s, new Set(ready.haveLayers));
    const parent = await preCopy(s);
    const moved = await freezeAndSend(s, parent);
    // Stop-and-copy has committed already, from under the frozen container's lock.
    if (!moved.committed) await commit(s);
    return await cleanUp(s, moved);
  } catch (e) {
    throw await rollBack(s, e as Error);
  }
}

/** 1. hello, and the destination checks everything before anything is frozen. Rollback: untouched. */
async function connectAndCheck(s: Session): Promise<Ready> {
  const { rec, criu, pages } = s.p;
  s.onFailure({ kind: 'untouched' });
  const meta = rec.state.address;
  const remotePort = s.link.remotePagesPort || undefined; // none: the receiver picks its own
  await s.writer.send({
    type: 'hello',
    name: s.name,
    imageId: rec.config.imageId,
    imageName: rec.config.imageName,
    network: rec.config.network?.mode === 'bridge' ? rec.config.network.name ?? 'ferry' : undefined,
    ip: meta?.ip,
    criuVersion: criu.version,
    arch: process.arch,
    lazy: !!s.o.lazy,
    lazyPort: pages === 'lazy' ? remotePort : undefined,
    pageServer: pages === 'page-server',
    pageServerPort: pages === 'page-server' ? remotePort : undefined,
    withImage: !!s.o.withImage,
    imageLayers: s.o.withImage ? s.engine.images.list().find((i) => i.Id === rec.config.imageId)?.Layers : undefined,
    volumes: rec.config.mounts.filter((m) => m.type === 'volume').map((m) => m.source),
  });
  s.progress('checking');
  const ready = await s.replies.next(REPLY_TIMEOUT_MS);
  if (!ready) throw s.lost();
  if (ready.type === 'error') throw new FerryError('ESTATE', `${s.host} refused the migration: ${ready.message}; ${s.name} was not touched`);
  if (ready.type !== 'ready') throw new FerryError('ERUNTIME', `unexpected reply from ${s.host}: ${ready.type}`);
  await s.link.ready();
  debug(`migrate ${s.name}: ${s.host} is ready`);
  return ready;
}

/** 2. --with-image: the image's rootfs goes first, while the container still runs. Rollback: untouched. */
async function sendImage(s: Session, haveLayers: Set<string>): Promise<void> {
  s.progress('transferring');
  const img = s.engine.images.list().find((i) => i.Id === s.p.rec.config.imageId);
  if (!img) throw new FerryError('ENOTFOUND', `the image of ${s.name} is gone from this host`);
  await s.writer.send({ type: 'image', image: img });
  // Only the layers the destination lacks (a shared base layer is not sent again).
  const src = s.engine.images.send(img.Id, haveLayers);
  debug(`migrate ${s.name}: sending image ${img.Id.slice(0, 12)}: ${img.Layers.filter((l) => !haveLayers.has(l)).length} of ${img.Layers.length} layers`);
  const sink = s.writer.dataStream();
  await Promise.all([pipeline(src.stream, sink), src.done]);
  const got = await s.replies.next(REPLY_TIMEOUT_MS);
  if (!got) throw s.lost();
  if (got.type === 'error') throw new FerryError('ESTATE', `${s.host} could not store the image: ${got.message}; ${s.name} was not touched`);
  if (got.type !== 'image-stored') throw new FerryError('ERUNTIME', `unexpected reply from ${s.host}: ${got.type}`);
}

/**
 * 3. (--pre-copy) Rounds of memory while the container runs, each only what changed since
 * the round before, until they stop converging. Resolves with the last round's dir (the
 * final dump's parent). Rollback, once a round is written: drop the rounds.
 */
async function preCopy(s: Session): Promise<string | undefined> {
  const { engine, o, name } = s;
  const id = s.id;
  let parent: string | undefined;
  for (let k = 1; o.preCopy && (k === 1 || anotherPreCopyRound(s.rounds.map((r) => r.pages), o.preCopy)); k++) {
    s.progress('pre-copy', s.bytes);
    const tr = performance.now();
    const before = s.bytes;
    const dir = `pre-${k}`;
    await checkpoint(engine, id, { preCheckpoint: true, preDumpDir: dir, parentDir: parent });
    s.onFailure({ kind: 'drop-rounds' });
    parent = dir;
    const pages = Math.ceil(pageImageBytes(path.join(engine.paths.containerDir(id), dir)) / 4096);
    await s.writer.send({ type: 'pre-dump', round: k });
    await writeArchive(
      s.dataStream('pre-copy'),
      o.compression ?? 'zstd',
      async (w) => {
        await w.addJson(HEADER_MEMBER, { format: w.format, kind: PRE_DUMP_KIND, round: k, container: name });
        await w.addPlainDir(`parents/${k}`, path.join(engine.paths.containerDir(id), dir));
      },
      (why) => new FerryError('ERUNTIME', `sending pre-copy round ${k} failed: ${why}`),
    );
    const stored = await s.replies.next(REPLY_TIMEOUT_MS);
    if (!stored) throw s.lost();
    if (stored.type === 'error') throw new FerryError('ESTATE', `${s.host} could not store pre-copy round ${k}: ${stored.message}`);
    if (stored.type !== 'pre-dump-stored' || stored.round !== k) throw new FerryError('ERUNTIME', `unexpected reply from ${s.host}: ${stored.type}`);
    s.rounds.push({ pages, bytes: s.bytes - before, ms: performance.now() - tr });
    debug(`migrate ${name}: pre-copy round ${k}: ${pages} pages, ${s.bytes - before} bytes`);
  }
  return parent;
}

/** How the container got to the destination. */
interface Moved {
  downtimeMs: number;
  restored: Restored;
  /** Stop-and-copy commits before its frozen copy is taken down, under the container's lock. */
  committed: boolean;
  /** (lazy) CRIU here, serving the destination's page faults until it has every page. */
  lazyDump?: LazyDump;
}

/** 4. Freeze and send, until the destination runs the container. */
async function freezeAndSend(s: Session, parent: string | undefined): Promise<Moved> {
  s.progress('freezing', s.bytes);
  debug(`migrate ${s.name}: freezing`);
  const counted = s.dataStream('transferring');
  await s.writer.send({ type: 'archive' });
  return s.p.pages === 'page-server' ? stopAndCopy(s, counted) : dumpAndSend(s, counted, parent);
}

/**
 * Stop-and-copy: frozen, dumped to the destination's page server, the rest as the archive;
 * then (5.) commit, before the frozen copy is taken down. Rollback: thawed.
 */
async function stopAndCopy(s: Session, counted: Writable): Promise<Moved> {
  const { engine, o } = s;
  s.onFailure({ kind: 'thawed' });
  const { downtimeMs, restored } = await engine.withContainer(s.id, (locked) =>
    frozenStopAndCopy(engine, locked, {
      pagesPort: s.p.pagesPort,
      tcpEstablished: o.tcpEstablished,
      target: counted,
      compression: o.compression ?? 'zstd',
      reply: s.laterReply(),
      host: s.host,
      destination: o.destination,
      lost: () => s.lost(),
      commit: () => commit(s),
      onSent: () => s.progress('restoring', s.bytes + s.pageBytes),
    }),
  );
  s.pageBytes = restored.pageBytes || s.pageBytes;
  return { downtimeMs, restored, committed: true };
}

/**
 * Lazy, or after pre-copy: the final dump here (with parent the last round), streamed as
 * the archive. Rollback: restore from the local checkpoint (lazy: with the memory served from
 * here) if the dump got that far; otherwise the container still runs, and its rounds go.
 */
async function dumpAndSend(s: Session, counted: Writable, parent: string | undefined): Promise<Moved> {
  const { engine, o, name } = s;
  const rounds = parent !== undefined;
  s.onFailure({ kind: 'restore', lazy: false, rounds });
  const tFreeze = performance.now();
  // The destination may answer (fail) while we still stream: watch for that, or a stalled
  // channel would block the export forever.
  const replyP = s.laterReply();
  let lazyDump: LazyDump | undefined;
  const exportP = (async () => {
    // Small unless it carries the memory that changed since the last pre-copy round: compressed here.
    const target = { target: counted, compression: o.compression ?? 'zstd', withoutPreDumps: true, inProcess: !!o.lazy || !rounds } as const;
    if (o.lazy) {
      lazyDump = await lazyCheckpoint(engine, s.id, s.p.pagesPort, o.destination, {
        tcpEstablished: o.tcpEstablished,
        parent,
        // Its memory is in the page server here now, and nowhere else.
        onDumped: () => s.onFailure({ kind: 'restore', lazy: true, rounds }),
        send: (r) => exportCheckpoint(engine, r, target),
      });
    } else {
      await checkpoint(engine, s.id, { tcpEstablished: o.tcpEstablished, withPrevious: !!parent, parentDir: parent, export: target });
    }
  })();
  s.dump = exportP;
  exportP.catch(() => undefined);
  // The archive is complete once its stream has ended; the checkpoint may still be releasing
  // the source's runtime then, which the destination does not wait for.
  const sent = new Promise<void>((resolve) => counted.once('finish', () => resolve()));
  await archiveSent(sent, exportP, replyP, counted, s.peer());
  s.progress('restoring', s.bytes);
  debug(`migrate ${name}: archive sent (${s.bytes} bytes)`);
  const restored = await restoredReply(replyP, s.peer());
  // From the freeze itself (a lazy dump's lock and op record come before it, the container
  // still running): the same moment the stop-and-copy's figure starts from.
  const downtimeMs = performance.now() - (lazyDump?.frozenAt ?? tFreeze);
  debug(`migrate ${name}: running on ${s.host} after ${downtimeMs.toFixed(1)}ms of downtime`);
  return { downtimeMs, restored, committed: false, lazyDump };
}

/**
 * 5. Commit. A failure to send it leaves the phase before's rollback; once it is sent the
 * rollback is to keep the container stopped here (nobody knows whether it arrived), and once
 * `committed` comes the destination owns the container.
 */
async function commit(s: Session): Promise<void> {
  s.progress('committing', s.bytes + s.pageBytes);
  // A lazy dump's op says from here on that the destination may own the container (repair.ts).
  if (s.p.pages === 'lazy') await s.engine.withContainer(s.id, async (r) => s.engine.updateOp(r, 'migrate', { phase: 'committing' }));
  const before = s.rollback;
  await s.writer.send({ type: 'commit' });
  s.onFailure({ kind: 'keep' });
  const committed = await s.replies.next(COMMIT_TIMEOUT_MS).catch(() => undefined);
  if (committed?.type === 'error') {
    // The destination said it did not keep the container (its restore failed after it had
    // said `restored`: the container was running there for a moment and is gone again): the
    // rollback from before the commit applies.
    s.onFailure(before);
    throw new NotKept('ECRIU', `${s.host} could not keep ${s.name}: ${committed.message}`);
  }
  if (committed?.type !== 'committed') {
    const name = s.name;
    const here =
      s.p.pages === 'page-server'
        ? `if it does not run there, \`ferry unpause ${name}\` here (it is paused here); if it does, \`ferry rm -f ${name}\` here`
        : `if it does not run, \`ferry container restore ${name}\` here (its checkpoint is kept)`;
    throw new FerryError('ERUNTIME', `the connection to ${s.host} was lost after the commit was sent: ${name} may be running there. Check with \`ferry ps\` there; ${here}`);
  }
  s.onFailure({ kind: 'done' });
}

/**
 * 6. The container lives on the destination only now (lazy: once every page has gone), and so
 * do its volumes' data: volumes no other container here uses moved with it. Rollback: none.
 */
async function cleanUp(s: Session, moved: Moved): Promise<MigrateReport> {
  const { engine, o, p, name } = s;
  if (moved.lazyDump) {
    s.progress('pages', s.bytes);
    await moved.lazyDump.done; // every page has been served
    const pagesDone = await s.replies.next(REPLY_TIMEOUT_MS).catch((e: Error) => ({ type: 'error' as const, message: e.message }));
    if (pagesDone?.type === 'error') writeErr(`ferry: warning: ${pagesDone.message}\n`);
  }
  s.bytes += s.pageBytes;
  const late = await s.dump?.then(() => undefined, (e: Error) => e);
  if (late) writeErr(`ferry: warning: after the checkpoint of ${name}: ${late.message}\n`);
  engine.event(p.rec, 'migrate', { destination: o.destination });
  await engine.remove(s.id, { force: true });
  const others = await engine.list({ all: true });
  for (const m of p.rec.config.mounts) {
    if (m.type !== 'volume' || others.some((r) => r.config.mounts.some((x) => x.type === 'volume' && x.source === m.source))) continue;
    await engine.removeVolume(m.source).catch(() => undefined);
  }
  await s.writer.send({ type: 'bye' }).catch(() => undefined);
  s.link.end();
  s.progress('done', s.bytes);
  const mode = o.preCopy ? (o.lazy ? 'pre-copy+lazy' : 'pre-copy') : o.lazy ? 'lazy' : 'stop-and-copy';
  return { container: name, destination: o.destination, mode, downtimeMs: moved.downtimeMs, totalMs: performance.now() - p.t0, bytesSent: s.bytes, newId: moved.restored.id, preCopyRounds: s.rounds };
}

// ------------------------------------------------------------------------------ rollback

/** The destination answered the commit with an error: it has removed what it made. */
class NotKept extends FerryError {}

/** What a failure undoes, registered by the phase the migration is in (see the table above). */
export type Rollback =
  /** Nothing here was touched (connecting, checking, sending the image). */
  | { kind: 'untouched' }
  /** Pre-copy rounds were written here while the container ran on: drop them. */
  | { kind: 'drop-rounds' }
  /** Stop-and-copy: the frozen container has been thawed by frozenStopAndCopy before it threw. */
  | { kind: 'thawed' }
  /**
   * The final dump (lazy, or after pre-copy): restore the container from its local checkpoint
   * if the dump got that far; otherwise it still runs, and the pre-copy rounds (if any) are
   * dropped. A lazy dump's CRIU still holds the container with its memory: it is stopped, and
   * the container runs on (reclaimBeforeCommit).
   */
  | { kind: 'restore'; lazy: boolean; rounds: boolean }
  /** The commit was sent and no answer came: keep the container stopped here and say so. */
  | { kind: 'keep' }
  /** Committed: the destination owns the container; nothing to undo. */
  | { kind: 'done' };

/** The container here as a rollback before the commit finds it. */
export interface Observed {
  status: string;
  checkpointed: boolean;
}

/** What a rollback before the commit does here. */
export interface LocalRollback {
  action: 'nothing' | 'restore' | 'restore-lazy' | 'reclaim-lazy' | 'drop-rounds';
  /** The container runs here again once the action has succeeded (or already does). */
  runsHere: boolean;
}

/** What a rollback registered before the commit does here, given how it finds the container (undefined: gone). */
export function localRollback(r: Exclude<Rollback, { kind: 'keep' | 'done' }>, now: Observed | undefined): LocalRollback {
  const running = now?.status === 'running';
  switch (r.kind) {
    case 'untouched':
      return { action: 'nothing', runsHere: false };
    case 'drop-rounds':
      return { action: running ? 'drop-rounds' : 'nothing', runsHere: false };
    case 'thawed':
      return { action: 'nothing', runsHere: running };
    case 'restore':
      // Running and checkpointed: a lazy dump's CRIU holds it, memory and all.
      if (r.lazy && running && now.checkpointed) return { action: 'reclaim-lazy', runsHere: true };
      if (now && !running && now.checkpointed) return { action: r.lazy ? 'restore-lazy' : 'restore', runsHere: true };
      return { action: running && r.rounds ? 'drop-rounds' : 'nothing', runsHere: false };
  }
}

/** Runs the registered rollback for error e; resolves with the error to throw. */
async function rollBack(s: Session, e: Error): Promise<Error> {
  const code = (e as FerryError).code ?? 'ERUNTIME';
  if (s.rollback.kind === 'keep') {
    s.link.destroy();
    return e; // it says what happened and what to do
  }
  if (s.rollback.kind === 'done') {
    s.link.end();
    await s.link.closed(5000);
    return new FerryError(code, `${s.name} runs on ${s.host} now, but cleaning up here failed: ${e.message}`);
  }
  // Before commit: tell the destination to drop what it made, and let the dump (which may
  // still be releasing the runtime) settle before looking at the container.
  await s.writer.send({ type: 'abort' }).catch(() => undefined);
  s.link.end();
  await s.dump?.catch(() => undefined);
  const now = await s.engine.inspect(s.id).catch(() => undefined);
  // Read only now: the final dump's phase registers its lazy rollback once the dump is taken.
  const r = localRollback(s.rollback, now && { status: now.state.status, checkpointed: !!now.state.checkpointed });
  let runsHere = r.runsHere;
  if (r.action === 'restore' || r.action === 'restore-lazy') runsHere = await restoreHere(s, r.action === 'restore-lazy');
  else if (r.action === 'reclaim-lazy') runsHere = await reclaimHere(s);
  else if (r.action === 'drop-rounds') await dropRounds(s);
  await s.link.closed(5000);
  return new FerryError(code, `migration of ${s.name} failed: ${e.message}${runsHere ? `; ${s.name} is running here again` : ''}`);
}

/** Runs the container here again from its local checkpoint; lazy: faulting its memory in from the page server here. */
async function restoreHere(s: Session, lazy: boolean): Promise<boolean> {
  let localDaemon: ChildProcess | undefined;
  const beforeRestore = lazy
    ? async (bundle: string, imageDir: string): Promise<void> => {
        localDaemon = await startLazyPages(s.engine.runtime.cfg.criuPath ?? 'criu', s.p.pagesPort, bundle, imageDir);
      }
    : undefined;
  const ok = await restore(s.engine, s.id, { beforeRestore, lazyPages: lazy }).then(
    () => true,
    (re: Error) => {
      writeErr(`ferry: could not restart ${s.name} here: ${re.message}\n`);
      return false;
    },
  );
  if (localDaemon) await waitExit(localDaemon, 120_000);
  return ok;
}

/** Stops the lazy dump that holds the container here: it runs on (its rounds, if any, go too). */
async function reclaimHere(s: Session): Promise<boolean> {
  return s.engine
    .withContainer(s.id, async (rec) => {
      await reclaimBeforeCommit(s.engine, rec, { stopCriu: true, dropLazyImages: true });
      removePreDumps(s.engine.paths.containerDir(s.id));
      s.engine.endOp(rec);
      return true;
    })
    .catch((re: Error) => {
      writeErr(`ferry: could not take ${s.name} back from its lazy dump here: ${re.message}\n`);
      return false;
    });
}

/** The container runs on here: its pre-copy rounds are of no more use. */
async function dropRounds(s: Session): Promise<void> {
  await s.engine.withContainer(s.id, async () => removePreDumps(s.engine.paths.containerDir(s.id))).catch(() => undefined);
}

// ------------------------------------------------------------------------------ freeze

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
  /** Sends commit and waits for committed; throws when no answer comes (the frozen copy then stays paused). */
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
  engine.beginOp(rec, 'migrate', { mode: 'page-server', phase: 'freezing', destination: f.destination });
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { mode: 0o700 });
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
    // Frozen here, and left frozen by the dump (the way back until the commit).
    await engine.runtime.freeze(id, rec.state.pid);
    await dump(engine, rec, {
      imageDir: dir,
      criu: { leaveRunning: true, tcpEstablished: f.tcpEstablished, pageServer: `127.0.0.1:${f.pagesPort}` },
      meta: checkpointMetaOptions({ tcpEstablished: f.tcpEstablished }),
    });
    debug(`migrate ${name}: dumped in ${(performance.now() - tFreeze).toFixed(1)}ms, memory sent to the page server`);
    // The memory went to the page server: the archive is small, compressed here.
    const exportP = exportCheckpoint(engine, rec, { target: f.target, compression: f.compression, imageDir: dir, inProcess: true });
    exportP.catch(() => undefined);
    await archiveSent(exportP.then(() => undefined), exportP, f.reply, f.target, peer);
    debug(`migrate ${name}: archive sent`);
    f.onSent();
    const restored = await restoredReply(f.reply, peer);
    const downtimeMs = performance.now() - tFreeze;
    debug(`migrate ${name}: running on ${f.host} after ${downtimeMs.toFixed(1)}ms of downtime`);

    // 5. Commit. Once it is sent, the frozen copy here must never run again.
    committing = true;
    engine.updateOp(rec, 'migrate', { phase: 'committing' });
    await f.commit();
    await takeDown(engine, rec).catch((e: Error) => writeErr(`ferry: warning: stopping the frozen copy of ${name} here: ${e.message}\n`));
    fs.rmSync(dir, { recursive: true, force: true });
    engine.endOp(rec);
    return { downtimeMs, restored };
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    if (committing && !(e instanceof NotKept)) {
      // Nobody knows whether the destination kept it: stay frozen, say so (the error does).
      toPaused(rec.state, `a migration to ${f.destination} lost its connection after the commit`);
    } else {
      await engine.runtime.resume(id).catch(() => undefined);
      await release?.().catch(() => undefined);
      delete rec.state.trafficHeld;
    }
    engine.endOp(rec);
    throw e;
  }
}

// ------------------------------------------------------------------------------ lazy dump

interface LazyDump {
  /** Resolves when CRIU has served every page and exited. */
  done: Promise<void>;
  /** performance.now() when the container was frozen (its downtime begins). */
  frozenAt: number;
}

/**
 * Dumps everything but memory; CRIU then serves pages on 127.0.0.1:port (reached by the
 * destination only through the ssh tunnel or the ferry service's pages connection) until the
 * destination has them all. The migrate op is recorded first, so a ferry killed from here on
 * is repaired (repair.ts); it stays recorded until the container is gone from here, or back.
 * send() streams the archive under the same lock, before the record says checkpointed (that
 * write's fsync then overlaps the destination's work; a repair goes by the op alone), and the
 * record is written whether or not it succeeds.
 */
async function lazyCheckpoint(
  engine: Engine,
  id: string,
  port: number,
  destination: string,
  o: { tcpEstablished?: boolean; parent?: string; onDumped: () => void; send: (rec: ContainerRecord) => Promise<unknown> },
): Promise<LazyDump> {
  const { tcpEstablished, parent } = o;
  return engine.withContainer(id, async (rec) => {
    const dir = engine.paths.checkpointDir(id);
    engine.beginOp(rec, 'migrate', { mode: 'lazy', phase: 'freezing', destination });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    let d: Awaited<ReturnType<typeof dump>>;
    try {
      d = await dump(engine, rec, {
        imageDir: dir,
        criu: { lazyPages: true, pageServer: `127.0.0.1:${port}`, tcpEstablished, parentPath: parent ? path.join('..', parent) : undefined },
        meta: checkpointMetaOptions({ tcpEstablished, withPrevious: !!parent }),
        // Frozen by us first: CRIU then seizes it at once instead of polling the freezer in 100 ms steps.
        freeze: true,
      });
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      engine.endOp(rec);
      throw e;
    }
    o.onDumped();
    // Memory stays on this host, in CRIU, until the destination has faulted it all in.
    toCheckpointed(rec.state, dir, { stopped: false });
    try {
      await o.send(rec);
    } finally {
      engine.save(rec);
      debug(`migrate ${rec.config.name}: lazy dump recorded`);
    }
    return { done: d.served!, frozenAt: d.frozenAt };
  });
}
