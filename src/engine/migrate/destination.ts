/**
 * The destination end of a live migration: `ferry system migrate-receive` (started by the
 * source over ssh) or a `ferry system service` session. Frames in on input, JSON lines out
 * (protocol.ts); the phases, in the order the source drives them:
 *
 *   1. hello: check everything before the source freezes anything (image, name, volumes,
 *      network and IP, CRIU version, arch, lazy support); for stop-and-copy start
 *      `criu page-server` on 127.0.0.1 into the staging dir          -> ready | error
 *   2. (--with-image) the image                                       -> image-stored | error
 *   3. (--pre-copy) each round's archive, stored aside                -> pre-dump-stored | error
 *   4. the archive, streamed into a new container (plus the page server's memory) and
 *      restored; with --lazy at once, faulting its pages in through the tunnel
 *                                                                     -> restored | error
 *   5. commit: keep it                                                -> committed
 *      (lazy) once every page has been served                         -> pages-done
 *
 * Exactly once: everything it makes is removed again unless the source commits: on an error,
 * an abort, a malformed message, or the channel closing or going silent before commit.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from '../../lib/lazy.js';
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { FerryError } from '../../lib/errors.js';
import { debug } from '../../lib/log.js';
import { processAlive } from '../../lib/proc.js';
import { withTimeout } from '../../lib/async.js';
import { freePort } from '../../lib/net.js';
import { FrameReader } from '../../drivers/transport/channel.js';
import { readArchive, warmUp } from '../../drivers/archive/archive.js';
import { requireCapability } from '../../drivers/criu/criu.js';
import { criuLogReason, startLazyPages, startPageServer, type PageServer } from '../../drivers/criu/daemons.js';
import { guardLoopbackPort, sweepLoopbackGuards } from '../../drivers/network/cni.js';
import { checkCompatible, pageImageBytes } from '../checkpoint-dir.js';
import { importCheckpoint } from '../portable.js';
import type { Engine } from '../engine.js';
import { BYE_TIMEOUT_MS, COMMIT_TIMEOUT_MS, PAGE_SERVER_FINISH_MS, PRE_DUMP_KIND, REPLY_TIMEOUT_MS, isTunnelPort, parseSourceMessage, type Hello, type Reply, type SourceMessage } from './protocol.js';

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

/** Receives one migration; resolves with the exit code (0: committed). */
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

/** One session, as its phases share it. */
interface Session {
  engine: Engine;
  inbox: Inbox;
  reply: (m: Reply) => void;
  hello: Hello;
  /**
   * What arrives besides the archive (pre-copy rounds, the page server's memory images) is
   * kept here until the archive's checkpoint claims it.
   */
  stage: string;
  /** (lazy) The loopback port `criu lazy-pages` dials, which leads to the source's page server. */
  lazyPort?: number;
  /** (stop-and-copy) The page server receiving the memory. */
  pageServer?: PageServer;
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
  // Named like an import's staging dir, so that a later ferry sweeps it if this one is killed.
  const stage = path.join(engine.paths.root, `.import-${process.pid}-migrate-${randomBytes(6).toString('hex')}`);
  const s: Session = { engine, inbox, reply, hello, stage };
  try {
    const needImage = await check(s, opts, setEndpoint);
    if (needImage === undefined) return 1;
    if (needImage && !(await receiveImage(s))) return 1;
    const preDumps = await receivePreDumps(s);
    if (!preDumps) return 1;
    const restored = await receiveArchive(s, preDumps);
    if (!restored) return 1;
    return await awaitCommit(s, restored);
  } finally {
    s.pageServer?.kill();
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * 1. Checks everything before the source freezes anything, and sets up the memory's way in.
 * Replies ready (with whether the image must come first: resolves with that) or error
 * (resolves with undefined).
 */
async function check(s: Session, opts: ReceiveOptions, setEndpoint: (e: Endpoint) => void): Promise<boolean | undefined> {
  const { engine, hello } = s;
  const name = hello.name;
  try {
    const criu = await engine.criu();
    if (!criu.version || !criu.features.check) throw new FerryError('EDEPEND', 'CRIU does not work on this host: run `npm run setup`');
    await checkCompatible(engine, { arch: hello.arch, criuVersion: hello.criuVersion }, 'the source checkpoints');
    const needImage = !engine.images.list().some((i) => i.Id === hello.imageId);
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
    if (hello.lazy) requireCapability(criu, 'lazyPages', 'migrate without --lazy', os.hostname());
    // The memory tunnel's loopback ends take the first connection that comes: only root (and
    // the user who ssh'd in to sudo this ferry, whose sshd makes the tunnel's connections).
    const guard = async (port: number): Promise<void> => setEndpoint({ close: await guardLoopbackPort(port, sudoUid()) });
    if (hello.lazy || hello.pageServer) await sweepLoopbackGuards((pid) => processAlive(pid));
    if (hello.lazy) {
      let port = hello.lazyPort;
      if (opts.lazyEndpoint) {
        const ep = await opts.lazyEndpoint(hello);
        setEndpoint(ep);
        port = ep.port;
      }
      if (!isTunnelPort(port)) throw new FerryError('EINVAL', `invalid lazy pages port ${String(port)}`);
      await guard(port);
      s.lazyPort = port;
    }
    if (hello.pageServer) {
      // Stop-and-copy: the source's CRIU sends the memory here while it dumps.
      const port = opts.pageServerTunnel ? await freePort() : hello.pageServerPort;
      if (!isTunnelPort(port)) throw new FerryError('EINVAL', `invalid page server port ${String(port)}`);
      await guard(port);
      s.pageServer = await startPageServer(criuPath(engine), s.stage, port);
      if (opts.pageServerTunnel) setEndpoint(opts.pageServerTunnel(port));
    }
    // The archive's code run once on a tiny archive, so that its first run is not in the window.
    await warmUp(path.join(s.stage, 'warm')).catch(() => undefined);
    // The layers of the image it already has, which the source then leaves out.
    const haveLayers = needImage ? (hello.imageLayers ?? []).filter((l) => engine.images.hasLayer(l)) : undefined;
    s.reply({ type: 'ready', needImage, ...(haveLayers ? { haveLayers } : {}) });
    debug(`receive ${name}: ready`);
    return needImage;
  } catch (e) {
    s.reply({ type: 'error', message: (e as Error).message });
    return undefined;
  }
}

/** The user sudo ran this ferry for, if any. */
function sudoUid(): number[] {
  const u = Number(process.env.SUDO_UID);
  return process.env.SUDO_UID && Number.isInteger(u) && u > 0 ? [u] : [];
}

function criuPath(engine: Engine): string {
  return engine.runtime.cfg.criuPath ?? 'criu';
}

/** 2. (--with-image) The image the source sends before anything is frozen. */
async function receiveImage(s: Session): Promise<boolean> {
  const m = await s.inbox.next(REPLY_TIMEOUT_MS);
  if (!m || m.type !== 'image') return false;
  try {
    await s.engine.images.receive(m.image, s.inbox.archive());
    s.reply({ type: 'image-stored' });
    return true;
  } catch (e) {
    s.reply({ type: 'error', message: (e as Error).message });
    return false;
  }
}

/**
 * 3. (--pre-copy) Each round's archive (parents/K only), stored aside in order, until the
 * final archive begins. Resolves with the rounds' image dirs, or undefined if the session ends.
 */
async function receivePreDumps(s: Session): Promise<string[] | undefined> {
  const preDumps: string[] = [];
  let begin = await s.inbox.next(REPLY_TIMEOUT_MS);
  while (begin?.type === 'pre-dump') {
    const k = preDumps.length + 1;
    try {
      if (begin.round !== k) throw new FerryError('EINVAL', `pre-copy round ${begin.round} came when round ${k} was due`);
      const dir = path.join(s.stage, String(k));
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const r = await readArchive(s.inbox.archive(), dir, {
        onHeader: (h) => {
          if (h.kind !== PRE_DUMP_KIND || h.round !== k) throw new FerryError('EARCHIVE', `pre-copy round ${k} is not a pre-dump archive`);
        },
      });
      if ([...r.sections].some((sec) => sec !== `parents/${k}`)) throw new FerryError('EARCHIVE', `pre-copy round ${k} holds more than its pre-dump`);
      preDumps.push(path.join(dir, 'parents', String(k)));
      s.reply({ type: 'pre-dump-stored', round: k });
      debug(`receive ${s.hello.name}: pre-copy round ${k} stored`);
    } catch (e) {
      s.reply({ type: 'error', message: (e as Error).message });
      return undefined;
    }
    begin = await s.inbox.next(REPLY_TIMEOUT_MS);
  }
  return begin?.type === 'archive' ? preDumps : undefined;
}

/** A container restored here, not yet committed. */
interface Restored {
  id: string;
  /** (lazy) The `criu lazy-pages` serving its page faults. */
  lazyDaemon?: ChildProcess;
}

/** 4. The archive, straight into a new container, restored. Replies restored or error. */
async function receiveArchive(s: Session, preDumps: string[]): Promise<Restored | undefined> {
  const { engine, hello, pageServer, lazyPort } = s;
  debug(`receive ${hello.name}: archive begins`);
  let lazyDaemon: ChildProcess | undefined;
  // Said as soon as conmon reports the container running (the source's downtime ends there),
  // before the restore has recorded it; a failure after it is reported as an error instead of
  // `committed` (awaitCommit is only reached once the restore is complete).
  let told = false;
  // While the source dumps, say how much memory has arrived (its progress bar shows it).
  let pageBytes = 0;
  const ticker = pageServer ? setInterval(() => s.reply({ type: 'progress', pageBytes: pageImageBytes(pageServer.dir) }), 250) : undefined;
  void pageServer?.done.then(() => clearInterval(ticker));
  try {
    const r = await importCheckpoint(engine, {
      source: s.inbox.archive(),
      inProcess: true,
      tcpEstablished: undefined,
      beforeRestore:
        hello.lazy && lazyPort
          ? async (bundle, imageDir) => {
              lazyDaemon = await startLazyPages(criuPath(engine), lazyPort, bundle, imageDir);
              debug(`receive ${hello.name}: criu lazy-pages listens`);
            }
          : undefined,
      lazyPages: hello.lazy,
      onRunning: (id) => {
        told = true;
        clearInterval(ticker);
        s.reply({ type: 'restored', id, pageBytes });
        debug(`receive ${hello.name}: running`);
      },
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
    clearInterval(ticker);
    if (!told) s.reply({ type: 'restored', id: r.id, pageBytes });
    debug(`receive ${hello.name}: restored`);
    return { id: r.id, lazyDaemon };
  } catch (e) {
    clearInterval(ticker);
    lazyDaemon?.kill('SIGKILL');
    s.reply({ type: 'error', message: (e as Error).message });
    return undefined;
  }
}

/** 5. Keeps the container only if the source commits; otherwise removes it (exactly once). */
async function awaitCommit(s: Session, restored: Restored): Promise<number> {
  const { lazyDaemon } = restored;
  const commit = await s.inbox.next(COMMIT_TIMEOUT_MS);
  if (!commit || commit.type !== 'commit') {
    lazyDaemon?.kill('SIGKILL');
    await s.engine.remove(restored.id, { force: true }).catch(() => undefined);
    return 1;
  }
  s.reply({ type: 'committed' });
  if (lazyDaemon) {
    const d = lazyDaemon;
    await new Promise<void>((resolve) => (d.exitCode !== null ? resolve() : d.on('close', () => resolve())));
    s.reply({ type: 'pages-done' });
  }
  await s.inbox.next(BYE_TIMEOUT_MS); // bye
  return 0;
}
