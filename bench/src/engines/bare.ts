// Bare runc + CRIU by hand, no engine at all: the floor, what runc and CRIU cost by themselves.
// And the bare baseline on a migration host: runc checkpoint, the images over ssh, runc restore
// (stop-and-copy), or runc's documented post-copy migration with CRIU's lazy pages.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { FifoReader } from '../../../src/lib/fifo.js';
import { SSH_PORT, type HostPair, type NetHost } from '../../../test/helpers/hosts.js';
import { CRIU } from '../paths.js';
import { cmdError, exec, firstLine, ok, peakRssMiB, sleep } from '../proc.js';
import { progress, type BenchContext, type Workload } from '../workloads.js';
import { criuWriteMsIn, inNetns, rmQuiet, sshOptions, type Engine, type HostEngine, type MigrationMode, type MigrationSample } from './engine.js';

/** A bare container: its directory (bundle, overlay, images, logs) and what it printed. */
interface BareContainer {
  dir: string;
  w: Workload;
  out: string;
  streams: Readable[];
}

/** The parts of runc's default spec (`runc spec`) the bench changes. */
interface OciSpec {
  process: { terminal: boolean; args: string[] };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options: string[] }[];
}

/**
 * Bare runc + CRIU: an overlay mount like Ferry's (the same busybox rootfs as the lower layer),
 * runc's own default spec, stdio as pipes to this process (CRIU cannot dump a regular file as
 * stdio; runc passes the new pipes back in on restore), and the same CRIU wrapper.
 */
export class BareEngine implements Engine {
  readonly name = 'bare';
  version: string | undefined;
  readonly runcRoot: string;
  /** The unpacked rootfs below every container's overlay: busybox's, and Redis's. */
  readonly lower: string;
  readonly lowerRedis: string;
  /** runc with its root and CRIU (inside the host's namespace on a migration host). */
  readonly R: readonly string[];
  readonly ctrs = new Map<string, BareContainer>();
  private template: OciSpec | undefined;

  constructor(
    readonly dir: string,
    wrap: readonly string[] = [],
  ) {
    this.runcRoot = path.join(dir, 'runc');
    this.lower = path.join(dir, 'lower');
    this.lowerRedis = path.join(dir, 'lower-redis');
    this.R = [...wrap, 'runc', '--root', this.runcRoot, '--criu', CRIU];
  }

  async setup(ctx: BenchContext): Promise<void> {
    fs.mkdirSync(this.lower, { recursive: true });
    fs.mkdirSync(this.runcRoot, { recursive: true });
    await ok(['tar', '-xf', ctx.tarball, '-C', this.lower]);
    if (ctx.redisTarball) {
      fs.mkdirSync(this.lowerRedis, { recursive: true });
      await ok(['tar', '-xf', ctx.redisTarball, '-C', this.lowerRedis]);
    }
    const t = path.join(this.dir, 'template');
    fs.mkdirSync(t, { recursive: true });
    await ok(['runc', 'spec', '--bundle', t]);
    this.template = JSON.parse(fs.readFileSync(path.join(t, 'config.json'), 'utf8')) as OciSpec;
    this.version = firstLine(['runc', '--version']);
  }

  private config(w: Workload): OciSpec {
    if (!this.template) throw new Error('bare: not set up');
    const c = structuredClone(this.template);
    c.process.terminal = false;
    c.process.args = w.argv;
    c.root = { path: 'merged', readonly: false };
    c.hostname = 'bare';
    if (w.opt) c.mounts.push({ destination: '/opt', type: 'bind', source: w.opt, options: ['rbind', 'ro'] });
    return c;
  }

  protected ctr(name: string): BareContainer {
    const c = this.ctrs.get(name);
    if (!c) throw new Error(`bare: no container ${name}`);
    return c;
  }

  /** Mounts a fresh overlay for a container and writes its bundle (part of the timed work). */
  protected async prepare(name: string, w: Workload): Promise<BareContainer> {
    const d = path.join(this.dir, 'ctr', name);
    for (const s of ['upper', 'work', 'merged', 'logs']) fs.mkdirSync(path.join(d, s), { recursive: true });
    const lower = w.image === 'redis' ? this.lowerRedis : this.lower;
    const r = await exec(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${d}/upper,workdir=${d}/work`, `${d}/merged`]);
    if (r.code !== 0) throw cmdError('mount overlay', r);
    fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(this.config(w)));
    const c: BareContainer = { dir: d, w, out: '', streams: [] };
    this.ctrs.set(name, c);
    return c;
  }

  /** runc run -d / restore -d with stdio as pipes we read; times until runc returns. */
  protected async detached(c: BareContainer, args: readonly string[], what: string): Promise<number> {
    // Node's 'pipe' stdio is a socketpair, which CRIU cannot dump (an external UNIX socket):
    // bash hands runc real pipes read by `cat` and execs runc, so the time is still runc's.
    const r = await exec(['bash', '-c', 'exec "$@" > >(exec cat) 2> >(exec cat >&2)', 'bash', ...this.R, ...args], { keepStreams: true });
    const { child } = r;
    if (child) {
      // What the workload printed before runc returned went to exec's own listeners (a restored
      // process may print before `restore -d` exits): take it first, then follow the streams.
      c.out += r.stdout + r.stderr;
      for (const s of [child.stdout, child.stderr]) {
        c.streams.push(s);
        s.on('data', (b: Buffer) => (c.out += b.toString()));
      }
    }
    if (r.code !== 0) {
      await sleep(100);
      throw cmdError(`bare ${what}`, r);
    }
    return r.ms;
  }

  async run(name: string, w: Workload): Promise<number> {
    const t0 = performance.now();
    const c = await this.prepare(name, w);
    await this.detached(c, ['run', '-d', '--bundle', c.dir, name], 'runc run -d');
    return performance.now() - t0;
  }

  async rm(name: string): Promise<number> {
    const t0 = performance.now();
    const c = this.ctrs.get(name);
    const r = await exec([...this.R, 'delete', '--force', name]);
    if (r.code !== 0 && !/not exist/.test(r.stderr)) throw cmdError('bare runc delete -f', r);
    if (c) {
      const u = await exec(['umount', path.join(c.dir, 'merged')]);
      if (u.code !== 0 && !/not mounted/.test(u.stderr)) throw cmdError('bare umount', u);
      fs.rmSync(c.dir, { recursive: true, force: true });
      for (const s of c.streams) s.destroy();
      this.ctrs.delete(name);
    }
    return performance.now() - t0;
  }

  async ps(): Promise<number> {
    return (await ok([...this.R, 'list'])).ms;
  }

  psPeakMiB(): Promise<number | undefined> {
    return peakRssMiB([...this.R, 'list']);
  }

  async inspect(name: string): Promise<number> {
    return (await ok([...this.R, 'state', name])).ms;
  }

  async checkpoint(name: string): Promise<number> {
    const c = this.ctr(name);
    fs.rmSync(path.join(c.dir, 'ckpt'), { recursive: true, force: true });
    const r = await exec([...this.R, 'checkpoint', '--image-path', path.join(c.dir, 'ckpt'), '--work-path', path.join(c.dir, 'logs'), name]);
    if (r.code !== 0) throw cmdError('bare runc checkpoint', r);
    return r.ms;
  }

  async criuWriteMs(name: string): Promise<number | undefined> {
    return criuWriteMsIn(path.join(this.ctr(name).dir, 'logs'));
  }

  async restore(name: string): Promise<number> {
    const c = this.ctr(name);
    const ms = await this.detached(c, ['restore', '-d', '--image-path', path.join(c.dir, 'ckpt'), '--work-path', path.join(c.dir, 'logs'), '--bundle', c.dir, name], 'runc restore -d');
    // Not timed: bare runc leaves the images behind; Ferry and Podman delete them as part of restore.
    fs.rmSync(path.join(c.dir, 'ckpt'), { recursive: true, force: true });
    return ms;
  }

  /** runc checkpoint, then `tar | zstd -T0 -3` of the images (not the rootfs diff, empty here). */
  async export(name: string, file: string): Promise<number> {
    const t0 = performance.now();
    await this.checkpoint(name);
    const c = this.ctr(name);
    const r = await exec(['bash', '-c', 'set -o pipefail; tar -C "$1" -c . | zstd -q -T0 -3 > "$2"', 'bash', path.join(c.dir, 'ckpt'), file]);
    if (r.code !== 0) throw cmdError('bare tar | zstd', r);
    return performance.now() - t0;
  }

  /** `zstd -d | tar -x` into a fresh dir, a fresh overlay and bundle, runc restore -d. */
  async import(file: string, newName: string, w: Workload): Promise<number> {
    const t0 = performance.now();
    const d = path.join(this.dir, 'ctr', newName);
    fs.mkdirSync(path.join(d, 'ckpt'), { recursive: true });
    const r = await exec(['bash', '-c', 'set -o pipefail; zstd -q -dc "$1" | tar -x -C "$2"', 'bash', file, path.join(d, 'ckpt')]);
    if (r.code !== 0) throw cmdError('bare zstd -d | tar -x', r);
    const c = await this.prepare(newName, w);
    await this.detached(c, ['restore', '-d', '--image-path', path.join(d, 'ckpt'), '--work-path', path.join(d, 'logs'), '--bundle', d, newName], 'runc restore -d');
    return performance.now() - t0;
  }

  async output(name: string): Promise<string> {
    return this.ctrs.get(name)?.out ?? '';
  }

  /** `runc exec`: the process of the container's spec (env, cwd), with other args. */
  async exec(name: string, argv: readonly string[]): Promise<string> {
    const r = await exec([...this.R, 'exec', name, ...argv]);
    if (r.code !== 0) throw cmdError('bare runc exec', r);
    return r.stdout;
  }

  cleanup(): void {
    if (fs.existsSync(this.runcRoot)) for (const id of fs.readdirSync(this.runcRoot)) spawnSync('runc', ['--root', this.runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
    for (const c of this.ctrs.values()) for (const s of c.streams) s.destroy();
  }
}

/** The bare baselines' ssh connection to the destination, open before the freeze. */
interface SshConnection {
  /** ssh reusing the master connection, up to the destination (the remote command follows). */
  ssh: string[];
  close(): Promise<void>;
}

/** The bare baseline's "host": a BareEngine whose runc runs inside the host's network namespace. */
export class BareHost extends BareEngine implements HostEngine {
  constructor(
    readonly host: NetHost,
    dir: string,
  ) {
    super(dir, inNetns(host));
  }

  migrate(pair: HostPair, dst: this, name: string, w: Workload, mode: MigrationMode): Promise<MigrationSample> {
    return mode === 'lazy' ? this.lazyMigrate(pair, dst, name, w) : this.stopAndCopy(pair, dst, name, w);
  }

  async discard(name: string): Promise<void> {
    if (this.ctrs.has(name)) await rmQuiet(this, name);
  }

  /** Removes every container still here (at the end of the migration figures). */
  async removeAll(): Promise<void> {
    for (const n of [...this.ctrs.keys()]) await rmQuiet(this, n);
  }

  /**
   * Bare migration of `name` from here to `dst`: a fresh overlay + bundle on the destination
   * (before the freeze), then `runc checkpoint` on the source, `tar -c | ssh ... 'tar -x'` into
   * the destination's image dir (ssh from the source's netns to the destination's sshd, the same
   * key and options Ferry gets) and `runc restore -d` there. Downtime: checkpoint start to
   * restore done; total: also the destination's preparation and the source's removal.
   */
  private async stopAndCopy(pair: HostPair, dst: this, name: string, w: Workload): Promise<MigrationSample> {
    const t0 = performance.now();
    const c = await dst.prepare(name, w);
    const img = path.join(c.dir, 'ckpt');
    const conn = await this.sshMaster(pair, dst);
    const t1 = performance.now();
    try {
      await this.checkpoint(name);
    } catch (err) {
      await conn.close();
      throw err;
    }
    const srcImg = path.join(this.ctr(name).dir, 'ckpt');
    await this.copyImages(conn, srcImg, img);
    await dst.detached(c, ['restore', '-d', '--image-path', img, '--work-path', path.join(c.dir, 'logs'), '--bundle', c.dir, name], 'runc restore -d');
    const t2 = performance.now();
    return this.finish(name, w, img, t0, t1, t2);
  }

  /**
   * Bare post-copy migration, as runc documents it: on the source `runc checkpoint --lazy-pages
   * --page-server SRC_IP:PORT --status-fd`, which dumps everything but memory and then serves
   * pages; once it reports ready, `tar -c | ssh ... 'tar -x'` of those images (as stopAndCopy);
   * on the destination `criu lazy-pages --page-server --address SRC_IP --port PORT` and `runc
   * restore -d --lazy-pages`. The page server is reached straight over the veth link (no tunnel,
   * no authentication: the floor, not a way to run it). Downtime: checkpoint start to restore
   * done; total: also the destination's preparation, every page served, the source's removal.
   */
  private async lazyMigrate(pair: HostPair, dst: this, name: string, w: Workload): Promise<MigrationSample> {
    const t0 = performance.now();
    const c = await dst.prepare(name, w);
    const img = path.join(c.dir, 'ckpt');
    const old = this.ctr(name);
    const srcImg = path.join(old.dir, 'ckpt');
    fs.rmSync(srcImg, { recursive: true, force: true });
    const fifo = path.join(old.dir, 'lazy-status');
    fs.rmSync(fifo, { force: true });
    await ok(['mkfifo', '-m', '600', fifo]);
    const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const writeFd = fs.openSync(fifo, fs.constants.O_WRONLY);
    // Read by polling (src/lib/fifo.ts): Bun never reports data on a FIFO wrapped in a socket.
    const status = new FifoReader(readFd, (d) => d.length > 0);
    const port = 21000 + Math.floor(Math.random() * 9000);
    const conn = await this.sshMaster(pair, dst);
    const t1 = performance.now();
    const dump = spawn(this.R[0]!, [...this.R.slice(1), 'checkpoint', '--lazy-pages', '--page-server', `${this.host.ip}:${port}`, '--status-fd', '3', '--image-path', srcImg, '--work-path', path.join(old.dir, 'logs'), name], { stdio: ['ignore', 'ignore', 'pipe', writeFd] });
    fs.closeSync(writeFd);
    let dumpErr = '';
    dump.stderr?.on('data', (b: Buffer) => (dumpErr += b.toString()));
    const dumped = new Promise<void>((resolve) => dump.on('close', () => resolve()));
    const ready = await Promise.race([status.result.then((r) => r.data.length > 0, () => false), dumped.then(() => false)]);
    status.cancel();
    if (!ready) {
      await conn.close();
      throw new Error(`bare runc checkpoint --lazy-pages failed: ${dumpErr.trim().split('\n').pop()}`);
    }
    // From here a failure must not leave the page server (or the daemon) waiting forever.
    let daemon: ChildProcess | undefined;
    try {
      await this.copyImages(conn, srcImg, img);
      const logs = path.join(c.dir, 'logs');
      fs.rmSync(path.join(logs, 'lazy-pages.socket'), { force: true });
      const lazyPages = spawn('nsenter', [`--net=/run/netns/${dst.host.netns}`, CRIU, 'lazy-pages', '--page-server', '--address', this.host.ip, '--port', String(port), '-D', img, '-W', logs, '-o', 'lazy-pages.log', '-v4'], { stdio: 'ignore' });
      daemon = lazyPages;
      const served = new Promise<void>((resolve) => lazyPages.on('close', () => resolve()));
      const until = performance.now() + 5000;
      while (!fs.existsSync(path.join(logs, 'lazy-pages.socket'))) {
        if (performance.now() > until) throw new Error('bare criu lazy-pages did not start');
        await sleep(2);
      }
      await dst.detached(c, ['restore', '-d', '--lazy-pages', '--image-path', img, '--work-path', logs, '--bundle', c.dir, name], 'runc restore -d --lazy-pages');
      const t2 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const allServed = await Promise.race([Promise.all([dumped, served]).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 180_000)))]);
      clearTimeout(timer);
      if (!allServed) throw new Error('bare lazy migration: the pages were not all served within 180 s');
      return this.finish(name, w, img, t0, t1, t2);
    } catch (err) {
      dump.kill('SIGKILL');
      daemon?.kill('SIGKILL');
      throw err;
    }
  }

  /** The copy of CRIU's images: `tar -c | ssh ... 'tar -x'` over the open connection. */
  private async copyImages(conn: SshConnection, srcImg: string, img: string): Promise<void> {
    const r = await exec([...inNetns(this.host), 'bash', '-c', 'set -o pipefail; tar -C "$1" -c . | "${@:3}" "mkdir -p $2 && tar -x -C $2"', 'bash', srcImg, img, ...conn.ssh]);
    await conn.close();
    if (r.code !== 0) throw cmdError('bare tar | ssh tar -x', r);
  }

  /**
   * After a bare migration: the source's container goes (timed, ending the total), the images'
   * size is noted and they go. The source's last output may still be on its way through `cat`:
   * it is still read, and the mark (the last number printed before the freeze) is taken later,
   * in the untimed pause.
   */
  private async finish(name: string, w: Workload, img: string, t0: number, t1: number, t2: number): Promise<MigrationSample> {
    const old = this.ctr(name);
    const streams = old.streams;
    old.streams = [];
    await this.rm(name);
    const t3 = performance.now();
    const bytes = dirBytes(img);
    fs.rmSync(img, { recursive: true, force: true });
    const mark = async (): Promise<number> => {
      await sleep(200);
      for (const st of streams) st.destroy();
      return progress(old.out, w.kind).last;
    };
    return { downtime: t2 - t1, total: t3 - t0, bytes, mark };
  }

  /**
   * The ssh connection to the destination, opened before the freeze (as Ferry connects before
   * it freezes): an ssh master in the source's namespace, whose socket the transfer's `ssh`
   * reuses, so the key exchange is in the total and not in the downtime.
   */
  private async sshMaster(pair: HostPair, dst: BareHost): Promise<SshConnection> {
    const sock = path.join(os.tmpdir(), `ferry-bench-ssh-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    const opts = [...sshOptions(pair), '-o', `ControlPath=${sock}`, '-p', String(SSH_PORT), `root@${dst.host.ip}`];
    const master = spawn('nsenter', [`--net=/run/netns/${this.host.netns}`, 'ssh', '-M', '-N', '-o', 'ControlPersist=no', ...opts], { stdio: 'ignore' });
    const until = performance.now() + 15_000;
    while (!fs.existsSync(sock)) {
      if (master.exitCode !== null || performance.now() > until) {
        master.kill();
        throw new Error(`bare baseline: the ssh master connection to ${dst.host.ip} did not come up`);
      }
      await sleep(5);
    }
    return {
      ssh: ['ssh', '-o', 'ControlMaster=no', ...opts],
      close: async () => {
        master.kill();
        await new Promise<void>((resolve) => (master.exitCode !== null ? resolve() : master.on('close', () => resolve())));
        fs.rmSync(sock, { force: true });
      },
    };
  }
}

function dirBytes(d: string): number {
  let n = 0;
  for (const f of fs.readdirSync(d, { withFileTypes: true })) n += f.isDirectory() ? dirBytes(path.join(d, f.name)) : fs.statSync(path.join(d, f.name)).size;
  return n;
}
