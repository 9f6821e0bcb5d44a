/**
 * Debian's real Podman (rootful, runc, cgroupfs) as a peer for tests: a state of its own below a
 * temporary dir (storage, run root, runc root, file locks, tmp, events log, network config),
 * configured through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, with the CRIU Ferry uses first
 * in PATH (Podman's runc finds CRIU there). Its containers get no network (`netns = "none"`):
 * Podman's default bridge (10.88.0.0/16) is never set up next to Ferry's. destroy() removes
 * every container, mount, runc state and file it made, and the traces Podman leaves outside its
 * --root when they were not there before.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { busyboxTarball, sleep, type Result } from './ferry.js';

/** Ferry's private CRIU (`npm run setup`), or the host's when it has none. */
const FERRY_CRIU = '/usr/local/lib/ferry/bin/criu';

/** True when Podman is installed (tests that need it skip otherwise). */
export function hasPodman(): boolean {
  return spawnSync('podman', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** What Podman may leave outside its --root, and whether it was there before this run. */
export interface PodmanTraces {
  varLibContainers: boolean;
  varLibCni?: boolean;
  cgroups: boolean;
}

/** Podman (cgroupfs manager) puts containers and conmon below libpod_parent in every hierarchy. */
export function podmanCgroups(): string[] {
  try {
    return fs
      .readdirSync('/sys/fs/cgroup')
      .map((h) => path.join('/sys/fs/cgroup', h, 'libpod_parent'))
      .filter((d) => fs.existsSync(d));
  } catch {
    return [];
  }
}

function rmdirTree(d: string): void {
  for (const ent of fs.readdirSync(d, { withFileTypes: true })) if (ent.isDirectory()) rmdirTree(path.join(d, ent.name));
  fs.rmdirSync(d);
}

/**
 * A Podman of its own below d (read through CONTAINERS_CONF and CONTAINERS_STORAGE_CONF; the
 * bench's Podman uses it too): storage, run root, tmp, events log, file locks and network
 * config all below d, runc and cgroupfs (what works here), and no networking unless asked
 * for, so Podman's default bridge (10.88.0.0/16) is never set up next to Ferry's 10.89.0.0/16.
 * The machine's own Podman setup is untouched.
 */
export function writePodmanConfig(d: string): void {
  fs.writeFileSync(
    path.join(d, 'containers.conf'),
    `# Written by Ferry's tests or bench for a Podman of their own; removed afterwards.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${d}/events.log"
tmp_dir = "${d}/tmp"
lock_type = "file"

[network]
network_config_dir = "${d}/net"
`,
  );
  fs.writeFileSync(path.join(d, 'storage.conf'), `[storage]\ndriver = "overlay"\ngraphroot = "${d}/root"\nrunroot = "${d}/run"\n`);
}

/**
 * Podman's default network ("podman": the bridge cni-podman0 on 10.88.0.0/16, as Podman 4.3.1
 * makes it with CNI) written into this Podman's own network config dir, with the addresses it
 * hands out recorded below d too (host-local's dataDir) rather than in the machine's CNI state.
 */
export function writePodmanBridge(d: string): void {
  const conf = {
    cniVersion: '0.4.0',
    name: 'podman',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni-podman0',
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'host-local', routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: '10.88.0.0/16', gateway: '10.88.0.1' }]], dataDir: path.join(d, 'cni-ipam') },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'firewall' },
      { type: 'tuning' },
    ],
  };
  fs.writeFileSync(path.join(d, 'net', '87-podman-bridge.conflist'), JSON.stringify(conf, null, 2) + '\n');
}

export class Podman {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  private readonly argv0: string[];
  private readonly before: PodmanTraces;

  /**
   * netns: run every podman command inside that network namespace (`nsenter --net`), so that a
   * container on Podman's bridge (`--network bridge`: its cni-podman0, 10.88.0.0/16, and its
   * iptables rules) lives there, never in the machine's own namespace.
   */
  constructor(name = 'pod', netns?: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `fy-${name.slice(0, 6)}-`));
    this.before = { varLibContainers: fs.existsSync('/var/lib/containers'), varLibCni: fs.existsSync('/var/lib/cni'), cgroups: podmanCgroups().length > 0 };
    const d = this.dir;
    for (const sub of ['bin', 'root', 'run', 'runc', 'tmp', 'net']) fs.mkdirSync(path.join(d, sub), { recursive: true });
    if (fs.existsSync(FERRY_CRIU)) fs.symlinkSync(FERRY_CRIU, path.join(d, 'bin', 'criu'));
    writePodmanConfig(d);
    if (netns) writePodmanBridge(d);
    this.env = {
      ...process.env,
      CONTAINERS_CONF: path.join(d, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: path.join(d, 'storage.conf'),
      // Podman's checkpoint/restore writes temporary files below TMPDIR.
      TMPDIR: path.join(d, 'tmp'),
      PATH: `${path.join(d, 'bin')}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    };
    this.argv0 = [...(netns ? ['nsenter', `--net=/run/netns/${netns}`] : []), 'podman', '--root', path.join(d, 'root'), '--runroot', path.join(d, 'run'), '--storage-driver', 'overlay', '--runtime-flag', `root=${path.join(d, 'runc')}`];
  }

  run(args: string[], timeoutMs = 120_000): Promise<Result> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.argv0[0]!, [...this.argv0.slice(1), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: this.env });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
    });
  }

  async ok(args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /** Imports the tests' busybox rootfs as localhost/busybox:latest (the name Ferry gives it). */
  async importBusybox(): Promise<void> {
    await this.ok(['import', busyboxTarball(), 'localhost/busybox:latest']);
  }

  async logs(ref: string): Promise<string[]> {
    return (await this.ok(['logs', ref])).split('\n').filter(Boolean);
  }

  async counts(ref: string): Promise<number[]> {
    return (await this.logs(ref)).filter((l) => /^[0-9]+$/.test(l)).map(Number);
  }

  async inspect(ref: string): Promise<any> {
    return JSON.parse(await this.ok(['container', 'inspect', ref]))[0];
  }

  /** Names of every container, sorted. */
  async names(): Promise<string[]> {
    return (await this.ok(['ps', '-a', '--format', '{{.Names}}'])).split('\n').filter(Boolean).sort();
  }

  /** Removes every container and file of this Podman (mounts, runc state, cgroups included). */
  async destroy(): Promise<void> {
    if (fs.existsSync(path.join(this.dir, 'root'))) {
      await this.run(['rm', '-a', '-f', '-t', '0']).catch(() => undefined);
      await this.run(['volume', 'rm', '-a', '-f']).catch(() => undefined);
    }
    const runc = path.join(this.dir, 'runc');
    if (fs.existsSync(runc)) for (const id of fs.readdirSync(runc)) spawnSync('runc', ['--root', runc, 'delete', '--force', id], { stdio: 'ignore' });
    // conmon processes of ours that outlived their containers.
    for (const p of fs.readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(p) || Number(p) === process.pid) continue;
      try {
        if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(this.dir + '/')) process.kill(Number(p), 'SIGKILL');
      } catch {
        /* exited */
      }
    }
    await sleep(100);
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(this.dir + '/'));
    for (const m of mounts.sort().reverse()) spawnSync('umount', ['-l', m]);
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    if (!this.before.cgroups) {
      for (const d of podmanCgroups()) {
        try {
          rmdirTree(d);
        } catch {
          /* still in use (another test's Podman) */
        }
      }
    }
    // Podman's CNI keeps its results cache below /var/lib/cni whatever its config says.
    if (!this.before.varLibCni && fs.existsSync('/var/lib/cni')) {
      for (const d of ['/var/lib/cni/results', '/var/lib/cni/networks', '/var/lib/cni']) {
        try {
          fs.rmdirSync(d);
        } catch {
          /* not empty: not only ours */
        }
      }
    }
    // `podman import` writes its blob-info cache below /var/lib/containers whatever --root says.
    if (!this.before.varLibContainers && fs.existsSync('/var/lib/containers')) {
      fs.rmSync('/var/lib/containers/cache/blob-info-cache-v1.boltdb', { force: true });
      for (const d of ['/var/lib/containers/cache', '/var/lib/containers']) {
        try {
          fs.rmdirSync(d);
        } catch {
          /* not empty: not only ours */
        }
      }
    }
  }
}
