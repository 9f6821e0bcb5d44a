/**
 * `ferry system service`: a foreground daemon that takes migrations over TCP from
 * `ferry migrate CTR ferry://host:port`, as `ferry system migrate-receive` does over ssh.
 *
 * There is no unauthenticated mode: every connection is mutual TLS 1.3 with a certificate
 * derived from the secret in --secret-file (see drivers/transport/service.ts), so a peer
 * without the secret fails the handshake and never reaches the engine. After the handshake the first line selects the
 * protocol; today only Ferry's own (`FERRY/1 migrate|pages TOKEN`) is served, and an HTTP request
 * line gets 501 until the REST API lands on the same listener.
 *
 * Each `migrate` connection is served by receiveMigration(), exactly like migrate-receive (same
 * checks, same rollback when the connection goes before commit). The session's `pages`
 * connection carries its memory: for --lazy, the session's `criu lazy-pages` dials a port on
 * 127.0.0.1 that the service pipes into it, and the source connects it to CRIU's page server on
 * its own loopback; for stop-and-copy, the service connects it to the session's page server on
 * 127.0.0.1, and the source pipes its CRIU dump into it.
 *
 * SIGTERM/SIGINT: stop accepting, give migrations in progress a grace period to finish, then cut
 * them (uncommitted ones roll back: the container runs again on its source); a second signal
 * cuts them at once.
 */
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { FerryError } from '../lib/errors.js';
import { connectPagesTunnel, createServiceServer, displayTarget, parseListenUrl, PROTOCOL, readLine, readSecretFile, splice, type ServiceIdentity } from '../drivers/transport/service.js';
import { receiveMigration } from '../engine/migrate/destination.js';
import type { Engine } from '../engine/engine.js';

export interface ServiceOptions {
  /** tcp://ADDR:PORT */
  listen: string;
  secretFile: string;
  /** Human-readable log lines (default: stderr). */
  log?: (line: string) => void;
  /** How long migrations in progress may take to finish after SIGTERM (default 30 s). */
  graceMs?: number;
  /** Called once the service listens (tests, systemd notify one day). */
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

/** Checks the options; throws a FerryError before anything listens if they are not right. */
export function checkServiceOptions(o: { listen?: string; secretFile?: string }): { listen: string; secretFile: string; identity: ServiceIdentity } {
  if (!o.secretFile) {
    throw new FerryError('EINVAL', 'ferry system service needs --secret-file FILE: it never runs unauthenticated (make one with `head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)');
  }
  if (!o.listen) throw new FerryError('EINVAL', 'ferry system service needs --listen tcp://ADDR:PORT');
  parseListenUrl(o.listen);
  return { listen: o.listen, secretFile: o.secretFile, identity: readSecretFile(o.secretFile) };
}

export async function runService(engine: Engine, o: ServiceOptions): Promise<void> {
  const { identity } = checkServiceOptions(o);
  const addr = parseListenUrl(o.listen);
  const log = o.log ?? ((l: string) => process.stderr.write(`ferry service: ${l}\n`));
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
    const server = net.createServer((c) => {
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
        // The REST API will live here; until then, say so in HTTP.
        const body = 'the ferry REST API is not available yet\n';
        return void sock.end(`HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      }
      sock.end(`${JSON.stringify({ type: 'error', message: `unknown protocol: this service speaks ${PROTOCOL}` })}\n`);
    })().catch((e: Error) => log(`connection error: ${e.message}`));
    active.add(p);
    void p.finally(() => active.delete(p));
  };

  const server = createServiceServer(identity, onConnection, (s, why) => log(`refused a connection from ${s.remoteAddress ?? '?'}: TLS handshake failed (${why})`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new FerryError('ERUNTIME', `cannot listen on ${o.listen}: ${e.code ?? e.message}`)));
    server.listen(addr.port, addr.host, () => resolve());
  });
  server.on('error', (e: Error) => log(`listener error: ${e.message}`));
  const bound = server.address() as net.AddressInfo;
  const shown = `tcp://${displayTarget({ host: bound.address, port: bound.port })}`;
  log(`listening on ${shown} (mutual TLS, certificates derived from the secret; migrations to ferry://HOST:${bound.port})`);
  o.onListening?.(shown);

  // Run until a signal.
  await new Promise<void>((resolve) => {
    let signals = 0;
    let grace: NodeJS.Timeout | undefined;
    const cut = (): void => {
      for (const s of sockets) s.destroy();
    };
    const finish = async (): Promise<void> => {
      while (active.size) await Promise.allSettled([...active]);
      if (grace) clearTimeout(grace);
      process.off('SIGTERM', onSig);
      process.off('SIGINT', onSig);
      resolve();
    };
    const onSig = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        stopping = true;
        server.close();
        const n = sessions.size;
        log(`${sig}: stopping${n ? `; ${n} migration(s) in progress get ${Math.round((o.graceMs ?? 30_000) / 1000)} s to finish (signal again to cut them now; uncommitted ones roll back)` : ''}`);
        // Connections that have not started a migration yet go at once.
        for (const s of sockets) if (!busy.has(s)) s.destroy();
        grace = setTimeout(cut, o.graceMs ?? 30_000);
        void finish();
      } else {
        log(`${sig}: cutting the migrations in progress`);
        cut();
      }
    };
    process.on('SIGTERM', onSig);
    process.on('SIGINT', onSig);
  });
  log('stopped');
}
