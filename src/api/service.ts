/**
 * `ferry system service`: a foreground service with two kinds of listener, in one process.
 *
 * - `unix:///PATH` (the default, /run/ferry/ferry.sock): the REST API, Docker's Engine API and
 *   Podman's libpod API (api.ts). The socket is mode 0660, owned by root: only root and its group
 *   reach it. Every request is served by the same Engine as the CLI's (same state, same locks);
 *   containers belong to conmon, so they keep running when the service stops.
 * - `tcp://ADDR:PORT` with --tls-cert/--tls-key/--tls-verify: the same REST API over TLS, client
 *   certificates required and checked against the CA (Docker's --tlsverify convention); several
 *   may be given.
 * - `tcp://ADDR:PORT` with --secret-file: migrations from `ferry migrate CTR ferry://host:port`,
 *   as `ferry system migrate-receive` takes them over ssh. There is no unauthenticated mode:
 *   every connection is mutual TLS 1.3 with a certificate derived from the secret (see
 *   drivers/transport/service.ts), so a peer without the secret fails the handshake and never
 *   reaches the engine. After the handshake the first line selects the protocol; only Ferry's
 *   own (`FERRY/1 migrate|pages TOKEN`) is served there (an HTTP request line gets 501: the API
 *   is on the Unix socket or its own TLS listener; one service serves migrations or the API on TCP).
 *
 * Each `migrate` connection is served by receiveMigration(), exactly like migrate-receive (same
 * checks, same rollback when the connection goes before commit). The session's `pages`
 * connection carries its memory: for --lazy, the session's `criu lazy-pages` dials a port on
 * 127.0.0.1 that the service pipes into it, and the source connects it to CRIU's page server on
 * its own loopback; for stop-and-copy, the service connects it to the session's page server on
 * 127.0.0.1, and the source pipes its CRIU dump into it.
 *
 * SIGTERM/SIGINT: stop accepting, give migrations and API requests in progress a grace period
 * to finish (streams such as `logs -f` end at once), then cut them (uncommitted migrations roll
 * back: the container runs again on its source); a second signal cuts them at once. The socket
 * file is removed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as net from 'node:net';
import { net as loadNet } from '../lib/lazy.js';
import type { TLSSocket } from 'node:tls';
import { FerryError } from '../lib/errors.js';
import { connectPagesTunnel, createServiceServer, displayTarget, parseListenUrl, PROTOCOL, readLine, readSecretFile, splice, type ServiceIdentity } from '../drivers/transport/service.js';
import { receiveMigration } from '../engine/migrate/destination.js';
import type { Engine } from '../engine/engine.js';
import { createApiServer } from './api.js';
import { DEFAULT_API_SOCKET } from '../engine/paths.js';

/** Where the API listens when no --listen is given. */
export { DEFAULT_API_SOCKET };

export interface ServiceOptions {
  /** unix:///PATH (the API) and/or tcp://ADDR:PORT (migrations, with secretFile); default: the API on DEFAULT_API_SOCKET. */
  listen: string[];
  secretFile?: string;
  /** The API on tcp://: server certificate, key, and the CA client certificates must be signed by. */
  tlsCert?: string;
  tlsKey?: string;
  tlsVerify?: string;
  /** Human-readable log lines (default: stderr). */
  log?: (line: string) => void;
  /** How long migrations and requests in progress may take to finish after SIGTERM (default 30 s). */
  graceMs?: number;
  /** Called once per listener when it listens (tests, systemd notify one day). */
  onListening?: (address: string) => void;
}

interface Session {
  token: string;
  peer: string;
  /** The source's `pages` connection, once it has arrived. */
  tunnel?: TLSSocket;
  tunnelArrived?: () => void;
}

const PAGES_TUNNEL_WAIT_MS = 60_000;

/** The API's TLS files for tcp:// listeners (Docker's --tlsverify convention: client certificates required, checked against the CA). */
export interface ApiTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/** Reads one of the TLS files: one line naming the option and the file when it cannot. */
function readTlsFile(option: string, file: string, what: RegExp, kind: string): Buffer {
  let b: Buffer;
  try {
    b = fs.readFileSync(file);
  } catch (e) {
    throw new FerryError('EINVAL', `cannot read ${option} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (b.length > 1 << 20 || !what.test(b.toString('latin1'))) throw new FerryError('EINVAL', `${option} ${file} is not ${kind} in PEM form`);
  return b;
}

/** What the options ask for, checked: throws a FerryError before anything listens if they are not right. */
export function checkServiceOptions(o: { listen?: string[]; secretFile?: string; tlsCert?: string; tlsKey?: string; tlsVerify?: string }): {
  sockets: string[];
  tcp?: string;
  identity?: ServiceIdentity;
  apiTcp: string[];
  tls?: ApiTls;
} {
  const listen = o.listen?.length ? o.listen : [DEFAULT_API_SOCKET];
  const sockets: string[] = [];
  const tcps: string[] = [];
  for (const l of listen) {
    if (l.startsWith('unix://')) {
      sockets.push(parseUnixUrl(l));
    } else if (l.startsWith('tcp://')) {
      const a = parseListenUrl(l);
      if (tcps.some((t) => { const b = parseListenUrl(t); return b.host === a.host && b.port === a.port; })) throw new FerryError('EINVAL', `the same --listen ${l} is given twice`);
      tcps.push(l);
    } else {
      throw new FerryError('EINVAL', `invalid --listen "${l}": use unix:///PATH (the API), tcp://ADDR:PORT with --tls-cert/--tls-key/--tls-verify (the API) or with --secret-file (migrations)`);
    }
  }
  if (new Set(sockets).size !== sockets.length) throw new FerryError('EINVAL', 'the same --listen unix:// path is given twice');
  const tlsGiven = [o.tlsCert, o.tlsKey, o.tlsVerify].filter((x) => x !== undefined).length;
  if (tlsGiven && o.secretFile) {
    throw new FerryError('EINVAL', '--secret-file (migrations) and --tls-cert/--tls-key/--tls-verify (the API) cannot share one service\'s tcp:// listeners: run one `ferry system service` for each');
  }
  if (tlsGiven && tlsGiven < 3) throw new FerryError('EINVAL', 'the API on tcp:// needs all of --tls-cert FILE --tls-key FILE --tls-verify CA (client certificates are always required)');
  if (tlsGiven && !tcps.length) throw new FerryError('EINVAL', '--tls-cert/--tls-key/--tls-verify only apply with --listen tcp://ADDR:PORT');
  if (tcps.length && !tlsGiven && !o.secretFile) {
    throw new FerryError(
      'EINVAL',
      'ferry system service never runs unauthenticated on TCP: give --tls-cert FILE --tls-key FILE --tls-verify CA (the API, client certificates required) or --secret-file FILE (migrations; make one with `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)',
    );
  }
  if (!tcps.length && o.secretFile) throw new FerryError('EINVAL', '--secret-file only applies with --listen tcp://ADDR:PORT');
  if (o.secretFile && tcps.length > 1) throw new FerryError('EINVAL', 'give at most one --listen tcp://ADDR:PORT for migrations');
  if (o.secretFile) return { sockets, tcp: tcps[0], identity: readSecretFile(o.secretFile), apiTcp: [] };
  const tls = tlsGiven
    ? {
        cert: readTlsFile('--tls-cert', o.tlsCert!, /-----BEGIN CERTIFICATE-----/, 'a certificate'),
        key: readTlsFile('--tls-key', o.tlsKey!, /-----BEGIN (RSA |EC )?PRIVATE KEY-----/, 'a private key'),
        ca: readTlsFile('--tls-verify', o.tlsVerify!, /-----BEGIN CERTIFICATE-----/, 'a CA certificate'),
      }
    : undefined;
  return { sockets, apiTcp: tcps, tls };
}

/** unix:///absolute/path -> the path. */
export function parseUnixUrl(url: string): string {
  const file = url.slice('unix://'.length);
  if (!file.startsWith('/') || file.includes('\0') || path.normalize(file) !== file || file.endsWith('/')) {
    throw new FerryError('EINVAL', `invalid --listen "${url}": use unix:///ABSOLUTE/PATH (e.g. ${DEFAULT_API_SOCKET})`);
  }
  if (Buffer.byteLength(file) > 107) throw new FerryError('EINVAL', `invalid --listen "${url}": a socket path has at most 107 bytes`);
  return file;
}

/** Whether something accepts connections on the socket at file. */
function socketLive(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = loadNet().connect(file);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Listens on a Unix socket at file, mode 0660: a stale socket (nothing accepts on it) is
 * replaced; a live one, or a file that is not a socket, is refused. Returns what removes it
 * (only if the file is still ours).
 */
async function listenUnix(server: net.Server, file: string): Promise<() => void> {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(file);
  } catch {
    st = undefined;
  }
  if (st) {
    if (!st.isSocket()) throw new FerryError('EEXIST', `cannot listen on ${file}: it exists and is not a socket; remove it or choose another path`);
    if (await socketLive(file)) throw new FerryError('EEXIST', `cannot listen on ${file}: another service is listening there; stop it first`);
    fs.unlinkSync(file);
  }
  // Created without group/other access, then opened to the group: never reachable by others.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new FerryError('ERUNTIME', `cannot listen on ${file}: ${e.code ?? e.message}`)));
      server.listen(file, () => resolve());
    });
  } finally {
    process.umask(umask);
  }
  fs.chmodSync(file, 0o660);
  const ino = fs.statSync(file).ino;
  return () => {
    try {
      if (fs.lstatSync(file).ino === ino) fs.unlinkSync(file);
    } catch {
      /* gone already */
    }
  };
}

/** A listener the service runs until a signal. */
interface Listener {
  /** What it serves, for the log: migrations, API requests. */
  what: string;
  /** Stop accepting; drop idle connections. Returns how much work is still in progress (for the log). */
  stop(): string | undefined;
  /** Cut everything still open. */
  cut(): void;
  /** Resolves when nothing is in progress any more. */
  idle(): Promise<void>;
  /** After it stopped: remove what it left (the socket file). */
  close(): void;
}

export async function runService(engine: Engine, o: ServiceOptions): Promise<void> {
  const { sockets, tcp, identity, apiTcp, tls } = checkServiceOptions(o);
  const log = o.log ?? ((l: string) => process.stderr.write(`ferry service: ${l}\n`));
  const listeners: Listener[] = [];
  try {
    for (const file of sockets) listeners.push(await startApi(engine, { file }, log, o.onListening));
    for (const url of apiTcp) listeners.push(await startApi(engine, { url, tls: tls! }, log, o.onListening));
    if (tcp) listeners.push(await startMigrations(engine, tcp, identity!, log, o.onListening));
  } catch (e) {
    for (const l of listeners) {
      l.stop();
      l.cut();
      l.close();
    }
    throw e;
  }

  // Run until a signal.
  await new Promise<void>((resolve) => {
    let signals = 0;
    let grace: NodeJS.Timeout | undefined;
    const cut = (): void => {
      for (const l of listeners) l.cut();
    };
    const finish = async (): Promise<void> => {
      await Promise.all(listeners.map((l) => l.idle()));
      if (grace) clearTimeout(grace);
      for (const l of listeners) l.close();
      process.off('SIGTERM', onSig);
      process.off('SIGINT', onSig);
      resolve();
    };
    const onSig = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        const busy = listeners.map((l) => l.stop()).filter(Boolean);
        log(`${sig}: stopping${busy.length ? `; ${busy.join(' and ')} get ${Math.round((o.graceMs ?? 30_000) / 1000)} s to finish (signal again to cut them now; uncommitted migrations roll back)` : ''}`);
        grace = setTimeout(cut, o.graceMs ?? 30_000);
        void finish();
      } else {
        log(`${sig}: cutting the ${listeners.map((l) => l.what).join(' and ')} in progress`);
        cut();
      }
    };
    process.on('SIGTERM', onSig);
    process.on('SIGINT', onSig);
  });
  log('stopped');
}

/** The REST API on a Unix socket, or on TCP with TLS and client certificates. */
async function startApi(engine: Engine, at: { file: string } | { url: string; tls: ApiTls }, log: (line: string) => void, onListening?: (address: string) => void): Promise<Listener> {
  let remove: () => void = () => undefined;
  let shown: string;
  let api: ReturnType<typeof createApiServer>;
  if ('file' in at) {
    api = createApiServer(engine, log);
    remove = await listenUnix(api.server, at.file);
    shown = `unix://${at.file}`;
    log(`listening on ${shown} (Docker Engine API ${'v1.41'} and libpod API; DOCKER_HOST=${shown})`);
  } else {
    const addr = parseListenUrl(at.url);
    // TLS 1.2 too: Debian's docker CLI 20.10 (Go 1.15+) speaks 1.3, but other SDKs may not.
    api = createApiServer(engine, log, { cert: at.tls.cert, key: at.tls.key, ca: at.tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' });
    const server = api.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new FerryError('ERUNTIME', `cannot listen on ${at.url}: ${e.code ?? e.message}`)));
      server.listen(addr.port, addr.host, () => resolve());
    });
    const bound = server.address() as net.AddressInfo;
    shown = `tcp://${displayTarget({ host: bound.address, port: bound.port })}`;
    log(`listening on ${shown} (Docker Engine API v1.41 and libpod API over TLS, client certificates required; DOCKER_HOST=${shown} DOCKER_TLS_VERIFY=1)`);
  }
  api.server.on('error', (e: Error) => log(`API listener error: ${e.message}`));
  onListening?.(shown);
  return {
    what: 'API requests',
    stop: () => {
      api.server.close();
      api.server.closeIdleConnections();
      for (const s of api.streams) s.destroy(); // logs -f, wait: they would never finish
      for (const s of api.hijacked) s.destroy(); // attach: neither
      const n = api.inFlight() - api.streams.size;
      return n > 0 ? `${n} API request(s) in progress` : undefined;
    },
    cut: () => api.server.closeAllConnections(),
    idle: async () => {
      while (api.inFlight() > 0) await new Promise((r) => setTimeout(r, 50));
    },
    close: remove,
  };
}

/** The migration listener: mutual TLS on TCP. */
async function startMigrations(engine: Engine, listen: string, identity: ServiceIdentity, log: (line: string) => void, onListening?: (address: string) => void): Promise<Listener> {
  const addr = parseListenUrl(listen);
  const sessions = new Map<string, Session>();
  const sockets = new Set<net.Socket>();
  const active = new Set<Promise<void>>();
  /** Sockets of migrations in progress, kept through the grace period when stopping. */
  const busy = new WeakSet<net.Socket>();
  let stopping = false;

  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
  };

  /** The session's `pages` connection, once the source has opened it. */
  const tunnelOf = (session: Session): Promise<TLSSocket | undefined> =>
    session.tunnel
      ? Promise.resolve(session.tunnel)
      : new Promise<TLSSocket | undefined>((resolve) => {
          const t = setTimeout(() => resolve(undefined), PAGES_TUNNEL_WAIT_MS);
          session.tunnelArrived = () => {
            clearTimeout(t);
            resolve(session.tunnel);
          };
        });

  /** A stop-and-copy session's page server, on port: the source's dump reaches it through the session's `pages` connection. */
  const pageServerTunnel = (session: Session, port: number): { close(): void } => {
    void tunnelOf(session).then((tunnel) => {
      if (!tunnel) return log(`session from ${session.peer}: the source's pages connection never came`);
      connectPagesTunnel(tunnel, port);
    });
    return { close: () => session.tunnel?.destroy() };
  };

  /** The loopback port a lazy session's `criu lazy-pages` dials, tunnelled to the source. */
  const lazyEndpoint = async (session: Session): Promise<{ port: number; close(): void }> => {
    let local: net.Socket | undefined;
    const server = loadNet().createServer((c) => {
      track(c);
      if (local) return c.destroy(); // CRIU connects once
      local = c;
      busy.add(c);
      c.pause();
      void tunnelOf(session).then((tunnel) => {
        if (!tunnel || c.destroyed) {
          log(`session from ${session.peer}: the source's pages connection never came`);
          return c.destroy();
        }
        tunnel.write('GO\n');
        void splice(c, tunnel);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return {
      port: (server.address() as net.AddressInfo).port,
      close: () => {
        server.close();
        local?.destroy();
        session.tunnel?.destroy();
      },
    };
  };

  const serveMigration = async (sock: TLSSocket, token: string): Promise<void> => {
    const peer = `${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'}`;
    if (sessions.has(token)) return void sock.destroy();
    const session: Session = { token, peer };
    busy.add(sock);
    sessions.set(token, session);
    log(`migration from ${peer}: started`);
    try {
      const received = receiveMigration(engine, sock, sock, { lazyEndpoint: () => lazyEndpoint(session), pageServerTunnel: (port) => pageServerTunnel(session, port) });
      sock.resume(); // readLine() left it paused; the receiver listens by now
      const code = await received;
      log(`migration from ${peer}: ${code === 0 ? 'committed' : 'not committed (anything received was removed)'}`);
    } catch (e) {
      log(`migration from ${peer}: failed: ${(e as Error).message}`);
    } finally {
      sessions.delete(token);
      sock.end();
    }
  };

  const servePages = (sock: TLSSocket, token: string): void => {
    const session = sessions.get(token);
    if (!session || session.tunnel) return void sock.destroy();
    session.tunnel = sock;
    busy.add(sock);
    session.tunnelArrived?.();
  };

  const onConnection = (sock: TLSSocket): void => {
    track(sock);
    if (stopping) return void sock.destroy();
    sock.setNoDelay(true);
    const p = (async () => {
      const line = await readLine(sock);
      if (line === undefined) return void sock.destroy();
      const m = line.match(/^FERRY\/1 (migrate|pages) ([0-9a-f]{32})$/);
      if (m?.[1] === 'migrate') return serveMigration(sock, m[2]!);
      if (m?.[1] === 'pages') return servePages(sock, m[2]!);
      if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) {
        // The REST API is served on the Unix socket only: say so in HTTP.
        const body = 'the ferry REST API is served on its Unix socket (ferry system service --listen unix:///PATH), not here\n';
        return void sock.end(`HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      }
      sock.end(`${JSON.stringify({ type: 'error', message: `unknown protocol: this service speaks ${PROTOCOL}` })}\n`);
    })().catch((e: Error) => log(`connection error: ${e.message}`));
    active.add(p);
    void p.finally(() => active.delete(p));
  };

  const server = createServiceServer(identity, onConnection, (s, why) => log(`refused a connection from ${s.remoteAddress ?? '?'}: TLS handshake failed (${why})`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new FerryError('ERUNTIME', `cannot listen on ${listen}: ${e.code ?? e.message}`)));
    server.listen(addr.port, addr.host, () => resolve());
  });
  server.on('error', (e: Error) => log(`listener error: ${e.message}`));
  const bound = server.address() as net.AddressInfo;
  const shown = `tcp://${displayTarget({ host: bound.address, port: bound.port })}`;
  log(`listening on ${shown} (mutual TLS, certificates derived from the secret; migrations to ferry://HOST:${bound.port})`);
  onListening?.(shown);

  return {
    what: 'migrations',
    stop: () => {
      stopping = true;
      server.close();
      // Connections that have not started a migration yet go at once.
      for (const s of sockets) if (!busy.has(s)) s.destroy();
      return sessions.size ? `${sessions.size} migration(s) in progress` : undefined;
    },
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    idle: async () => {
      while (active.size) await Promise.allSettled([...active]);
    },
    close: () => undefined,
  };
}
