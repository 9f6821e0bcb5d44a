import * as fs from 'node:fs';
import { spawn } from 'node:child_process';
import { FerryError } from './errors.js';
import { tryLockExclusive } from './libc.js';

/**
 * An exclusive, crash-safe file lock: flock(2) on a descriptor this process holds, so the
 * kernel drops it when this process closes the descriptor or dies in any way (SIGKILL
 * included): a crashed `ferry` never leaves a stale lock.
 *
 * The lock is taken in this process through libc (Bun's FFI), trying without blocking and
 * again every few milliseconds until the deadline, so the event loop never blocks. Where libc
 * cannot be called, `flock -x -w SECONDS 3` runs on our descriptor instead: flock locks belong
 * to the open file description, which survives here after the child exits.
 */
export class FileLock {
  private constructor(private fd: number | undefined, readonly path: string) {}

  static async acquire(path: string, opts: { timeoutMs?: number; what?: string } = {}): Promise<FileLock> {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    const timeoutMs = Math.max(0, opts.timeoutMs ?? 60_000);
    let taken: boolean;
    try {
      const first = tryLockExclusive(fd);
      if (first === undefined) {
        taken = await flockCommand(fd, timeoutMs);
      } else {
        taken = first;
        const deadline = Date.now() + timeoutMs;
        for (let wait = 1; !taken && Date.now() < deadline; wait = Math.min(wait * 2, 20)) {
          await sleep(wait);
          taken = tryLockExclusive(fd) === true;
        }
      }
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    if (!taken) {
      fs.closeSync(fd);
      throw new FerryError('ELOCK', `${opts.what ?? 'state'} is locked by another ferry command that has not finished; try again when it is done`);
    }
    return new FileLock(fd, path);
  }

  release(): void {
    if (this.fd !== undefined) {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

export async function withLock<T>(path: string, fn: () => Promise<T>, opts: { timeoutMs?: number; what?: string } = {}): Promise<T> {
  const lock = await FileLock.acquire(path, opts);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/**
 * Runs fn with the lock if it is free right now (without waiting); returns whether fn ran. Where
 * libc cannot be called, fn does not run.
 */
export function ifUnlockedSync(path: string, fn: () => void): boolean {
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    if (tryLockExclusive(fd) !== true) return false;
    fn();
    return true;
  } finally {
    fs.closeSync(fd);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `flock -x -w SECONDS 3` on fd: true when it took the lock within the time. */
function flockCommand(fd: number, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const child = spawn('flock', ['-x', '-w', String(timeoutMs / 1000), '3'], { stdio: ['ignore', 'ignore', 'ignore', fd] });
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new FerryError('EDEPEND', 'flock is not installed: run `npm run setup` (as root)') : e),
    );
    child.on('close', (code) => resolve(code === 0));
  });
}
