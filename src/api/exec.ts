/**
 * Docker's exec instances and hijacked connections: `POST /containers/{id}/exec` records what to
 * run (in memory: an exec instance lives as long as the service, as Docker's live as long as
 * their daemon), `POST /exec/{id}/start` runs it through the engine's exec with the connection
 * as its stdio, `GET /exec/{id}/json` says how it went, `POST /exec/{id}/resize` sizes its
 * terminal. The running itself (runc exec, or conmon for a terminal) is the engine's.
 */
import { randomBytes } from '../lib/lazy.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, type Duplex } from 'node:stream';
import type { Engine } from '../engine/engine.js';
import { FerryError } from '../lib/errors.js';
import { ApiError, bool, muxFrame, str, strList } from './http.js';

export interface ExecInstance {
  id: string;
  containerId: string;
  argv: string[];
  env: string[];
  workdir?: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  running: boolean;
  started: boolean;
  exitCode: number | null;
  /** The size asked for before the session's terminal existed, or the session's resize. */
  size?: { rows: number; cols: number };
  resize?: (rows: number, cols: number) => void;
}

/** At most this many instances are kept; the oldest finished ones go first. */
const MAX_EXECS = 1024;

export class ExecStore {
  private readonly execs = new Map<string, ExecInstance>();

  /** Docker's exec create body, checked: the instance (not run yet). */
  create(containerId: string, body: Record<string, unknown>): ExecInstance {
    const argv = strList(body, 'Cmd');
    if (!argv?.length) throw new ApiError(400, 'No exec command specified');
    if (str(body, 'User')) throw new ApiError(400, 'User is not supported yet: the command runs as the container\'s user');
    if (bool(body, 'Privileged')) throw new ApiError(400, 'Privileged is not supported');
    const env = strList(body, 'Env') ?? [];
    for (const e of env) if (e.indexOf('=') <= 0) throw new ApiError(400, `invalid environment variable "${e}": use KEY=VALUE`);
    const workdir = str(body, 'WorkingDir') || undefined;
    if (workdir !== undefined && !workdir.startsWith('/')) throw new ApiError(400, `invalid WorkingDir "${workdir}": give an absolute path`);
    if (this.execs.size >= MAX_EXECS) {
      for (const [id, x] of this.execs) {
        if (!x.running) this.execs.delete(id);
        if (this.execs.size < MAX_EXECS / 2) break;
      }
      if (this.execs.size >= MAX_EXECS) throw new ApiError(409, 'too many exec instances are running');
    }
    const x: ExecInstance = {
      id: randomBytes(32).toString('hex'),
      containerId,
      argv,
      env,
      workdir,
      tty: bool(body, 'Tty') ?? false,
      stdin: bool(body, 'AttachStdin') ?? false,
      stdout: bool(body, 'AttachStdout') ?? false,
      stderr: bool(body, 'AttachStderr') ?? false,
      running: false,
      started: false,
      exitCode: null,
    };
    this.execs.set(x.id, x);
    return x;
  }

  get(id: string): ExecInstance {
    const x = this.execs.get(id);
    if (!x) throw new ApiError(404, `No such exec instance: ${id}`);
    return x;
  }

  /** Marks an instance started (once only: Docker refuses a second start). */
  take(id: string): ExecInstance {
    const x = this.get(id);
    if (x.started) throw new ApiError(409, `exec ${id} has already been started`);
    x.started = true;
    x.running = true;
    return x;
  }
}

/** Docker's exec inspect shape. */
export function execInspect(x: ExecInstance) {
  return {
    ID: x.id,
    Running: x.running,
    ExitCode: x.exitCode,
    ProcessConfig: { tty: x.tty, entrypoint: x.argv[0], arguments: x.argv.slice(1), privileged: false, user: '' },
    OpenStdin: x.stdin,
    OpenStderr: x.stderr,
    OpenStdout: x.stdout,
    CanRemove: false,
    ContainerID: x.containerId,
    DetachKeys: '',
    Pid: 0,
  };
}

/** Sets an instance's terminal size: now if its session runs, else when it starts. */
export function resizeExec(x: ExecInstance, rows: number, cols: number): void {
  if (rows <= 0 || cols <= 0 || rows > 65535 || cols > 65535) throw new ApiError(400, `invalid terminal size ${rows}x${cols}`);
  if (!x.tty) return; // Docker ignores a resize of an exec without a terminal
  x.size = { rows, cols };
  x.resize?.(rows, cols);
}

/** Where an exec's output goes: framed (no terminal) or raw. */
export interface ExecSink {
  write(data: Buffer): void;
  end(): void;
}

/**
 * Runs a started instance with its stdio on sink (and input, when it attached stdin); records
 * its exit code before the sink ends (the client inspects it once the stream ends). A command
 * the runtime could not start gets its message on stderr and Podman's exit code (126/127).
 */
export async function runExec(engine: Engine, x: ExecInstance, sink: ExecSink, input: NodeJS.ReadableStream | undefined): Promise<void> {
  const out = (stream: 'stdout' | 'stderr') => (d: Buffer) => {
    if (stream === 'stdout' ? !x.stdout : !x.stderr) return;
    sink.write(x.tty ? d : muxFrame(stream, d));
  };
  try {
    x.exitCode = await engine.exec(x.containerId, x.argv, {
      stdin: !!input,
      tty: x.tty,
      env: x.env,
      workdir: x.workdir,
      detachKeys: Buffer.alloc(0),
      consoleSize: x.size ? { height: x.size.rows, width: x.size.cols } : undefined,
      io: { stdin: input, stdout: out('stdout'), stderr: out('stderr') },
      onSession: (s) => {
        x.resize = (rows, cols) => s.resize(rows, cols);
        if (x.size) s.resize(x.size.rows, x.size.cols);
      },
    });
  } catch (e) {
    const code = e instanceof FerryError ? e.exitCode : 126;
    out('stderr')(Buffer.from(`${(e as Error).message}\n`));
    x.exitCode = code;
  } finally {
    x.running = false;
    x.resize = undefined;
    sink.end();
  }
}

/**
 * The start request's body ({"Detach": false, "Tty": ...}) and what follows it, the command's
 * input. Bun hands an upgraded request's body to the request stream (Node leaves it in head).
 */
export async function hijackedBody(req: IncomingMessage, head: Buffer, length: number, limit = 1 << 16): Promise<{ body: Buffer; input: PassThrough }> {
  if (!Number.isInteger(length) || length < 0 || length > limit) throw new ApiError(400, `invalid request body length: at most ${limit} bytes`);
  let buf = head;
  if (buf.length < length) {
    const chunks: Buffer[] = [buf];
    let size = buf.length;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new ApiError(400, 'the request body did not arrive')), 10_000);
      const done = (): void => {
        clearTimeout(t);
        resolve();
      };
      req.on('data', (d: Buffer) => {
        chunks.push(d);
        size += d.length;
        if (size >= length) done();
      });
      req.once('end', done);
      req.once('error', done);
    });
    buf = Buffer.concat(chunks);
    if (buf.length < length) throw new ApiError(400, 'the request body ended early');
  }
  const input = new PassThrough();
  if (buf.length > length) input.write(buf.subarray(length));
  return { body: buf.subarray(0, length), input };
}

/** Feeds the hijacked connection's further data into input; the client's half-close ends it. */
export function forwardInput(sock: Duplex, input: PassThrough): void {
  sock.on('data', (d: Buffer) => input.write(d));
  sock.once('end', () => input.end());
  sock.once('close', () => input.end());
  sock.resume();
}

/** The 101 answer that hands the connection over to the stream. */
export function upgradeHead(framed: boolean, headers: Record<string, string>): string {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.${framed ? 'multiplexed' : 'raw'}-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n${extra}\r\n`;
}

/** An exec started without hijacking (Docker's `exec -d`, or a client that reads the body): runs it, the output as the response. */
export function responseSink(res: ServerResponse, tty: boolean): ExecSink {
  res.writeHead(200, { 'Content-Type': `application/vnd.docker.${tty ? 'raw' : 'multiplexed'}-stream` });
  res.flushHeaders();
  return { write: (d) => void res.write(d), end: () => res.end() };
}
