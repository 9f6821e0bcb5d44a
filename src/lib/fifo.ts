import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { FerryError } from './errors.js';
import { haveLibc, mkfifo } from './libc.js';

/** Whether makeFifo works in this process (libc through Bun's FFI) rather than running mkfifo. */
export function mkfifoInProcess(): boolean {
  return haveLibc();
}

/**
 * Makes a FIFO (mode 0600 unless told otherwise) in this process: JavaScript runtimes have no
 * mkfifo, and running the mkfifo command cost 2-6 ms in every run, restore and exec. Falls back
 * to that command (which also explains a failure) when libc cannot be called.
 */
export function makeFifo(file: string, mode = 0o600): void {
  if (mkfifo(file, mode)) return;
  const r = spawnSync('mkfifo', ['-m', mode.toString(8), file], { encoding: 'utf8' });
  if (r.status !== 0) throw new FerryError('EINTERNAL', `mkfifo ${file} failed: ${(r.stderr || r.error?.message || '').trim()}`);
}

/** What a FifoReader has read so far, and whether every writer has closed the FIFO. */
export interface FifoRead {
  data: Buffer;
  eof: boolean;
}

/**
 * Reads the read end of a FIFO opened with O_NONBLOCK by polling it with read(2), until
 * `enough(data)` says the caller has what it waits for, or every writer has closed it (EOF).
 * The reader owns fd and closes it when it settles (unless told to keep it open: a writer
 * that writes again then does not meet a FIFO without readers) or is cancelled.
 *
 * Why not `new net.Socket({ fd })`: some runtimes (Bun) never report data or EOF for a FIFO
 * wrapped that way, and do not keep the process alive for it, so a command waiting on it ended
 * silently. A timer loop keeps every runtime alive and reads what the kernel has. It polls every
 * millisecond for the first second (a conmon answers within ~100 ms), then every 5 ms.
 */
export class FifoReader {
  readonly result: Promise<FifoRead>;
  private fd: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private settle!: (r: FifoRead) => void;
  private fail!: (e: Error) => void;
  private readonly chunks: Buffer[] = [];
  private readonly buf = Buffer.alloc(4096);
  private readonly t0 = Date.now();

  constructor(
    fd: number,
    private readonly enough: (data: Buffer) => boolean = (d) => d.length > 0,
    private readonly opts: { keepOpen?: boolean } = {},
  ) {
    this.fd = fd;
    this.result = new Promise<FifoRead>((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    this.poll();
  }

  /** Stops reading and closes the descriptor; result stays pending if it had not settled. Idempotent. */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = undefined;
    }
  }

  /**
   * What the FIFO holds now, read without waiting, with everything read before: for a caller
   * that learnt the writer is gone before the next poll came (the data is still in the FIFO).
   */
  readNow(): Buffer {
    try {
      while (this.fd !== undefined && this.readOnce()) {
        // more may follow
      }
    } catch {
      // poll reports the error
    }
    return Buffer.concat(this.chunks);
  }

  /** One read(2), kept: the bytes read, 0 at EOF, undefined when nothing is there yet (writers remain). */
  private readOnce(): number | undefined {
    for (;;) {
      try {
        const n = fs.readSync(this.fd!, this.buf, 0, this.buf.length, null);
        if (n > 0) this.chunks.push(Buffer.from(this.buf.subarray(0, n)));
        return n;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EINTR') continue;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return undefined;
        throw e;
      }
    }
  }

  private poll(): void {
    this.timer = undefined;
    if (this.fd === undefined) return;
    for (;;) {
      let n: number | undefined;
      try {
        n = this.readOnce();
      } catch (e) {
        this.cancel();
        this.fail(e as Error);
        return;
      }
      if (n === undefined) break;
      if (n === 0) return this.finish(true);
      if (this.enough(Buffer.concat(this.chunks))) return this.finish(false);
    }
    this.timer = setTimeout(() => this.poll(), Date.now() - this.t0 < 1000 ? 1 : 5);
  }

  private finish(eof: boolean): void {
    if (eof || !this.opts.keepOpen) this.cancel();
    this.settle({ data: Buffer.concat(this.chunks), eof });
  }
}
