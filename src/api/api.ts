/**
 * The REST API server: Docker's Engine API and Podman's libpod API on one HTTP server, served on
 * a Unix socket (only root and its group reach it). A request's path may carry a version prefix
 * (/v1.41/..., /v4.3.1/libpod/...); /libpod/... goes to the libpod routes, the rest to Docker's.
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import type { Engine } from '../engine/engine.js';
import { debug } from '../lib/log.js';
import { http as lazyHttp, https as lazyHttps } from '../lib/lazy.js';
import type { Duplex } from 'node:stream';
import { DOCKER_API_VERSION, DOCKER_HEADERS, DOCKER_MIN_API_VERSION, dockerRoutes, serveAttach, serveExecStart } from './docker.js';
import { ExecStore } from './exec.js';
import { ApiError, CaseInsensitiveQuery, errorReply, sendError, sendJson, type Router } from './http.js';
import { LIBPOD_HEADERS, libpodRoutes } from './libpod.js';

/** Compares dotted versions: <0, 0, >0. */
function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

export interface ApiServer {
  server: http.Server;
  /** Requests that stream until something happens (logs -f, wait): cut when the service stops. */
  streams: Set<http.ServerResponse>;
  /** Requests in progress. */
  inFlight(): number;
  /** Connections taken over by attach: cut when the service stops. */
  hijacked: Set<Duplex>;
}

/** tls: serve HTTPS (the tcp:// listener; its options require and check client certificates). */
export function createApiServer(engine: Engine, log: (line: string) => void, tls?: https.ServerOptions): ApiServer {
  const execs = new ExecStore();
  const docker = dockerRoutes(engine, execs);
  const libpod = libpodRoutes(engine);
  const streams = new Set<http.ServerResponse>();
  let inFlight = 0;

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    if (rawUrl.length > 8192 || !rawUrl.startsWith('/')) throw new ApiError(400, 'invalid request path');
    const url = new URL(rawUrl, 'http://localhost');
    let p = url.pathname;
    let version: string | undefined;
    const m = p.match(/^\/v([0-9]{1,3}(?:\.[0-9]{1,3}){0,2})(\/.*)$/);
    if (m) {
      version = m[1]!;
      p = m[2]!;
    }
    let router: Router = docker;
    let headers = DOCKER_HEADERS;
    if (p === '/libpod' || p.startsWith('/libpod/')) {
      router = libpod;
      headers = LIBPOD_HEADERS;
      p = p.slice('/libpod'.length) || '/';
    } else if (version !== undefined) {
      if (compareVersions(version, DOCKER_API_VERSION) > 0) throw new ApiError(400, `client version ${version} is too new. Maximum supported API version is ${DOCKER_API_VERSION}`);
      if (compareVersions(version, DOCKER_MIN_API_VERSION) < 0) throw new ApiError(400, `client version ${version} is too old. Minimum supported API version is ${DOCKER_MIN_API_VERSION}, please upgrade your client to a newer version`);
    }
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    const found = router.match(method, p);
    if (found === 404) throw new ApiError(404, `page not found: ${method} ${url.pathname}`);
    if (found === 405) throw new ApiError(405, `method ${method} is not allowed on ${url.pathname}`);
    // Podman's bindings send libpod's parameters lowercased (createimage, leaverunning, ...), and
    // Podman's server reads them case-insensitively: so does this one.
    const query = router === libpod ? new CaseInsensitiveQuery(url.searchParams) : url.searchParams;
    await found.handler({ method, path: p, params: found.params, query, raw: req, res });
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    inFlight++;
    const libpodReq = /^\/(v[0-9.]+\/)?libpod(\/|$)/.test(req.url ?? '');
    const stream = /\/(logs|wait|events|stats)(\?|$)/.test(req.url ?? '');
    if (stream) streams.add(res);
    res.once('close', () => {
      inFlight--;
      streams.delete(res);
    });
    handle(req, res).catch((e: unknown) => {
      const { status, message } = errorReply(e);
      if (status >= 500) log(`${req.method} ${req.url}: ${status} ${message}`);
      else debug(`${req.method} ${req.url}: ${status} ${message}`);
      // libpod's errors carry the cause and the status too (Podman's ErrorModel).
      if (libpodReq && !res.headersSent) {
        // Podman's client tells a missing container or pod by its cause in the message
        // (`podman run --rm` removes what the service has removed already).
        let line = message.split('\n')[0]!;
        let cause = line;
        const missing = /^no (container|pod) with name or ID "[^"]*" found/.exec(line);
        if (status === 404 && missing) {
          cause = `no such ${missing[1]}`;
          line = `${missing[0]}: ${cause}`;
        }
        return sendJson(res, status, { cause, message: line, response: status });
      }
      sendError(res, e);
    });
  };
  const server: http.Server = tls ? lazyHttps().createServer(tls, onRequest) : lazyHttp().createServer(onRequest);
  // Attach hijacks the connection (Upgrade: tcp).
  const hijacked = new Set<Duplex>();
  server.on('upgrade', (req: http.IncomingMessage, sock: Duplex, head: Buffer) => {
    hijacked.add(sock);
    sock.on('error', () => undefined);
    sock.once('close', () => hijacked.delete(sock));
    const refuse = (e: unknown): void => {
      const { status, message } = errorReply(e);
      const body = JSON.stringify({ message: message.split('\n')[0] }) + '\n';
      if (!sock.destroyed) sock.end(`HTTP/1.1 ${status} ${lazyHttp().STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    };
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const m = url.pathname.match(/^(?:\/v[0-9.]{1,12})?(\/libpod)?\/(containers|exec)\/([^/]+)\/(attach|start)$/);
      const exec = m?.[2] === 'exec' && m[4] === 'start' && !m[1];
      if (!m || req.method !== 'POST' || (!exec && !(m[2] === 'containers' && m[4] === 'attach'))) throw new ApiError(404, `page not found: ${req.method} ${url.pathname}`);
      let ref: string;
      try {
        ref = decodeURIComponent(m[3]!);
      } catch {
        throw new ApiError(404, `page not found: ${req.method} ${url.pathname}`);
      }
      const headers = m[1] ? LIBPOD_HEADERS : DOCKER_HEADERS;
      const served = exec
        ? serveExecStart(engine, execs, ref, req, sock, head ?? Buffer.alloc(0), headers)
        : serveAttach(engine, ref, url.searchParams, sock, head ?? Buffer.alloc(0), headers);
      served.catch((e: unknown) => {
        // Before the switch the client gets an HTTP error; after it, the stream ends.
        if (((sock as { bytesWritten?: number }).bytesWritten ?? 0) === 0) refuse(e);
        else sock.destroy();
      });
    } catch (e) {
      refuse(e);
    }
  });
  // Logs and waits may take as long as their container: no request timeout.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 5_000;
  return { server, streams, inFlight: () => inFlight, hijacked };
}
