/**
 * The API service and real clients for tests: `ferry system service` on a host's root with its
 * socket in the host's dir, the docker CLI pointed at it (DOCKER_HOST=unix://..., a config dir of
 * its own), and raw HTTP requests over the socket.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { FERRY_BIN, ServiceProcess, type Host } from './ferry.js';

export const DOCKER = ['/usr/local/bin/docker', '/usr/bin/docker'].find((f) => fs.existsSync(f));

export interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `ferry system service` on h's root, its socket in h's dir, and the docker CLI pointed at it. */
export class Service extends ServiceProcess {
  readonly sock: string;
  private constructor(
    readonly h: Host,
    child: ChildProcess,
  ) {
    super(child);
    this.sock = path.join(h.dir, 'ferry.sock');
  }

  static start(h: Host): Promise<Service> {
    const sock = path.join(h.dir, 'ferry.sock');
    return new Service(h, spawn(FERRY_BIN, [...h.args(), 'system', 'service', '--listen', `unix://${sock}`], { stdio: ['ignore', 'ignore', 'pipe'] })).listening();
  }

  /** The docker CLI against this service; input, when given, is its stdin. */
  docker(args: string[], o: { input?: string | Buffer; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<Out> {
    return runTool([DOCKER!, ...args], { ...this.dockerEnv(), ...o.env }, o.input, o.timeoutMs);
  }

  dockerEnv(): Record<string, string> {
    return { DOCKER_HOST: `unix://${this.sock}`, DOCKER_CONFIG: path.join(this.h.dir, 'docker-config') };
  }

  async dockerOk(args: string[], o: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.docker(args, o);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /** The docker CLI's stdout as bytes (docker save). */
  dockerBuffer(args: string[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn(DOCKER!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.dockerEnv() } });
      const out: Buffer[] = [];
      let err = '';
      child.stdout!.on('data', (b: Buffer) => out.push(b));
      child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`docker ${args.join(' ')} exited ${code}: ${err.trim()}`))));
    });
  }

  /** One raw HTTP request over the socket. */
  request(method: string, p: string, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.sock, method, path: p, headers: body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {} }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }
}

export function runTool(argv: string[], env: Record<string, string> = {}, input?: string | Buffer, timeoutMs = 120_000): Promise<Out> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}
