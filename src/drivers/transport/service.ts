/**
 * The ferry service's transport: mutual TLS 1.3 with certificates derived from a shared secret
 * (identity.ts), so every connection is both authenticated and encrypted (forward secret:
 * ECDHE), with no certificates to manage. Both ends read the same secret file and derive the
 * same key and certificate from it; each presents that certificate and trusts only it, so a
 * peer without the secret fails the handshake before it can say anything.
 *
 * After the handshake the client speaks first, one line that selects the protocol:
 *
 *   FERRY/1 migrate TOKEN\n   a migration session: then the migration channel (channel.ts)
 *   FERRY/1 pages TOKEN\n     the memory tunnel of migration session TOKEN (see below)
 *
 * Anything else is refused for now; an HTTP request line ("GET /... HTTP/1.1") is how a future
 * REST API on the same listener will be told apart.
 *
 * Lazy pages: the destination's `criu lazy-pages` connects to a loopback port the service
 * opens for the session; when it does, the service writes "GO\n" on the session's pages
 * tunnel and pipes the two together, and the source then connects the tunnel to CRIU's page
 * server on its own loopback. Stop-and-copy runs the other way: the service connects the
 * tunnel to the destination's page server on 127.0.0.1, and the source pipes the connection
 * its CRIU dump makes to a loopback port into it. CRIU never listens on anything but 127.0.0.1.
 */
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { net as loadNet } from '../../lib/lazy.js';
import type * as tls from 'node:tls';
import type { Readable } from 'node:stream';
import { FerryError } from '../../lib/errors.js';
import * as lazy from '../../lib/lazy.js';
import { deriveServiceIdentity, SERVICE_NAME, type ServiceIdentity } from './identity.js';

export type { ServiceIdentity } from './identity.js';
export const PROTOCOL = 'FERRY/1';
const MIN_KEY_BYTES = 32;
const CONNECT_TIMEOUT_MS = 15_000;

export const MAKE_SECRET_HINT = (file: string): string => `make one with \`head -c 32 /dev/urandom | base64 > ${file}; chmod 600 ${file}\``;

/**
 * Reads a secret file: it must be a regular file that only its owner can read, holding at
 * least 32 bytes of key material (base64 text is decoded; anything else is taken as raw bytes).
 * Returns the TLS identity both ends derive from it.
 */
export function readSecretFile(file: string): ServiceIdentity {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new FerryError('EINVAL', `cannot read secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; ${MAKE_SECRET_HINT(file)}`);
  }
  if (!st.isFile()) throw new FerryError('EINVAL', `secret file ${file} is not a regular file; ${MAKE_SECRET_HINT(file)}`);
  if (st.mode & 0o077) {
    throw new FerryError('EINVAL', `secret file ${file} is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}): \`chmod 600 ${file}\``);
  }
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (e) {
    throw new FerryError('EINVAL', `cannot read secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const material = keyMaterial(raw);
  if (material.length < MIN_KEY_BYTES) {
    throw new FerryError('EINVAL', `secret file ${file} holds ${material.length} bytes of key material, fewer than ${MIN_KEY_BYTES}; ${MAKE_SECRET_HINT(file)}`);
  }
  return deriveServiceIdentity(material);
}

/** The key material of a secret file's content: base64 decoded if it is base64 text. */
export function keyMaterial(raw: Buffer): Buffer {
  const text = raw.toString('latin1').trim();
  if (text.length && text.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(text)) return Buffer.from(text, 'base64');
  return raw;
}

export interface ServiceTarget {
  host: string;
  port: number;
}

/** ferry://host:port (tcp://host:port is an alias). */
export function parseServiceUrl(url: string): ServiceTarget {
  const m = url.match(/^(?:ferry|tcp):\/\/(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9._-]+):(\d{1,5})\/?$/);
  if (!m) throw new FerryError('EINVAL', `invalid address "${url}": use ferry://host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new FerryError('EINVAL', `invalid port in "${url}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function isServiceUrl(url: string): boolean {
  return /^(ferry|tcp):\/\//.test(url);
}

/** tcp://ADDR:PORT for `system service --listen`. */
export function parseListenUrl(url: string): ServiceTarget {
  const m = url.match(/^tcp:\/\/(\[[0-9a-fA-F:]+\]|[a-zA-Z0-9._-]+):(\d{1,5})\/?$/);
  if (!m) throw new FerryError('EINVAL', `invalid --listen "${url}": use tcp://ADDR:PORT (e.g. tcp://0.0.0.0:7797)`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new FerryError('EINVAL', `invalid port in --listen "${url}"`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function displayTarget(t: ServiceTarget): string {
  return `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** TLS 1.3 only: its key exchange is always ephemeral (forward secret), and both runtimes have it. */
const tlsBase = { minVersion: 'TLSv1.3' } as const;

/** Why a peer is not one of ours, or undefined if it is: it proved it holds our certificate's key. */
function peerRefusal(s: tls.TLSSocket, id: ServiceIdentity): string | undefined {
  const peer = s.getPeerCertificate();
  if (s.authorized === true && peer?.raw && Buffer.isBuffer(peer.raw) && peer.raw.equals(id.der)) return undefined;
  return peer?.raw ? 'wrong secret' : 'no client certificate';
}

/**
 * What a failed server-side handshake means. A ferry client with another secret completes the
 * handshake and is refused by peerRefusal(); these are the alerts a peer sends when it is the
 * one refusing our certificate (OpenSSL and BoringSSL spell them alike).
 */
function handshakeFailure(e: NodeJS.ErrnoException): string {
  const what = `${e.code ?? ''} ${e.message}`;
  if (/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|DECRYPT_ERROR)|SELF_SIGNED/i.test(what)) return 'wrong secret';
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|CERTIFICATE_REQUIRED/i.test(what)) return 'no client certificate';
  return e.code ?? e.message;
}

/**
 * The ferry service's TLS server. Only peers that hold the secret reach `onConnection`; every
 * other connection is closed before a byte of it is read, and reported to `onRefused` with why
 * ("wrong secret", "no client certificate", or the TLS error).
 *
 * The certificate check is ours, the first thing done with a connection, rather than
 * rejectUnauthorized's: Node drops a client whose certificate fails it without telling the
 * server why, so the service could not log "wrong secret". The check is the same one (the
 * runtime's chain verification against our certificate as the only CA), plus the peer's
 * certificate must be ours byte for byte; the TLS handshake itself has proved that the peer
 * holds that certificate's private key.
 */
export function createServiceServer(id: ServiceIdentity, onConnection: (s: tls.TLSSocket) => void, onRefused?: (s: tls.TLSSocket, why: string) => void): tls.Server {
  const server = lazy.tls().createServer(
    {
      ...tlsBase,
      key: id.key,
      cert: id.cert,
      ca: [id.cert],
      requestCert: true,
      rejectUnauthorized: false, // checked below, before anything else
      handshakeTimeout: CONNECT_TIMEOUT_MS,
    },
    (s) => {
      const refused = peerRefusal(s, id);
      if (refused === undefined) return onConnection(s);
      s.on('error', () => undefined);
      onRefused?.(s, refused);
      s.destroy();
    },
  );
  server.on('tlsClientError', (e: NodeJS.ErrnoException, s: tls.TLSSocket) => onRefused?.(s, handshakeFailure(e)));
  return server;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

/**
 * Connects and authenticates to a ferry service, then sends the protocol line. A wrong secret
 * fails here, before anything else happens.
 *
 * The service's certificate is checked once the handshake is done rather than during it, so
 * that ours reaches the service first and its log can say why it was refused; nothing of ours
 * is sent to a service that fails the check (a certificate is public, and TLS 1.3 binds the
 * proof that we hold its key to this one handshake).
 */
export function connectService(target: ServiceTarget, id: ServiceIdentity, preamble: string): Promise<tls.TLSSocket> {
  const where = displayTarget(target);
  return new Promise((resolve, reject) => {
    const s = lazy.tls().connect({
      ...tlsBase,
      host: target.host,
      port: target.port,
      key: id.key,
      cert: id.cert,
      ca: [id.cert],
      servername: SERVICE_NAME,
      rejectUnauthorized: false, // checked on secureConnect, below
      // Not the host name: the service proves itself by holding the secret's certificate.
      checkServerIdentity: (_host, cert) => (cert?.raw && Buffer.isBuffer(cert.raw) && cert.raw.equals(id.der) ? undefined : new Error('not the certificate of this secret')),
    });
    const timer = setTimeout(() => s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), CONNECT_TIMEOUT_MS);
    const denied = (detail: string): FerryError => new FerryError('EPERM', `authentication with the ferry service at ${where} failed: check --secret-file`, { detail });
    const fail = (e: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      s.destroy();
      if (e.code && UNREACHABLE.has(e.code)) reject(new FerryError('ERUNTIME', `cannot reach the ferry service at ${where}: ${e.code}`));
      else reject(denied(e.message));
    };
    s.once('error', fail);
    // A service that closes before the handshake completes rejected us as well.
    s.once('close', () => fail(Object.assign(new Error('closed during the handshake'), { code: 'ECONNRESET' })));
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeListener('error', fail);
      s.removeAllListeners('close');
      if (peerRefusal(s, id) !== undefined) {
        // Not a service with our secret. end(), not destroy(): our certificate, still on its
        // way, tells it so (see above). Nothing else is written.
        s.on('error', () => undefined);
        s.end();
        setTimeout(() => s.destroy(), 2000).unref();
        return reject(denied(`the service's certificate is not this secret's (${s.authorizationError ?? 'another certificate'})`));
      }
      s.setNoDelay(true);
      s.write(`${preamble}\n`);
      resolve(s);
    });
  });
}

/**
 * Reads one line (without its newline) from a stream, leaving everything after it unread for
 * the next consumer. The stream is left paused: the next consumer resumes it (pipe() does). Undefined if the stream ends first, the line is too long, or time is up.
 */
export function readLine(s: Readable, maxBytes = 512, timeoutMs = 30_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (v: string | undefined, rest?: Buffer): void => {
      clearTimeout(t);
      s.removeListener('data', onData);
      s.removeListener('end', onEnd);
      s.removeListener('error', onEnd);
      s.pause();
      if (rest?.length) s.unshift(rest);
      resolve(v);
    };
    const onData = (b: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, b]) : b;
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) return done(buf.subarray(0, nl).toString('utf8').replace(/\r$/, ''), buf.subarray(nl + 1));
      if (buf.length > maxBytes) done(undefined);
    };
    const onEnd = (): void => done(undefined);
    const t = setTimeout(() => done(undefined), timeoutMs);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onEnd);
  });
}

/** Pipes two sockets together both ways; resolves when both are closed. */
export function splice(a: net.Socket, b: net.Socket): Promise<void> {
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
  const closed = (s: net.Socket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
  return Promise.all([closed(a), closed(b)]).then(() => undefined);
}

/**
 * The source's end of a lazy-pages tunnel: waits for the service's "GO" (the destination's
 * CRIU has connected), then connects the tunnel to the page server on 127.0.0.1:pagePort.
 */
export async function servePagesTunnel(tunnel: tls.TLSSocket, pagePort: number): Promise<void> {
  tunnel.on('error', () => undefined);
  const go = await readLine(tunnel, 16, 24 * 3600_000);
  if (go !== 'GO') {
    tunnel.destroy();
    return;
  }
  const local = loadNet().connect({ host: '127.0.0.1', port: pagePort });
  await new Promise<void>((resolve) => {
    local.once('connect', resolve);
    local.once('error', () => resolve());
  });
  if (local.destroyed) {
    tunnel.destroy();
    return;
  }
  await splice(tunnel, local); // pipe() resumes the tunnel, bytes after GO included
}

/**
 * The source's end of a page-server tunnel (stop-and-copy): listens on 127.0.0.1:port for the
 * one connection CRIU's dump makes and pipes it into the tunnel, at whose other end the
 * service has connected the destination's page server.
 */
export async function listenPagesTunnel(tunnel: tls.TLSSocket, port: number): Promise<net.Server> {
  tunnel.on('error', () => undefined);
  let taken = false;
  const server = loadNet().createServer((c) => {
    if (taken) return void c.destroy(); // CRIU connects once
    taken = true;
    server.close();
    c.setNoDelay(true);
    void splice(c, tunnel);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

/**
 * The service's end of a page-server tunnel: connects the tunnel to the page server
 * listening on 127.0.0.1:port and pipes the two together.
 */
export function connectPagesTunnel(tunnel: net.Socket, port: number): void {
  const local = loadNet().connect({ host: '127.0.0.1', port });
  local.setNoDelay(true);
  local.once('connect', () => void splice(tunnel, local));
  local.once('error', () => tunnel.destroy());
}
