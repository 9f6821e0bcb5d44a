/**
 * What a CRIU image directory holds, read offline (never restoring anything): the process tree
 * with command lines and environments (read from the dumped memory), open files and sockets per
 * process, and a search through the dumped memory. The shapes follow checkpointctl's (which uses
 * go-criu's crit): field names in its JSON, fd "cwd"/"root" beside the numbered ones.
 *
 *   pstree.img        PstreeEntry {pid 1, ppid 2, pgid 3, sid 4, threads 5}
 *   core-PID.img      CoreEntry {tc 3: TaskCoreEntry {task_state 1, comm 6}, ids 4: TaskKobjIdsEntry {vm_id 1, files_id 2}}
 *   mm-PID.img        MmEntry {mm_arg_start 8, mm_arg_end 9, mm_env_start 10, mm_env_end 11}
 *   pagemap-PID.img   PagemapHead {pages_id 1}, then PagemapEntry {vaddr 1, compat_nr_pages 2, in_parent 3, flags 4, nr_pages 5}
 *   pages-N.img       the pages (raw) of the entries with PE_PRESENT, in order
 *   fdinfo-N.img      FdinfoEntry {id 1, flags 2, type 3, fd 4}  (N: files_id)
 *   files.img         FileEntry {type 1, id 2, reg 3, isk 4, usk 16, pipe 18, fifo 17, ...}
 *   fs-PID.img        FsEntry {cwd_id 1, root_id 2}
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageError, Message, readImage } from './proto.js';

export const PAGE_SIZE = 4096;
const PE_PARENT = 1;
const PE_PRESENT = 4;

const FD_TYPES: Record<number, string> = {
  0: 'UND', 1: 'REG', 2: 'PIPE', 3: 'FIFO', 4: 'INETSK', 5: 'UNIXSK', 6: 'EVENTFD', 7: 'EVENTPOLL', 8: 'INOTIFY', 9: 'SIGNALFD',
  10: 'PACKETSK', 11: 'TTY', 12: 'FANOTIFY', 13: 'NETLINKSK', 14: 'NS', 15: 'TUNF', 16: 'EXT', 17: 'TIMERFD', 18: 'MEMFD',
  19: 'BPFMAP', 20: 'PIDFD', 65534: 'CTL_TTY', 65535: 'AUTOFS_PIPE',
};
/** The FileEntry field holding each type's own entry. */
const FILE_FIELD: Record<number, number> = { 1: 3, 4: 4, 14: 5, 10: 6, 13: 7, 6: 8, 7: 9, 9: 10, 15: 11, 17: 12, 8: 13, 12: 14, 16: 15, 5: 16, 3: 17, 2: 18, 11: 19, 18: 20, 19: 21, 20: 22 };
const TASK_STATES: Record<number, string> = { 1: 'Alive', 2: 'Dead', 3: 'Stopped', 6: 'Zombie' };
const TCP_STATES: Record<number, string> = {
  1: 'ESTABLISHED', 2: 'SYN_SENT', 3: 'SYN_RECV', 4: 'FIN_WAIT1', 5: 'FIN_WAIT2', 6: 'TIME_WAIT', 7: 'CLOSE', 8: 'CLOSE_WAIT', 9: 'LAST_ACK', 10: 'LISTEN', 11: 'CLOSING',
};
const SOCK_TYPES: Record<number, string> = { 1: 'STREAM', 2: 'DGRAM', 3: 'RAW', 5: 'SEQPACKET' };
const IP_PROTOS: Record<number, string> = { 6: 'TCP', 17: 'UDP', 136: 'UDPLITE', 1: 'ICMP', 58: 'ICMPV6', 132: 'SCTP' };

export interface Process {
  pid: number;
  ppid: number;
  comm: string;
  taskState: string;
  threads: number[];
  filesId?: number;
  children: Process[];
}

export interface OpenFile {
  type: string;
  fd: string;
  path: string;
}

export interface Socket {
  fd: number;
  protocol: string;
  family?: 'IPv4' | 'IPv6' | 'UNIX';
  type?: string;
  state?: string;
  src?: string;
  srcPort?: number;
  dst?: string;
  dstPort?: number;
  address?: string;
}

/** Runs fn on an image's entries; any decoding failure names the file. */
function withImage<T>(file: string, fn: (entries: Message[]) => T): T {
  const entries = readImage(file);
  try {
    return fn(entries);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(file, `an entry does not decode (${(e as Error).message})`);
  }
}

/** An image that must be there: its absence is a corrupt checkpoint too, named. */
function required(dir: string, name: string): string {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) throw new ImageError(file, 'it is missing');
  return file;
}

export class ImageDir {
  private files?: Map<number, Message>;
  private readonly cores = new Map<number, Message>();

  constructor(readonly dir: string) {}

  /** The process tree (root first), each with its command name and state. */
  processTree(): Process {
    const entries = withImage(required(this.dir, 'pstree.img'), (es) => es.map((e) => ({ pid: e.num(1), ppid: e.num(2), threads: e.nums(5) })));
    if (!entries.length) throw new ImageError(path.join(this.dir, 'pstree.img'), 'it holds no process');
    const byPid = new Map<number, Process>();
    for (const e of entries) {
      if (!Number.isInteger(e.pid) || e.pid <= 0 || byPid.has(e.pid)) throw new ImageError(path.join(this.dir, 'pstree.img'), `bad or repeated PID ${e.pid}`);
      const core = this.core(e.pid);
      const tc = core.msg(3);
      const ids = core.msg(4) ?? this.ids(e.pid);
      byPid.set(e.pid, {
        pid: e.pid,
        ppid: e.ppid,
        comm: tc?.str(6) ?? '',
        taskState: TASK_STATES[tc?.num(1) ?? 1] ?? `state ${tc?.num(1)}`,
        threads: e.threads,
        filesId: ids?.has(2) ? ids.num(2) : undefined,
        children: [],
      });
    }
    const root = byPid.get(entries[0]!.pid)!;
    for (const p of [...byPid.values()].sort((a, b) => a.pid - b.pid)) if (p !== root) byPid.get(p.ppid)?.children.push(p);
    return root;
  }

  /** TaskKobjIdsEntry: in the core image, or (as CRIU writes it) in ids-PID.img. */
  private ids(pid: number): Message | undefined {
    const file = path.join(this.dir, `ids-${pid}.img`);
    return fs.existsSync(file) ? withImage(file, (es) => es[0]) : undefined;
  }

  private core(pid: number): Message {
    let c = this.cores.get(pid);
    if (!c) {
      const file = required(this.dir, `core-${pid}.img`);
      c = withImage(file, (es) => {
        if (!es[0]) throw new ImageError(file, 'it holds no entry');
        es[0].msg(3);
        es[0].msg(4);
        return es[0];
      });
      this.cores.set(pid, c);
    }
    return c;
  }

  /** The process's argv and environment, read from its dumped memory (undefined when not dumped). */
  cmdline(pid: number): string[] | undefined {
    return this.argArea(pid, 8, 9);
  }

  environment(pid: number): string[] | undefined {
    return this.argArea(pid, 10, 11);
  }

  private argArea(pid: number, startField: number, endField: number): string[] | undefined {
    const file = path.join(this.dir, `mm-${pid}.img`);
    if (!fs.existsSync(file)) return undefined;
    const [start, end] = withImage(file, (es) => [es[0]?.num(startField) ?? 0, es[0]?.num(endField) ?? 0]);
    if (!(end > start) || end - start > 1024 * 1024) return undefined;
    const mem = this.readMemory(pid, start, end - start);
    if (!mem) return undefined;
    const s = mem.toString('utf8').replace(/\0+$/, '');
    return s ? s.split('\0') : [];
  }

  /** The regions of dumped memory of a process, in address order, with where their bytes lie in its pages image. */
  regions(pid: number): { vaddr: number; length: number; offset: number; pagesFile: string }[] {
    const file = path.join(this.dir, `pagemap-${pid}.img`);
    if (!fs.existsSync(file)) return [];
    return withImage(file, (es) => {
      const head = es[0];
      if (!head) throw new ImageError(file, 'it holds no header');
      const pagesFile = path.join(this.dir, `pages-${head.num(1)}.img`);
      const out: { vaddr: number; length: number; offset: number; pagesFile: string }[] = [];
      let offset = 0;
      for (const e of es.slice(1)) {
        const nr = e.has(5) ? e.num(5) : e.num(2);
        const flags = e.has(4) ? e.num(4) : e.num(3) ? PE_PARENT : PE_PRESENT;
        if (!(flags & PE_PRESENT)) continue; // in a parent (pre-dump) or lazy: not in this image
        out.push({ vaddr: e.num(1), length: nr * PAGE_SIZE, offset, pagesFile });
        offset += nr * PAGE_SIZE;
      }
      return out;
    });
  }

  /** Bytes of a process's dumped memory at [addr, addr+len), or undefined when not all of it was dumped here. */
  readMemory(pid: number, addr: number, len: number): Buffer | undefined {
    const out = Buffer.alloc(len);
    let filled = 0;
    for (const r of this.regions(pid)) {
      const lo = Math.max(addr, r.vaddr);
      const hi = Math.min(addr + len, r.vaddr + r.length);
      if (lo >= hi) continue;
      const n = readAt(r.pagesFile, out, lo - addr, hi - lo, r.offset + (lo - r.vaddr));
      filled += n;
    }
    return filled === len ? out : undefined;
  }

  /** Memory regions with their bytes, one at a time (for a search): contiguous entries joined. */
  *memory(pid: number): Generator<{ vaddr: number; bytes: Buffer }> {
    const regions = this.regions(pid);
    for (let i = 0; i < regions.length; ) {
      let j = i + 1;
      while (j < regions.length && regions[j]!.vaddr === regions[j - 1]!.vaddr + regions[j - 1]!.length && regions[j]!.length + regions[j - 1]!.length < 64 * 1024 * 1024) j++;
      const first = regions[i]!;
      const length = regions.slice(i, j).reduce((n, r) => n + r.length, 0);
      const bytes = Buffer.alloc(length);
      const n = readAt(first.pagesFile, bytes, 0, length, first.offset);
      if (n !== length) throw new ImageError(first.pagesFile, `it is shorter than its pagemap says (truncated?)`);
      yield { vaddr: first.vaddr, bytes };
      i = j;
    }
  }

  /** The total size of the memory pages dumped for pid. */
  memorySize(pid: number): number {
    return this.regions(pid).reduce((n, r) => n + r.length, 0);
  }

  private fileEntries(): Map<number, Message> {
    if (!this.files) {
      const file = path.join(this.dir, 'files.img');
      const map = new Map<number, Message>();
      if (fs.existsSync(file)) withImage(file, (es) => es.forEach((e) => map.set(e.num(2), e)));
      this.files = map;
    }
    return this.files;
  }

  private fileEntry(id: number): { type: number; m?: Message } | undefined {
    const f = this.fileEntries().get(id);
    if (!f) return undefined;
    const type = f.num(1);
    const field = FILE_FIELD[type];
    return { type, m: field ? f.msg(field) : undefined };
  }

  private fdinfos(p: Process): { fd: number; id: number; type: number }[] {
    if (p.filesId === undefined) return [];
    const file = path.join(this.dir, `fdinfo-${p.filesId}.img`);
    if (!fs.existsSync(file)) return [];
    return withImage(file, (es) => es.map((e) => ({ id: e.num(1), type: e.num(3), fd: e.num(4) })));
  }

  /** A process's open files: each fd, then its working and root directories. */
  openFiles(p: Process): OpenFile[] {
    const out: OpenFile[] = [];
    for (const d of this.fdinfos(p)) {
      const e = this.fileEntry(d.id);
      const type = FD_TYPES[d.type] ?? String(d.type);
      out.push({ type, fd: String(d.fd), path: this.describe(d.type, d.id, e?.m) });
    }
    const fsFile = path.join(this.dir, `fs-${p.pid}.img`);
    if (fs.existsSync(fsFile)) {
      const [cwd, root] = withImage(fsFile, (es) => [es[0]?.num(1), es[0]?.num(2)]);
      if (cwd !== undefined) out.push({ type: 'DIR', fd: 'cwd', path: this.describe(1, cwd, this.fileEntry(cwd)?.m) });
      if (root !== undefined) out.push({ type: 'DIR', fd: 'root', path: this.describe(1, root, this.fileEntry(root)?.m) });
    }
    return out;
  }

  private describe(type: number, id: number, m: Message | undefined): string {
    if (!m) return `[${FD_TYPES[type] ?? type} ${id}]`;
    switch (type) {
      case 1: // REG: RegFileEntry.name
        return m.str(6) ?? '';
      case 2: // PIPE: PipeEntry.pipe_id
        return `pipe[${m.num(2)}]`;
      case 3: // FIFO: FifoEntry {id 1, pipe_id 2}
        return `fifo[${m.num(2)}]`;
      case 4: // INETSK, UNIXSK: the socket's inode
      case 5:
        return `socket[${m.num(2)}]`;
      case 11: // TTY: TtyFileEntry {id 1, tty_info_id 2}
        return `tty[${m.num(2)}]`;
      default:
        return `[${FD_TYPES[type] ?? type}]`;
    }
  }

  /** A process's sockets (IPv4/IPv6 and UNIX), with protocol, state, addresses and ports. */
  sockets(p: Process): Socket[] {
    const out: Socket[] = [];
    for (const d of this.fdinfos(p)) {
      const e = this.fileEntry(d.id);
      if (!e?.m) continue;
      if (d.type === 4) {
        const m = e.m; // InetSkEntry
        const family = m.num(3) === 10 ? 'IPv6' : 'IPv4';
        const sockType = m.num(4);
        const proto = m.num(5);
        out.push({
          fd: d.fd,
          protocol: IP_PROTOS[proto] ?? (SOCK_TYPES[sockType] ?? `proto ${proto}`),
          family,
          type: SOCK_TYPES[sockType],
          state: TCP_STATES[m.num(6)] ?? String(m.num(6)),
          src: address(family, m.nums(11)),
          srcPort: m.num(7),
          dst: address(family, m.nums(12)),
          dstPort: m.num(8),
        });
      } else if (d.type === 5) {
        const m = e.m; // UnixSkEntry
        const name = m.bytes(11) ?? Buffer.alloc(0);
        const shown = name.length && name[0] === 0 ? `@${name.subarray(1).toString('utf8')}` : name.toString('utf8');
        out.push({ fd: d.fd, protocol: 'UNIX', family: 'UNIX', type: SOCK_TYPES[m.num(3)], state: TCP_STATES[m.num(4)] ?? String(m.num(4)), address: shown });
      }
    }
    return out;
  }
}

/** An IPv4/IPv6 address as CRIU keeps it: 32-bit words holding the address's bytes in network order. */
function address(family: 'IPv4' | 'IPv6', words: number[]): string {
  const b = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => b.writeUInt32LE(w >>> 0, i * 4));
  if (family === 'IPv4') return words.length ? [...b.subarray(0, 4)].join('.') : '0.0.0.0';
  if (words.length < 4) return '::';
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

function readAt(file: string, into: Buffer, at: number, len: number, pos: number): number {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new ImageError(file, `it cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    let n = 0;
    while (n < len) {
      const r = fs.readSync(fd, into, at + n, len - n, pos + n);
      if (r === 0) break;
      n += r;
    }
    return n;
  } finally {
    fs.closeSync(fd);
  }
}
