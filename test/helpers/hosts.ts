/**
 * Two (or more) "hosts" on one machine for migration tests: each is a network namespace,
 * joined to the others by a veth pair on 10.77.0.0/16, with its own Ferry root and an sshd
 * listening on its own address. Keys are made by the test. Commands run inside a host with
 * `nsenter --net=...` (not `ip netns exec`, which remounts /sys and hides the cgroup tree).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { FERRY_BIN, Host, eventually, lastCount, type Result, type RunOpts } from './ferry.js';
import { duBytes } from '../../src/lib/fsutil.js';

export const SSH_PORT = 2222;

function sh(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
}

/** A pair of hosts A (10.77.N.1) and B (10.77.N.2) joined by a veth pair. */
export class HostPair {
  readonly id = randomBytes(3).toString('hex');
  readonly a: NetHost;
  readonly b: NetHost;
  private readonly subnet = 1 + (parseInt(this.id, 16) % 250);

  constructor() {
    this.a = new NetHost(`fa${this.id}`, `10.77.${this.subnet}.1`, this);
    this.b = new NetHost(`fb${this.id}`, `10.77.${this.subnet}.2`, this);
  }

  async setup(): Promise<void> {
    const key = path.join(this.a.dir, 'id_ed25519');
    sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key]);
    for (const h of [this.a, this.b]) sh(['ip', 'netns', 'add', h.netns]);
    const va = `vfa${this.id}`;
    const vb = `vfb${this.id}`;
    sh(['ip', 'link', 'add', va, 'netns', this.a.netns, 'type', 'veth', 'peer', 'name', vb, 'netns', this.b.netns]);
    for (const [h, v] of [[this.a, va], [this.b, vb]] as const) {
      sh(['ip', '-n', h.netns, 'addr', 'add', `${h.ip}/24`, 'dev', v]);
      sh(['ip', '-n', h.netns, 'link', 'set', v, 'up']);
      sh(['ip', '-n', h.netns, 'link', 'set', 'lo', 'up']);
    }
    for (const h of [this.a, this.b]) await h.startSshd(`${key}.pub`);
    this.key = key;
  }

  key = '';

  /** ssh options that make the test's keys and throwaway host keys work without prompts. */
  sshArgs(): string[] {
    return ['--identity', this.key, '--ssh-option', 'StrictHostKeyChecking=no', '--ssh-option', 'UserKnownHostsFile=/dev/null', '--ssh-option', 'LogLevel=ERROR'];
  }

  async destroy(): Promise<void> {
    for (const h of [this.a, this.b]) await h.destroy();
  }
}

export class NetHost extends Host {
  readonly netns: string;
  private sshd?: ChildProcess;

  constructor(name: string, readonly ip: string, readonly pair: HostPair) {
    super(name);
    this.netns = name;
  }

  /** ferry inside this host's network namespace. */
  override run(args: string[], opts: RunOpts = {}): Promise<Result> {
    return super.run(args, { ...opts, wrap: ['nsenter', `--net=/run/netns/${this.netns}`, ...(opts.wrap ?? [])] });
  }

  /** The command line the other host uses to run ferry here (--remote-command). */
  remoteCommand(): string {
    return [FERRY_BIN, ...this.args()].join(' ');
  }

  url(): string {
    return `ssh://root@${this.ip}:${SSH_PORT}`;
  }

  async startSshd(authorizedKey: string): Promise<void> {
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const d = path.join(this.dir, 'sshd');
    fs.mkdirSync(d, { recursive: true });
    sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', path.join(d, 'hostkey')]);
    fs.copyFileSync(authorizedKey, path.join(d, 'authorized_keys'));
    const conf = [
      `Port ${SSH_PORT}`,
      `ListenAddress ${this.ip}`,
      `HostKey ${path.join(d, 'hostkey')}`,
      `PidFile ${path.join(d, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(d, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PrintMotd no',
      'AllowTcpForwarding yes',
      'LogLevel ERROR',
    ].join('\n');
    fs.writeFileSync(path.join(d, 'sshd_config'), conf + '\n');
    this.sshd = spawn('nsenter', [`--net=/run/netns/${this.netns}`, '/usr/sbin/sshd', '-f', path.join(d, 'sshd_config'), '-D', '-e'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    this.sshd.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    // Ready when it accepts connections on its address.
    for (let i = 0; i < 100; i++) {
      const r = spawnSync('nsenter', [`--net=/run/netns/${this.netns}`, 'bash', '-c', `exec 3<>/dev/tcp/${this.ip}/${SSH_PORT}`]);
      if (r.status === 0) return;
      if (this.sshd.exitCode !== null) throw new Error(`sshd failed: ${err}`);
      await new Promise((r2) => setTimeout(r2, 50));
    }
    throw new Error(`sshd did not come up: ${err}`);
  }

  /** Kills this host's sshd at once (a synchronous last resort, e.g. for the bench on a second Ctrl-C). */
  killSshd(): void {
    this.sshd?.kill('SIGKILL');
  }

  override async destroy(): Promise<void> {
    // sshd first: its command line names this host's dir, so Host.destroy would otherwise wait
    // 15 s for it to exit on its own before killing it.
    this.sshd?.kill('SIGKILL');
    await super.destroy().catch(() => undefined);
    // Container namespaces made inside this host are deleted by `rm -a -f`; the host's own last.
    spawnSync('ip', ['netns', 'delete', this.netns]);
  }
}

export function hasSshd(): boolean {
  return fs.existsSync('/usr/sbin/sshd') && spawnSync('ssh', ['-V']).status === 0;
}

export { execFileSync };

// ------------------------------------------------------------------ migration assertions

/** The container names on h (all of them, or the running ones). */
export async function names(h: NetHost, all = true): Promise<string[]> {
  return (await h.ok(['ps', ...(all ? ['-a'] : []), '--format', '{{.Names}}'])).split('\n').filter(Boolean);
}

/** The containers runc knows on h. */
export function runcContainers(h: NetHost): string[] {
  const r = spawnSync('runc', ['--root', `${h.runroot}/runc`, 'list', '-q'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean);
}

/** The looper's count goes on from where it was on the other host (logs travel with it). */
export async function assertContinues(h: NetHost, ref: string, from: number): Promise<void> {
  await eventually(async () => (await lastCount(h, ref)) >= from + 2, 15_000);
  const nums = (await h.logs(ref)).map(Number);
  const i = nums.lastIndexOf(from);
  assert.ok(i >= 0, `count ${from} is in the log`);
  const rest = nums.slice(i + 1);
  assert.ok(rest.length >= 2 && rest.every((n, k) => n === from + 1 + k), `continues after ${from}: ${nums.slice(-8).join(',')}`);
}

/** A migration's destination after a failure: no container, runc state, staging or volume. */
export async function assertHostClean(h: NetHost): Promise<void> {
  assert.deepEqual(await names(h), [], 'no container on the destination');
  assert.deepEqual(runcContainers(h), []);
  // The ps above ran ferry there, which sweeps a killed receiver's staging.
  assert.deepEqual(fs.readdirSync(h.root).filter((f) => f.startsWith('.import-') || f.startsWith('.tmp-')), [], 'no staging left');
  assert.equal((await h.ok(['volume', 'ls', '-q'])).trim(), '', 'no volume left');
}

/**
 * Bytes a migration has landed on its destination so far: everything under the receiver's
 * staging dirs (the archive as it is unpacked, and the memory a page server writes).
 */
export function bytesArrived(h: NetHost): number {
  let n = 0;
  for (const d of fs.readdirSync(h.root)) if (d.startsWith('.import-')) n += duBytes(path.join(h.root, d));
  return n;
}
