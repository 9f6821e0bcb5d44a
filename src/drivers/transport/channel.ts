/**
 * The migration channel between two ferries: the source speaks frames, the destination
 * answers in JSON lines.
 *
 *   source -> destination: frames of [type byte][u32 big-endian length][payload]
 *       'J' a JSON control message, 'D' a chunk of archive data, 'E' the end of the archive
 *   destination -> source: one JSON object per line on stdout (its stderr is for humans)
 *
 * Over ssh the destination is `ferry system migrate-receive` started by the source, so the
 * channel is ssh's stdin/stdout: authenticated and encrypted by ssh, and no daemon listens.
 * To a `ferry system service` it is a mutual-TLS socket instead, with certificates derived
 * from a shared secret (service.ts).
 *
 * What a message may hold is the protocol's business, not the channel's: each reader is given
 * the protocol's parser for its direction and applies it to every message as it arrives, so
 * it hands out only checked, typed messages. A message the parser refuses takes its place in
 * the order as that error: next() rejects with it.
 */
import * as fs from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { FerryError } from '../../lib/errors.js';
import { run } from '../../lib/exec.js';
import { debug } from '../../lib/log.js';

/** A control message: a JSON object with a type; what else it holds is the protocol's. */
export interface Message {
  type: string;
}

/** Turns a message's parsed JSON into a checked, typed message; throws (a FerryError) if it is not one. */
export type MessageParser<T extends Message> = (json: unknown) => T;

const HEADER = 5;

/** A message as it arrived: checked, or refused by the parser (and why). */
type Entry<T> = { message: T } | { refused: Error };

function parsed<T extends Message>(parse: MessageParser<T>, json: unknown): Entry<T> {
  try {
    return { message: parse(json) };
  } catch (e) {
    return { refused: e as Error };
  }
}

function settle<T>(e: Entry<T>): Promise<T> {
  return 'message' in e ? Promise.resolve(e.message) : Promise.reject(e.refused);
}

/** Messages in arrival order, handed to whoever waits for the next one. */
class MessageQueue<T> {
  private queue: Entry<T>[] = [];
  private waiting: ((e: Entry<T> | undefined) => void) | undefined;
  private ended = false;

  push(e: Entry<T>): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w(e);
    else this.queue.push(e);
  }

  end(): void {
    this.ended = true;
    this.waiting?.(undefined);
    this.waiting = undefined;
  }

  /**
   * The next message, or undefined once the peer has gone (or after timeoutMs); rejects with
   * the parser's error if what came next was refused.
   */
  next(timeoutMs?: number): Promise<T | undefined> {
    const e = this.queue.shift();
    if (e) return settle(e);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      let t: NodeJS.Timeout | undefined;
      this.waiting = (v) => {
        if (t) clearTimeout(t);
        if (v) settle(v).then(resolve, reject);
        else resolve(undefined);
      };
      if (timeoutMs) t = setTimeout(() => ((this.waiting = undefined), resolve(undefined)), timeoutMs);
    });
  }
}
const MAX_JSON = 1 << 20;

/** Writes frames to the destination: control messages of type T, and archive data. */
export class FrameWriter<T extends Message> {
  constructor(private readonly out: Writable) {}

  private frame(type: 'J' | 'D' | 'E', payload: Buffer): Promise<void> {
    const h = Buffer.alloc(HEADER);
    h.write(type, 0, 'latin1');
    h.writeUInt32BE(payload.length, 1);
    return new Promise((resolve, reject) => {
      this.out.write(Buffer.concat([h, payload]), (e) => (e ? reject(e) : resolve()));
    });
  }

  send(msg: T): Promise<void> {
    return this.frame('J', Buffer.from(JSON.stringify(msg)));
  }

  /** A Writable whose bytes travel as D frames; ending it sends E. */
  dataStream(): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.frame('D', chunk).then(() => cb(), cb);
      },
      final: (cb) => {
        this.frame('E', Buffer.alloc(0)).then(() => cb(), cb);
      },
    });
  }
}

/** Reads frames on the destination: control messages (checked by parse) one by one, archive data as a stream. */
export class FrameReader<T extends Message> {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of the current data frame still to come. */
  private dataLeft = 0;
  private readonly messages = new MessageQueue<T>();
  /** The archive whose data is arriving now (from its first D frame to its E). */
  private current: PassThrough | undefined;
  /** Archives that began arriving before archive() asked for them, oldest first. */
  private readonly begun: PassThrough[] = [];
  /** The stream archive() handed out before its data began. */
  private taken: PassThrough | undefined;

  constructor(
    input: Readable,
    private readonly parse: MessageParser<T>,
  ) {
    input.on('data', (b: Buffer) => this.push(b));
    input.on('end', () => this.finish());
    input.on('error', () => this.finish());
    input.on('close', () => this.finish()); // a socket destroyed here emits neither of those
  }

  private finish(): void {
    for (const s of [this.current, this.taken]) s?.destroy(new FerryError('EARCHIVE', 'the source closed the connection in the middle of the archive'));
    this.current = this.taken = undefined;
    this.messages.end();
  }

  /** The stream the next archive's data goes to. */
  private begin(): PassThrough {
    if (!this.current) {
      this.current = this.taken ?? new PassThrough();
      if (!this.taken) this.begun.push(this.current);
      this.taken = undefined;
    }
    return this.current;
  }

  /**
   * Parses frames as bytes arrive. A data frame's payload is passed on piece by piece as it
   * comes (never gathered first: a 1 MiB frame arriving in 64 KiB reads would be copied over
   * and over); only headers and JSON messages are gathered.
   */
  private push(b: Buffer): void {
    while (b.length) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, b.length);
        this.begin().write(b.subarray(0, n));
        this.dataLeft -= n;
        b = b.subarray(n);
        continue;
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, b]) : b;
      b = Buffer.alloc(0);
      if (this.buf.length < HEADER) return;
      const type = String.fromCharCode(this.buf[0]!);
      const len = this.buf.readUInt32BE(1);
      if (type === 'D') {
        this.dataLeft = len;
        b = this.buf.subarray(HEADER);
        this.buf = Buffer.alloc(0);
        this.begin();
        continue;
      }
      if (type === 'J' && len > MAX_JSON) return this.finish();
      if (this.buf.length < HEADER + len) return;
      const payload = this.buf.subarray(HEADER, HEADER + len);
      b = this.buf.subarray(HEADER + len);
      this.buf = Buffer.alloc(0);
      if (type === 'J') {
        let json: unknown;
        try {
          json = JSON.parse(payload.toString('utf8'));
        } catch {
          return this.finish();
        }
        this.messages.push(parsed(this.parse, json));
      } else if (type === 'E') {
        this.begin().end();
        this.current = undefined;
      } else {
        return this.finish();
      }
    }
  }

  /** The next control message, or undefined when the source has gone; rejects if it was refused. */
  next(timeoutMs?: number): Promise<T | undefined> {
    return this.messages.next(timeoutMs);
  }

  /** The next archive: one that has begun (or even ended) arriving, or the one to come. */
  archive(): Readable {
    const early = this.begun.shift();
    if (early) return early;
    this.taken ??= new PassThrough();
    return this.taken;
  }
}

/** Reads the destination's JSON lines (checked by parse) on the source. */
export class LineReader<T extends Message> {
  private buf = '';
  private readonly messages = new MessageQueue<T>();
  /**
   * Receives `progress` notices (what the destination has received so far), which are never
   * replies: they do not reach next().
   */
  onProgress?: (m: Extract<T, { type: 'progress' }>) => void;

  constructor(
    input: Readable,
    private readonly parse: MessageParser<T>,
  ) {
    input.on('data', (b: Buffer) => {
      this.buf += b.toString();
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        let json: unknown;
        try {
          json = JSON.parse(line);
        } catch {
          continue; // not ours (a login banner, say)
        }
        const e = parsed(this.parse, json);
        if ('message' in e && e.message.type === 'progress') this.onProgress?.(e.message as Extract<T, { type: 'progress' }>);
        else this.messages.push(e);
      }
    });
    input.on('end', () => this.messages.end());
    input.on('error', () => this.messages.end());
    input.on('close', () => this.messages.end());
  }

  /** The next reply, or undefined when the destination has gone (or after timeoutMs); rejects if it was refused. */
  next(timeoutMs?: number): Promise<T | undefined> {
    return this.messages.next(timeoutMs);
  }
}

export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
}

/** ssh://[user@]host[:port] */
export function parseSshUrl(url: string): SshTarget {
  const m = url.match(/^ssh:\/\/(?:([a-zA-Z0-9._-]+)@)?(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9._-]+)(?::(\d{1,5}))?\/?$/);
  // A user or host that begins with "-" would reach ssh's argv as an option (-F reads a config file).
  if (!m || m[1]?.startsWith('-') || m[2]!.startsWith('-')) throw new FerryError('EINVAL', `invalid destination "${url}": use ssh://[user@]host[:port]`);
  const port = m[3] ? Number(m[3]) : undefined;
  if (port !== undefined && (port < 1 || port > 65535)) throw new FerryError('EINVAL', `invalid port in "${url}"`);
  return { user: m[1], host: m[2]!.replace(/^\[|\]$/g, ''), port };
}

/** Quotes one word for the remote shell that ssh hands its command to. */
export function shellQuote(s: string): string {
  return /^[a-zA-Z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface SshOptions {
  identity?: string;
  /** Extra `-o KEY=VALUE` options; the user's own ssh configuration applies as well. */
  options?: string[];
  /** ssh's `Ciphers` list, in the order to offer it (see sshCipherOrder); default: ssh's own. */
  ciphers?: string;
  /** Remote port forwards: [remotePort, localHost, localPort]. */
  remoteForwards?: [number, string, number][];
  /** Local port forwards (listening on this host's 127.0.0.1): [localPort, remoteHost, remotePort]. */
  localForwards?: [number, string, number][];
}

/**
 * Starts `remoteCommand args...` on the target through the system's ssh client. The remote
 * command is the user's (`--remote-command`, a shell command line by nature); every argument
 * Ferry adds is quoted for the remote shell.
 */
export function sshSpawn(target: SshTarget, remoteCommand: string, args: string[], o: SshOptions = {}): ChildProcess {
  const argv = ['-T', '-o', 'BatchMode=yes', '-o', 'ExitOnForwardFailure=yes', ...targetOptions(target, o.options)];
  if (o.identity) argv.push('-i', o.identity);
  if (o.ciphers) argv.push('-o', `Ciphers=${o.ciphers}`);
  for (const [rport, lhost, lport] of o.remoteForwards ?? []) argv.push('-R', `127.0.0.1:${rport}:${lhost}:${lport}`);
  for (const [lport, rhost, rport] of o.localForwards ?? []) argv.push('-L', `127.0.0.1:${lport}:${rhost}:${rport}`);
  argv.push(userAtHost(target), '--', [remoteCommand, ...args.map(shellQuote)].join(' '));
  return spawn('ssh', argv, { stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The target's port and the user's `-o` options, as ssh's argv has them before the host. */
function targetOptions(target: SshTarget, options: readonly string[] = []): string[] {
  return [...(target.port ? ['-p', String(target.port)] : []), ...options.flatMap((opt) => ['-o', opt])];
}

/** [user@]host, the word that names the target to ssh. */
function userAtHost(target: SshTarget): string {
  return target.user ? `${target.user}@${target.host}` : target.host;
}

/** The cipher that moves memory through ssh fastest on a CPU with AES instructions. */
const AES_CIPHER = 'aes128-gcm@openssh.com';

/**
 * The order ssh should offer its ciphers in, or undefined to leave ssh's own. ssh's built-in
 * order puts chacha20-poly1305 first, the faster one only on CPUs without AES instructions: with
 * them, AES-GCM moves a stop-and-copy migration's 1 GiB in 2.0 s of downtime against 2.7 s
 * (bench/README.md). Only the order changes, the ciphers offered stay the same, and only when
 * nobody chose: not the user's --ssh-option, not the ssh configuration that applies to this
 * host (system-wide policies included; its list is compared with ssh's built-in one, `ssh -G
 * -F /dev/null`). Anything unexpected (no `ssh -G`, an answer not understood) leaves ssh's.
 */
export async function sshCipherOrder(target: SshTarget, o: Pick<SshOptions, 'options'> = {}): Promise<string | undefined> {
  if ((o.options ?? []).some((opt) => /^\s*ciphers\s*[= ]/i.test(opt)) || !cpuHasAes()) return undefined;
  // The user's options too: a `Match user …` block, say, may depend on them.
  const args = [...targetOptions(target, o.options), userAtHost(target)];
  const ciphersOf = async (argv: string[]): Promise<string | undefined> => {
    const r = await run(['ssh', ...argv], { timeoutMs: 5_000 }).catch(() => undefined);
    return r?.code === 0 ? /^ciphers (\S+)$/m.exec(r.stdout)?.[1] : undefined;
  };
  const [configured, builtIn] = await Promise.all([ciphersOf(['-G', ...args]), ciphersOf(['-G', '-F', '/dev/null', ...args])]);
  const order = preferAes(configured, builtIn);
  debug(`ssh: ${order ? `ciphers offered AES-GCM first (${order})` : `ciphers left as configured (${configured ?? 'unknown'})`}`);
  return order;
}

/** ssh's cipher list with AES-GCM first, if it is ssh's built-in list and offers AES-GCM; else undefined. */
export function preferAes(configured: string | undefined, builtIn: string | undefined): string | undefined {
  if (!configured || configured !== builtIn) return undefined;
  const list = configured.split(',');
  if (!list.includes(AES_CIPHER) || list[0] === AES_CIPHER) return undefined;
  return [AES_CIPHER, ...list.filter((c) => c !== AES_CIPHER)].join(',');
}

let aes: boolean | undefined;
/** Whether this CPU has AES instructions (x86's `aes` flag, arm64's `aes` feature). */
function cpuHasAes(): boolean {
  if (aes === undefined) {
    try {
      aes = /^(flags|Features)\s*:.*\baes\b/m.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      aes = false;
    }
  }
  return aes;
}
