/**
 * The few libc calls that JavaScript runtimes do not offer (mkfifo, flock, lgetxattr, mount,
 * socketpair) or offer only at a price (isatty: node:tty loads the stream machinery, ~4 ms of a
 * command's start), made in this process through Bun's FFI. Each spared a process per call (2-6
 * ms): Ferry makes FIFOs and takes locks in every run, restore and checkpoint. Where FFI is not
 * available (another runtime), each function returns undefined and its caller runs the
 * command-line tool as before (a dump, which has none, says so).
 */
import { FerryError } from './errors.js';

interface Libc {
  mkfifo(path: Buffer, mode: number): number;
  flock(fd: number, op: number): number;
  lgetxattr(path: Buffer, name: Buffer, value: Buffer, size: number): number;
  isatty(fd: number): number;
  mount(source: Buffer, target: Buffer, fstype: Buffer, flags: number, data: Buffer): number;
  pipe2(fds: Int32Array, flags: number): number;
  socketpair(domain: number, type: number, protocol: number, fds: Int32Array): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  sendfile(out: number, input: number, count: number): number;
  errno(): number;
}

let libc: Libc | null | undefined;

function load(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ffi = require('bun:ffi') as typeof import('bun:ffi');
    const { i32, u32, cstring, ptr, u64, i64 } = ffi.FFIType;
    const lib = ffi.dlopen('libc.so.6', {
      mkfifo: { args: [cstring, u32], returns: i32 },
      flock: { args: [i32, i32], returns: i32 },
      lgetxattr: { args: [cstring, cstring, ptr, u64], returns: i64 },
      isatty: { args: [i32], returns: i32 },
      mount: { args: [cstring, cstring, cstring, u64, cstring], returns: i32 },
      pipe2: { args: [ptr, i32], returns: i32 },
      socketpair: { args: [i32, i32, i32, ptr], returns: i32 },
      fcntl: { args: [i32, i32, i32], returns: i32 },
      sendfile: { args: [i32, i32, ptr, u64], returns: i64 },
      __errno_location: { args: [], returns: ptr },
    });
    libc = {
      mkfifo: (p, mode) => Number(lib.symbols.mkfifo(p, mode)),
      flock: (fd, op) => Number(lib.symbols.flock(fd, op)),
      lgetxattr: (p, name, value, size) => Number(lib.symbols.lgetxattr(p, name, value, size)),
      isatty: (fd) => Number(lib.symbols.isatty(fd)),
      mount: (src, target, fstype, flags, data) => Number(lib.symbols.mount(src, target, fstype, flags, data)),
      pipe2: (fds, flags) => Number(lib.symbols.pipe2(fds, flags)),
      socketpair: (domain, type, protocol, fds) => Number(lib.symbols.socketpair(domain, type, protocol, fds)),
      fcntl: (fd, cmd, arg) => Number(lib.symbols.fcntl(fd, cmd, arg)),
      sendfile: (out, input, count) => Number(lib.symbols.sendfile(out, input, null, count)),
      errno: () => ffi.read.i32(lib.symbols.__errno_location(), 0),
    };
  } catch {
    libc = null;
  }
  return libc;
}

/** Whether libc is called in this process (Bun), rather than through command-line tools. */
export function haveLibc(): boolean {
  return load() !== null;
}

/** mkfifo(3): true when made, false when it failed, undefined when libc cannot be called. */
export function mkfifo(file: string, mode: number): boolean | undefined {
  const c = load();
  if (!c) return undefined;
  if (file.includes('\0')) throw new FerryError('EINVAL', `invalid path ${JSON.stringify(file)}`);
  return c.mkfifo(Buffer.from(`${file}\0`), mode) === 0;
}

const LOCK_EX = 2;
const LOCK_NB = 4;

/**
 * flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another open file description holds
 * it (or the call failed), undefined when libc cannot be called.
 */
export function tryLockExclusive(fd: number): boolean | undefined {
  const c = load();
  if (!c) return undefined;
  return c.flock(fd, LOCK_EX | LOCK_NB) === 0;
}

/**
 * lgetxattr(2) of a short attribute as text: its value, null when the file has none (or the
 * call failed), undefined when libc cannot be called.
 */
export function getXattr(file: string, name: string): string | null | undefined {
  const c = load();
  if (!c) return undefined;
  if (file.includes('\0') || name.includes('\0')) return null;
  const buf = Buffer.alloc(256);
  const n = c.lgetxattr(Buffer.from(`${file}\0`), Buffer.from(`${name}\0`), buf, buf.length);
  return n >= 0 ? buf.toString('utf8', 0, n) : null;
}

/** isatty(3): whether fd is a terminal; undefined when libc cannot be called. */
export function isattyFd(fd: number): boolean | undefined {
  const c = load();
  if (!c) return undefined;
  return c.isatty(fd) === 1;
}

/**
 * mount(2) of a filesystem with options (no flags), relative paths in data resolved from cwd:
 * true when mounted, false when it failed (the caller runs mount(8), which says why), undefined
 * when libc cannot be called. The working directory is changed and put back synchronously:
 * nothing else runs in between.
 */
export function mountFs(fstype: string, source: string, target: string, data: string, cwd: string): boolean | undefined {
  const c = load();
  if (!c) return undefined;
  if ([fstype, source, target, data, cwd].some((x) => x.includes('\0'))) return false;
  const here = process.cwd();
  try {
    process.chdir(cwd);
  } catch {
    return false;
  }
  try {
    return c.mount(Buffer.from(`${source}\0`), Buffer.from(`${target}\0`), Buffer.from(`${fstype}\0`), 0, Buffer.from(`${data}\0`)) === 0;
  } finally {
    process.chdir(here);
  }
}

const O_CLOEXEC = 0o2000000;
const F_SETPIPE_SZ = 1031;
const EINTR = 4;

/**
 * A pipe (both ends close-on-exec, blocking), enlarged to size bytes where the kernel allows
 * (fs.pipe-max-size): [read end, write end], or undefined when libc cannot be called.
 */
export function makePipe(size?: number): [number, number] | undefined {
  const c = load();
  if (!c) return undefined;
  const fds = new Int32Array(2);
  if (c.pipe2(fds, O_CLOEXEC) !== 0) throw new FerryError('EINTERNAL', `pipe2 failed (errno ${c.errno()})`);
  if (size) c.fcntl(fds[1]!, F_SETPIPE_SZ, size); // a smaller pipe only costs more round trips
  return [fds[0]!, fds[1]!];
}

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_CLOEXEC = 0o2000000;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/**
 * A pair of connected Unix sockets that keep message boundaries (SOCK_SEQPACKET, both ends
 * close-on-exec): what CRIU's RPC runs over. The first end is made non-blocking (it is read
 * by polling); the second is for the child. Undefined when libc cannot be called.
 */
export function makeSeqpacketPair(): [number, number] | undefined {
  const c = load();
  if (!c) return undefined;
  const fds = new Int32Array(2);
  if (c.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) !== 0) throw new FerryError('EINTERNAL', `socketpair failed (errno ${c.errno()})`);
  c.fcntl(fds[0]!, F_SETFL, O_NONBLOCK);
  return [fds[0]!, fds[1]!];
}

/**
 * sendfile(2) from input's current offset to out (a pipe): the kernel moves the file's pages
 * without copying them through this process. Returns the bytes moved (0 at the file's end);
 * throws with the errno on failure (EPIPE: the reader is gone).
 */
export function sendFile(out: number, input: number, count: number): number {
  const c = load();
  if (!c) throw new FerryError('EINTERNAL', 'sendfile is not available');
  for (;;) {
    const n = c.sendfile(out, input, count);
    if (n >= 0) return n;
    const errno = c.errno();
    if (errno !== EINTR) throw Object.assign(new Error(`sendfile failed (errno ${errno})`), { errno });
  }
}
