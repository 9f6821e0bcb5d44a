#!/usr/bin/env node
// Ferry's benchmark: the same workloads, in the same run, on Ferry, on bare runc + CRIU (the
// floor: what runc and CRIU cost by themselves) and on Podman (the peer). See bench/README.md.
//
//   node bench/run.mjs [--quick] [--smoke] [--iterations N] [--only ferry,bare,podman]
//                      [--out DIR] [--no-setup] [--migration | --no-migration | --only-migration]
//
// Everything it creates (containers, mounts, storage, Podman's config) lives in one temporary
// directory and is removed at the end, also on failure and on Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
const FERRY_BIN = path.join(REPO, 'bin/ferry');
const CRIU = '/usr/local/lib/ferry/bin/criu';
const ALL_ENGINES = ['ferry', 'bare', 'podman'];
const LOOPER = ['sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); sleep 1; done'];
const LARGE_PAUSE_MS = 3000; // host-notes: the VM hands freed memory back ~2 s late
const SMALL_PAUSE_MS = 300;

// ---------------------------------------------------------------------------------------------
// Options

function usage(code) {
  process.stdout.write(`usage: node bench/run.mjs [options]
  --quick            tiny + 256 MiB workloads (migration: tiny), 3 iterations (under 5 minutes)
  --smoke            tiny workload only, 1 iteration (for the smoke test)
  --iterations N     runs per figure (default 5; --quick 3; --smoke 1)
  --only LIST        engines to run, comma-separated: ferry,bare,podman (default all)
  --out DIR          where to write <timestamp>.json and latest.json (default bench/results)
  --no-setup         do not run bench/setup.sh first
  --migration        also measure live migration in --smoke mode (on by default otherwise)
  --no-migration     leave the migration figures out
  --only-migration   measure only the migration figures
`);
  process.exit(code);
}

function parseArgs(argv) {
  const o = { quick: false, smoke: false, iterations: undefined, only: [...ALL_ENGINES], out: path.join(HERE, 'results'), setup: true, migration: undefined, onlyMigration: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--smoke') o.smoke = true;
    else if (a.startsWith('--iterations')) {
      o.iterations = Number(val());
      if (!Number.isInteger(o.iterations) || o.iterations < 1) throw new Error('--iterations takes a whole number >= 1');
    } else if (a === '--only-migration') o.onlyMigration = o.migration = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      o.only = val().split(',').map((s) => s.trim()).filter(Boolean);
      for (const e of o.only) if (!ALL_ENGINES.includes(e)) throw new Error(`--only: unknown engine "${e}" (use ${ALL_ENGINES.join(', ')})`);
      if (!o.only.includes('ferry')) throw new Error('--only must include ferry: every figure compares Ferry with the others');
    } else if (a.startsWith('--out')) o.out = path.resolve(val());
    else if (a === '--no-setup') o.setup = false;
    else if (a === '--migration') o.migration = true;
    else if (a === '--no-migration') o.migration = false;
    else if (a === '-h' || a === '--help') usage(0);
    else throw new Error(`unknown option ${a}`);
  }
  o.iterations ??= o.smoke ? 1 : o.quick ? 3 : 5;
  o.crSizes = o.smoke ? ['tiny'] : o.quick ? ['tiny', 256] : ['tiny', 256, 1024];
  o.exportSizes = o.smoke ? ['tiny'] : o.quick ? ['tiny', 256] : ['tiny', 1024];
  o.mode = o.smoke ? 'smoke' : o.quick ? 'quick' : 'full';
  // Live migration between two "hosts" (network namespaces with their own sshd) on this machine.
  o.migration ??= !o.smoke;
  o.migSizes = o.smoke ? ['tiny', 64] : o.quick ? ['tiny'] : ['tiny', 64, 256, 1024];
  return o;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`${s}\n`);
let aborted = false;
class Aborted extends Error {}
const checkAbort = () => {
  if (aborted) throw new Aborted('interrupted');
};

/**
 * Runs argv and times it from spawn to exit (not to the close of its stdio: a detached
 * container may hold on to it). Children get their own process group so that a Ctrl-C reaches
 * only the bench, which then finishes the step and cleans up.
 */
function exec(argv, { env, timeoutMs = 180_000, keepStreams = false } = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let child;
    try {
      child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, detached: true });
    } catch (e) {
      resolve({ code: -1, signal: null, stdout: '', stderr: String(e), ms: 0, child: undefined });
      return;
    }
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    const timer = setTimeout(() => {
      stderr += `\n(bench: killed after ${timeoutMs / 1000} s)`;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + String(e), ms: performance.now() - t0, child });
    });
    child.on('exit', (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      const done = () => resolve({ code, signal, get stdout() { return stdout; }, get stderr() { return stderr; }, ms, child });
      if (keepStreams) return done();
      // Collect what is left in the pipes, but do not wait for a grandchild holding them.
      let settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        child.stdout.destroy();
        child.stderr.destroy();
        done();
      };
      child.on('close', finish);
      setTimeout(finish, 1000).unref();
    });
  });
}

function cmdError(what, r) {
  const msg = (r.stderr || r.stdout || '').trim().split('\n').filter(Boolean).slice(-3).join(' | ');
  return new Error(`${what} failed (exit ${r.code ?? r.signal}): ${msg || 'no output'}`);
}

async function ok(argv, opts) {
  const r = await exec(argv, opts);
  if (r.code !== 0) throw cmdError(argv.slice(0, 6).map((a) => path.basename(a)).join(' '), r);
  return r;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return undefined;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function mountsUnder(dir) {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m && (m === dir || m.startsWith(dir + '/')))
    .map((m) => m.replace(/\\040/g, ' '));
}

function firstLine(argv) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout || r.stderr).trim().split('\n')[0] : undefined;
}

/**
 * The workload's progress as seen in its output. Tiny looper: it prints 0, 1, 2, ...;
 * memhog: "filled ...", then "ok 0", "ok 1", ... or "CORRUPT".
 * `mark` is the last number printed before the checkpoint; a process that was really restored
 * (memory intact, not started again) prints mark+1 next, and nothing else in between.
 */
function progress(text, kind) {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const num = (l) => {
    const m = kind === 'tiny' ? /^(\d+)$/.exec(l) : /^ok (\d+)$/.exec(l);
    return m ? Number(m[1]) : undefined;
  };
  let last = -1;
  for (const l of lines) {
    const n = num(l);
    if (n !== undefined) last = n;
  }
  return { lines, last, num };
}

/** Checks the restored output; returns undefined when fine, 'wait' when not yet, or an error text. */
function checkRestored(text, kind, mark) {
  const { lines, num } = progress(text, kind);
  // Lines after the last occurrence of the mark (logs of Ferry and Podman keep the old lines).
  let from = 0;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (num(lines[i]) === mark) {
      from = i + 1;
      break;
    }
  }
  for (const l of lines.slice(from)) {
    if (l.includes('CORRUPT')) return `the workload reported memory corruption: "${l}"`;
    if (l.startsWith('filled')) return 'the workload started again instead of being restored ("filled" printed again)';
    const n = num(l);
    if (n === undefined) continue;
    return n === mark + 1 ? undefined : `after restore the workload printed ${n}, expected ${mark + 1} (it was not restored where it stopped)`;
  }
  return 'wait';
}

// ---------------------------------------------------------------------------------------------
// Engines: Ferry and Podman through their CLIs; bare runc + CRIU by hand.

class CliEngine {
  constructor(name, argv0, env, image) {
    this.name = name;
    this.argv0 = argv0;
    this.env = env;
    this.image = image;
  }
  x(args, opts = {}) {
    return exec([...this.argv0, ...args], { env: this.env, ...opts });
  }
  async timed(args, what) {
    const r = await this.x(args);
    if (r.code !== 0) throw cmdError(`${this.name} ${what}`, r);
    return r.ms;
  }
  runArgs(name, w) {
    return ['run', '-d', '--name', name, ...(w.opt ? ['-v', `${w.opt}:/opt:ro`] : []), this.image, ...w.argv];
  }
  run(name, w) {
    return this.timed(this.runArgs(name, w), 'run -d');
  }
  rm(name) {
    return this.timed(['rm', '-f', name], 'rm -f');
  }
  ps() {
    return this.timed(['ps'], 'ps');
  }
  inspect(name) {
    return this.timed(['inspect', name], 'inspect');
  }
  checkpoint(name) {
    return this.timed(['container', 'checkpoint', name], 'container checkpoint');
  }
  restore(name) {
    return this.timed(['container', 'restore', name], 'container restore');
  }
  export(name, file) {
    return this.timed(['container', 'checkpoint', '--export', file, '--compress', 'zstd', name], 'container checkpoint --export');
  }
  import(file, newName) {
    return this.timed(['container', 'restore', '--import', file, '-n', newName], 'container restore --import');
  }
  async output(name) {
    const r = await this.x(['logs', name]);
    return r.stdout + r.stderr;
  }
}

class FerryEngine extends CliEngine {
  constructor(dir) {
    super('ferry', [process.execPath, FERRY_BIN, '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run')], process.env, 'busybox');
    this.dir = dir;
  }
  async setup(ctx) {
    await ok([...this.argv0, 'import', ctx.tarball, 'busybox']);
    this.version = firstLine([process.execPath, FERRY_BIN, '--version']);
  }
  runArgs(name, w) {
    // No network, as for Podman (--network none) and bare runc (an empty network namespace):
    // Ferry's default bridge network adds CNI setup and teardown to run, checkpoint and restore.
    return ['run', '-d', '--network', 'none', '--name', name, ...(w.opt ? ['-v', `${w.opt}:/opt:ro`] : []), this.image, ...w.argv];
  }
  import(file, newName, w) {
    // The memhog's bind mount is a host path: Ferry asks for it to be allowed explicitly.
    return this.timed(['container', 'restore', '--import', file, '-n', newName, ...(w.opt ? ['--allow-host-mounts'] : [])], 'container restore --import');
  }
  cleanup() {
    if (fs.existsSync(path.join(this.dir, 'root'))) spawnSync(this.argv0[0], [...this.argv0.slice(1), 'rm', '-a', '-f'], { stdio: 'ignore', timeout: 120_000 });
    const runc = path.join(this.dir, 'run', 'runc');
    if (fs.existsSync(runc)) for (const id of fs.readdirSync(runc)) spawnSync('runc', ['--root', runc, 'delete', '--force', id], { stdio: 'ignore' });
  }
}

class PodmanEngine extends CliEngine {
  /** `wrap` runs every podman command inside something (the migration hosts: `nsenter --net=...`). */
  constructor(dir, wrap = []) {
    const bin = path.join(dir, 'bin');
    const env = {
      ...process.env,
      CONTAINERS_CONF: path.join(dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
      // Podman's runc finds CRIU through PATH: the same CRIU 4.2 Ferry uses.
      PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
    };
    const podman = ['podman', '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run'), '--storage-driver', 'overlay', '--runtime-flag', `root=${path.join(dir, 'runc')}`];
    super('podman', [...wrap, ...podman], env, 'localhost/busybox:latest');
    this.podman = podman; // without the wrap: for the synchronous cleanup, which needs no netns
    this.dir = dir;
  }
  writeConfig() {
    const d = this.dir;
    for (const sub of ['bin', 'root', 'run', 'runc', 'tmp', 'net']) fs.mkdirSync(path.join(d, sub), { recursive: true });
    fs.rmSync(path.join(d, 'bin', 'criu'), { force: true });
    fs.symlinkSync(CRIU, path.join(d, 'bin', 'criu'));
    // Only this bench's Podman reads these (CONTAINERS_CONF / CONTAINERS_STORAGE_CONF), and
    // every path it writes to is below `d`: the machine's own Podman setup is untouched.
    fs.writeFileSync(
      path.join(d, 'containers.conf'),
      `# Written by Ferry's bench/run.mjs for its own Podman instance; removed afterwards.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"
# No networking unless asked for (every container here also gets --network none): Podman's
# default bridge (10.88.0.0/16) is never set up, next to Ferry's 10.89.0.0/16.
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
  async setup(ctx) {
    if (!firstLine(['podman', '--version'])) throw new Error('podman is not installed (bench/setup.sh could not install it: see above)');
    this.writeConfig();
    await ok([...this.argv0, 'import', ctx.tarball, 'localhost/busybox:latest'], { env: this.env });
    // A probe: a container that runs and goes, so a broken setup is reported up front.
    await this.run('probe', { argv: ['true'] });
    await this.rm('probe');
    this.version = firstLine(['podman', '--version']);
  }
  rm(name) {
    // Podman's rm -f stops with SIGTERM and a 10 s grace period (the looper's sh ignores
    // SIGTERM as PID 1); -t 0 kills at once, like Ferry's rm -f and `runc delete -f`.
    return this.timed(['rm', '-f', '-t', '0', name], 'rm -f');
  }
  runArgs(name, w) {
    return ['run', '-d', '--network', 'none', '--name', name, ...(w.opt ? ['-v', `${w.opt}:/opt:ro`] : []), this.image, ...w.argv];
  }
  cleanup() {
    if (fs.existsSync(path.join(this.dir, 'root'))) spawnSync(this.podman[0], [...this.podman.slice(1), 'rm', '-a', '-f', '-t', '0'], { env: this.env, stdio: 'ignore', timeout: 120_000 });
    const runc = path.join(this.dir, 'runc');
    if (fs.existsSync(runc)) for (const id of fs.readdirSync(runc)) spawnSync('runc', ['--root', runc, 'delete', '--force', id], { stdio: 'ignore' });
  }
}

/**
 * Bare runc + CRIU: an overlay mount like Ferry's (the same busybox rootfs as the lower layer),
 * runc's own default spec, stdio as pipes to this process (CRIU cannot dump a regular file as
 * stdio; runc passes the new pipes back in on restore), and the same CRIU wrapper.
 */
class BareEngine {
  constructor(dir) {
    this.name = 'bare';
    this.dir = dir;
    this.runcRoot = path.join(dir, 'runc');
    this.lower = path.join(dir, 'lower');
    this.R = ['runc', '--root', this.runcRoot, '--criu', CRIU];
    this.ctrs = new Map();
  }
  async setup(ctx) {
    fs.mkdirSync(this.lower, { recursive: true });
    fs.mkdirSync(this.runcRoot, { recursive: true });
    await ok(['tar', '-xf', ctx.tarball, '-C', this.lower]);
    const t = path.join(this.dir, 'template');
    fs.mkdirSync(t, { recursive: true });
    await ok(['runc', 'spec', '--bundle', t]);
    this.template = JSON.parse(fs.readFileSync(path.join(t, 'config.json'), 'utf8'));
    this.version = firstLine(['runc', '--version']);
  }
  config(w) {
    const c = structuredClone(this.template);
    c.process.terminal = false;
    c.process.args = w.argv;
    c.root = { path: 'merged', readonly: false };
    c.hostname = 'bare';
    if (w.opt) c.mounts.push({ destination: '/opt', type: 'bind', source: w.opt, options: ['rbind', 'ro'] });
    return c;
  }
  /** Mounts a fresh overlay for a container and writes its bundle (part of the timed work). */
  async prepare(name, w) {
    const d = path.join(this.dir, 'ctr', name);
    for (const s of ['upper', 'work', 'merged', 'logs']) fs.mkdirSync(path.join(d, s), { recursive: true });
    const r = await exec(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${this.lower},upperdir=${d}/upper,workdir=${d}/work`, `${d}/merged`]);
    if (r.code !== 0) throw cmdError('mount overlay', r);
    fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(this.config(w)));
    const c = { dir: d, w, out: '', streams: [] };
    this.ctrs.set(name, c);
    return c;
  }
  /** runc run -d / restore -d with stdio as pipes we read; times until runc returns. */
  async detached(c, args, what) {
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
        s.on('data', (b) => (c.out += b));
      }
    }
    if (r.code !== 0) {
      await sleep(100);
      throw cmdError(`bare ${what}`, { ...r, stderr: r.stderr });
    }
    return r.ms;
  }
  async run(name, w) {
    const t0 = performance.now();
    const c = await this.prepare(name, w);
    await this.detached(c, ['run', '-d', '--bundle', c.dir, name], 'runc run -d');
    return performance.now() - t0;
  }
  async rm(name) {
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
  async ps() {
    return (await ok([...this.R, 'list'])).ms;
  }
  async inspect(name) {
    return (await ok([...this.R, 'state', name])).ms;
  }
  async checkpoint(name) {
    const c = this.ctrs.get(name);
    fs.rmSync(path.join(c.dir, 'ckpt'), { recursive: true, force: true });
    const r = await exec([...this.R, 'checkpoint', '--image-path', path.join(c.dir, 'ckpt'), '--work-path', path.join(c.dir, 'logs'), name]);
    if (r.code !== 0) throw cmdError('bare runc checkpoint', r);
    return r.ms;
  }
  async restore(name) {
    const c = this.ctrs.get(name);
    const ms = await this.detached(c, ['restore', '-d', '--image-path', path.join(c.dir, 'ckpt'), '--work-path', path.join(c.dir, 'logs'), '--bundle', c.dir, name], 'runc restore -d');
    // Not timed: bare runc leaves the images behind; Ferry and Podman delete them as part of restore.
    fs.rmSync(path.join(c.dir, 'ckpt'), { recursive: true, force: true });
    return ms;
  }
  async export(name, file) {
    const t0 = performance.now();
    await this.checkpoint(name);
    const c = this.ctrs.get(name);
    const r = await exec(['bash', '-c', 'set -o pipefail; tar -C "$1" -c . | zstd -q -T0 -3 > "$2"', 'bash', path.join(c.dir, 'ckpt'), file]);
    if (r.code !== 0) throw cmdError('bare tar | zstd', r);
    return performance.now() - t0;
  }
  async import(file, newName, w) {
    const t0 = performance.now();
    const d = path.join(this.dir, 'ctr', newName);
    fs.mkdirSync(path.join(d, 'ckpt'), { recursive: true });
    const r = await exec(['bash', '-c', 'set -o pipefail; zstd -q -dc "$1" | tar -x -C "$2"', 'bash', file, path.join(d, 'ckpt')]);
    if (r.code !== 0) throw cmdError('bare zstd -d | tar -x', r);
    const c = await this.prepare(newName, w);
    await this.detached(c, ['restore', '-d', '--image-path', path.join(d, 'ckpt'), '--work-path', path.join(d, 'logs'), '--bundle', d, newName], 'runc restore -d');
    return performance.now() - t0;
  }
  async output(name) {
    return this.ctrs.get(name)?.out ?? '';
  }
  cleanup() {
    if (fs.existsSync(this.runcRoot)) for (const id of fs.readdirSync(this.runcRoot)) spawnSync('runc', ['--root', this.runcRoot, 'delete', '--force', id], { stdio: 'ignore' });
    for (const c of this.ctrs.values()) for (const s of c.streams) s.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// The figures

const TITLES = {
  'cli.run': 'run -d (tiny)',
  'cli.rm': 'rm -f (tiny)',
  'cli.ps': 'ps (1 running)',
  'cli.inspect': 'inspect',
};
const sizeLabel = (s) => (s === 'tiny' ? 'tiny' : s >= 1024 ? `${s / 1024} GiB` : `${s} MiB`);

/** Targets from issue 8. Keys are figure IDs; the large export target applies to the largest export measured. */
function targetsFor(o) {
  const big = o.exportSizes.at(-1);
  const t = {
    'cli.ps': { podmanMax: 1, text: '≤ podman' },
    'cli.inspect': { podmanMax: 1, text: '≤ podman' },
    'cr.tiny.checkpoint': { bareMax: 1.15, podmanMax: 1, strict: true, text: '≤1.15× bare, < podman' },
    'cr.tiny.restore': { bareMax: 1.15, podmanMax: 1, strict: true, text: '≤1.15× bare, < podman' },
    'cr.1024.checkpoint': { bareMax: 1.1, text: '≤1.1× bare' },
    'cr.1024.restore': { bareMax: 1.1, text: '≤1.1× bare' },
  };
  // Live migration (issue 8): post-copy downtime under 300 ms (and flat as memory grows: see
  // LAZY_FLAT); stop-and-copy total ≤ 1.2× bare.
  for (const size of o.migSizes) {
    t[`migrate.lazy.${size}.downtime`] = { max: 300, text: '< 300 ms' };
    t[`migrate.stop.${size}.total`] = { bareMax: 1.2, text: '≤1.2× bare' };
  }
  if (big !== 'tiny') {
    const note = big === 1024 ? '' : ' (1 GiB target)';
    t[`export.${big}.export`] = { bareMax: 1.2, podmanMax: 1, strict: true, text: `≤1.2× bare, < podman${note}` };
    t[`export.${big}.import`] = { bareMax: 1.2, podmanMax: 1, strict: true, text: `≤1.2× bare, < podman${note}` };
  }
  return t;
}

/**
 * "Flat as memory grows" (issue 8, `--lazy` downtime): the largest median over the migration
 * sizes is at most this many times the smallest.
 */
const LAZY_FLAT = 1.25;

class Results {
  constructor(engines) {
    this.engines = engines;
    this.figures = new Map();
  }
  fig(id, title) {
    if (!this.figures.has(id)) this.figures.set(id, { id, title, unit: 'ms', engines: {} });
    return this.figures.get(id);
  }
  slot(id, title, engine) {
    const f = this.fig(id, title);
    f.engines[engine] ??= { samples: [] };
    return f.engines[engine];
  }
  add(id, title, engine, ms, extra) {
    const s = this.slot(id, title, engine);
    s.samples.push(Math.round(ms * 10) / 10);
    if (extra?.bytes !== undefined) (s.sizeBytes ??= []).push(extra.bytes);
    if (extra?.wallMs !== undefined) (s.wallMs ??= []).push(Math.round(extra.wallMs * 10) / 10);
  }
  fail(ids, engine, msg) {
    for (const [id, title] of ids) {
      const s = this.slot(id, title, engine);
      s.error ??= msg;
    }
  }
}

/** sync, then wait out the pause (doing `during` meanwhile: checks of the previous step). */
async function settle(large, during) {
  const t0 = performance.now();
  await exec(['sync']);
  const r = during ? await during() : undefined;
  const rest = (large ? LARGE_PAUSE_MS : SMALL_PAUSE_MS) - (performance.now() - t0);
  if (rest > 0) await sleep(rest);
  checkAbort();
  return r;
}

function workload(size, ctx) {
  return size === 'tiny' ? { kind: 'tiny', argv: LOOPER } : { kind: 'memhog', argv: ['/opt/memhog', String(size), '500'], opt: ctx.optDir };
}

/** Waits until the workload is up: the looper printed a line, the memhog said "filled" and one "ok". */
async function waitStarted(e, name, w, timeoutMs = 60_000) {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const text = await e.output(name);
    if (text.includes('CORRUPT')) throw new Error(`${e.name}: the workload reported corruption before any checkpoint: ${text.trim().split('\n').at(-1)}`);
    const p = progress(text, w.kind);
    if (p.last >= (w.kind === 'tiny' ? 0 : 1)) return;
    if (performance.now() > end) throw new Error(`${e.name}: the workload did not start within ${timeoutMs / 1000} s (output: ${JSON.stringify(text.slice(-200))})`);
    await sleep(150);
  }
}

/** The number the workload printed last (after a checkpoint, when it is frozen). */
async function markOf(e, name, w) {
  return progress(await e.output(name), w.kind).last;
}

/** After a restore: waits for mark+1 with no corruption and no restart in between. */
async function verifyRestored(e, name, w, mark, timeoutMs = 30_000) {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const text = await e.output(name);
    const why = checkRestored(text, w.kind, mark);
    if (why === undefined) return;
    if (why !== 'wait') throw new Error(`${e.name}: check after restore failed: ${why}`);
    if (performance.now() > end) throw new Error(`${e.name}: check after restore failed: the workload printed nothing after ${mark} within ${timeoutMs / 1000} s`);
    await sleep(150);
  }
}

async function rmQuiet(e, name) {
  try {
    await e.rm(name);
  } catch (err) {
    log(`  (${e.name}: removing ${name} failed: ${err.message})`);
  }
}

let seq = 0;
const uniq = (base) => `${base}-${++seq}`;

async function benchCli(e, R, o) {
  const ids = Object.entries(TITLES);
  try {
    const w = { kind: 'tiny', argv: LOOPER };
    // One untimed round first: the first command of each engine pays for a cold cache.
    const warm = uniq('warm');
    await e.run(warm, w);
    await e.ps();
    await e.inspect(warm);
    await e.rm(warm);
    for (let i = 0; i < o.iterations; i++) {
      checkAbort();
      const n = uniq('cli');
      await settle(false);
      R.add('cli.run', TITLES['cli.run'], e.name, await e.run(n, w));
      await waitStarted(e, n, w);
      R.add('cli.ps', TITLES['cli.ps'], e.name, await e.ps());
      R.add('cli.inspect', TITLES['cli.inspect'], e.name, await e.inspect(n));
      R.add('cli.rm', TITLES['cli.rm'], e.name, await e.rm(n));
    }
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, e.name, err.message);
    log(`  ${e.name}: ${err.message}`);
  }
}

/** Checkpoint and restore in place, N cycles on one container, checking the workload each time. */
async function benchCheckpoint(e, R, o, ctx, size) {
  const large = size !== 'tiny';
  const label = sizeLabel(size);
  const ids = [
    [`cr.${size}.checkpoint`, `checkpoint ${label}`],
    [`cr.${size}.restore`, `restore ${label}`],
  ];
  const w = workload(size, ctx);
  const name = uniq(`cr${size}`);
  let running = false;
  try {
    await settle(large);
    await e.run(name, w);
    running = true;
    await waitStarted(e, name, w);
    if (size === o.crSizes[0]) {
      // One untimed cycle first: an engine's first checkpoint pays one-off costs (Ferry probes
      // CRIU's features once per runroot, Podman initialises its checkpoint support).
      await e.checkpoint(name);
      const mark = await settle(large, () => markOf(e, name, w));
      await e.restore(name);
      await verifyRestored(e, name, w, mark);
    }
    let pendingCheck;
    for (let i = 0; i < o.iterations; i++) {
      await settle(large, pendingCheck);
      R.add(...ids[0], e.name, await e.checkpoint(name));
      const mark = await settle(large, () => markOf(e, name, w));
      R.add(...ids[1], e.name, await e.restore(name));
      pendingCheck = () => verifyRestored(e, name, w, mark);
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, e.name, err.message);
    log(`  ${e.name}: ${err.message}`);
  } finally {
    if (running) await rmQuiet(e, name);
  }
}

/**
 * Export and import: a chain, each imported container exported in turn (so no iteration pays
 * for starting and filling the workload again); each import is checked like a restore.
 */
async function benchExport(e, R, o, ctx, size) {
  const large = size !== 'tiny';
  const label = sizeLabel(size);
  const ids = [
    [`export.${size}.export`, `checkpoint --export ${label}`],
    [`export.${size}.import`, `restore --import ${label}`],
  ];
  const w = workload(size, ctx);
  const live = new Set();
  try {
    await settle(large);
    let name = uniq(`ex${size}`);
    await e.run(name, w);
    live.add(name);
    await waitStarted(e, name, w);
    let pendingCheck;
    for (let i = 0; i < o.iterations; i++) {
      await settle(large, pendingCheck);
      const file = path.join(ctx.archives, `${e.name}-${name}.tar.zst`);
      const exMs = await e.export(name, file);
      const bytes = fs.statSync(file).size;
      R.add(...ids[0], e.name, exMs, { bytes });
      const mark = await settle(large, () => markOf(e, name, w));
      const next = uniq(`ex${size}`);
      live.add(next);
      R.add(...ids[1], e.name, await e.import(file, next, w));
      fs.rmSync(file, { force: true });
      const prev = name;
      name = next;
      // The check of the import and the removal of the exported container overlap the pause.
      pendingCheck = async () => {
        await verifyRestored(e, next, w, mark);
        await e.rm(prev);
        live.delete(prev);
      };
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, e.name, err.message);
    log(`  ${e.name}: ${err.message}`);
  } finally {
    for (const n of live) await rmQuiet(e, n);
  }
}

// ---------------------------------------------------------------------------------------------
// Live migration: two "hosts" on this machine exactly as the tests make them
// (build/test/helpers/hosts.js: a network namespace each, joined by a veth pair, each with its
// own sshd on port 2222 and its own Ferry root). Samples alternate A -> B, B -> A, ...

const MIG_TITLES = {
  stop: 'migrate stop-and-copy',
  lazy: 'migrate --lazy',
};

/** Reads a Ferry container's output (its logs travel with it) on a NetHost. */
const ferryOn = (h) => ({
  name: 'ferry',
  output: async (n) => {
    const r = await h.run(['logs', n]);
    return r.stdout + r.stderr;
  },
});

/**
 * After a migration: the workload goes on from `from` (the last number seen before it), every
 * number after it in order, at least two of them, no CORRUPT and no restart ("filled").
 */
async function verifyContinues(e, name, w, from, timeoutMs = 30_000) {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const { lines, num } = progress(await e.output(name), w.kind);
    let i = -1;
    for (let k = lines.length - 1; k >= 0; k--) if (num(lines[k]) === from) { i = k; break; }
    const after = lines.slice(i + 1);
    const bad = after.find((l) => l.includes('CORRUPT') || l.startsWith('filled'));
    if (bad) throw new Error(`${e.name}: check after migration failed: "${bad}"`);
    if (i < 0) throw new Error(`${e.name}: check after migration failed: ${from} is not in the output on the destination`);
    const nums = after.map(num).filter((n) => n !== undefined);
    const k = nums.findIndex((n, j) => n !== from + 1 + j);
    if (k >= 0) throw new Error(`${e.name}: check after migration failed: printed ${nums[k]} where ${from + 1 + k} was due (not restored where it stopped)`);
    if (nums.length >= 2) return;
    if (performance.now() > end) throw new Error(`${e.name}: check after migration failed: fewer than 2 numbers after ${from} within ${timeoutMs / 1000} s`);
    await sleep(150);
  }
}

/** The bare baseline's "host": a BareEngine whose runc runs inside the host's network namespace. */
function bareOn(h, dir) {
  const e = new BareEngine(dir);
  e.R = ['nsenter', `--net=/run/netns/${h.netns}`, ...e.R];
  e.host = h;
  return e;
}

function dirBytes(d) {
  let n = 0;
  for (const f of fs.readdirSync(d, { withFileTypes: true })) n += f.isDirectory() ? dirBytes(path.join(d, f.name)) : fs.statSync(path.join(d, f.name)).size;
  return n;
}

/**
 * Bare migration of `name` from bare engine `src` to `dst`: a fresh overlay + bundle on the
 * destination (before the freeze), then `runc checkpoint` on the source, `tar -c | ssh ... 'tar
 * -x'` into the destination's image dir (ssh from the source's netns to the destination's sshd,
 * the same key and options Ferry gets) and `runc restore -d` there. Downtime: checkpoint start
 * to restore done; total: also the destination's preparation and the source's removal.
 */
async function bareMigrate(pair, src, dst, name, w) {
  const t0 = performance.now();
  const c = await dst.prepare(name, w);
  const img = path.join(c.dir, 'ckpt');
  const conn = await sshMaster(pair, src, dst);
  const t1 = performance.now();
  try {
    await src.checkpoint(name);
  } catch (err) {
    await conn.close();
    throw err;
  }
  const srcImg = path.join(src.ctrs.get(name).dir, 'ckpt');
  await bareCopy(src, conn, srcImg, img);
  await dst.detached(c, ['restore', '-d', '--image-path', img, '--work-path', path.join(c.dir, 'logs'), '--bundle', c.dir, name], 'runc restore -d');
  const t2 = performance.now();
  return bareFinish(src, name, w, img, t0, t1, t2);
}

/** The bare baselines' copy of CRIU's images: `tar -c | ssh ... 'tar -x'` over the open connection. */
async function bareCopy(src, conn, srcImg, img) {
  const r = await exec(['nsenter', `--net=/run/netns/${src.host.netns}`, 'bash', '-c', 'set -o pipefail; tar -C "$1" -c . | "${@:3}" "mkdir -p $2 && tar -x -C $2"', 'bash', srcImg, img, ...conn.ssh]);
  await conn.close();
  if (r.code !== 0) throw cmdError('bare tar | ssh tar -x', r);
}

/**
 * After a bare migration: the source's container goes (timed, ending the total), the images'
 * size is noted and they go. The source's last output may still be on its way through `cat`:
 * it is still read, and the mark (the last number printed before the freeze) is taken later, in
 * the untimed pause.
 */
async function bareFinish(src, name, w, img, t0, t1, t2) {
  const old = src.ctrs.get(name);
  const streams = old.streams;
  old.streams = [];
  await src.rm(name);
  const t3 = performance.now();
  const bytes = dirBytes(img);
  fs.rmSync(img, { recursive: true, force: true });
  const mark = async () => {
    await sleep(200);
    for (const st of streams) st.destroy();
    return progress(old.out, w.kind).last;
  };
  return { downtime: t2 - t1, total: t3 - t0, bytes, mark };
}

/**
 * The bare baselines' ssh connection to the destination, opened before the freeze (as Ferry
 * connects before it freezes): an ssh master in the source's namespace, whose socket the
 * transfer's `ssh` reuses, so the key exchange is in the total and not in the downtime.
 */
async function sshMaster(pair, src, dst) {
  const sock = path.join(os.tmpdir(), `ferry-bench-ssh-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const base = ['ssh', '-i', pair.key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', `ControlPath=${sock}`, '-p', '2222', `root@${dst.host.ip}`];
  const master = spawn('nsenter', [`--net=/run/netns/${src.host.netns}`, ...base.slice(0, 1), '-M', '-N', '-o', 'ControlPersist=no', ...base.slice(1)], { stdio: 'ignore' });
  const until = performance.now() + 15_000;
  while (!fs.existsSync(sock)) {
    if (master.exitCode !== null || performance.now() > until) {
      master.kill();
      throw new Error(`bare baseline: the ssh master connection to ${dst.host.ip} did not come up`);
    }
    await sleep(5);
  }
  return {
    ssh: [...base.slice(0, 1), '-o', 'ControlMaster=no', ...base.slice(1)],
    close: async () => {
      master.kill();
      await new Promise((resolve) => (master.exitCode !== null ? resolve() : master.on('close', resolve)));
      fs.rmSync(sock, { force: true });
    },
  };
}

/**
 * Bare post-copy migration, as runc documents it: on the source `runc checkpoint --lazy-pages
 * --page-server SRC_IP:PORT --status-fd`, which dumps everything but memory and then serves
 * pages; once it reports ready, `tar -c | ssh ... 'tar -x'` of those images (as bareMigrate);
 * on the destination `criu lazy-pages --page-server --address SRC_IP --port PORT` and `runc
 * restore -d --lazy-pages`. The page server is reached straight over the veth link (no tunnel,
 * no authentication: the floor, not a way to run it). Downtime: checkpoint start to restore
 * done; total: also the destination's preparation, every page served, the source's removal.
 */
async function bareLazyMigrate(pair, src, dst, name, w) {
  const t0 = performance.now();
  const c = await dst.prepare(name, w);
  const img = path.join(c.dir, 'ckpt');
  const old = src.ctrs.get(name);
  const srcImg = path.join(old.dir, 'ckpt');
  fs.rmSync(srcImg, { recursive: true, force: true });
  const fifo = path.join(old.dir, 'lazy-status');
  fs.rmSync(fifo, { force: true });
  await ok(['mkfifo', '-m', '600', fifo]);
  const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const writeFd = fs.openSync(fifo, fs.constants.O_WRONLY);
  const status = new net.Socket({ fd: readFd, readable: true, writable: false });
  const port = 21000 + Math.floor(Math.random() * 9000);
  const conn = await sshMaster(pair, src, dst);
  const t1 = performance.now();
  const dump = spawn(src.R[0], [...src.R.slice(1), 'checkpoint', '--lazy-pages', '--page-server', `${src.host.ip}:${port}`, '--status-fd', '3', '--image-path', srcImg, '--work-path', path.join(old.dir, 'logs'), name], { stdio: ['ignore', 'ignore', 'pipe', writeFd] });
  fs.closeSync(writeFd);
  let dumpErr = '';
  dump.stderr.on('data', (b) => (dumpErr += b));
  const dumped = new Promise((resolve) => dump.on('close', resolve));
  const ready = await Promise.race([new Promise((resolve) => status.once('data', () => resolve(true))), dumped.then(() => false)]);
  status.destroy();
  if (!ready) {
    await conn.close();
    throw new Error(`bare runc checkpoint --lazy-pages failed: ${dumpErr.trim().split('\n').pop()}`);
  }
  // From here a failure must not leave the page server (or the daemon) waiting forever.
  let daemon;
  try {
    await bareCopy(src, conn, srcImg, img);
    const logs = path.join(c.dir, 'logs');
    fs.rmSync(path.join(logs, 'lazy-pages.socket'), { force: true });
    daemon = spawn('nsenter', [`--net=/run/netns/${dst.host.netns}`, CRIU, 'lazy-pages', '--page-server', '--address', src.host.ip, '--port', String(port), '-D', img, '-W', logs, '-o', 'lazy-pages.log', '-v4'], { stdio: 'ignore' });
    const served = new Promise((resolve) => daemon.on('close', resolve));
    const until = performance.now() + 5000;
    while (!fs.existsSync(path.join(logs, 'lazy-pages.socket'))) {
      if (performance.now() > until) throw new Error('bare criu lazy-pages did not start');
      await sleep(2);
    }
    await dst.detached(c, ['restore', '-d', '--lazy-pages', '--image-path', img, '--work-path', logs, '--bundle', c.dir, name], 'runc restore -d --lazy-pages');
    const t2 = performance.now();
    let timer;
    const allServed = await Promise.race([Promise.all([dumped, served]).then(() => true), new Promise((r) => (timer = setTimeout(() => r(false), 180_000)))]);
    clearTimeout(timer);
    if (!allServed) throw new Error('bare lazy migration: the pages were not all served within 180 s');
    return bareFinish(src, name, w, img, t0, t1, t2);
  } catch (err) {
    dump.kill('SIGKILL');
    daemon?.kill('SIGKILL');
    throw err;
  }
}

/**
 * The Podman baseline's "host": a Podman of its own (storage, run root, runc root, locks, tmp,
 * events log, network config: all below `dir`) whose commands run inside the host's network
 * namespace, with the same busybox image imported into its own store.
 */
function podmanOn(h, dir) {
  const e = new PodmanEngine(dir, ['nsenter', `--net=/run/netns/${h.netns}`]);
  e.host = h;
  e.xfer = path.join(dir, 'xfer');
  return e;
}

/**
 * Podman migration of `name` from Podman `src` to `dst` (both with --network none): on the
 * source `podman container checkpoint --export F --compress zstd` (zstd is Podman's default and
 * Ferry's stream), `scp` of F over the veth link into the destination's directory (from the
 * source's netns to the destination's sshd, the same key and options Ferry and bare get), and
 * `podman container restore --import F` on the destination, which returns once the container
 * runs again. Downtime = total = checkpoint start to restore done. Not timed: reading the mark
 * from the source's log, removing the checkpointed container there, deleting both archives.
 */
async function podmanMigrate(pair, src, dst, name, w) {
  const file = path.join(src.xfer, `${name}.tar.zst`);
  const dest = path.join(dst.xfer, `${name}.tar.zst`);
  fs.rmSync(file, { force: true });
  fs.rmSync(dest, { force: true });
  const t1 = performance.now();
  await src.timed(['container', 'checkpoint', '--export', file, '--compress', 'zstd', name], 'container checkpoint --export');
  // -O: the legacy scp protocol (OpenSSH >= 9 uses SFTP, which the hosts' sshd does not serve).
  const scp = ['scp', '-O', '-q', '-i', pair.key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-P', '2222'];
  const r = await exec(['nsenter', `--net=/run/netns/${src.host.netns}`, ...scp, file, `root@${dst.host.ip}:${dest}`]);
  if (r.code !== 0) throw cmdError('podman baseline scp', r);
  await dst.timed(['container', 'restore', '--import', dest], 'container restore --import');
  const t2 = performance.now();
  const bytes = fs.statSync(dest).size;
  // Untimed, in the pause before the next step: the mark from the source's log (the container
  // is stopped there, its log kept), then the source's container and both archives go.
  const mark = async () => {
    const m = await markOf(src, name, w);
    await src.rm(name);
    fs.rmSync(file, { force: true });
    fs.rmSync(dest, { force: true });
    return m;
  };
  return { downtime: t2 - t1, total: t2 - t1, bytes, mark };
}

async function benchMigration(R, o, ctx, engineNames, skipped) {
  if (!fs.existsSync('/usr/sbin/sshd') || spawnSync('ssh', ['-V']).status !== 0) {
    skipped.migration = 'openssh-server / ssh is not installed (npm run setup installs it)';
    log(`bench: skipping migration: ${skipped.migration}`);
    return;
  }
  const helper = path.join(REPO, 'build/test/helpers/hosts.js');
  if (!fs.existsSync(helper)) throw new Error(`${helper} is missing: run \`npm run build\` (npm run bench does)`);
  const { HostPair } = await import(helper);
  const pair = new HostPair();
  migration.pair = pair;
  const { a, b } = pair;
  const bare = engineNames.includes('bare') ? [bareOn(a, path.join(tmp, 'ma')), bareOn(b, path.join(tmp, 'mb'))] : undefined;
  let podman = engineNames.includes('podman') ? [podmanOn(a, path.join(tmp, 'pa')), podmanOn(b, path.join(tmp, 'pb'))] : undefined;
  try {
    log('bench: migration: setting up two hosts (network namespaces with sshd)');
    await pair.setup();
    for (const h of [a, b]) await h.ok(['import', ctx.tarball, 'busybox']);
    if (bare) for (const e of bare) (engines[`bare-${e.host.netns}`] = e), await e.setup(ctx);
    if (podman) {
      try {
        for (const e of podman) {
          engines[`podman-${e.host.netns}`] = e;
          await e.setup(ctx);
          fs.mkdirSync(e.xfer, { recursive: true });
        }
      } catch (err) {
        skipped['migrate podman'] = `Podman could not be set up on the migration hosts: ${err.message}`;
        log(`bench: migration: no Podman figures: ${skipped['migrate podman']}`);
        for (const e of podman) e.cleanup();
        podman = undefined;
      }
    }
    const info = JSON.parse(await a.ok(['info', '--format', 'json']));
    const lazy = !!info.host?.checkpointModes?.lazyPages;
    if (!lazy) {
      skipped['migrate --lazy'] = `lazy pages unavailable here: ${(info.host?.notes ?? []).join('; ')}`;
      log(`bench: migration: no --lazy figures: ${skipped['migrate --lazy']}`);
    }
    for (const size of o.migSizes) {
      for (const mode of ['stop', ...(lazy ? ['lazy'] : [])]) {
        checkAbort();
        log(`bench: ${MIG_TITLES[mode]} ${sizeLabel(size)} [ferry]`);
        await migrateFerry(R, o, ctx, pair, size, mode);
      }
      for (const mode of bare ? ['stop', ...(lazy ? ['lazy'] : [])] : []) {
        checkAbort();
        log(`bench: ${MIG_TITLES[mode]} ${sizeLabel(size)} [bare]`);
        await migrateBaseline(R, o, ctx, pair, bare, size, 'bare', mode);
      }
      if (podman) {
        checkAbort();
        log(`bench: ${MIG_TITLES.stop} ${sizeLabel(size)} [podman]`);
        await migrateBaseline(R, o, ctx, pair, podman, size, 'podman');
      }
    }
  } finally {
    log('bench: migration: removing the two hosts');
    for (const e of bare ?? []) {
      for (const n of [...e.ctrs.keys()]) await rmQuiet(e, n);
      e.cleanup();
    }
    for (const e of podman ?? []) e.cleanup();
    await pair.destroy().catch((err) => log(`bench: removing the migration hosts: ${err.message}`));
    migration.pair = undefined;
  }
}

/** How long a migrated workload may take to print again (untimed checks; 1 GiB is slow to verify). */
const checkTimeout = (size) => (size === 'tiny' || size < 1024 ? 30_000 : 90_000);

function migIds(mode, size) {
  const t = `${MIG_TITLES[mode]} ${sizeLabel(size)}`;
  return [
    [`migrate.${mode}.${size}.downtime`, `${t} downtime`],
    [`migrate.${mode}.${size}.total`, `${t} total`],
  ];
}

async function migrateFerry(R, o, ctx, pair, size, mode) {
  const large = size !== 'tiny';
  const ids = migIds(mode, size);
  const name = uniq(`mg${mode}${size}`);
  const vol = `${name}-bin`;
  let at = pair.a;
  let started = false;
  const w = size === 'tiny' ? { kind: 'tiny', argv: LOOPER } : { kind: 'memhog', argv: ['/opt/memhog', String(size), '500'] };
  try {
    await settle(large);
    // --network none, as the bare and Podman baselines run it: the same workload everywhere.
    let runArgs = ['run', '-d', '--network', 'none', '--name', name, 'busybox', ...w.argv];
    if (large) {
      // Migration refuses host bind mounts: the binary travels with the container in a volume.
      await at.ok(['volume', 'create', vol]);
      const mp = JSON.parse(await at.ok(['volume', 'inspect', vol]))[0].Mountpoint;
      fs.copyFileSync(path.join(ctx.optDir, 'memhog'), path.join(mp, 'memhog'));
      fs.chmodSync(path.join(mp, 'memhog'), 0o755);
      runArgs = ['run', '-d', '--network', 'none', '--name', name, '-v', `${vol}:/opt`, 'busybox', ...w.argv];
    }
    await at.ok(runArgs);
    started = true;
    await waitStarted(ferryOn(at), name, w);
    let pendingCheck;
    for (let i = 0; i < o.iterations; i++) {
      await settle(large, pendingCheck);
      const to = at === pair.a ? pair.b : pair.a;
      const from = progress(await ferryOn(at).output(name), w.kind).last;
      const args = ['migrate', name, to.url(), '--remote-command', to.remoteCommand(), ...pair.sshArgs(), '--print-stats', ...(mode === 'lazy' ? ['--lazy'] : [])];
      const t0 = performance.now();
      const out = await at.ok(args, { timeoutMs: size === 1024 ? 300_000 : 120_000 });
      const wall = performance.now() - t0;
      at = to;
      const st = JSON.parse(out);
      R.add(...ids[0], 'ferry', st.downtime_ms);
      R.add(...ids[1], 'ferry', st.total_ms, { bytes: st.bytes_sent, wallMs: wall });
      const here = at;
      const left = at === pair.a ? pair.b : pair.a;
      pendingCheck = async () => {
        // After --lazy the first pass over 1 GiB faults every page in over the network.
        await verifyContinues(ferryOn(here), name, w, from, checkTimeout(size));
        // The volume went with the container: Ferry removes the source's copy itself.
        if (large && (await left.run(['volume', 'inspect', vol])).code === 0) throw new Error(`the source kept volume ${vol} after migrating its container`);
      };
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, 'ferry', err.message);
    log(`  ferry: ${err.message}`);
  } finally {
    for (const h of [pair.a, pair.b]) {
      if (started) await h.run(['rm', '-f', name]);
      if (large) await h.run(['volume', 'rm', vol]);
    }
  }
}

/**
 * A baseline's migrations of one container, A -> B, B -> A, ... (bare: runc checkpoint + copy +
 * runc restore; podman: checkpoint --export + scp + restore --import), each restore checked
 * like the next one (the number after the mark). The workload's memhog binary is bind-mounted
 * from the bench's directory, which both "hosts" see (a restore needs the same path).
 */
async function migrateBaseline(R, o, ctx, pair, [ea, eb], size, engine, mode = 'stop') {
  const large = size !== 'tiny';
  const ids = migIds(mode, size);
  const name = uniq(engine === 'bare' ? `mgbare${mode}${size}` : `mgpod${size}`);
  const move = engine === 'bare' ? (mode === 'lazy' ? bareLazyMigrate : bareMigrate) : podmanMigrate;
  const w = workload(size, ctx);
  let at = ea;
  try {
    await settle(large);
    await at.run(name, w);
    await waitStarted(at, name, w);
    let pendingCheck;
    for (let i = 0; i < o.iterations; i++) {
      await settle(large, pendingCheck);
      const to = at === ea ? eb : ea;
      const st = await move(pair, at, to, name, w);
      at = to;
      R.add(...ids[0], engine, st.downtime);
      R.add(...ids[1], engine, st.total, { bytes: st.bytes });
      const here = at;
      pendingCheck = async () => verifyRestored(here, name, w, await st.mark(), checkTimeout(size));
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, engine, err.message);
    log(`  ${engine}: ${err.message}`);
  } finally {
    for (const e of [ea, eb]) {
      if (engine === 'bare') {
        if (e.ctrs.has(name)) await rmQuiet(e, name);
        continue;
      }
      // Whatever is left of the container on either side (running, or checkpointed and stopped).
      const r = await e.x(['rm', '-f', '-t', '0', '--ignore', name]);
      if (r.code !== 0) log(`  (podman: removing ${name} on ${e.host.netns} failed: ${(r.stderr || r.stdout).trim()})`);
      for (const f of fs.readdirSync(e.xfer)) fs.rmSync(path.join(e.xfer, f), { force: true });
    }
  }
}

/** The migration hosts, for the synchronous last-resort cleanup (a second Ctrl-C). */
const migration = { pair: undefined };
function cleanupMigrationSync() {
  const pair = migration.pair;
  if (!pair) return;
  migration.pair = undefined;
  for (const h of [pair.a, pair.b]) {
    if (fs.existsSync(h.root)) spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, process.execPath, FERRY_BIN, ...h.args(), 'rm', '-a', '-f'], { stdio: 'ignore', timeout: 60_000 });
    const rr = path.join(h.runroot, 'runc');
    if (fs.existsSync(rr)) for (const id of fs.readdirSync(rr)) spawnSync('runc', ['--root', rr, 'delete', '--force', id], { stdio: 'ignore' });
    try {
      h.sshd?.kill('SIGKILL');
    } catch {
      /* gone */
    }
    spawnSync('ip', ['netns', 'delete', h.netns], { stdio: 'ignore' });
    for (const m of mountsUnder(h.dir).sort().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    fs.rmSync(h.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

// ---------------------------------------------------------------------------------------------
// Summary, table, JSON

function summarize(R, o, engineNames) {
  const targets = targetsFor(o);
  const out = [];
  for (const f of R.figures.values()) {
    for (const s of Object.values(f.engines)) {
      s.min = s.samples.length ? Math.min(...s.samples) : undefined;
      s.median = median(s.samples);
      if (s.sizeBytes) s.sizeBytesMedian = median(s.sizeBytes);
      if (s.error) s.ok = false;
      else s.ok = s.samples.length > 0;
    }
  }
  for (const f of R.figures.values()) {
    const fe = f.engines.ferry;
    // Podman has no post-copy mode: its `--lazy` ratio is against its stop-and-copy figure of
    // the same size (marked `†` in the table, `against` in the JSON). Bare runc + CRIU has one.
    const lazy = /^migrate\.lazy\./.test(f.id);
    const stop = lazy ? R.figures.get(f.id.replace('migrate.lazy.', 'migrate.stop.'))?.engines ?? {} : {};
    const against = lazy ? ['bare', 'podman'].filter((e) => !f.engines[e] && stop[e]) : [];
    const base = { ...f.engines, ...Object.fromEntries(against.map((e) => [e, stop[e]])) };
    const ratio = (other) => (fe?.ok && base[other]?.ok ? Math.round((fe.median / base[other].median) * 100) / 100 : undefined);
    f.ratios = { ferry_bare: ratio('bare'), ferry_podman: ratio('podman'), ...(against.length ? { against: `the stop-and-copy figure of ${against.join(' and ')}`, againstStop: against } : {}) };
    const t = targets[f.id];
    if (t) {
      const checks = [];
      if (t.max !== undefined) checks.push(fe?.ok ? fe.median < t.max : false);
      if (t.bareMax !== undefined) checks.push(engineNames.includes('bare') ? (f.ratios.ferry_bare === undefined ? false : f.ratios.ferry_bare <= t.bareMax) : null);
      if (t.podmanMax !== undefined) {
        if (!engineNames.includes('podman')) checks.push(null);
        else if (f.ratios.ferry_podman === undefined) checks.push(false);
        else {
          const r = fe.median / f.engines.podman.median;
          checks.push(t.strict ? r < t.podmanMax : r <= t.podmanMax);
        }
      }
      const evaluated = checks.filter((c) => c !== null);
      const pass = evaluated.length === 0 ? null : evaluated.every(Boolean);
      f.target = { text: t.text, pass, partial: evaluated.length < checks.length };
    }
    out.push(f);
  }
  // One verdict per target, in the order of the figures, plus "--lazy downtime flat as memory grows".
  const verdicts = out
    .filter((f) => f.target)
    .map((f) => ({ id: f.id, title: f.title, target: f.target.text, pass: f.target.pass, partial: f.target.partial, ferryMedianMs: f.engines.ferry?.median, ratios: f.ratios }));
  const lazyIds = o.migSizes.map((size) => `migrate.lazy.${size}.downtime`);
  const lazyFigs = lazyIds.map((id) => R.figures.get(id)).filter(Boolean);
  if (o.migration && lazyFigs.length) {
    // One size (--smoke --migration) cannot show a trend: n/a.
    const meds = lazyFigs.map((f) => (f.engines.ferry?.ok ? f.engines.ferry.median : undefined));
    const okMeds = meds.filter((m) => m !== undefined);
    const all = okMeds.length === lazyIds.length && okMeds.length >= 2;
    const lo = all ? Math.min(...okMeds) : undefined;
    const hi = all ? Math.max(...okMeds) : undefined;
    verdicts.push({
      id: 'migrate.lazy.flat',
      title: `migrate --lazy downtime flat (${o.migSizes.map(sizeLabel).join(', ')})`,
      target: `max ≤ ${LAZY_FLAT}× min of the medians`,
      pass: lazyIds.length < 2 ? null : all ? hi <= LAZY_FLAT * lo : false,
      partial: false,
      mediansMs: Object.fromEntries(o.migSizes.map((size, i) => [sizeLabel(size), lazyFigs[i]?.engines.ferry?.median])),
      ratio: all ? Math.round((hi / lo) * 100) / 100 : undefined,
    });
  }
  return { figures: out, verdicts };
}

function renderVerdicts(verdicts) {
  if (!verdicts.length) return '';
  const ms = (v) => (v === undefined ? '–' : v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`);
  const lines = verdicts.map((v) => {
    const res = v.pass === null ? 'n/a ' : `${v.pass ? 'PASS' : 'FAIL'}${v.partial ? '*' : ' '}`;
    let detail;
    if (v.id === 'migrate.lazy.flat') {
      detail = `medians ${Object.entries(v.mediansMs).map(([k, m]) => `${k} ${ms(m)}`).join(', ')}${v.ratio !== undefined ? `: max/min ${v.ratio.toFixed(2)}×` : ''}`;
    } else {
      const rs = [v.ratios.ferry_bare !== undefined ? `F/bare ${fmtRatio(v.ratios.ferry_bare)}` : '', v.ratios.ferry_podman !== undefined ? `F/podman ${fmtRatio(v.ratios.ferry_podman)}` : ''].filter(Boolean);
      detail = `ferry median ${ms(v.ferryMedianMs)}${rs.length ? `, ${rs.join(', ')}` : ''}`;
    }
    return `  ${res} ${v.title}: ${v.target} (${detail})`;
  });
  return `\nTargets (issue 8, on the medians):\n${lines.join('\n')}\n`;
}

function fmtMs(v) {
  if (v === undefined) return '–';
  return v >= 10_000 ? `${(v / 1000).toFixed(1)}s` : `${Math.round(v)}`;
}
const fmtRatio = (r) => (r === undefined ? '–' : `${r.toFixed(2)}×`);
const fmtSize = (b) => (b === undefined ? '–' : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

function renderTable(figures, engineNames) {
  const head = ['Figure (ms)', ...engineNames.map((e) => `${e} min/med`), ...(engineNames.includes('bare') ? ['F/bare'] : []), ...(engineNames.includes('podman') ? ['F/podman'] : []), 'Target', 'Result'];
  const rows = figures.map((f) => {
    const cells = [f.title];
    for (const e of engineNames) {
      const s = f.engines[e];
      cells.push(!s ? '–' : s.error ? 'ERROR' : `${fmtMs(s.min)} / ${fmtMs(s.median)}`);
    }
    const mark = (r, e) => (r !== undefined && f.ratios.againstStop?.includes(e) ? `${fmtRatio(r)}†` : fmtRatio(r));
    if (engineNames.includes('bare')) cells.push(mark(f.ratios.ferry_bare, 'bare'));
    if (engineNames.includes('podman')) cells.push(mark(f.ratios.ferry_podman, 'podman'));
    cells.push(f.target?.text ?? '');
    cells.push(!f.target ? '' : f.target.pass === null ? 'n/a' : `${f.target.pass ? 'PASS' : 'FAIL'}${f.target.partial ? '*' : ''}`);
    return cells;
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  let s = [line(head), sep, ...rows.map(line)].join('\n') + '\n';
  const sized = figures.filter((f) => Object.values(f.engines).some((x) => x.sizeBytesMedian !== undefined));
  if (sized.length) {
    const line = (fs_) => fs_.map((f) => `${f.title.replace('checkpoint --export ', '').replace(/ total$/, '')}: ${engineNames.map((e) => `${e} ${fmtSize(f.engines[e]?.sizeBytesMedian)}`).join(', ')}`).join('; ');
    const archives = sized.filter((f) => !f.id.startsWith('migrate.'));
    const sent = sized.filter((f) => f.id.startsWith('migrate.'));
    if (archives.length) s += `\nArchive sizes (median): ${line(archives)}\n`;
    if (sent.length) s += `\nMigrated bytes (median; Ferry: bytes_sent, zstd stream; bare: CRIU images, plain tar; podman: the --export archive, zstd): ${line(sent)}\n`;
  }
  const errors = figures.flatMap((f) => Object.entries(f.engines).filter(([, x]) => x.error).map(([e, x]) => `${f.title} [${e}]: ${x.error}`));
  if (errors.length) s += `\nErrors:\n${[...new Set(errors)].map((e) => `  - ${e}`).join('\n')}\n`;
  if (figures.some((f) => f.ratios.againstStop?.length)) s += '\n† Ferry --lazy against that engine\'s stop-and-copy figure of the same size (Podman has no post-copy mode)\n';
  if (figures.some((f) => f.target?.partial)) s += '\n* judged only against the engines that ran\n';
  return s;
}

// ---------------------------------------------------------------------------------------------
// Main

const o = (() => {
  try {
    return parseArgs(process.argv.slice(2));
  } catch (e) {
    log(`bench: ${e.message}`);
    usage(2);
  }
})();

if (process.getuid?.() !== 0) {
  log('bench: must run as root (runc, overlay mounts, CRIU)');
  process.exit(1);
}

let tmp;
const engines = {};
const varLibContainersExisted = fs.existsSync('/var/lib/containers');
/** Podman (cgroupfs manager) puts containers and conmon below libpod_parent in every hierarchy. */
const podmanCgroups = () => {
  try {
    return fs.readdirSync('/sys/fs/cgroup').map((h) => path.join('/sys/fs/cgroup', h, 'libpod_parent')).filter((d) => fs.existsSync(d));
  } catch {
    return [];
  }
};
const podmanCgroupsExisted = podmanCgroups().length > 0;
function rmdirTree(d) {
  for (const ent of fs.readdirSync(d, { withFileTypes: true })) if (ent.isDirectory()) rmdirTree(path.join(d, ent.name));
  fs.rmdirSync(d);
}
let cleanedUp = false;

function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  try {
    cleanupMigrationSync();
  } catch (err) {
    log(`bench: cleanup of the migration hosts: ${err.message}`);
  }
  for (const e of Object.values(engines)) {
    try {
      e.cleanup();
    } catch (err) {
      log(`bench: cleanup of ${e.name}: ${err.message}`);
    }
  }
  if (tmp) {
    for (const m of mountsUnder(tmp).sort().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    // conmon's exit command (`ferry container cleanup`) may still be finishing for a container
    // just removed and recreate a directory: look again a few times.
    for (let i = 0; i < 5 && fs.existsSync(tmp); i++) {
      if (i) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 3 });
    }
  }
  // Podman leaves its (empty) cgroup parents behind: remove them when this run made them.
  if (!podmanCgroupsExisted) {
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
  if (!varLibContainersExisted && fs.existsSync('/var/lib/containers')) {
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

let interrupts = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    aborted = true;
    if (++interrupts === 1) log(`\nbench: ${sig}: finishing the current step, then removing everything the bench made`);
    else {
      log('bench: cleaning up now');
      cleanup();
      process.exit(130);
    }
  });
}
process.on('exit', cleanup);

async function main() {
  const started = new Date();
  const t0 = performance.now();
  let engineNames = [...o.only];
  const skipped = {};

  if (o.setup) {
    const r = spawnSync('bash', [path.join(HERE, 'setup.sh'), ...(engineNames.includes('podman') ? [] : ['--no-podman'])], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error('bench/setup.sh failed');
  }
  if (!fs.existsSync(CRIU)) throw new Error(`${CRIU} is missing: run \`npm run setup\``);
  if (!fs.existsSync(path.join(REPO, 'dist/ferry.cjs'))) throw new Error('Ferry is not built: run `npm run build`');

  // Short path: conmon's attach socket path must fit in 108 bytes.
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fyb-'));
  const ctx = { tarball: path.join(tmp, 'busybox.tar'), optDir: path.join(tmp, 'opt'), archives: path.join(tmp, 'archives') };
  fs.mkdirSync(ctx.optDir, { mode: 0o755 });
  fs.mkdirSync(ctx.archives);
  await ok(['bash', path.join(REPO, 'scripts/make-busybox-image.sh'), ctx.tarball]);
  await ok(['gcc', '-static', '-O2', '-o', path.join(ctx.optDir, 'memhog'), path.join(HERE, '..', 'test', 'fixtures', 'memhog.c')]);

  const make = { ferry: () => new FerryEngine(path.join(tmp, 'f')), bare: () => new BareEngine(path.join(tmp, 'b')), podman: () => new PodmanEngine(path.join(tmp, 'p')) };
  for (const n of engineNames) {
    const e = make[n]();
    engines[n] = e;
    try {
      await e.setup(ctx);
    } catch (err) {
      if (n === 'ferry') throw new Error(`Ferry could not be set up: ${err.message}`);
      skipped[n] = err.message;
      log(`bench: skipping ${n}: ${err.message}`);
    }
  }
  engineNames = engineNames.filter((n) => !skipped[n]);
  const list = engineNames.map((n) => engines[n]);
  const R = new Results(engineNames);
  log(`bench: ${o.mode} mode, ${o.iterations} iteration(s), engines: ${engineNames.join(', ')}${Object.keys(skipped).length ? ` (skipped: ${Object.keys(skipped).join(', ')})` : ''}`);

  const step = async (what, fn) => {
    for (const e of list) {
      checkAbort();
      log(`bench: ${what} [${e.name}]`);
      await fn(e);
    }
  };
  if (!o.onlyMigration) {
    await step('CLI latency', (e) => benchCli(e, R, o));
    for (const size of o.crSizes) await step(`checkpoint/restore ${sizeLabel(size)}`, (e) => benchCheckpoint(e, R, o, ctx, size));
    for (const size of o.exportSizes) await step(`export/import ${sizeLabel(size)}`, (e) => benchExport(e, R, o, ctx, size));
  }
  // Migration: Ferry (stop-and-copy, --lazy) against bare runc + CRIU (checkpoint + tar over
  // ssh + restore) and Podman (checkpoint --export + scp + restore --import), each between two
  // "hosts" with their own state.
  if (o.migration) await benchMigration(R, o, ctx, engineNames, skipped);

  const { figures, verdicts } = summarize(R, o, engineNames);
  const table = renderTable(figures, engineNames) + renderVerdicts(verdicts);
  const doc = {
    version: 1,
    startedAt: started.toISOString(),
    durationS: Math.round((performance.now() - t0) / 100) / 10,
    mode: o.mode,
    iterations: o.iterations,
    engines: engineNames,
    skipped,
    host: {
      kernel: os.release(),
      cpus: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      versions: {
        ferry: engines.ferry?.version,
        runc: firstLine(['runc', '--version']),
        criu: firstLine([CRIU, '--version'])?.replace(/^Version:\s*/, 'CRIU '),
        conmon: firstLine(['conmon', '--version']),
        podman: engines.podman && !skipped.podman ? engines.podman.version : undefined,
      },
    },
    notes: {
      pauseMs: { large: LARGE_PAUSE_MS, small: SMALL_PAUSE_MS },
      bare: 'runc run -d / checkpoint / restore -d with the same CRIU; run includes the overlay mount; export = runc checkpoint + tar | zstd -T0 -3; import = zstd -d | tar -x + overlay mount + runc restore -d',
      ferry: 'run --network none',
      podman: 'rootful, runc, cgroupfs, --network none, rm -f -t 0, k8s-file logs, file locks',
      migration: o.migration
        ? 'two hosts = two network namespaces with their own sshd (test/helpers/hosts.ts), samples alternate A->B, B->A. ferry: migrate NAME ssh://root@IP:2222 --remote-command ... --print-stats [--lazy] (default bridge network, zstd stream, memhog binary in a named volume); downtime/total = downtime_ms/total_ms from --print-stats, wallMs = the whole command. bare: fresh overlay+bundle on the destination, then runc checkpoint | tar -c | ssh tar -x | runc restore -d (all inside the hosts\' netns); downtime = checkpoint start to restore done, total = also the destination bundle and the source removal. podman (no migrate command): a Podman state of its own on each host (--root/--runroot, runc root, tmp, locks, network config; the same image imported), --network none, podman container checkpoint --export F --compress zstd | scp -O F over the veth link | podman container restore --import F (podman run inside the hosts\' netns); downtime = total = checkpoint start to restore done (the source\'s container is removed untimed). bare --lazy: runc checkpoint --lazy-pages --page-server SRC_IP:PORT --status-fd, the non-memory images by tar | ssh tar -x, criu lazy-pages --page-server on the destination reaching the source\'s page server straight over the veth, runc restore -d --lazy-pages; downtime = checkpoint start to restore done, total = also every page served and the source removal. --lazy ratios against Podman: its stop-and-copy figure of the same size. lazy flat: max <= ' + LAZY_FLAT + 'x min of the --lazy downtime medians over the sizes'
        : undefined,
    },
    figures,
    targets: verdicts,
    table,
  };
  fs.mkdirSync(o.out, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const json = JSON.stringify(doc, null, 2) + '\n';
  fs.writeFileSync(path.join(o.out, `${stamp}.json`), json);
  fs.writeFileSync(path.join(o.out, 'latest.json'), json);

  process.stdout.write(`\nFerry benchmark (${o.mode}, ${o.iterations} iteration(s); ${os.cpus().length} CPUs, kernel ${os.release()}; ${doc.host.versions.criu ?? 'CRIU ?'}, ${doc.host.versions.runc ?? 'runc ?'}${doc.host.versions.podman ? `, ${doc.host.versions.podman}` : ''})\n\n`);
  process.stdout.write(table);
  for (const [n, why] of Object.entries(skipped)) process.stdout.write(`\n${n} was skipped: ${why}\n`);
  process.stdout.write(`\nResults: ${path.join(o.out, `${stamp}.json`)} (and latest.json); took ${doc.durationS} s\n`);
  const failedChecks = figures.some((f) => Object.values(f.engines).some((s) => s.error));
  return failedChecks ? 1 : 0;
}

main().then(
  (code) => {
    cleanup();
    process.exit(aborted ? 130 : code);
  },
  (err) => {
    log(`bench: ${err instanceof Aborted ? 'interrupted' : err.message}`);
    cleanup();
    process.exit(aborted ? 130 : 1);
  },
);
