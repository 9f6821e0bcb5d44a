/**
 * The CRIU image messages Ferry reads, defined for Ferry from CRIU's documented image format
 * (proto2; the field numbers and types are CRIU's, the selection is Ferry's: only what it reads).
 * protobufjs compiles them once, on first use, from the text below (it is part of the executable).
 *
 * Fields CRIU marks `required` are required here too: an entry without one does not decode, as
 * it would not for CRIU itself. Every other field of CRIU's messages is simply not declared, and
 * protobuf skips what is not declared. Enumerations are read as plain integers (an unknown value
 * is then a number to show, not a decoding failure); explore.ts names them.
 */
import type Protobuf from 'protobufjs';
// Loaded on the first decode: every command loads this module, few decode images.
import { protobufjs as protobuf } from '../../lib/lazy.js';

export const CRIU_PROTO = `
syntax = "proto2";
package ferry.criu;

// inventory.img: the dump as a whole; network_lock_method is CRIU's own enumeration (0 iptables,
// 1 nftables, 2 skip), which the restore follows.
message InventoryEntry {
  required uint32 img_version = 1;
  optional uint32 network_lock_method = 11;
}

// pstree.img: one entry per process.
message PstreeEntry {
  required uint32 pid = 1;
  required uint32 ppid = 2;
  required uint32 pgid = 3;
  required uint32 sid = 4;
  repeated uint32 threads = 5;
}

// core-PID.img: the machine type, the task's state and name, and (in older images) its ids.
message CoreEntry {
  required uint32 mtype = 1;
  optional TaskCoreEntry tc = 3;
  optional TaskKobjIdsEntry ids = 4;
}

message TaskCoreEntry {
  required uint32 task_state = 1;
  required uint32 exit_code = 2;
  required string comm = 6;
}

// ids-PID.img (or CoreEntry.ids): which files, fs and memory images belong to the task.
message TaskKobjIdsEntry {
  required uint32 vm_id = 1;
  required uint32 files_id = 2;
  required uint32 fs_id = 3;
  required uint32 sighand_id = 4;
}

// mm-PID.img: where the command line and the environment lie in the task's memory.
message MmEntry {
  required uint64 mm_arg_start = 8;
  required uint64 mm_arg_end = 9;
  required uint64 mm_env_start = 10;
  required uint64 mm_env_end = 11;
}

// pagemap-PID.img: a head naming pages-N.img, then one entry per run of dumped pages.
message PagemapHead {
  required uint32 pages_id = 1;
}

message PagemapEntry {
  required uint64 vaddr = 1;
  required uint32 compat_nr_pages = 2;
  optional bool in_parent = 3;
  optional uint32 flags = 4;
  optional uint64 nr_pages = 5;
}

// fdinfo-N.img (N: TaskKobjIdsEntry.files_id): the task's descriptors, each naming a file entry.
message FdinfoEntry {
  required uint32 id = 1;
  required uint32 flags = 2;
  required uint32 type = 3;
  required uint32 fd = 4;
}

// files.img: every open file, of one type each, with that type's own entry.
message FileEntry {
  required uint32 type = 1;
  required uint32 id = 2;
  optional RegFileEntry reg = 3;
  optional InetSkEntry isk = 4;
  optional UnixSkEntry usk = 16;
  optional FifoEntry fifo = 17;
  optional PipeEntry pipe = 18;
  optional TtyFileEntry tty = 19;
}

message RegFileEntry {
  required uint32 id = 1;
  required string name = 6;
  optional uint32 mode = 10;
}

// Addresses: 32-bit words holding the address's bytes in network order (one for IPv4, four for IPv6).
message InetSkEntry {
  required uint32 id = 1;
  required uint32 ino = 2;
  required uint32 family = 3;
  required uint32 type = 4;
  required uint32 proto = 5;
  required uint32 state = 6;
  required uint32 src_port = 7;
  required uint32 dst_port = 8;
  repeated uint32 src_addr = 11;
  repeated uint32 dst_addr = 12;
}

// The name is bytes: an abstract name starts with a NUL and may hold more.
message UnixSkEntry {
  required uint32 id = 1;
  required uint32 ino = 2;
  required uint32 type = 3;
  required uint32 state = 4;
  required bytes name = 11;
}

message PipeEntry {
  required uint32 id = 1;
  required uint32 pipe_id = 2;
}

message FifoEntry {
  required uint32 id = 1;
  required uint32 pipe_id = 2;
}

message TtyFileEntry {
  required uint32 id = 1;
  required uint32 tty_info_id = 2;
}

// fs-PID.img: the working and root directories (file entry ids).
message FsEntry {
  required uint32 cwd_id = 1;
  required uint32 root_id = 2;
}
`;

/** The decoded messages, as plain objects (field names in camelCase; 64-bit integers as numbers). */
export interface Messages {
  InventoryEntry: { imgVersion: number; networkLockMethod?: number };
  PstreeEntry: { pid: number; ppid: number; pgid: number; sid: number; threads: number[] };
  CoreEntry: { mtype: number; tc?: Messages['TaskCoreEntry']; ids?: Messages['TaskKobjIdsEntry'] };
  TaskCoreEntry: { taskState: number; exitCode: number; comm: string };
  TaskKobjIdsEntry: { vmId: number; filesId: number; fsId: number; sighandId: number };
  MmEntry: { mmArgStart: number; mmArgEnd: number; mmEnvStart: number; mmEnvEnd: number };
  PagemapHead: { pagesId: number };
  PagemapEntry: { vaddr: number; compatNrPages: number; inParent?: boolean; flags?: number; nrPages?: number };
  FdinfoEntry: { id: number; flags: number; type: number; fd: number };
  FileEntry: {
    type: number;
    id: number;
    reg?: Messages['RegFileEntry'];
    isk?: Messages['InetSkEntry'];
    usk?: Messages['UnixSkEntry'];
    fifo?: Messages['FifoEntry'];
    pipe?: Messages['PipeEntry'];
    tty?: Messages['TtyFileEntry'];
  };
  RegFileEntry: { id: number; name: string; mode?: number };
  InetSkEntry: { id: number; ino: number; family: number; type: number; proto: number; state: number; srcPort: number; dstPort: number; srcAddr: number[]; dstAddr: number[] };
  UnixSkEntry: { id: number; ino: number; type: number; state: number; name: Buffer };
  PipeEntry: { id: number; pipeId: number };
  FifoEntry: { id: number; pipeId: number };
  TtyFileEntry: { id: number; ttyInfoId: number };
  FsEntry: { cwdId: number; rootId: number };
}

export type MessageName = keyof Messages;

let root: Protobuf.Root | undefined;
const types = new Map<MessageName, Protobuf.Type>();

function type(name: MessageName): Protobuf.Type {
  let t = types.get(name);
  if (!t) {
    root ??= protobuf().parse(CRIU_PROTO, { keepCase: false }).root;
    t = root.lookupType(`ferry.criu.${name}`);
    types.set(name, t);
  }
  return t;
}

/** 64-bit integers as numbers (exact up to 2^53: addresses, page counts); bytes as Buffers. */
const AS_PLAIN: Protobuf.IConversionOptions = { longs: Number, arrays: true };

function plainBytes(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(plainBytes);
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) (v as Record<string, unknown>)[k] = plainBytes(x);
  }
  return v;
}

/**
 * One entry decoded as the named message. Throws (protobufjs's error: a cut-short field, a
 * missing required field, nesting too deep) when it does not decode; the caller names the file.
 */
export function decodeMessage<K extends MessageName>(name: K, entry: Uint8Array): Messages[K] {
  const t = type(name);
  return plainBytes(t.toObject(t.decode(entry), AS_PLAIN)) as Messages[K];
}
