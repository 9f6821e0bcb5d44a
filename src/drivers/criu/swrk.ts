/**
 * CRIU's RPC, as a container runtime drives it: one CRIU process (`criu swrk 3`) holding one end
 * of a SOCK_SEQPACKET pair as descriptor 3, one request (a dump or a pre-dump), one answer. The
 * messages are CRIU's (images/rpc.proto, proto2); only the fields Ferry sends or reads are here,
 * written by hand (Message) and read with protobufjs's Reader, field by field.
 *
 * Descriptors named in the options (images_dir_fd, work_dir_fd, status_fd) are this process's:
 * CRIU opens them through /proc/PEER/fd/N, the peer being whoever made the socket pair.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type Protobuf from 'protobufjs/minimal.js';
import { FerryError } from '../../lib/errors.js';
import type { RunResult } from '../../lib/exec.js';
import { FifoReader } from '../../lib/fifo.js';
import { protobufMinimal } from '../../lib/lazy.js';
import { makeSeqpacketPair } from '../../lib/libc.js';

/** criu_req_type */
export const REQ_DUMP = 1;
export const REQ_PRE_DUMP = 4;

/** criu_cg_mode */
export const CG_MODE = { ignore: 0, soft: 3, full: 4, strict: 5 } as const;

/** The criu_opts of a dump or a pre-dump (field numbers in encodeDumpRequest). */
export interface CriuDumpOpts {
  imagesDirFd: number;
  workDirFd?: number;
  pid: number;
  logFile: string;
  logLevel: number;
  root: string;
  leaveRunning?: boolean;
  extUnixSk?: boolean;
  tcpEstablished?: boolean;
  shellJob?: boolean;
  fileLocks?: boolean;
  pageServer?: { address: string; port: number };
  notifyScripts?: boolean;
  parentImg?: string;
  trackMem?: boolean;
  autoDedup?: boolean;
  /** External mounts: [mount point, the name the images record]. */
  extMnt: [string, string][];
  manageCgroups?: boolean;
  manageCgroupsMode?: number;
  external: string[];
  emptyNs?: number;
  freezeCgroup?: string;
  lazyPages?: boolean;
  statusFd?: number;
  orphanPtsMaster?: boolean;
  configFile?: string;
}

const VARINT = 0;
const BYTES = 2;

/**
 * A protobuf message being written: varints and length-delimited fields, all a criu_req uses.
 * Written here rather than with protobufjs's Writer, whose module loads on first use: with it,
 * encoding the request (and writing descriptors.json) took 2.2-3.4 ms of every dump, here
 * 1.4-1.7 ms.
 */
class Message {
  private readonly bytes: number[] = [];

  private varint(n: number): void {
    if (n < 0) {
      // A negative int32 is sign-extended to 64 bits (ten bytes), as protobuf wants.
      let lo = n >>> 0;
      let hi = 0xffffffff;
      while (hi !== 0 || lo > 0x7f) {
        this.bytes.push((lo & 0x7f) | 0x80);
        lo = ((lo >>> 7) | (hi << 25)) >>> 0;
        hi >>>= 7;
      }
      this.bytes.push(lo);
      return;
    }
    while (n > 0x7f) {
      this.bytes.push((n % 128) | 0x80);
      n = Math.floor(n / 128);
    }
    this.bytes.push(n);
  }

  int(field: number, v: number | undefined): this {
    if (v === undefined) return this;
    this.varint((field << 3) | VARINT);
    this.varint(v);
    return this;
  }

  bool(field: number, v: boolean | undefined): this {
    return v === undefined ? this : this.int(field, v ? 1 : 0);
  }

  raw(field: number, b: Uint8Array): this {
    this.varint((field << 3) | BYTES);
    this.varint(b.length);
    for (const x of b) this.bytes.push(x);
    return this;
  }

  str(field: number, v: string | undefined): this {
    return v === undefined ? this : this.raw(field, Buffer.from(v, 'utf8'));
  }

  sub(field: number, m: Message): this {
    return this.raw(field, m.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** A criu_req of type `type` with these options, as CRIU reads it off the socket. */
export function encodeDumpRequest(type: number, o: CriuDumpOpts): Uint8Array {
  const m = new Message()
    .int(1, o.imagesDirFd)
    .int(2, o.pid)
    .bool(3, o.leaveRunning)
    .bool(4, o.extUnixSk)
    .bool(5, o.tcpEstablished)
    .bool(7, o.shellJob)
    .bool(8, o.fileLocks)
    .int(9, o.logLevel)
    .str(10, o.logFile);
  if (o.pageServer) m.sub(11, new Message().str(1, o.pageServer.address).int(2, o.pageServer.port));
  m.bool(12, o.notifyScripts).str(13, o.root).str(14, o.parentImg).bool(15, o.trackMem).bool(16, o.autoDedup).int(17, o.workDirFd);
  for (const [key, val] of o.extMnt) m.sub(23, new Message().str(1, key).str(2, val));
  m.bool(24, o.manageCgroups).int(34, o.manageCgroupsMode);
  for (const e of o.external) m.str(37, e);
  m.int(38, o.emptyNs).str(44, o.freezeCgroup).bool(48, o.lazyPages).int(49, o.statusFd).bool(50, o.orphanPtsMaster).str(51, o.configFile);
  return new Message().int(1, type).sub(2, m).finish();
}

/** The parts of a criu_resp that Ferry reads. */
export interface CriuResponse {
  type: number;
  success: boolean;
  crErrno?: number;
  crErrmsg?: string;
}

/** Decodes a criu_resp; undefined when it does not decode or lacks a required field. */
export function decodeResponse(b: Uint8Array): CriuResponse | undefined {
  let r: Protobuf.Reader;
  const out: Partial<CriuResponse> = {};
  try {
    r = protobufMinimal().Reader.create(b);
    while (r.pos < r.len) {
      const t = r.uint32();
      switch (t >>> 3) {
        case 1:
          out.type = r.int32();
          break;
        case 2:
          out.success = r.bool();
          break;
        case 7:
          out.crErrno = r.int32();
          break;
        case 9:
          out.crErrmsg = r.string();
          break;
        default:
          r.skipType(t & 7);
      }
    }
  } catch {
    return undefined;
  }
  return out.type === undefined || out.success === undefined ? undefined : (out as CriuResponse);
}

export interface SwrkRun {
  /** CRIU's PID. */
  pid: number;
  /** CRIU's exit, with what it printed; code 0 only when it also answered with success. */
  done: Promise<RunResult>;
}

/**
 * Starts `criu swrk 3` with the request already waiting on its socket. It runs in a process group
 * of its own (a ^C meant for ferry does not stop a dump half-way), in cwd. Once CRIU has
 * answered, this side closes its end: a pre-dump's CRIU, which waits for more, then exits too.
 */
export function startSwrk(criu: string, request: Uint8Array, o: { env: NodeJS.ProcessEnv; cwd: string }): SwrkRun {
  const pair = makeSeqpacketPair();
  if (!pair) throw new FerryError('EUNSUPPORTED', 'this runtime cannot make the socket pair CRIU is driven over: run ferry as installed (its executable)');
  const [mine, theirs] = pair;
  let child: ReturnType<typeof spawn>;
  try {
    fs.writeSync(mine, request);
    child = spawn(criu, ['swrk', '3'], { stdio: ['ignore', 'pipe', 'pipe', theirs], env: o.env, cwd: o.cwd, detached: true });
  } catch (e) {
    fs.closeSync(mine);
    throw e;
  } finally {
    fs.closeSync(theirs);
  }
  const out: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => out.push(b));
  // One read is one message. The reader closes this end once CRIU has answered (or is gone).
  const reader = new FifoReader(mine);
  reader.result.catch(() => undefined);
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      // An answer still in the socket when the exit is seen is read now, not at the next poll.
      const data = reader.readNow();
      reader.cancel();
      const a = data.length > 0 ? decodeResponse(data) : undefined;
      const text = Buffer.concat(out).toString();
      if (a?.success && (code === 0 || a.type === REQ_PRE_DUMP)) return resolve({ code: 0, signal: null, stdout: text, stderr: '' });
      const why = a ? `criu failed: ${a.crErrmsg || `errno ${a.crErrno ?? 0}`}` : `criu ${signal ? `was killed by ${signal}` : `exited with code ${code}`} without an answer`;
      resolve({ code: code || 1, signal, stdout: text, stderr: `${text}${why}\n` });
    });
  });
  return { pid: child.pid ?? 0, done };
}
