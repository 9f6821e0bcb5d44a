import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { FerryError } from '../../lib/errors.js';
import { FifoReader, makeFifo } from '../../lib/fifo.js';
import { mkdirp } from '../../lib/fsutil.js';
import { cleanRuntimeMessage, type RuncRuntime } from './runc.js';
import type { AttachSession } from './attach.js';

export interface ConmonExecOptions {
  /** The container's ID and its OCI bundle (whose config.json's process the exec's is based on). */
  id: string;
  bundle: string;
  /** A directory of this exec session's own: conmon's attach socket, control FIFO, pid and exit files. */
  dir: string;
  socketDir: string;
  argv: string[];
  env: string[];
  cwd?: string;
  terminal: boolean;
  stdin: boolean;
  /** Connects our stdio to the session's attach socket in dir (before its process starts). */
  attach: (dir: string) => Promise<AttachSession>;
}

export interface ConmonExec {
  /** The session's process (host PID). */
  pid: number;
  session: AttachSession;
  /** The command's exit code, once it has exited (conmon reports it). */
  exitCode: Promise<number>;
  /** Stops waiting for the exit code (the session goes on, detached). */
  release(): void;
}

/** A FIFO whose read end conmon gets (blocking) and whose write end this process keeps. */
async function startPipe(file: string): Promise<{ rd: number; wr: number }> {
  makeFifo(file);
  const wr = fs.openSync(file, fs.constants.O_RDWR);
  const rd = fs.openSync(file, fs.constants.O_RDONLY); // a writer exists: does not block
  fs.rmSync(file, { force: true });
  return { rd, wr };
}

/** A FIFO conmon writes JSON lines to; read here, polled (any runtime). */
async function messagePipe(file: string): Promise<{ rd: number; wr: number }> {
  makeFifo(file);
  const rd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wr = fs.openSync(file, fs.constants.O_WRONLY);
  fs.rmSync(file, { force: true });
  return { rd, wr };
}

/** Reads conmon's JSON lines ({"data": N, "message"?: S}) one at a time. */
class Messages {
  private buf = '';
  private reader: FifoReader;
  private done = false;
  constructor(private readonly fd: number) {
    this.reader = this.read();
  }
  private read(): FifoReader {
    return new FifoReader(this.fd, (d) => (this.buf + d.toString()).includes('\n'), { keepOpen: true });
  }
  async next(): Promise<{ data: number; message?: string } | undefined> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        try {
          return JSON.parse(line) as { data: number; message?: string };
        } catch {
          continue;
        }
      }
      if (this.done) return undefined;
      const r = await this.reader.result;
      this.buf += r.data.toString();
      if (r.eof) this.done = true;
      else this.reader = this.read();
    }
  }
  close(): void {
    this.reader.cancel();
    try {
      fs.closeSync(this.fd);
    } catch {
      /* closed */
    }
  }
}

/**
 * Runs a command in a running container under a conmon of its own, as Podman's exec: conmon
 * holds the command's terminal (or stdin pipe) and serves it on an attach socket, so the session
 * gets detach keys and resizes like the container itself, and survives a detach.
 */
export async function execWithConmon(rt: RuncRuntime, o: ConmonExecOptions): Promise<ConmonExec> {
  mkdirp(o.dir, 0o700);
  const spec = JSON.parse(fs.readFileSync(path.join(o.bundle, 'config.json'), 'utf8')) as { process: Record<string, unknown> };
  const proc = { ...spec.process, args: o.argv, env: o.env, cwd: o.cwd ?? spec.process.cwd, terminal: o.terminal };
  delete (proc as { consoleSize?: unknown }).consoleSize;
  const procFile = path.join(o.dir, 'process.json');
  fs.writeFileSync(procFile, JSON.stringify(proc), { mode: 0o600 });
  const exitDir = path.join(o.dir, 'exits');
  const persistDir = path.join(o.dir, 'persist');
  for (const d of [exitDir, persistDir, o.socketDir]) mkdirp(d, 0o700);
  const sid = path.basename(o.dir);
  const args = [
    '--api-version', '1', '-c', o.id, '-u', sid, '-r', rt.runc, '-b', o.dir, '-p', path.join(o.dir, 'pid'),
    '-l', `k8s-file:${path.join(o.dir, 'exec.log')}`, '--exit-dir', exitDir, '--persist-dir', persistDir,
    '--socket-dir-path', o.socketDir, '--log-level', 'warning',
  ];
  for (const a of rt.globalArgs()) args.push('--runtime-arg', a);
  if (o.terminal) args.push('-t');
  if (o.stdin) args.push('-i');
  args.push('-e', '--exec-attach', '--exec-process-spec', procFile);

  const sync = await messagePipe(path.join(o.dir, 'sync.fifo'));
  const start = await startPipe(path.join(o.dir, 'start.fifo'));
  const attachP = await messagePipe(path.join(o.dir, 'attach.fifo'));
  const logFd = fs.openSync(path.join(o.dir, 'conmon.log'), 'a');
  const syncMsgs = new Messages(sync.rd);
  const attachMsgs = new Messages(attachP.rd);
  const closeAll = (): void => {
    syncMsgs.close();
    attachMsgs.close();
    try {
      fs.closeSync(start.wr);
    } catch {
      /* closed */
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(rt.conmon, args, {
        cwd: o.dir, // (conmon writes files into its working directory)
        stdio: ['ignore', logFd, logFd, sync.wr, start.rd, attachP.wr],
        env: { ...process.env, _OCI_SYNCPIPE: '3', _OCI_STARTPIPE: '4', _OCI_ATTACHPIPE: '5' },
        detached: true,
      });
      child.on('error', reject);
      child.on('spawn', () => {
        child.unref();
        resolve();
      });
    });
  } catch (e) {
    closeAll();
    throw e;
  } finally {
    for (const fd of [sync.wr, start.rd, attachP.wr, logFd]) fs.closeSync(fd);
  }
  try {
    fs.writeSync(start.wr, '0'); // conmon waits for this before anything else
    const ready = await attachMsgs.next(); // its attach socket is listening
    if (!ready || ready.data < 0) throw new FerryError('ERUNTIME', `conmon could not set up the exec session${ready?.message ? `: ${ready.message}` : ''}`);
    const session = await o.attach(o.dir);
    fs.writeSync(start.wr, '0'); // now run the command
    const started = await syncMsgs.next();
    if (!started || started.data <= 0) {
      session.close();
      const msg = cleanRuntimeMessage(started?.message ?? 'the runtime did not start the command')
        .replace(/\\"/g, '"')
        .replace(/^exec failed: (unable to start container process: )?/, '');
      const notFound = /executable file not found|no such file or directory/i.test(msg);
      const denied = /permission denied/i.test(msg);
      throw new FerryError('ERUNTIME', `runc: ${msg}${notFound ? ': the command was not found in the container' : ''}`, { exitCode: notFound ? 127 : denied ? 126 : 125 });
    }
    const exitCode = syncMsgs.next().then((m) => m?.data ?? readExit(path.join(exitDir, o.id)));
    exitCode.finally(closeAll).catch(() => undefined);
    return { pid: started.data, session, exitCode, release: closeAll };
  } catch (e) {
    closeAll();
    throw e;
  }
}

function readExit(file: string): number {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isFinite(n) ? n : -1;
  } catch {
    return -1;
  }
}
