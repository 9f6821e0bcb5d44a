/**
 * The CRIU daemons a migration runs beside a dump or a restore, both on 127.0.0.1 only:
 *
 *   criu page-server   receives a stop-and-copy dump's memory on the destination, into a
 *                      directory of its own, while the source's CRIU dumps;
 *   criu lazy-pages    serves a lazy restore's page faults from a page server (the source's,
 *                      through the migration's tunnel, or this host's own when a failed lazy
 *                      migration restores the container where it was).
 *
 * Driver only: the CRIU binary and the directories are the caller's.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { FerryError } from '../../lib/errors.js';
import { withTimeout } from '../../lib/async.js';
import { diagnoseCriuLog, readLog } from './criu.js';

/** Why a CRIU log says CRIU failed, in plain words where known. */
export function criuLogReason(file: string): string | undefined {
  const d = diagnoseCriuLog(readLog(file));
  return d.cause ?? d.firstError;
}

/** A `criu page-server` receiving a stop-and-copy dump's memory into DIR/pages. */
export interface PageServer {
  /** Where the memory images arrive. */
  dir: string;
  /** Its log, for criuLogReason(). */
  log: string;
  /** Resolves with its exit code once it has written everything the dump sent. */
  done: Promise<number | null>;
  kill(): void;
}

const PAGE_SERVER_START_MS = 10_000;

/** Starts `criu page-server` on 127.0.0.1:port, writing into stage/pages; resolves once it listens. */
export async function startPageServer(criu: string, stage: string, port: number): Promise<PageServer> {
  const dir = path.join(stage, 'pages');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const log = path.join(stage, 'page-server.log');
  const child = spawn(criu, ['page-server', '-D', dir, '--address', '127.0.0.1', '--port', String(port), '--status-fd', '3', '-o', log, '-v2'], {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    detached: true,
  });
  child.on('error', () => undefined);
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const status = child.stdio[3] as Readable;
  status.on('error', () => undefined);
  const listening = await withTimeout(Promise.race([new Promise<boolean>((resolve) => status.once('data', () => resolve(true))), done.then(() => false)]), PAGE_SERVER_START_MS);
  status.destroy();
  if (!listening) {
    child.kill('SIGKILL');
    const why = criuLogReason(log);
    throw new FerryError('ECRIU', `criu page-server could not listen on 127.0.0.1:${port} on ${os.hostname()}${why ? `: ${why}` : ''}`);
  }
  return {
    dir,
    log,
    done,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

const LAZY_PAGES_START_MS = 5000;

/**
 * Starts `criu lazy-pages` for a restore whose work dir is workDir and images imageDir: it
 * serves page faults from the page server on 127.0.0.1:port. Resolves once it listens on its
 * socket in the work dir (runc restore connects to it there): CRIU says so on its status fd the
 * moment it does, where polling for the socket file lost up to a poll interval. Kills it and
 * throws if it exits or never says so.
 */
export async function startLazyPages(criu: string, port: number, workDir: string, imageDir: string): Promise<ChildProcess> {
  const socket = path.join(workDir, 'lazy-pages.socket');
  const log = path.join(workDir, 'lazy-pages.log');
  fs.rmSync(socket, { force: true });
  const d = spawn(criu, ['lazy-pages', '--page-server', '--address', '127.0.0.1', '--port', String(port), '-D', imageDir, '-W', workDir, '--status-fd', '3', '-o', log, '-v4'], {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    detached: true,
  });
  d.on('error', () => undefined);
  const exited = new Promise<boolean>((resolve) => d.once('close', () => resolve(false)));
  const status = d.stdio[3] as Readable;
  status.on('error', () => undefined);
  const said = new Promise<boolean>((resolve) => {
    status.once('data', () => resolve(true));
    status.once('end', () => resolve(false));
  });
  const ready = await withTimeout(Promise.race([said, exited]), LAZY_PAGES_START_MS);
  status.destroy();
  if (!ready || !fs.existsSync(socket)) {
    d.kill('SIGKILL');
    const why = criuLogReason(log);
    throw new FerryError('ECRIU', `criu lazy-pages did not start${why ? `: ${why}` : ''} (details: ${log})`);
  }
  return d;
}
