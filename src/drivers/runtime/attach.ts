import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
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
export async function openAttach(bundle: string, req: AttachRequest): Promise<AttachSession> {
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
  const child = spawn(helper, args, { stdio: [req.stdin ? 'inherit' : 'ignore', 'inherit', 'inherit', wr] });
  fs.closeSync(wr);
  const exited = new Promise<number>((resolve) => {
    child.on('error', () => resolve(1));
    child.on('exit', (code) => resolve(code ?? 1)); // killed by a signal: 1
  });
  const ready = new FifoReader(rd, (d) => d.includes(10));
  const first = await Promise.race([ready.result.then((r) => r.data.toString()), exited.then(() => '')]);
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
