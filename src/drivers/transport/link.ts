/**
 * How a migration's source reaches the destination's receiver: a Link. Either the stdio of ssh
 * running `ferry system migrate-receive` (ssh://), or a mutual-TLS connection to a
 * `ferry system service` (ferry://, see service.ts). The protocol on top (channel.ts) is the
 * same on both; so is the memory tunnel's shape, between CRIUs that listen on loopback only:
 * lazy pages go from a page server on the source to `criu lazy-pages` on the destination
 * (`ssh -R`, or the service's pages connection), a stop-and-copy dump goes from CRIU on the
 * source to a page server on the destination (`ssh -L`, or the same connection the other way).
 *
 * Transport only: what travels and when is the engine's business.
 */
import type * as net from 'node:net';
import { randomBytes } from '../../lib/lazy.js';
import type { TLSSocket } from 'node:tls';
import type { Readable, Writable } from 'node:stream';
import { FerryError } from '../../lib/errors.js';
import { waitExit } from '../../lib/proc.js';
import { debug, debugEnabled } from '../../lib/log.js';
import { parseSshUrl, sshCipherOrder, sshSpawn, type SshTarget } from './channel.js';
import { PROTOCOL, connectService, displayTarget, isServiceUrl, listenPagesTunnel, parseServiceUrl, readSecretFile, servePagesTunnel, type ServiceIdentity, type ServiceTarget } from './service.js';

/** How memory travels: in the archive (pre-copy), from CRIU to a page server there, or on demand (lazy). */
export type PagesMode = 'none' | 'page-server' | 'lazy';

export type Destination = { kind: 'ssh'; host: string; ssh: SshTarget } | { kind: 'service'; host: string; service: ServiceTarget; identity: ServiceIdentity };

/** What `ferry migrate` was told about the destination and how to reach it. */
export interface DestinationOptions {
  /** ssh://[user@]host[:port], or ferry://host:port for a `ferry system service`. */
  destination: string;
  /** The ferry service's shared secret (ferry:// destinations only). */
  secretFile?: string;
  /** The destination's ferry command line (default `ferry`; ssh:// only). */
  remoteCommand?: string;
  identity?: string;
  sshOptions?: string[];
}

/** Which transport the destination URL names, with the options that belong to it checked. */
export function parseDestination(o: DestinationOptions): Destination {
  if (isServiceUrl(o.destination)) {
    const service = parseServiceUrl(o.destination);
    const sshOnly = [o.identity && '--identity', o.sshOptions?.length && '--ssh-option', o.remoteCommand && '--remote-command'].filter(Boolean);
    if (sshOnly.length) throw new FerryError('EINVAL', `${sshOnly.join(', ')} ${sshOnly.length > 1 ? 'apply' : 'applies'} only to ssh:// destinations, not to ${o.destination}`);
    if (!o.secretFile) throw new FerryError('EINVAL', `migrating to a ferry service (${o.destination}) needs --secret-file FILE, the secret the service was started with`);
    return { kind: 'service', host: displayTarget(service), service, identity: readSecretFile(o.secretFile) };
  }
  if (o.secretFile) throw new FerryError('EINVAL', '--secret-file only applies to ferry://host:port destinations (ssh:// uses your ssh keys)');
  if (!/^ssh:\/\//.test(o.destination)) throw new FerryError('EINVAL', `invalid destination "${o.destination}": use ssh://[user@]host[:port] or ferry://host:port`);
  const ssh = parseSshUrl(o.destination);
  return { kind: 'ssh', host: ssh.host, ssh };
}

/**
 * How the source reaches the destination's receiver: the stdio of ssh running
 * `ferry system migrate-receive`, or a mutual-TLS connection to a `ferry system service`.
 * The protocol on top is the same.
 */
export interface Link {
  /** For messages: "hostB", "the ferry service at hostB:7797". */
  where: string;
  /** Frames to the destination. */
  output: Writable;
  /** JSON lines from the destination. */
  input: Readable;
  /**
   * The destination's loopback port of the memory tunnel, sent in hello (0: the receiver
   * picks): where its `criu lazy-pages` dials (lazy), or where its page server listens.
   */
  remotePagesPort: number;
  /** After `ready`, before anything is frozen: anything more the transport has to set up. */
  ready(): Promise<void>;
  /** What the transport said about why it went away, if anything. */
  lostReason(): string | undefined;
  /** Ends our side gracefully. */
  end(): void;
  /** Cuts the link at once. */
  destroy(): void;
  /** Resolves when the link has closed, cutting it after ms. */
  closed(ms: number): Promise<void>;
}

/** Opens the link to a parsed destination; pagesPort is this host's loopback end of the memory tunnel. */
export async function openLink(dest: Destination, o: DestinationOptions, pages: PagesMode, pagesPort: number): Promise<Link> {
  if (dest.kind !== 'ssh') return serviceLink(dest.service, dest.identity, pages, pagesPort);
  return sshLink(dest.ssh, { ...o, ciphers: await sshCipherOrder(dest.ssh, { options: o.sshOptions }) }, pages, pagesPort);
}

/**
 * ssh running `ferry system migrate-receive`. Memory goes through the same ssh connection:
 * lazy pages through `ssh -R` (the destination dials this host's page server), a stop-and-copy
 * dump through `ssh -L` (this host's CRIU dials the destination's page server).
 */
export function sshLink(target: SshTarget, o: Pick<DestinationOptions, 'remoteCommand' | 'identity' | 'sshOptions'> & { ciphers?: string }, pages: PagesMode, pagesPort: number): Link {
  const remotePort = pages === 'none' ? 0 : 20000 + Math.floor(Math.random() * 20000);
  // At --log-level debug the destination's ferry traces too, and its lines come back here,
  // stamped with this process's clock: one timeline of both hosts.
  const trace = debugEnabled();
  const ssh = sshSpawn(target, o.remoteCommand ?? 'ferry', [...(trace ? ['--log-level', 'debug'] : []), 'system', 'migrate-receive'], {
    identity: o.identity,
    options: o.sshOptions,
    ciphers: o.ciphers,
    remoteForwards: pages === 'lazy' ? [[remotePort, '127.0.0.1', pagesPort]] : [],
    localForwards: pages === 'page-server' ? [[pagesPort, '127.0.0.1', remotePort]] : [],
  });
  const sshErr: string[] = [];
  let partial = '';
  ssh.stderr!.on('data', (b: Buffer) => {
    const text = b.toString();
    sshErr.push(text);
    if (!trace) return;
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (l.startsWith('ferry[')) debug(`${target.host}: ${l}`);
  });
  ssh.stdin!.on('error', () => undefined);
  return {
    where: target.host,
    output: ssh.stdin!,
    input: ssh.stdout!,
    remotePagesPort: remotePort,
    ready: async () => undefined,
    lostReason: () => sshErr.join('').trim().split('\n').filter((l) => !/^Warning: Permanently added/.test(l) && !l.startsWith('ferry[')).pop(),
    end: () => ssh.stdin!.end(),
    destroy: () => ssh.kill(),
    closed: (ms) => waitExit(ssh, ms),
  };
}

/**
 * A mutual-TLS connection to a `ferry system service` (certificates derived from the secret). A second one, tagged with the session's
 * token, carries the memory: with --lazy the destination's page faults to CRIU's page server
 * on this host's loopback (the service's counterpart of `ssh -R`); for stop-and-copy this
 * host's CRIU dump, which dials pagesPort here, to the destination's page server (`ssh -L`).
 */
export async function serviceLink(target: ServiceTarget, identity: ServiceIdentity, pages: PagesMode, pagesPort: number): Promise<Link> {
  const where = `the ferry service at ${displayTarget(target)}`;
  const token = randomBytes(16).toString('hex');
  const sock = await connectService(target, identity, `${PROTOCOL} migrate ${token}`);
  let why: string | undefined;
  sock.on('error', (e: NodeJS.ErrnoException) => (why ??= e.code ?? e.message));
  let tunnel: TLSSocket | undefined;
  let listener: net.Server | undefined;
  const closedP = new Promise<void>((r) => (sock.destroyed ? r() : sock.once('close', () => r())));
  return {
    where,
    output: sock,
    input: sock,
    remotePagesPort: 0,
    ready: async () => {
      if (pages === 'none') return;
      tunnel = await connectService(target, identity, `${PROTOCOL} pages ${token}`);
      if (pages === 'lazy') servePagesTunnel(tunnel, pagesPort).catch(() => undefined);
      else listener = await listenPagesTunnel(tunnel, pagesPort);
    },
    lostReason: () => why,
    end: () => {
      sock.end();
      tunnel?.destroy(); // every page has been served, or none is wanted any more
      listener?.close();
    },
    destroy: () => {
      sock.destroy();
      tunnel?.destroy();
      listener?.close();
    },
    closed: async (ms) => {
      const t = setTimeout(() => sock.destroy(), ms);
      await closedP;
      clearTimeout(t);
      // The pages tunnel lives only as long as the page server, which has exited by now (or
      // is no longer needed: the migration failed).
      tunnel?.destroy();
      listener?.close();
    },
  };
}
