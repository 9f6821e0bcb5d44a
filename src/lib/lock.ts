import * as fs from 'node:fs';
import { spawn } from 'node:child_process';
import { FerryError } from './errors.js';

/**
 * An exclusive, crash-safe file lock.
 *
 * flock(2) locks belong to the open file description, which survives in this process after a
 * child that locked an inherited descriptor exits. So `flock -x 3` run on our descriptor takes
 * the lock on our behalf, and the kernel drops it when this process closes the descriptor or
 * dies in any way (SIGKILL included): a crashed `ferry` never leaves a stale lock.
 */
export class FileLock {
  private constructor(private fd: number | undefined, readonly path: string) {}

  static async acquire(path: string, opts: { timeoutMs?: number; what?: string } = {}): Promise<FileLock> {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    const timeoutSec = Math.max(0, (opts.timeoutMs ?? 60_000) / 1000);
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn('flock', ['-x', '-w', String(timeoutSec), '3'], { stdio: ['ignore', 'ignore', 'ignore', fd] });
      child.on('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'ENOENT' ? new FerryError('EDEPEND', 'flock is not installed: run `npm run setup` (as root)') : e),
      );
      child.on('close', resolve);
    }).catch((e) => {
      fs.closeSync(fd);
      throw e;
    });
    if (code !== 0) {
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
