// Podman (rootful, runc, cgroupfs) with a state of its own in the temporary dir: storage, run
// root, runc root, locks, tmp, events log and network config, all configured through
// CONTAINERS_CONF / CONTAINERS_STORAGE_CONF; and the Podman baseline on a migration host.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { SSH_PORT, type HostPair, type NetHost } from '../../../test/helpers/hosts.js';
import { podmanCgroups, writePodmanConfig, type PodmanTraces } from '../../../test/helpers/podman.js';

export type { PodmanTraces };
import { CRIU } from '../paths.js';
import { cmdError, exec, firstLine, log } from '../proc.js';
import { markOf, type BenchContext, type Mark, type Workload } from '../workloads.js';
import { CliEngine } from './cli.js';
import { inNetns, sshOptions, type HostEngine, type MigrationSample } from './engine.js';

export class PodmanEngine extends CliEngine {
  /** podman and its global flags, without the wrap: for the synchronous cleanup, which needs no netns. */
  private readonly podman: string[];

  /** `wrap` runs every podman command inside something (the migration hosts: `nsenter --net=...`). */
  constructor(
    readonly dir: string,
    wrap: readonly string[] = [],
  ) {
    const bin = path.join(dir, 'bin');
    const env = {
      ...process.env,
      CONTAINERS_CONF: path.join(dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
      // Podman's runc finds CRIU through PATH: the same CRIU 4.2 Ferry uses.
      PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    };
    const podman = ['podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'), '--storage-driver', 'overlay', '--runtime-flag', `root=${path.join(dir, 'runc')}`];
    super('podman', [...wrap, ...podman], env, { busybox: 'localhost/busybox:latest', redis: 'localhost/redis:latest' });
    this.podman = podman;
  }

  private writeConfig(): void {
    const d = this.dir;
    for (const sub of ['bin', 'root', 'run', 'runc', 'tmp', 'net']) fs.mkdirSync(path.join(d, sub), { recursive: true });
    fs.rmSync(path.join(d, 'bin', 'criu'), { force: true });
    fs.symlinkSync(CRIU, path.join(d, 'bin', 'criu'));
    // Only this bench's Podman reads these (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF).
    writePodmanConfig(d);
  }

  async setup(ctx: BenchContext): Promise<void> {
    if (!firstLine(['podman', '--version'])) throw new Error('podman is not installed (bench/setup.sh could not install it: see above)');
    this.writeConfig();
    await this.importImages(ctx);
    // A probe: a container that runs and goes, so a broken setup is reported up front.
    await this.run('probe', { kind: 'tiny', argv: ['true'] });
    await this.rm('probe');
    this.version = firstLine(['podman', '--version']);
  }

  override rm(name: string): Promise<number> {
    // Podman's rm -f stops with SIGTERM and a 10 s grace period (the looper's sh ignores
    // SIGTERM as PID 1); -t 0 kills at once, like Ferry's rm -f and `runc delete -f`.
    return this.timed(['rm', '-f', '-t', '0', name], 'rm -f');
  }

  // run -d gets --network none (CliEngine).

  cleanup(): void {
    if (fs.existsSync(path.join(this.dir, 'root'))) spawnSync(this.podman[0]!, [...this.podman.slice(1), 'rm', '-a', '-f', '-t', '0'], { env: this.env, stdio: 'ignore', timeout: 120_000 });
    const runc = path.join(this.dir, 'runc');
    if (fs.existsSync(runc)) for (const id of fs.readdirSync(runc)) spawnSync('runc', ['--root', runc, 'delete', '--force', id], { stdio: 'ignore' });
  }
}

/**
 * The Podman baseline's "host": a Podman of its own (storage, run root, runc root, locks, tmp,
 * events log, network config: all below `dir`) whose commands run inside the host's network
 * namespace, with the same busybox image imported into its own store.
 */
export class PodmanHost extends PodmanEngine implements HostEngine {
  /** Where the migration's archives are written and received. */
  readonly xfer: string;

  constructor(
    readonly host: NetHost,
    dir: string,
  ) {
    super(dir, inNetns(host));
    this.xfer = path.join(dir, 'xfer');
  }

  override async setup(ctx: BenchContext): Promise<void> {
    await super.setup(ctx);
    fs.mkdirSync(this.xfer, { recursive: true });
  }

  /**
   * Podman migration of `name` from here to `dst` (both with --network none): on the source
   * `podman container checkpoint --export F --compress zstd` (zstd is Podman's default and
   * Ferry's stream), `scp` of F over the veth link into the destination's directory (from the
   * source's netns to the destination's sshd, the same key and options Ferry and bare get), and
   * `podman container restore --import F` on the destination, which returns once the container
   * runs again. Downtime = total = checkpoint start to restore done. Not timed: reading the mark
   * from the source's log, removing the checkpointed container there, deleting both archives.
   * Podman has no post-copy mode: there is only stop-and-copy.
   */
  async migrate(pair: HostPair, dst: this, name: string, w: Workload): Promise<MigrationSample> {
    const file = path.join(this.xfer, `${name}.tar.zst`);
    const dest = path.join(dst.xfer, `${name}.tar.zst`);
    fs.rmSync(file, { force: true });
    fs.rmSync(dest, { force: true });
    const t1 = performance.now();
    await this.timed(['container', 'checkpoint', '--export', file, '--compress', 'zstd', name], 'container checkpoint --export');
    // -O: the legacy scp protocol (OpenSSH >= 9 uses SFTP, which the hosts' sshd does not serve).
    const scp = ['scp', '-O', '-q', ...sshOptions(pair), '-P', String(SSH_PORT)];
    const r = await exec([...inNetns(this.host), ...scp, file, `root@${dst.host.ip}:${dest}`]);
    if (r.code !== 0) throw cmdError('podman baseline scp', r);
    await dst.timed(['container', 'restore', '--import', dest], 'container restore --import');
    const t2 = performance.now();
    const bytes = fs.statSync(dest).size;
    // Untimed, in the pause before the next step: the mark from the source's log (the container
    // is stopped there, its log kept), then the source's container and both archives go.
    const mark = async (): Promise<Mark> => {
      // Redis's mark is its DEBUG DIGEST, which the caller took before the migration.
      const m = w.kind === 'redis' ? '' : await markOf(this, name, w);
      await this.rm(name);
      fs.rmSync(file, { force: true });
      fs.rmSync(dest, { force: true });
      return m;
    };
    return { downtime: t2 - t1, total: t2 - t1, bytes, mark };
  }

  async discard(name: string): Promise<void> {
    const r = await this.x(['rm', '-f', '-t', '0', '--ignore', name]);
    if (r.code !== 0) log(`  (podman: removing ${name} on ${this.host.netns} failed: ${(r.stderr || r.stdout).trim()})`);
    for (const f of fs.readdirSync(this.xfer)) fs.rmSync(path.join(this.xfer, f), { force: true });
  }
}


/** Notes, before anything runs, which of Podman's traces outside its --root already exist. */
export function podmanTraces(): PodmanTraces {
  return { varLibContainers: fs.existsSync('/var/lib/containers'), cgroups: podmanCgroups().length > 0 };
}

function rmdirTree(d: string): void {
  for (const ent of fs.readdirSync(d, { withFileTypes: true })) if (ent.isDirectory()) rmdirTree(path.join(d, ent.name));
  fs.rmdirSync(d);
}

/** Removes the traces this run made (those that did not exist `before`). */
export function removePodmanTraces(before: PodmanTraces): void {
  // Podman leaves its (empty) cgroup parents behind: remove them when this run made them.
  if (!before.cgroups) {
    for (const d of podmanCgroups()) {
      try {
        rmdirTree(d);
      } catch {
        /* still in use */
      }
    }
  }
  // `podman import` writes its blob-info cache below /var/lib/containers whatever --root says:
  // remove what it made there when the directory did not exist before this run.
  if (!before.varLibContainers && fs.existsSync('/var/lib/containers')) {
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
