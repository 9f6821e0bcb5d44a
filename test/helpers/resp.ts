/**
 * A minimal Redis (RESP2) client over one TCP connection that it never reopens: the tests hold
 * it across checkpoint/restore to show that the very same connection survives.
 */
import type * as net from 'node:net';
import { connectTcp } from './net.js';

export type Reply = string | number | null | Reply[];

export class RedisError extends Error {}

type Parsed = { value: Reply | RedisError; end: number } | undefined;

/** One reply starting at `pos`, or undefined if the buffer does not hold all of it yet. */
function parse(buf: Buffer, pos: number): Parsed {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return undefined;
  const line = buf.toString('utf8', pos + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buf[pos]!)) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RedisError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return undefined;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: Reply[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p);
        if (!r) return undefined;
        if (r.value instanceof RedisError) throw r.value;
        items.push(r.value);
        p = r.end;
      }
      return { value: items, end: p };
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(buf.toString('utf8', pos, Math.min(buf.length, pos + 40)))}`);
  }
}

/** A command as RESP: an array of bulk strings. */
export function encode(args: (string | number)[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const s = String(a);
    parts.push(`$${Buffer.byteLength(s)}\r\n${s}\r\n`);
  }
  return Buffer.from(parts.join(''));
}

export class RespClient {
  private buf: Buffer = Buffer.alloc(0);
  private readonly pending: { resolve: (v: Reply) => void; reject: (e: Error) => void }[] = [];
  private closed: Error | undefined;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('connection closed')));
  }

  static async connect(host: string, port: number, timeoutMs = 5000): Promise<RespClient> {
    return new RespClient(await connectTcp(host, port, timeoutMs));
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    let pos = 0;
    try {
      for (;;) {
        if (pos >= this.buf.length) break;
        const r = parse(this.buf, pos);
        if (!r) break;
        pos = r.end;
        const p = this.pending.shift();
        if (!p) throw new Error('a reply nobody asked for');
        if (r.value instanceof RedisError) p.reject(r.value);
        else p.resolve(r.value);
      }
    } catch (e) {
      this.fail(e as Error);
      this.sock.destroy();
      return;
    }
    this.buf = this.buf.subarray(pos);
  }

  private fail(e: Error): void {
    this.closed ??= e;
    for (const p of this.pending.splice(0)) p.reject(e);
  }

  /** Sends one command and waits for its reply (Redis errors reject with RedisError). */
  command(args: (string | number)[], timeoutMs = 30_000): Promise<Reply> {
    if (this.closed) return Promise.reject(new Error(`connection already broken: ${this.closed.message}`));
    return new Promise<Reply>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to ${String(args[0])} within ${timeoutMs} ms`)), timeoutMs);
      this.pending.push({
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.sock.write(encode(args));
    });
  }

  get isClosed(): boolean {
    return !!this.closed;
  }

  close(): void {
    this.sock.destroy();
  }
}
