/**
 * The REST API's plumbing: a small router (method + path pattern with :params), request
 * reading with limits, and Docker-shaped errors. No dependency: the routes are few and static,
 * and node:http (which Bun implements) does the protocol.
 *
 * Everything here treats the request as untrusted: bodies are size-limited and must be JSON
 * objects, query flags must be booleans or numbers Docker's clients send, path parameters are
 * passed to the engine, which validates names and IDs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FerryError, type ErrorCode } from '../lib/errors.js';

/** An error with an HTTP status, answered as `{"message": ...}` (Docker's and Podman's shape). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Request {
  method: string;
  /** The path without the API version prefix. */
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  raw: IncomingMessage;
  res: ServerResponse;
}

export type Handler = (req: Request) => Promise<void> | void;

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

export class Router {
  private readonly routes: Route[] = [];

  on(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  private readonly patterns: { method: string; re: RegExp; names: string[]; handler: Handler }[] = [];

  /**
   * A route whose parameter may hold slashes (an image name such as 127.0.0.1:5000/app/web:1):
   * re's groups are the parameters, named by names. Tried before the segment routes.
   */
  onPattern(method: string, re: RegExp, names: string[], handler: Handler): this {
    this.patterns.push({ method, re, names, handler });
    return this;
  }

  /** The handler for a request, its path parameters; or why none: 404 (no such path) or 405. */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } | 404 | 405 {
    const segs = path.split('/').filter(Boolean);
    let pathMatched = false;
    for (const r of this.patterns) {
      const m = r.re.exec(path);
      if (!m) continue;
      const params: Record<string, string> = {};
      try {
        r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1] ?? '')));
      } catch {
        return 404;
      }
      pathMatched = true;
      if (r.method === method || (method === 'HEAD' && r.method === 'GET')) return { handler: r.handler, params };
    }
    for (const r of this.routes) {
      if (r.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        const p = r.parts[i]!;
        if (p.startsWith(':')) {
          let v: string;
          try {
            v = decodeURIComponent(segs[i]!);
          } catch {
            return 404;
          }
          params[p.slice(1)] = v;
        } else ok = p === segs[i];
      }
      if (!ok) continue;
      pathMatched = true;
      if (r.method === method || (method === 'HEAD' && r.method === 'GET')) return { handler: r.handler, params };
    }
    return pathMatched ? 405 : 404;
  }
}

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  ENOTFOUND: 404,
  EEXIST: 409,
  ESTATE: 409,
  ELOCK: 409,
  EINVAL: 400,
  EARCHIVE: 400,
  EUNSUPPORTED: 400,
};

/** The HTTP status and message of whatever a handler threw. */
export function errorReply(e: unknown): { status: number; message: string } {
  if (e instanceof ApiError) return { status: e.status, message: e.message };
  if (e instanceof FerryError) return { status: STATUS_OF[e.code] ?? 500, message: e.message };
  return { status: 500, message: (e as Error)?.message ?? String(e) };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

/** `/_ping`: OK, never cached, with the headers of the API that answers (HEAD: no body). */
export function sendPing(res: ServerResponse, headers: Record<string, string>): void {
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2, 'Cache-Control': 'no-cache, no-store, must-revalidate', Pragma: 'no-cache', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : 'OK');
}

export function sendEmpty(res: ServerResponse, status = 204): void {
  res.writeHead(status);
  res.end();
}

export function sendError(res: ServerResponse, e: unknown): void {
  const { status, message } = errorReply(e);
  if (res.headersSent) {
    // Too late for a status: end the stream so the client sees it cut.
    res.destroy();
    return;
  }
  sendJson(res, status, { message: message.split('\n')[0] });
}

/** The largest JSON body a request may send (a container's create request is a few KiB). */
export const MAX_JSON_BODY = 1 << 20;

/** Reads the request body as a JSON object (an empty body is {}); 400 for anything else, 413 past the limit. */
export async function readJson(req: IncomingMessage, limit = MAX_JSON_BODY): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new ApiError(413, `request body too large: at most ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new ApiError(413, `request body too large: at most ${limit} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `invalid JSON in the request body: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, 'the request body must be a JSON object');
  return v as Record<string, unknown>;
}

/** A boolean query parameter (1/0, true/false as clients send them); def when absent. */
/** Query parameters looked up by name in any case (when the exact name is absent). */
export class CaseInsensitiveQuery extends URLSearchParams {
  private keyFor(name: string): string | undefined {
    const l = name.toLowerCase();
    for (const k of super.keys()) if (k.toLowerCase() === l) return k;
    return undefined;
  }

  override get(name: string): string | null {
    const v = super.get(name);
    if (v !== null) return v;
    const k = this.keyFor(name);
    return k === undefined ? null : super.get(k);
  }

  override getAll(name: string): string[] {
    const v = super.getAll(name);
    if (v.length) return v;
    const k = this.keyFor(name);
    return k === undefined ? [] : super.getAll(k);
  }

  override has(name: string): boolean {
    return super.has(name) || this.keyFor(name) !== undefined;
  }
}

export function boolParam(q: URLSearchParams, name: string, def = false): boolean {
  const v = q.get(name);
  if (v === null) return def;
  if (['1', 'true', 'True', 'TRUE'].includes(v)) return true;
  if (['', '0', 'false', 'False', 'FALSE'].includes(v)) return false;
  throw new ApiError(400, `invalid ${name}=${v}: give true or false`);
}

/** A non-negative integer query parameter, or undefined when absent. */
export function intParam(q: URLSearchParams, name: string, max = 2 ** 31 - 1): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^[0-9]{1,10}$/.test(v) || Number(v) > max) throw new ApiError(400, `invalid ${name}=${v}: give a whole number up to ${max}`);
  return Number(v);
}

/** A field of a JSON body that must be a string (or absent/null). */
export function str(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new ApiError(400, `invalid ${key}: give a string`);
  return v;
}

/** A field that must be a list of strings (or absent/null). */
export function strList(body: Record<string, unknown>, key: string): string[] | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ApiError(400, `invalid ${key}: give a list of strings`);
  return v as string[];
}

/** A field that must be an object mapping strings to strings (or absent/null). */
export function strMap(body: Record<string, unknown>, key: string): Record<string, string> | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) throw new ApiError(400, `invalid ${key}: give an object of strings`);
  return v as Record<string, string>;
}

/** A field that must be a boolean (or absent/null). */
export function bool(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new ApiError(400, `invalid ${key}: give true or false`);
  return v;
}

/** A field that must be an object (or absent/null). */
export function obj(body: Record<string, unknown>, key: string): Record<string, unknown> | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, `invalid ${key}: give an object`);
  return v as Record<string, unknown>;
}

/** The multiplexed stream framing of Docker's logs/attach without a terminal: 8-byte header (stream, 0, 0, 0, size BE) + payload. */
export function muxFrame(stream: 'stdout' | 'stderr', payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream === 'stdout' ? 1 : 2;
  h.writeUInt32BE(payload.length, 4);
  return Buffer.concat([h, payload]);
}
