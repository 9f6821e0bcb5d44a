/**
 * A real Distribution registry (Debian's docker-registry) on 127.0.0.1 for tests, with its own
 * config and storage; skopeo seeds it. stop() ends the process and removes its files.
 * Also a tiny tampering proxy: forwards to the registry and flips bytes of chosen blobs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

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
  /** skopeo (like podman) keeps a blob-info cache below /var/lib/containers whatever it is told. */
  private readonly hadVarLib = fs.existsSync('/var/lib/containers');

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-reg-'));
  }

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(opts: { htpasswd?: string } = {}): Promise<void> {
    this.port = await freePort();
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
      ...(opts.htpasswd ? ['auth:', '  htpasswd:', '    realm: ferry-test', `    path: ${opts.htpasswd}`] : []),
    ].join('\n');
    const file = path.join(this.dir, 'config.yml');
    fs.writeFileSync(file, cfg + '\n');
    this.proc = spawn('docker-registry', ['serve', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (b: Buffer) => (this.log += b.toString()));
    this.proc.stderr!.on('data', (b: Buffer) => (this.log += b.toString()));
    for (let i = 0; i < 100; i++) {
      if (await ping(this.port)) return;
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.stop();
    throw new Error(`docker-registry did not start: ${this.log}`);
  }

  /** skopeo copy of an OCI layout's tag into this registry as repo:tag (v2s2: as Docker schema 2). */
  push(layoutDir: string, layoutTag: string, repoTag: string, format?: 'oci' | 'v2s2'): void {
    const r = spawnSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...(format ? ['--format', format] : []), `oci:${layoutDir}:${layoutTag}`, `docker://${this.addr}/${repoTag}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`skopeo copy failed: ${r.stderr}`);
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

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/v2/', timeout: 1000 }, (res) => {
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
export class TamperProxy {
  private server: http.Server | undefined;
  port = 0;
  readonly tamper = new Set<string>();

  constructor(private readonly upstreamPort: number) {}

  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const up = http.request({ host: '127.0.0.1', port: this.upstreamPort, path: req.url, method: req.method, headers: req.headers }, (ur) => {
        const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
        if (!digest || !this.tamper.has(digest) || ur.statusCode !== 200) {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
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
    });
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
