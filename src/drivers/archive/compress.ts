import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { Duplex, PassThrough, Transform, type Readable, type Writable } from 'node:stream';
import { zlib } from '../../lib/lazy.js';
import { FerryError } from '../../lib/errors.js';

export type Compression = 'zstd' | 'gzip' | 'none';
export const COMPRESSIONS: Compression[] = ['zstd', 'gzip', 'none'];

/** A transform stream plus a promise that settles when its helper process (if any) is done. */
export interface Codec {
  stream: Duplex;
  done: Promise<void>;
}

/** A compressor that writes its output somewhere of its own: only its input is ours. */
export interface Sink {
  stream: Writable;
  done: Promise<void>;
}

/** A decompressor that reads its input from somewhere of its own: only its output is ours. */
export interface Source {
  stream: Readable;
  done: Promise<void>;
}

function processCodec(argv: string[], what: string): Codec;
function processCodec(argv: string[], what: string, outFd: number): Sink;
function processCodec(argv: string[], what: string, outFd: undefined, inFd: number): Source;
function processCodec(argv: string[], what: string, outFd?: number, inFd?: number): Codec | Sink | Source {
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { stdio: [inFd ?? 'pipe', outFd ?? 'pipe', 'pipe'] });
  } catch (e) {
    throw new FerryError('EDEPEND', `${argv[0]} is not installed: run \`npm run setup\` (as root)`, { cause: e });
  }
  const done = exited(child, argv, what);
  // A duplex made of the child's stdin (writable side) and stdout (readable side); only its
  // stdin when it writes to a file descriptor of its own.
  const stream: Duplex | Writable | Readable = inFd !== undefined ? child.stdout! : outFd !== undefined ? child.stdin! : Duplex.from({ writable: child.stdin!, readable: child.stdout! });
  stream.on('error', () => undefined);
  // Torn down half-way (the archive was refused, the output failed): the helper must not stay
  // blocked on its pipes, or it keeps ferry from exiting.
  stream.on('close', () => {
    // (child.stdin is a socket, itself a Duplex: what it reads is not ours to wait for.)
    const readDone = outFd === undefined ? (stream as Readable).readableEnded : true;
    const writeDone = inFd === undefined ? (stream as Writable).writableFinished : true;
    if (child.exitCode === null && child.signalCode === null && !(readDone && writeDone)) child.kill('SIGKILL');
  });
  return { stream, done } as Codec | Sink | Source;
}

/** Settles when a helper process has exited: rejects, with its last word, unless it exited 0. */
function exited(child: ChildProcess, argv: string[], what: string): Promise<void> {
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new FerryError('EDEPEND', `${argv[0]} is not installed: run \`npm run setup\` (as root)`) : e),
    );
    child.on('close', (code, sig) => {
      if (code === 0) resolve();
      else reject(new FerryError('EARCHIVE', `${what} (${argv[0]}: ${stderr.replace(/\/\*stdin\*\\\s*:\s*/g, '').trim().split('\n').pop() || `exit ${code ?? sig}`})`));
    });
  });
  done.catch(() => undefined);
  return done;
}

/** zstd as Ferry writes archives: level 3, every core, and a checksum of the content in the frame. */
const ZSTD_WRITE = ['zstd', '-q', '-c', '--check', '-T0', '-3'];

/**
 * zstd between two descriptors of ours: it reads inFd (a pipe the archive writer fills, the
 * kernel moving files' pages into it) and writes outFd (the archive file). Neither side's bytes
 * pass through JavaScript. The caller closes its copies of both once spawned.
 */
export function compressorBetweenFds(inFd: number, outFd: number): { done: Promise<void>; kill(): void } {
  let child: ChildProcess;
  try {
    child = spawn(ZSTD_WRITE[0]!, ZSTD_WRITE.slice(1), { stdio: [inFd, outFd, 'pipe'] });
  } catch (e) {
    throw new FerryError('EDEPEND', 'zstd is not installed: run `npm run setup` (as root)', { cause: e });
  }
  const done = exited(child, ZSTD_WRITE, 'compressing the archive failed');
  return {
    done,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * A compressor that writes straight into a file descriptor (the archive file) rather than back
 * to us: the compressed bytes never pass through JavaScript. Only for zstd, a process of its own;
 * undefined for the others.
 */
export function compressorToFd(c: Compression, fd: number): Sink | undefined {
  return c === 'zstd' ? processCodec(ZSTD_WRITE, 'compressing the archive failed', fd) : undefined;
}

/** zstd inside this process (Bun's node:zlib has it; Node's types do not say so yet). */
interface ZstdZlib {
  zstdCompressSync?(b: Buffer, o?: { params?: Record<number, number> }): Buffer;
  createZstdDecompress?(): Duplex;
  constants: Record<string, number>;
}
const zstdZlib = (): ZstdZlib => zlib() as unknown as ZstdZlib;

/** Input gathered into frames of up to this much before each is compressed. */
const ZSTD_BATCH = 1 << 20;

/**
 * zstd in this process, one frame per MiB of input, each compressed at once: a tar stream comes
 * in many small writes (a header, a small file), and zlib's streaming compressor takes a round
 * trip through its thread pool for each (~5 ms for a lazy migration's ~25 members, against
 * ~0.3 ms this way). A sequence of frames is one valid zstd stream.
 */
function batchedZstd(z: ZstdZlib): Duplex {
  // As ZSTD_WRITE: level 3, and a checksum of each frame's content (format 2 relies on it).
  const level = z.constants.ZSTD_c_compressionLevel;
  const check = z.constants.ZSTD_c_checksumFlag;
  const opts = { params: { [level!]: 3, [check!]: 1 } };
  let parts: Buffer[] = [];
  let size = 0;
  const frame = (t: Transform): void => {
    if (!size) return;
    const input = Buffer.concat(parts, size);
    parts = [];
    size = 0;
    t.push(z.zstdCompressSync!(input, opts));
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      size += chunk.length;
      try {
        if (size >= ZSTD_BATCH) frame(this);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    flush(cb) {
      try {
        frame(this);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}

/**
 * How a codec runs. inProcess: zstd in this process rather than a `zstd` child, for archives
 * known to be small (a lazy migration's, a small stop-and-copy's): a child costs 4-12 ms to
 * start and reap on each end, which is most of the time such an archive takes; the child's
 * threads (-T0) pay off only for large ones.
 */
export interface CodecOptions {
  inProcess?: boolean;
}

export function compressor(c: Compression, o: CodecOptions = {}): Codec {
  switch (c) {
    case 'zstd': {
      const z = zstdZlib();
      if (o.inProcess && z.zstdCompressSync && z.constants.ZSTD_c_compressionLevel !== undefined && z.constants.ZSTD_c_checksumFlag !== undefined) {
        return { stream: batchedZstd(z), done: Promise.resolve() };
      }
      return processCodec(ZSTD_WRITE, 'compressing the archive failed');
    }
    case 'gzip': {
      const s = zlib().createGzip({ level: 6 });
      return { stream: s, done: Promise.resolve() };
    }
    case 'none': {
      const s = new PassThrough();
      return { stream: s, done: Promise.resolve() };
    }
  }
}

function compressionOf(buf: Buffer): Compression {
  if (buf.length >= 4 && buf.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return 'gzip';
  return 'none';
}

/**
 * Whether a zstd stream's first frame carries a checksum of its content (XXH64, which `zstd -d`
 * checks): the Content_Checksum_flag of its frame header descriptor, the byte after the magic.
 */
function frameChecked(buf: Buffer): boolean {
  return compressionOf(buf) === 'zstd' && buf.length >= 5 && (buf[4]! & 0x04) !== 0;
}

export interface Sniffed {
  compression: Compression;
  /** zstd only: its frame carries a checksum of the content. */
  checked: boolean;
}

/** A file's compression, from its first bytes (read at offset 0: the descriptor's offset stays). */
export function sniffFd(fd: number): Sniffed {
  const buf = Buffer.alloc(5);
  const head = buf.subarray(0, fs.readSync(fd, buf, 0, 5, 0));
  return { compression: compressionOf(head), checked: frameChecked(head) };
}

/**
 * A decompressor that reads a file descriptor (the archive file) itself: the compressed bytes
 * never pass through JavaScript. Only for zstd, a process of its own; undefined for the others.
 */
export function decompressorFromFd(c: Compression, fd: number): Source | undefined {
  return c === 'zstd' ? processCodec(['zstd', '-q', '-d', '-c'], 'bad checkpoint archive: it is corrupt or truncated; nothing was created', undefined, fd) : undefined;
}

/** Reads the first bytes of a stream to tell its compression (the file name does not decide). */
export async function sniff(input: Readable): Promise<Sniffed & { stream: Readable }> {
  // Listen rather than async-iterate: leaving a for-await loop would destroy the input.
  const chunks: Buffer[] = [];
  let len = 0;
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onErr);
    };
    const onData = (b: Buffer): void => {
      chunks.push(b);
      len += b.length;
      if (len >= 5) {
        input.pause();
        cleanup();
        resolve();
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve();
    };
    const onErr = (e: Error): void => {
      cleanup();
      reject(e);
    };
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onErr);
  });
  const buf = Buffer.concat(chunks);
  const compression = compressionOf(buf);
  const checked = frameChecked(buf);
  // Put the bytes we read back in front of the rest of the stream.
  const rest = new PassThrough();
  rest.write(buf);
  if (input.readableEnded) rest.end();
  else {
    input.on('error', (e) => rest.destroy(e));
    input.pipe(rest);
  }
  return { compression, checked, stream: rest };
}

export function decompressor(c: Compression, what = 'bad checkpoint archive: it is corrupt or truncated; nothing was created', o: CodecOptions = {}): Codec {
  switch (c) {
    case 'zstd': {
      const z = zstdZlib();
      if (o.inProcess && z.createZstdDecompress) return { stream: z.createZstdDecompress(), done: Promise.resolve() };
      return processCodec(['zstd', '-q', '-d', '-c'], what);
    }
    case 'gzip':
      // Large chunks: fewer, larger writes all the way down to tar.
      return { stream: zlib().createGunzip({ chunkSize: 256 << 10 }), done: Promise.resolve() };
    case 'none':
      return { stream: new PassThrough(), done: Promise.resolve() };
  }
}
