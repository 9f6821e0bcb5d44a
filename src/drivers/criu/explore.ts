/**
 * What a CRIU image directory holds, read offline (never restoring anything): the process tree
 * with command lines and environments (read from the dumped memory), open files and sockets per
 * process, and a search through the dumped memory. The shapes follow checkpointctl's (which uses
 * go-criu's crit): field names in its JSON, fd "cwd"/"root" beside the numbered ones.
 *
 *   pstree.img        PstreeEntry (pid, ppid, threads)
 *   core-PID.img      CoreEntry (tc: task state and comm; ids in older images)
 *   ids-PID.img       TaskKobjIdsEntry (files_id: which fdinfo-N.img)
 *   mm-PID.img        MmEntry (where argv and the environment lie)
 *   pagemap-PID.img   PagemapHead (pages_id), then PagemapEntry per run of pages
 *   pages-N.img       the pages (raw) of the entries with PE_PRESENT, in order
 *   fdinfo-N.img      FdinfoEntry (fd, type, file id)
 *   files.img         FileEntry (type, id, and reg/isk/usk/pipe/fifo/tty)
 *   fs-PID.img        FsEntry (cwd_id, root_id)
 *
 * The messages are defined in messages.ts and decoded by protobufjs (image.ts reads the framing).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImageError, readHeadedImage, readImage } from './image.js';
import type { Messages } from './messages.js';

export const PAGE_SIZE = 4096;
const PE_PARENT = 1;
const PE_PRESENT = 4;

const FD_TYPES: Record<number, string> = {
  0: 'UND', 1: 'REG', 2: 'PIPE', 3: 'FIFO', 4: 'INETSK', 5: 'UNIXSK', 6: 'EVENTFD', 7: 'EVENTPOLL', 8: 'INOTIFY', 9: 'SIGNALFD',
  10: 'PACKETSK', 11: 'TTY', 12: 'FANOTIFY', 13: 'NETLINKSK', 14: 'NS', 15: 'TUNF', 16: 'EXT', 17: 'TIMERFD', 18: 'MEMFD',
  19: 'BPFMAP', 20: 'PIDFD', 65534: 'CTL_TTY', 65535: 'AUTOFS_PIPE',
};
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

/** An image that must be there: its absence is a corrupt checkpoint too, named. */
function required(dir: string, name: string): string {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) throw new ImageError(file, 'it is missing');
  return file;
}

export class ImageDir {
  private files?: Map<number, Messages['FileEntry']>;
  private readonly cores = new Map<number, Messages['CoreEntry']>();

  constructor(readonly dir: string) {}

  /** The process tree (root first), each with its command name and state. */
  processTree(): Process {
    const entries = readImage(required(this.dir, 'pstree.img'), 'PstreeEntry');
    if (!entries.length) throw new ImageError(path.join(this.dir, 'pstree.img'), 'it holds no process');
    const byPid = new Map<number, Process>();
    for (const e of entries) {
      if (!Number.isInteger(e.pid) || e.pid <= 0 || byPid.has(e.pid)) throw new ImageError(path.join(this.dir, 'pstree.img'), `bad or repeated PID ${e.pid}`);
      const core = this.core(e.pid);
      const tc = core.tc;
      const ids = core.ids ?? this.ids(e.pid);
      byPid.set(e.pid, {
        pid: e.pid,
        ppid: e.ppid,
        comm: tc?.comm ?? '',
        taskState: TASK_STATES[tc?.taskState ?? 1] ?? `state ${tc?.taskState}`,
        threads: e.threads,
        filesId: ids?.filesId,
        children: [],
      });
    }
    const root = byPid.get(entries[0]!.pid)!;
    for (const p of [...byPid.values()].sort((a, b) => a.pid - b.pid)) if (p !== root) byPid.get(p.ppid)?.children.push(p);
    return root;
  }

  /** TaskKobjIdsEntry: in the core image, or (as CRIU writes it) in ids-PID.img. */
  private ids(pid: number): Messages['TaskKobjIdsEntry'] | undefined {
    const file = path.join(this.dir, `ids-${pid}.img`);
    return fs.existsSync(file) ? readImage(file, 'TaskKobjIdsEntry')[0] : undefined;
  }

  private core(pid: number): Messages['CoreEntry'] {
    let c = this.cores.get(pid);
    if (!c) {
      const file = required(this.dir, `core-${pid}.img`);
      c = readImage(file, 'CoreEntry')[0];
      if (!c) throw new ImageError(file, 'it holds no entry');
      this.cores.set(pid, c);
    }
    return c;
  }

  /** The process's argv and environment, read from its dumped memory (undefined when not dumped). */
  cmdline(pid: number): string[] | undefined {
    return this.argArea(pid, 'args');
  }

  environment(pid: number): string[] | undefined {
    return this.argArea(pid, 'env');
  }

  private argArea(pid: number, which: 'args' | 'env'): string[] | undefined {
    const file = path.join(this.dir, `mm-${pid}.img`);
    if (!fs.existsSync(file)) return undefined;
    const mm = readImage(file, 'MmEntry')[0];
    const [start, end] = !mm ? [0, 0] : which === 'args' ? [mm.mmArgStart, mm.mmArgEnd] : [mm.mmEnvStart, mm.mmEnvEnd];
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
    const { head, entries } = readHeadedImage(file, 'PagemapHead', 'PagemapEntry');
    const pagesFile = path.join(this.dir, `pages-${head.pagesId}.img`);
    const out: { vaddr: number; length: number; offset: number; pagesFile: string }[] = [];
    let offset = 0;
    for (const e of entries) {
      const nr = e.nrPages ?? e.compatNrPages;
      // Older images: no flags, in_parent alone says where the pages are.
      const flags = e.flags ?? (e.inParent ? PE_PARENT : PE_PRESENT);
      if (!(flags & PE_PRESENT)) continue; // in a parent (pre-dump) or lazy: not in this image
      out.push({ vaddr: e.vaddr, length: nr * PAGE_SIZE, offset, pagesFile });
      offset += nr * PAGE_SIZE;
    }
    return out;
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

  private fileEntries(): Map<number, Messages['FileEntry']> {
    if (!this.files) {
      const file = path.join(this.dir, 'files.img');
      const map = new Map<number, Messages['FileEntry']>();
      if (fs.existsSync(file)) for (const e of readImage(file, 'FileEntry')) map.set(e.id, e);
      this.files = map;
    }
    return this.files;
  }

  private fdinfos(p: Process): Messages['FdinfoEntry'][] {
    if (p.filesId === undefined) return [];
    const file = path.join(this.dir, `fdinfo-${p.filesId}.img`);
    if (!fs.existsSync(file)) return [];
    return readImage(file, 'FdinfoEntry');
  }

  /** A process's open files: each fd, then its working and root directories. */
  openFiles(p: Process): OpenFile[] {
    const out: OpenFile[] = [];
    for (const d of this.fdinfos(p)) {
      out.push({ type: FD_TYPES[d.type] ?? String(d.type), fd: String(d.fd), path: this.describe(d.type, d.id) });
    }
    const fsFile = path.join(this.dir, `fs-${p.pid}.img`);
    if (fs.existsSync(fsFile)) {
      const f = readImage(fsFile, 'FsEntry')[0];
      if (f) {
        out.push({ type: 'DIR', fd: 'cwd', path: this.describe(1, f.cwdId) });
        out.push({ type: 'DIR', fd: 'root', path: this.describe(1, f.rootId) });
      }
    }
    return out;
  }

  /** What an fd of this type with this file id refers to: a path, or TYPE[id] as crit names it. */
  private describe(type: number, id: number): string {
    const f = this.fileEntries().get(id);
    const name = FD_TYPES[type] ?? String(type);
    if (type === 1 && f?.reg) return f.reg.name;
    if (type === 2 && f?.pipe) return `pipe[${f.pipe.pipeId}]`;
    if (type === 3 && f?.fifo) return `fifo[${f.fifo.pipeId}]`;
    if (type === 4 && f?.isk) return `socket[${f.isk.ino}]`;
    if (type === 5 && f?.usk) return `socket[${f.usk.ino}]`;
    if (type === 11 && f?.tty) return `tty[${f.tty.ttyInfoId}]`;
    return f ? `[${name}]` : `[${name} ${id}]`;
  }

  /** A process's sockets (IPv4/IPv6 and UNIX), with protocol, state, addresses and ports. */
  sockets(p: Process): Socket[] {
    const out: Socket[] = [];
    for (const d of this.fdinfos(p)) {
      const f = this.fileEntries().get(d.id);
      if (d.type === 4 && f?.isk) {
        const m = f.isk;
        const family = m.family === 10 ? 'IPv6' : 'IPv4';
        out.push({
          fd: d.fd,
          protocol: IP_PROTOS[m.proto] ?? (SOCK_TYPES[m.type] ?? `proto ${m.proto}`),
          family,
          type: SOCK_TYPES[m.type],
          state: TCP_STATES[m.state] ?? String(m.state),
          src: address(family, m.srcAddr),
          srcPort: m.srcPort,
          dst: address(family, m.dstAddr),
          dstPort: m.dstPort,
        });
      } else if (d.type === 5 && f?.usk) {
        const m = f.usk;
        const shown = m.name.length && m.name[0] === 0 ? `@${m.name.subarray(1).toString('utf8')}` : m.name.toString('utf8');
        out.push({ fd: d.fd, protocol: 'UNIX', family: 'UNIX', type: SOCK_TYPES[m.type], state: TCP_STATES[m.state] ?? String(m.state), address: shown });
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
