/**
 * A real Distribution registry (Debian's docker-registry) on 127.0.0.1 for tests, with its own
 * config and storage; skopeo seeds it. stop() ends the process and removes its files.
 * Also a tiny tampering proxy: forwards to the registry and flips bytes of chosen blobs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../../src/lib/net.js';

export function hasRegistryTools(): string | undefined {
  for (const t of ['docker-registry', 'skopeo']) {
    if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) return `${t} is not installed (npm run setup installs it)`;
  }
  return undefined;
}

export class Registry {
  readonly dir: string;
  port = 0;
  private proc: ChildProcess | undefined;
  private log = '';
  private tls = false;
  /** skopeo (like podman) keeps a blob-info cache below /var/lib/containers whatever it is told. */
  private readonly hadVarLib = fs.existsSync('/var/lib/containers');

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-reg-'));
  }

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** With `auth`: htpasswd (bcrypt) Basic auth; with `tls`: HTTPS with a self-signed certificate. */
  async start(opts: { auth?: { user: string; password: string }; tls?: boolean } = {}): Promise<void> {
    this.port = await freePort();
    let htpasswd: string | undefined;
    if (opts.auth) {
      const py = spawnSync('python3', ['-W', 'ignore', '-c', 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))', opts.auth.password], { encoding: 'utf8' });
      if (py.status !== 0) throw new Error(`bcrypt failed: ${py.stderr}`);
      htpasswd = path.join(this.dir, 'htpasswd');
      fs.writeFileSync(htpasswd, `${opts.auth.user}:${py.stdout.trim()}\n`);
    }
    const cert = path.join(this.dir, 'cert.pem');
    const key = path.join(this.dir, 'key.pem');
    if (opts.tls) {
      const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    }
    this.tls = !!opts.tls;
    const cfg = [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(this.dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${this.port}`,
      ...(opts.tls ? ['  tls:', `    certificate: ${cert}`, `    key: ${key}`] : []),
      ...(htpasswd ? ['auth:', '  htpasswd:', '    realm: ferry-test', `    path: ${htpasswd}`] : []),
    ].join('\n');
    const file = path.join(this.dir, 'config.yml');
    fs.writeFileSync(file, cfg + '\n');
    this.proc = spawn('docker-registry', ['serve', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (b: Buffer) => (this.log += b.toString()));
    this.proc.stderr!.on('data', (b: Buffer) => (this.log += b.toString()));
    for (let i = 0; i < 100; i++) {
      if (await ping(this.port, this.tls)) return;
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop();
    throw new Error(`docker-registry did not start: ${this.log}`);
  }

  /** skopeo copy of an OCI layout's tag into this registry as repo:tag (v2s2: as Docker schema 2). */
  push(layoutDir: string, layoutTag: string, repoTag: string, format?: 'oci' | 'v2s2', extra: string[] = []): void {
    const r = spawnSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...extra, ...(format ? ['--format', format] : []), `oci:${layoutDir}:${layoutTag}`, `docker://${this.addr}/${repoTag}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`skopeo copy failed: ${r.stderr}`);
  }

  /** For a synchronous teardown (the bench's Ctrl-C): kills the registry and removes its files. */
  stopSync(): void {
    const p = this.proc;
    this.proc = undefined;
    if (p && p.exitCode === null) p.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (!this.hadVarLib) fs.rmSync('/var/lib/containers', { recursive: true, force: true });
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (!this.hadVarLib) fs.rmSync('/var/lib/containers', { recursive: true, force: true });
  }
}

function ping(port: number, tls: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const get = tls ? https.get : http.get;
    const req = get({ host: '127.0.0.1', port, path: '/v2/', timeout: 1000, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 || res.statusCode === 401);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

/**
 * A proxy to a registry that serves `tamper` blobs (by digest) with one byte changed: the
 * registry "is tampered with" for whoever pulls through it.
 */
/** An HTTP server on a free port of 127.0.0.1, stopped with every connection it holds. */
abstract class LoopbackServer {
  private server: http.Server | undefined;
  port = 0;

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  protected abstract handle(req: http.IncomingMessage, res: http.ServerResponse): void;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections?.();
      await new Promise((r) => s.close(r));
    }
  }
}

export class TamperProxy extends LoopbackServer {
  readonly tamper = new Set<string>();
  /** Blobs whose next download is cut half-way (once each). */
  readonly cut = new Set<string>();
  /** Blob downloads are slowed to this rate (0: as fast as they come). */
  bytesPerSecond = 0;
  /** Every blob GET that went through, by digest, and the bytes the registry answered with. */
  readonly fetched: { digest: string; bytes: number }[] = [];

  constructor(private readonly upstreamPort: number) {
    super();
  }

  protected handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const up = http.request({ host: '127.0.0.1', port: this.upstreamPort, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
      if (digest && this.cut.has(digest) && ur.statusCode === 200 && req.method === 'GET') {
        this.cut.delete(digest);
        const chunks: Buffer[] = [];
        ur.on('data', (c: Buffer) => chunks.push(c));
        ur.on('end', () => {
          const b = Buffer.concat(chunks);
          res.writeHead(200, { ...ur.headers, 'content-length': String(b.length) });
          res.write(b.subarray(0, b.length >> 1), () => res.socket?.destroy());
        });
        return;
      }
      if (!digest || !this.tamper.has(digest) || ur.statusCode !== 200) {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        if (digest && req.method === 'GET' && ur.statusCode === 200) {
          const rec = { digest, bytes: 0 };
          this.fetched.push(rec);
          ur.on('data', (c: Buffer) => (rec.bytes += c.length));
          if (this.bytesPerSecond > 0) {
            // Slowed: each chunk waits its time before the next is read.
            ur.on('data', (c: Buffer) => {
              ur.pause();
              res.write(c);
              setTimeout(() => ur.resume(), (c.length / this.bytesPerSecond) * 1000);
            });
            ur.on('end', () => res.end());
            return;
          }
        }
        ur.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      ur.on('data', (c: Buffer) => chunks.push(c));
      ur.on('end', () => {
        const b = Buffer.concat(chunks);
        b[b.length >> 1] = b[b.length >> 1]! ^ 0xff;
        res.writeHead(200, { ...ur.headers, 'content-length': String(b.length) });
        res.end(b);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  }
}

/**
 * A Bearer-token front for a registry, as Docker Hub and most registries do it: requests
 * without a token get 401 with `WWW-Authenticate: Bearer realm=.../token`; /token gives a token
 * for Basic credentials user:password; requests with the token go through to the registry.
 */
export class TokenProxy extends LoopbackServer {
  readonly token = `tok-${Math.random().toString(36).slice(2)}`;
  tokenRequests = 0;

  constructor(private readonly upstreamPort: number, private readonly user: string, private readonly password: string) {
    super();
  }

  protected handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', `http://${this.addr}`);
    if (url.pathname === '/token') {
      this.tokenRequests++;
      const want = `Basic ${Buffer.from(`${this.user}:${this.password}`).toString('base64')}`;
      if (req.headers.authorization !== want || url.searchParams.get('service') !== 'ferry-test' || !url.searchParams.get('scope')?.startsWith('repository:')) {
        res.writeHead(401).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: this.token }));
      return;
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      const repo = /^\/v2\/(.+)\/(?:manifests|blobs)\//.exec(url.pathname)?.[1] ?? '';
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${this.addr}/token",service="ferry-test",scope="repository:${repo}:pull"`, 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    const up = http.request({ host: '127.0.0.1', port: this.upstreamPort, path: req.url, method: req.method, headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  }
}
