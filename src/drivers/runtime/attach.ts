import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { FerryError } from '../../lib/errors.js';
import { FifoReader, makeFifo } from '../../lib/fifo.js';

/**
 * Where `npm run setup` installs ferry-attach (scripts/ferry-attach.c): Node and Bun cannot open
 * conmon's attach socket (SOCK_SEQPACKET), so a small program connects our stdio to it.
 */
export const ATTACH_HELPER = '/usr/local/lib/ferry/bin/ferry-attach';

export function attachHelper(): string {
  const p = process.env.FERRY_ATTACH || ATTACH_HELPER;
  if (!fs.existsSync(p)) throw new FerryError('EDEPEND', `${p} is missing (it connects terminals to containers): run \`npm run setup\` (as root)`);
  return p;
}

/** Docker's and Podman's default detach sequence. */
export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';

/**
 * Parses a detach sequence as Docker and Podman do: comma-separated keys, each a single
 * character or ctrl-X (X one of a-z @ [ \ ] ^ _). The empty string disables detaching.
 */
export function parseDetachKeys(spec: string): Buffer {
  if (spec === '') return Buffer.alloc(0);
  const out: number[] = [];
  for (const key of spec.split(',')) {
    const k = key.toLowerCase();
    if (key.length === 1) out.push(key.charCodeAt(0));
    else if (/^ctrl-[a-z@[\\\]^_]$/.test(k)) {
      const c = k.charCodeAt(5);
      out.push(c >= 97 && c <= 122 ? c - 96 : c - 64);
    } else {
      throw new FerryError('EINVAL', `invalid detach keys "${spec}": use keys such as ctrl-p,ctrl-q (a single character or ctrl-<a-z @ [ \\ ] ^ _>, comma-separated)`);
    }
  }
  return Buffer.from(out);
}

export interface AttachRequest {
  /** Forward this process's stdin to the container (closing the container's stdin at its end). */
  stdin: boolean;
  /** The container has a terminal: raw mode on ours, detach keys, size changes. */
  tty: boolean;
  detachKeys: Buffer;
}

/**
 * Stdio given as streams instead of this process's own (the API's hijacked connections): what
 * the process writes goes to stdout/stderr; stdin, when given, is forwarded and its end closes
 * the process's stdin.
 */
export interface StreamIO {
  stdin?: NodeJS.ReadableStream;
  stdout: (data: Buffer) => void;
  stderr: (data: Buffer) => void;
}

/** Connects a spawned child's piped stdio to io. */
export function pipeIO(child: ChildProcess, io: StreamIO, stderr = true): void {
  child.stdout?.on('data', io.stdout);
  if (stderr) child.stderr?.on('data', io.stderr);
  if (child.stdin) {
    child.stdin.on('error', () => undefined); // the process closed its stdin early
    if (io.stdin) io.stdin.pipe(child.stdin);
    else child.stdin.end();
  }
}

/** Writes a terminal size to conmon's control FIFO (ctl in its bundle); false when nobody reads it. */
export function resizeTerminal(bundle: string, rows: number, cols: number): boolean {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535) {
    throw new FerryError('EINVAL', `invalid terminal size ${rows}x${cols}: give whole numbers from 1 to 65535`);
  }
  let fd: number;
  try {
    fd = fs.openSync(path.join(bundle, 'ctl'), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    fs.writeSync(fd, `1 ${rows} ${cols}\n`);
    return true;
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
}

export interface AttachSession {
  /** 'ended' when the container's output ended (it exited), 'detached' when the user detached. */
  done: Promise<'ended' | 'detached'>;
  /** Ends the session (restoring the terminal). */
  close(): void;
}

/**
 * Connects this process's stdio to a container through conmon's attach socket in `bundle` (and
 * its control FIFO for the terminal's size). Resolves once connected, so that a container
 * started afterwards loses none of its output.
 */
export async function openAttach(bundle: string, req: AttachRequest, io?: StreamIO): Promise<AttachSession> {
  const helper = attachHelper();
  const args: string[] = [];
  if (req.stdin) args.push('-i');
  if (req.tty) args.push('-t', '-c', path.join(bundle, 'ctl'));
  args.push('-k', req.detachKeys.toString('hex'), '-r', '3', bundle);
  const fifo = path.join(bundle, `attach-ready.${process.pid}`);
  fs.rmSync(fifo, { force: true });
  makeFifo(fifo);
  const rd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wr = fs.openSync(fifo, fs.constants.O_RDWR);
  fs.rmSync(fifo, { force: true });
  // The helper stays in our process group: the foreground one, which may read the terminal.
  // With io: pipes (no terminal of ours, so no raw mode and no detach keys: the helper checks).
  const child = io
    ? spawn(helper, args, { stdio: [req.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', wr] })
    : spawn(helper, args, { stdio: [req.stdin ? 'inherit' : 'ignore', 'inherit', 'inherit', wr] });
  fs.closeSync(wr);
  if (io) pipeIO(child, io);
  const exited = new Promise<number>((resolve) => {
    child.on('error', () => resolve(1));
    // With pipes: once its output is all read.
    child.on(io ? 'close' : 'exit', (code: number | null) => resolve(code ?? 1)); // killed by a signal: 1
  });
  const ready = new FifoReader(rd, (d) => d.includes(10));
  // A helper that attaches, forwards a short stdin and exits can do it all between two polls:
  // its line is then still in the FIFO.
  const first = await Promise.race([ready.result.then((r) => r.data.toString()), exited.then(() => ready.readNow().toString())]);
  ready.cancel();
  if (!first.startsWith('ok')) {
    child.kill('SIGKILL');
    const why = first.replace(/^error:\s*/, '').trim() || 'the attach helper exited';
    throw new FerryError('ERUNTIME', `could not attach to the container: ${why}`);
  }
  let closed = false;
  const done = exited.then((code) => {
    if (code === 3) return 'detached' as const;
    if (code === 0 || closed) return 'ended' as const;
    throw new FerryError('ERUNTIME', 'the connection to the container broke: see `ferry logs` for its output');
  });
  done.catch(() => undefined); // a session closed unawaited (a failed start) is no unhandled error
  return {
    done,
    close: () => {
      closed = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}
