/**
 * Helpers for the networking tests: a line-echo TCP client that keeps one connection, port and
 * address pickers that avoid what other tests on this machine use, and checks that a host's
 * containers leave no network namespace, veth, IPAM entry or CRIU iptables chain behind.
 * Only resources this host's records name are counted: other tests share the ferry0 bridge.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { eventually, recordedNets, type Host } from './ferry.js';

/** One TCP connection to a line-echo server (`nc -ll -p PORT -e cat`), kept open across steps. */
/** A TCP connection to host:port, or an error after timeoutMs. */
export function connectTcp(host: string, port: number, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

export class EchoClient {
  private buf = '';
  private closed: Error | undefined;
  private constructor(readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (this.buf += d));
    sock.on('error', (e) => (this.closed = e));
    sock.on('close', () => (this.closed ??= new Error('connection closed')));
  }

  static async connect(host: string, port: number, timeoutMs = 5000): Promise<EchoClient> {
    return new EchoClient(await connectTcp(host, port, timeoutMs));
  }

  /** Writes a line and waits until it comes back; rejects if the connection breaks or stays silent. */
  async echo(line: string, timeoutMs = 8000): Promise<void> {
    this.buf = '';
    if (this.closed) throw this.closed;
    this.sock.write(`${line}\n`);
    const end = Date.now() + timeoutMs;
    while (!this.buf.includes(`${line}\n`)) {
      const broke = this.closed as Error | undefined; // set by the socket's handlers meanwhile
      if (broke) throw new Error(`connection broke before "${line}" came back: ${broke.message}`);
      if (Date.now() > end) throw new Error(`"${line}" did not come back within ${timeoutMs} ms (got ${JSON.stringify(this.buf)})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  get isClosed(): boolean {
    return !!this.closed;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** A fresh connection that echoes one line, then closes. */
export async function echoOnce(host: string, port: number, timeoutMs = 5000): Promise<void> {
  const c = await EchoClient.connect(host, port, timeoutMs);
  try {
    await c.echo(`ping-${Math.random().toString(36).slice(2)}`, timeoutMs);
  } finally {
    c.close();
  }
}

/** Waits until a fresh connection echoes (a restored server may need a moment). */
export async function waitEcho(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  await eventually(async () => {
    await echoOnce(host, port, 2000);
    return true;
  }, timeoutMs, 200);
}

/** True when a fresh connection is refused or gets no echo. */
export async function noEcho(host: string, port: number): Promise<boolean> {
  try {
    await echoOnce(host, port, 1500);
    return false;
  } catch {
    return true;
  }
}

/** A high TCP port that nothing on the host's loopback listens on now. */
export async function freePort(): Promise<number> {
  for (;;) {
    const p = 40000 + Math.floor(Math.random() * 20000);
    const ok = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(p, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (ok) return p;
  }
}

/** Every IPv4 address in a ferry network namespace on this machine (any root's). */
export function addressesOnMachine(): Set<string> {
  const out = new Set<string>();
  let names: string[] = [];
  try {
    names = fs.readdirSync('/run/netns').filter((n) => n.startsWith('ferry-'));
  } catch {
    return out;
  }
  for (const n of names) {
    const r = spawnSync('ip', ['-n', n, '-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
    for (const m of (r.stdout ?? '').matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)) out.add(m[1]!);
  }
  return out;
}

/** An address in the default network (10.89.0.0/16), away from where allocation starts, unused now. */
export function freeIp(): string {
  const used = addressesOnMachine();
  for (;;) {
    const ip = `10.89.${100 + Math.floor(Math.random() * 150)}.${2 + Math.floor(Math.random() * 250)}`;
    if (!used.has(ip)) return ip;
  }
}

/** A container's output of a command run inside it. */
export async function execOut(h: Host, ref: string, argv: string[]): Promise<string> {
  return h.ok(['exec', ref, ...argv]);
}

export interface NetRes {
  id: string;
  name: string;
  status: string;
  netns?: string;
  veth?: string;
  ip?: string;
  network?: string;
}

/** The network resources this host's container records hold now. */
export function netResources(h: Host): NetRes[] {
  const base = path.join(h.root, 'containers');
  const out: NetRes[] = [];
  for (const id of h.containerDirs().filter((d) => /^[0-9a-f]{64}$/.test(d))) {
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(base, id, 'container.json'), 'utf8'));
      const n = rec.state?.net;
      const ifs: { name: string; sandbox?: string }[] = n?.result?.interfaces ?? [];
      out.push({ id, name: rec.config.name, status: rec.state.status, netns: n?.netnsName, veth: ifs.find((i) => !i.sandbox && i.name.startsWith('veth'))?.name, ip: n?.ip, network: n?.network });
    } catch {
      /* removed meanwhile */
    }
  }
  return out;
}

/** Records the netns/veth/IP a container has now, to check later that they are gone. */
export function snapshotNet(h: Host, name: string): NetRes {
  const r = netResources(h).find((x) => x.name === name);
  assert.ok(r?.netns, `container ${name} has no network attachment recorded`);
  return r!;
}

export function netnsExists(name: string): boolean {
  return fs.existsSync(`/run/netns/${name}`);
}

export function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' }).status === 0;
}

/** Host veths whose master is the bridge. */
export function vethsOn(bridge = 'ferry0'): string[] {
  const r = spawnSync('ip', ['-o', 'link', 'show', 'master', bridge], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').map((l) => l.match(/^\d+: ([^:@]+)/)?.[1]).filter((n): n is string => !!n && n.startsWith('veth'));
}

/** IPAM entries (address -> container ID) in this host's records for a network. */
export function ipamEntries(h: Host, network = 'ferry'): Map<string, string> {
  const dir = path.join(h.root, 'networks', 'ipam', network);
  const out = new Map<string, string>();
  let files: string[] = [];
  try {
    files = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const f of files) if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) out.set(f, fs.readFileSync(path.join(dir, f), 'utf8').split('\n')[0]!.trim());
  return out;
}

/** CRIU's network-lock chains in iptables, on the host or in a namespace. */
export function criuChains(netns?: string): string[] {
  const argv = netns ? ['nsenter', `--net=/run/netns/${netns}`, 'iptables-save'] : ['iptables-save'];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter((l) => /criu/i.test(l));
}

/**
 * Asserts that nothing of this host's networking is left but what its running containers hold:
 * `gone` are resources of containers that were stopped/removed/checkpointed (must not exist);
 * every running container has exactly its netns and veth (on the bridge); IPAM entries belong
 * to running containers only; no CRIU chain on the host or in a running container's namespace.
 */
export function assertNoNetLeaks(h: Host, gone: NetRes[] = [], network = 'ferry', bridge = 'ferry0'): void {
  const res = netResources(h);
  const running = res.filter((r) => r.status === 'running');
  for (const g of gone) {
    if (running.some((r) => r.netns === g.netns)) continue;
    assert.ok(!netnsExists(g.netns!), `network namespace ${g.netns} of ${g.name} is left behind`);
    if (g.veth) assert.ok(!linkExists(g.veth), `veth ${g.veth} of ${g.name} is left behind`);
  }
  for (const r of res) {
    if (r.status === 'running') continue;
    assert.equal(r.netns, undefined, `${r.name} (${r.status}) still records network namespace ${r.netns}`);
  }
  const onBridge = new Set(vethsOn(bridge));
  const mine = running.filter((r) => r.network === network && r.veth && onBridge.has(r.veth));
  const onNet = running.filter((r) => r.network === network && r.netns && netnsExists(r.netns));
  assert.equal(mine.length, onNet.length, `running containers with a namespace (${onNet.length}) and with a veth on ${bridge} (${mine.length}) differ`);
  const runningIds = new Set(running.map((r) => r.id));
  for (const [ip, id] of ipamEntries(h, network)) {
    assert.ok(runningIds.has(id), `IPAM entry ${ip} belongs to container ${id.slice(0, 12)}, which is not running`);
  }
  assert.deepEqual(criuChains(), [], 'CRIU iptables chain left on the host');
  for (const r of running.filter((x) => x.netns && netnsExists(x.netns))) assert.deepEqual(criuChains(r.netns), [], `CRIU iptables chain left in ${r.netns} (${r.name})`);
}

export { recordedNets };
