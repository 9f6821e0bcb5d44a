import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { FerryError } from '../../lib/errors.js';
import { debug } from '../../lib/log.js';
import { FifoReader, makeFifo } from '../../lib/fifo.js';
import { lastLine, run, runOk, which, type RunResult } from '../../lib/exec.js';
import { mkdirp } from '../../lib/fsutil.js';
import { processAlive, procStartTime, sleep } from '../../lib/proc.js';
import { pipeIO, type StreamIO } from './attach.js';
import { cgroupV1Mounts, dumpOptions, isDirIn, type RuncStateFile } from './dumpopts.js';
import { encodeDumpRequest, REQ_DUMP, REQ_PRE_DUMP, startSwrk } from '../criu/swrk.js';
import { writeErr } from '../../lib/stdio.js';

/** Paths conmon uses for one container. */
export interface ConmonPaths {
  bundle: string; // OCI bundle (config.json); also runc's --work-path on restore
  logPath: string; // k8s-file log
  pidFile: string; // container init PID
  conmonPidFile: string;
  exitDir: string; // conmon writes <exitDir>/<id> with the exit code
  persistDir: string;
  socketDir: string;
  conmonLog: string; // conmon's own stderr
}

export interface StartOptions {
  id: string;
  name: string;
  paths: ConmonPaths;
  /** Restore from a checkpoint instead of creating afresh. */
  restore?: { imagePath: string; runtimeOpts: string[] };
  /** Program (argv) conmon runs after the container exits. */
  exitCommand?: string[];
  /** The process has a terminal: conmon takes its master end through runc's console socket. */
  terminal?: boolean;
  /** Keep a stdin pipe open for attaching (without a terminal). */
  stdin?: boolean;
}

export interface Started {
  pid: number;
  conmonPid: number;
  conmonStartTime?: number;
}

export interface RuncState {
  id: string;
  pid: number;
  status: 'created' | 'running' | 'pausing' | 'paused' | 'stopped';
}

/** What a checkpoint asks of runc/CRIU (one typed options object, as runc's CriuOpts). */
export interface RuncCheckpointOptions {
  imagePath: string;
  workPath: string;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  manageCgroupsMode?: 'soft' | 'full' | 'strict' | 'ignore';
  emptyNs?: string[];
  autoDedup?: boolean;
  /** Memory-only pre-dump (pre-copy round); the container keeps running. */
  preDump?: boolean;
  /** Earlier pre-dump to diff against, relative to imagePath. */
  parentPath?: string;
  /** Send pages to a CRIU page server instead of writing them (ADDRESS:PORT). */
  pageServer?: string;
  /** Keep pages on the source and serve them lazily (post-copy). */
  lazyPages?: boolean;
  /** CRIU's log, a file name in workPath (dump.log when not given). */
  logFile?: string;
}

export interface RuncRestoreOptions {
  tcpEstablished?: boolean;
  tcpClose?: boolean;
  fileLocks?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  manageCgroupsMode?: 'soft' | 'full' | 'strict' | 'ignore';
  autoDedup?: boolean;
  lazyPages?: boolean;
}

/** A dump ready to start (RuncRuntime.prepareCheckpoint). */
export interface PreparedCheckpoint {
  start(onSpawn?: (pid: number) => void): { ready: Promise<RunResult | undefined>; done: Promise<RunResult> };
  /** Gives the dump up before it starts (a failed freeze): closes what was opened for it. */
  abandon(): void;
}

/** runc restore flags; conmon passes them on with --runtime-opt. */
export function restoreArgs(o: RuncRestoreOptions): string[] {
  const a: string[] = [];
  if (o.tcpEstablished) a.push('--tcp-established');
  // runc 1.1 has no --tcp-close: the engine passes it to CRIU in a configuration file.
  if (o.fileLocks) a.push('--file-locks');
  if (o.extUnixSk) a.push('--ext-unix-sk');
  if (o.shellJob) a.push('--shell-job');
  if (o.manageCgroupsMode) a.push(`--manage-cgroups-mode=${o.manageCgroupsMode}`);
  if (o.autoDedup) a.push('--auto-dedup');
  if (o.lazyPages) a.push('--lazy-pages');
  return a;
}

export interface RuntimeConfig {
  runcRoot: string;
  /** CRIU binary (or wrapper) runc should use. */
  criuPath?: string;
  /** A CRIU configuration file for every CRIU that runc starts (CRIU_CONFIG_FILE). */
  criuDefaults?: string;
  /** A directory first on the PATH of every CRIU started (CRIU_TOOLS: its tar). */
  criuTools?: string;
  runc?: string;
  conmon?: string;
}

/**
 * The runc + conmon runtime driver. conmon owns each container's stdio (pipes into a
 * k8s-file log, which CRIU can dump) and records its exit code; runc does the rest.
 */
export class RuncRuntime {
  readonly runc: string;
  readonly conmon: string;

  constructor(readonly cfg: RuntimeConfig) {
    // conmon wants an absolute runtime path; absolute paths also skip PATH lookups later.
    this.runc = which(cfg.runc ?? 'runc') ?? 'runc';
    this.conmon = which(cfg.conmon ?? 'conmon') ?? 'conmon';
  }

  /** runc's global flags. */
  globalArgs(): string[] {
    const a = ['--root', this.cfg.runcRoot];
    if (this.cfg.criuPath) a.push('--criu', this.cfg.criuPath);
    return a;
  }

  /** The environment of a runc that may start CRIU (checkpoint, restore). */
  criuEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (this.cfg.criuDefaults) env.CRIU_CONFIG_FILE = this.cfg.criuDefaults;
    if (this.cfg.criuTools) env.PATH = `${this.cfg.criuTools}:${process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'}`;
    return { ...env, ...extra };
  }

  runcArgv(...args: string[]): string[] {
    return [this.runc, ...this.globalArgs(), ...args];
  }

  /** Creates (or restores) the container under a new conmon; resolves once runc has a PID. */
  async createWithConmon(o: StartOptions): Promise<Started> {
    const p = o.paths;
    for (const d of [p.exitDir, p.persistDir, p.socketDir, path.dirname(p.pidFile)]) mkdirp(d);
    for (const f of [p.pidFile, p.conmonPidFile, path.join(p.exitDir, o.id)]) fs.rmSync(f, { force: true });
    const args = [
      '--api-version', '1', '-c', o.id, '-u', o.id, '-n', o.name, '-r', this.runc, '-b', p.bundle,
      '-p', p.pidFile, '-P', p.conmonPidFile, '-l', `k8s-file:${p.logPath}`, '--exit-dir', p.exitDir,
      '--persist-dir', p.persistDir, '--socket-dir-path', p.socketDir, '--log-level', 'warning',
    ];
    for (const a of this.globalArgs()) args.push('--runtime-arg', a);
    if (o.terminal) args.push('-t');
    else if (o.stdin) args.push('-i');
    if (o.restore) {
      args.push('--restore', o.restore.imagePath);
      for (const opt of o.restore.runtimeOpts) args.push('--runtime-opt', opt);
    }
    if (o.exitCommand?.length) {
      args.push('--exit-command', o.exitCommand[0]!);
      for (const a of o.exitCommand.slice(1)) args.push('--exit-command-arg', a);
    }
    const logFd = fs.openSync(p.conmonLog, 'a');
    // The sync pipe is a FIFO that conmon holds open for reading and writing: if this ferry is
    // killed before it reads the message, conmon's write still succeeds. (On a pipe whose reader
    // died, conmon gets EPIPE and drops its log pipes: the container runs with its output lost.)
    const fifo = path.join(path.dirname(p.pidFile), 'sync.fifo');
    fs.rmSync(fifo, { force: true });
    makeFifo(fifo);
    const syncRd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const syncWr = fs.openSync(fifo, fs.constants.O_RDWR);
    fs.rmSync(fifo, { force: true });
    const msg = await new Promise<{ data: number; message?: string }>((resolve, reject) => {
      const child = spawn(this.conmon, args, {
        // conmon writes files into its working directory (an `oom` mark when the OOM killer
        // strikes): the container's bundle, never the caller's directory.
        cwd: p.bundle,
        stdio: ['ignore', logFd, logFd, syncWr],
        env: this.criuEnv({ _OCI_SYNCPIPE: '3' }),
        detached: true, // its own session: a Ctrl-C at the terminal must not reach the container
      });
      fs.closeSync(syncWr);
      // One JSON line; conmon's exit without it (every writer gone: EOF) is a failure.
      const sync = new FifoReader(syncRd, (d) => d.includes(10) || parseSyncLine(d) !== undefined);
      child.on('error', (e: NodeJS.ErrnoException) => {
        sync.cancel();
        reject(e.code === 'ENOENT' ? new FerryError('EDEPEND', 'conmon is not installed: run `npm run setup` (as root)') : e);
      });
      sync.result.then(
        ({ data }) => {
          child.unref();
          const m = parseSyncLine(data);
          if (m) return resolve(m);
          const why = lastLine(readTail(p.conmonLog)).replace(/^\[conmon:.\]:\s*/, '');
          reject(new FerryError('ERUNTIME', `conmon failed${why ? `: ${why}` : ''} (log: ${p.conmonLog})`));
        },
        (e: Error) => {
          child.unref();
          reject(e);
        },
      );
    }).finally(() => fs.closeSync(logFd));
    if (msg.data < 0) {
      throw new FerryError(o.restore ? 'ECRIU' : 'ERUNTIME', cleanRuntimeMessage(msg.message ?? 'runtime failed'), { detail: msg.message });
    }
    debug(`conmon: ${o.restore ? 'restored' : 'created'} ${o.name}, PID ${msg.data}`);
    const conmonPid = await readPidFile(p.conmonPidFile, 5000);
    debug(`conmon: PID file read`);
    return { pid: msg.data, conmonPid, conmonStartTime: procStartTime(conmonPid) };
  }

  /**
   * Prepares a dump of the container by CRIU, asked the way `runc checkpoint` asks it
   * (dumpOptions): the same images, which `runc restore` (Ferry's, Podman's) restores, without
   * runc's process and the second CRIU it starts to learn CRIU's version (~10 ms of every dump,
   * and of its frozen window when the container is frozen first). Prepared before a freeze,
   * started after it: start() runs CRIU in its own process group (a Ctrl-C at the terminal must
   * not reach it mid-dump); onSpawn gets its PID so the caller can record it before waiting.
   * `ready` settles when the dump is done: at CRIU's exit, or for a lazy dump when CRIU says
   * through the status descriptor that everything but memory is dumped and it serves the pages
   * (then `done` settles once every page is served). `ready` resolves with the result when CRIU
   * has exited by then, with undefined while a lazy dump serves. Once the container is dumped
   * (not left running), runc's record says "stopped" until the runtime is released (`runc
   * delete`), as after any exit.
   */
  prepareCheckpoint(id: string, o: RuncCheckpointOptions): PreparedCheckpoint {
    const st = this.readState(id);
    if (!st) throw new FerryError('ENOTFOUND', `container ${id} has no runtime state: it is not running`);
    if (typeof st.init_process_pid !== 'number' || typeof st.config?.rootfs !== 'string') {
      throw new FerryError('ERUNTIME', `runc's record of container ${id} (state.json) is not laid out as runc 1.1 lays it out, and the dump is built from it: use runc 1.1 (npm run setup installs it); the container is still running`);
    }
    fs.mkdirSync(o.imagePath, { recursive: true, mode: 0o700 });
    const fds: number[] = [];
    const closeAll = (): void => {
      for (const fd of fds.splice(0)) fs.closeSync(fd);
    };
    let status: FifoReader | undefined;
    let request: Uint8Array;
    try {
      const imagesDirFd = fs.openSync(o.imagePath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      fds.push(imagesDirFd);
      const workDirFd = fs.openSync(o.workPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      fds.push(workDirFd);
      // CRIU writes a byte to the status descriptor when a lazy dump serves its pages: a FIFO
      // read here; CRIU opens this process's write end through /proc.
      let statusFd: number | undefined;
      if (o.lazyPages) {
        const fifo = path.join(o.workPath, 'lazy-status');
        fs.rmSync(fifo, { force: true });
        makeFifo(fifo);
        const rd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
        statusFd = fs.openSync(fifo, fs.constants.O_WRONLY);
        fds.push(statusFd);
        fs.rmSync(fifo, { force: true });
        status = new FifoReader(rd, undefined, { keepOpen: true }); // closed when CRIU exits
      }
      const opts = dumpOptions(st, o, { imagesDirFd, workDirFd, statusFd, cgroupMounts: cgroupV1Mounts(), isDir: (p) => isDirIn(st.init_process_pid, p) });
      if (!o.preDump) fs.writeFileSync(path.join(o.imagePath, 'descriptors.json'), JSON.stringify(st.external_descriptors ?? []), { mode: 0o600 });
      request = encodeDumpRequest(o.preDump ? REQ_PRE_DUMP : REQ_DUMP, opts);
    } catch (e) {
      status?.cancel();
      closeAll();
      throw e;
    }
    const abandon = (): void => {
      status?.cancel();
      closeAll();
    };
    return {
      abandon,
      start: (onSpawn) => {
        let run: ReturnType<typeof startSwrk>;
        try {
          run = startSwrk(this.cfg.criuPath ?? 'criu', request, { env: this.criuEnv(), cwd: o.workPath });
        } catch (e) {
          abandon();
          throw e;
        }
        const done = run.done.finally(abandon);
        if (onSpawn && run.pid > 0) onSpawn(run.pid); // no PID: it never started, and done says why
        // A byte means ready; EOF or a read error without one leaves it to CRIU's exit (done).
        const statusByte = status?.result.then(
          (r) => (r.data.length > 0 ? undefined : new Promise<never>(() => undefined)),
          () => new Promise<never>(() => undefined),
        );
        const ready = statusByte ? Promise.race([statusByte, done]) : done;
        return { ready, done };
      },
    };
  }

  /** runc's own record of a container (state.json under --root), as runc wrote it; undefined when there is none. */
  private readState(id: string): RuncStateFile | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.cfg.runcRoot, id, 'state.json'), 'utf8')) as RuncStateFile;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async start(id: string): Promise<void> {
    await runOk(this.runcArgv('start', id), { what: 'runc start' });
  }

  async kill(id: string, signal: string, all = false): Promise<RunResult> {
    return run(this.runcArgv('kill', ...(all ? ['--all'] : []), id, signal));
  }

  /**
   * PIDs of runc commands on container id (under our --root), and of CRIUs dumping it
   * (isDumpOf), that are still running, such as those a killed
   * ferry left behind: a repair waits for them before deciding anything, or a late `runc pause`
   * would freeze what the repair had just thawed.
   */
  busy(id: string): number[] {
    const pids: number[] = [];
    let st: RuncStateFile | undefined;
    try {
      st = this.readState(id);
    } catch {
      st = undefined; // unreadable: no dump can have started from it either
    }
    const bundle = st?.config.labels?.find((l) => l.startsWith('bundle='))?.slice('bundle='.length);
    for (const p of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
      let argv: string[];
      try {
        argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      } catch {
        continue; // gone
      }
      if (argv[0] === this.runc && argv.includes(id)) {
        const root = argv.indexOf('--root');
        if (root >= 0 && argv[root + 1] === this.cfg.runcRoot) pids.push(Number(p));
      } else if (st && isDumpOf(argv, st.init_process_pid, bundle, p)) {
        pids.push(Number(p));
      }
    }
    return pids;
  }

  /**
   * Freezes the container's cgroup by writing to the freezer itself and polling it every
   * millisecond: no runc process, and no 100 ms polling steps (CRIU's own freezer wait). CRIU
   * then seizes a frozen container at once. pid is the container's init. Falls back to `runc
   * pause` where the freezer cannot be found.
   */
  async freeze(id: string, pid: number): Promise<void> {
    const f = freezerOf(pid);
    if (!f) return this.pause(id);
    fs.writeFileSync(f.file, f.v2 ? '1' : 'FROZEN');
    const frozen = (): boolean => (f.v2 ? /^frozen 1$/m.test(readFile(f.events!)) : readFile(f.file).trim() === 'FROZEN');
    const end = Date.now() + 10_000;
    while (!frozen()) {
      if (Date.now() > end) {
        fs.writeFileSync(f.file, f.v2 ? '0' : 'THAWED');
        throw new FerryError('ERUNTIME', `could not freeze container ${id}: its processes did not stop within 10 s`);
      }
      await sleep(1);
    }
  }

  /** Freezes every process of the container (cgroup freezer). */
  async pause(id: string): Promise<void> {
    await runOk(this.runcArgv('pause', id), { what: 'runc pause' });
  }

  /** Thaws a paused container; a container that is not paused is left alone. */
  async resume(id: string): Promise<void> {
    const r = await run(this.runcArgv('resume', id));
    if (r.code !== 0 && !/not paused|does not exist/i.test(r.stderr)) throw new FerryError('ERUNTIME', `runc resume failed: ${lastLine(r.stderr)}`);
  }

  async delete(id: string, force = true): Promise<void> {
    // No state directory, nothing to delete: spare a runc process (checkpoint and restore paths).
    if (!fs.existsSync(path.join(this.cfg.runcRoot, id))) return;
    const r = await run(this.runcArgv('delete', ...(force ? ['--force'] : []), id));
    if (r.code !== 0 && !/does not exist|not exist|container .* not found/i.test(r.stderr)) {
      throw new FerryError('ERUNTIME', `runc delete failed: ${lastLine(r.stderr)}`);
    }
  }

  async state(id: string): Promise<RuncState | undefined> {
    const r = await run(this.runcArgv('state', id));
    if (r.code !== 0) return undefined;
    return JSON.parse(r.stdout) as RuncState;
  }

  /** Runs a command in the container with this process's stdio; resolves with its exit code. */
  /** Runs a command in the container and collects its output (top's fallback to the container's ps). */
  execOutput(id: string, argv: string[]): Promise<RunResult> {
    return run([this.runc, ...this.globalArgs(), 'exec', id, ...argv], { timeoutMs: 30_000 });
  }

  exec(id: string, argv: string[], o: { stdin: boolean; tty: boolean; env: string[]; workdir?: string; io?: StreamIO }): Promise<number> {
    const args = ['exec'];
    if (o.tty) args.push('--tty');
    for (const e of o.env) args.push('--env', e);
    if (o.workdir) args.push('--cwd', o.workdir);
    args.push(id, ...argv);
    return new Promise((resolve, reject) => {
      const io = o.io;
      const child = io
        ? spawn(this.runc, [...this.globalArgs(), ...args], { stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
        : spawn(this.runc, [...this.globalArgs(), ...args], { stdio: [o.stdin ? 'inherit' : 'ignore', 'inherit', 'pipe'] });
      if (io) pipeIO(child, io, false);
      const errOut = (b: Buffer): void => {
        if (io) io.stderr(b);
        else writeErr(b);
      };
      // The process's stderr is passed through; runc's own error (it could not start the
      // command) is held back and becomes a one-line error with Podman's exit codes.
      let runcError = '';
      child.stderr!.on('data', (b: Buffer) => {
        const s = b.toString();
        if (/^time="[^"]*" level=error msg=/.test(s)) runcError += s;
        else errOut(b);
      });
      child.on('error', reject);
      child.on('close', (code, sig) => {
        if (code === 255 && runcError) {
          const msg = cleanRuntimeMessage(runcError).replace(/\\"/g, '"').replace(/^exec failed: (unable to start container process: )?/, '');
          const notFound = /executable file not found|no such file or directory/i.test(msg);
          const denied = /permission denied/i.test(msg);
          reject(new FerryError('ERUNTIME', `runc: ${msg}${notFound ? ': the command was not found in the container' : ''}`, { exitCode: notFound ? 127 : denied ? 126 : 125 }));
          return;
        }
        if (runcError) errOut(Buffer.from(runcError));
        resolve(code ?? (sig ? 128 + (sigNum(sig) ?? 9) : 1));
      });
    });
  }
}

/** The processes in the cgroup of pid (the container's init): its freezer cgroup's members, or pid alone. */
export function containerPids(pid: number): number[] {
  const f = freezerOf(pid);
  const procs = f ? readFile(path.join(path.dirname(f.file), 'cgroup.procs')) : '';
  const pids = procs.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  return pids.length ? pids : [pid];
}

/** The resident memory of a container's processes (VmRSS summed; what a dump writes as pages). */
export function residentBytes(pid: number): number {
  let kib = 0;
  for (const p of containerPids(pid)) kib += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFile(`/proc/${p}/status`))?.[1] ?? 0);
  return kib * 1024;
}

/**
 * Processes of the container that are not descendants of its init (pid): what `runc exec`
 * started (their parent is outside the container). CRIU dumps only init's process tree, so a
 * checkpoint would end them unseen.
 */
export function execSessions(pid: number): { pid: number; command: string }[] {
  const pids = containerPids(pid);
  const inside = new Set(pids);
  const out: { pid: number; command: string }[] = [];
  for (const p of pids) {
    if (p === pid) continue;
    const stat = readFile(`/proc/${p}/stat`);
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so parse after the last ')'.
    const close = stat.lastIndexOf(')');
    const ppid = Number(stat.slice(close + 2).split(' ')[1]);
    if (!Number.isInteger(ppid) || inside.has(ppid)) continue;
    out.push({ pid: p, command: stat.slice(stat.indexOf('(') + 1, close) });
  }
  return out;
}

/** The freezer of a process's cgroup: v1's freezer.state, or v2's cgroup.freeze and cgroup.events. */
/**
 * Whether a process is a CRIU dumping the container whose init is pid: once it has the request
 * its title says so (`criu: dump --rpc -t PID`, also pre-dump); before that it is `criu swrk 3`
 * (behind the wrapper) in the container's bundle directory, where it was started.
 */
export function isDumpOf(argv: string[], pid: number, bundle: string | undefined, proc: string): boolean {
  const title = argv.find((a) => a.startsWith('criu: '));
  if (title) return new RegExp(`^criu: (pre-)?dump --rpc -t ${pid}$`).test(title.trim());
  if (!bundle || !argv.includes('swrk') || !argv.some((a) => /(^|\/)criu$/.test(a))) return false;
  try {
    return fs.readlinkSync(`/proc/${proc}/cwd`) === bundle;
  } catch {
    return false;
  }
}

function freezerOf(pid: number): { file: string; v2: boolean; events?: string } | undefined {
  const lines = readFile(`/proc/${pid}/cgroup`).split('\n');
  const v1 = lines.map((l) => /^\d+:(?:[^:]*,)?freezer(?:,[^:]*)?:(.*)$/.exec(l)?.[1]).find((p) => p !== undefined);
  if (v1 !== undefined) {
    const file = path.join('/sys/fs/cgroup/freezer', v1, 'freezer.state');
    if (fs.existsSync(file)) return { file, v2: false };
  }
  const v2 = lines.map((l) => /^0::(.*)$/.exec(l)?.[1]).find((p) => p !== undefined);
  if (v2 !== undefined && fs.existsSync(path.join('/sys/fs/cgroup', v2, 'cgroup.freeze'))) {
    return { file: path.join('/sys/fs/cgroup', v2, 'cgroup.freeze'), v2: true, events: path.join('/sys/fs/cgroup', v2, 'cgroup.events') };
  }
  return undefined;
}

function readFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function sigNum(sig: NodeJS.Signals): number | undefined {
  return (fs.constants as unknown as Record<string, number>)[sig] ?? undefined;
}

/** conmon's sync message: the first line of what it wrote, when that is complete JSON. */
function parseSyncLine(data: Buffer): { data: number; message?: string } | undefined {
  const s = data.toString();
  const nl = s.indexOf('\n');
  try {
    return JSON.parse(nl >= 0 ? s.slice(0, nl) : s) as { data: number; message?: string };
  } catch {
    return undefined;
  }
}

function readTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}

async function readPidFile(file: string, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const n = Number(fs.readFileSync(file, 'utf8').trim());
      if (n > 0) return n;
    } catch {
      /* not yet written */
    }
    if (Date.now() > end) throw new FerryError('ERUNTIME', `conmon did not write its PID file ${file}`);
    await sleep(5);
  }
}

/**
 * runc's errors arrive wrapped in log lines (JSON, or logrus text on stderr); keep the human
 * part of the last line. A message with nothing left after that is returned as it came.
 */
export function cleanRuntimeMessage(m: string): string {
  let s = m.trim();
  const json = s.match(/\{"level":"error","msg":"((?:[^"\\]|\\.)*)"/);
  if (json) s = JSON.parse(`"${json[1]}"`) as string;
  s = s.replace(/^runtime failed:?\s*/i, '');
  const last = s.split('\n').filter((l) => l.trim()).pop()?.trim() ?? '';
  const text = last.match(/^time="[^"]*" level=error msg="?(.*?)"?$/);
  return (text ? text[1]! : last) || m.trim();
}

export { processAlive };
