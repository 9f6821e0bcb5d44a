/**
 * Text to standard output and error with plain write(2) calls. Touching `process.stdout` or
 * `process.stderr` sets up their stream machinery, which costs a short command ~10 ms of its
 * start-up under Bun; printing a table or an error needs none of it. Streams that really flow
 * (an archive to `-`, `logs -f` piped on) still use process.stdout.
 */
import * as fs from 'node:fs';
import { isattyFd } from './libc.js';

const pause = new Int32Array(new SharedArrayBuffer(4));

function writeAll(fd: number, s: string | Uint8Array): void {
  let buf = typeof s === 'string' ? Buffer.from(s) : s;
  while (buf.length > 0) {
    try {
      const n = fs.writeSync(fd, buf);
      buf = buf.subarray(n);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // A descriptor someone made non-blocking (a pipe shared with process.stdout): wait a little.
      if (code === 'EAGAIN') {
        Atomics.wait(pause, 0, 0, 1);
        continue;
      }
      throw e;
    }
  }
}

/** Writes to standard output; a reader that went away (`ferry ps | head`) ends the command quietly. */
export function writeOut(s: string | Uint8Array): void {
  try {
    writeAll(1, s);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw e;
  }
}

/**
 * process.stdout for what streams to it (an archive, a migration's frames, `cp` to `-`): a
 * reader that goes away (`| head`) ends the command quietly, as writeOut does.
 */
export function stdoutStream(): NodeJS.WriteStream {
  if (!guarded) {
    guarded = true;
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    });
  }
  return process.stdout;
}
let guarded = false;

/** Writes to standard error; nothing is left to tell when it is gone. */
export function writeErr(s: string | Uint8Array): void {
  try {
    writeAll(2, s);
  } catch {
    // stderr closed: nowhere to say anything.
  }
}

/** Whether fd is a terminal, without loading node:tty (which pulls in the stream machinery). */
export function isTerminal(fd: number): boolean {
  const viaLibc = isattyFd(fd);
  if (viaLibc !== undefined) return viaLibc;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:tty') as typeof import('node:tty')).isatty(fd);
}
