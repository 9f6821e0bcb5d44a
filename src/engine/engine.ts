import { randomBytes } from '../lib/lazy.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { FerryError } from '../lib/errors.js';
import { run, runOk, which } from '../lib/exec.js';
import { discardDir, mkdirp, readJsonIfExists, sweepTrash, writeJsonAtomic, writeFileAtomic } from '../lib/fsutil.js';
import { FileLock, ifUnlockedSync, withLock } from '../lib/lock.js';
import { newId, randomName, validName } from '../lib/ids.js';
import { freePort } from '../lib/net.js';
import { processAlive, procStartTime, sleep, waitFor } from '../lib/proc.js';
import { RuncRuntime } from '../drivers/runtime/runc.js';
import { attachHelper, openAttach, resizeTerminal, type AttachRequest, type AttachSession, type StreamIO } from '../drivers/runtime/attach.js';
export type { StreamIO } from '../drivers/runtime/attach.js';
import { execWithConmon } from '../drivers/runtime/conmon-exec.js';
import { oomKills } from '../drivers/runtime/cgroup.js';
import { buildSpec, type Mount } from '../drivers/runtime/spec.js';
import { resolveUser } from '../drivers/runtime/user.js';
import { ImageStore, DEFAULT_PATH, normalizeImageName, type ImageRecord } from '../drivers/storage/images.js';
import { pullImage, type PullOptions } from '../drivers/registry/pull.js';
import { isShortName, parseReference, shortNameError } from '../drivers/registry/reference.js';
import { defaultAuthFile, lookupCredentials, storeCredentials, type Credentials } from '../drivers/registry/auth.js';
import { pushImage } from '../drivers/registry/push.js';
import { loadImages, saveImages, SAVE_FORMATS, type SaveFormat } from '../drivers/storage/transfer.js';
import { RegistryClient, type ClientOptions } from '../drivers/registry/client.js';
import { registryDomain } from '../drivers/registry/reference.js';
import { VolumeStore, type VolumeRecord } from '../drivers/storage/volumes.js';
import { createLayer, mountLayer, removeLayer, unmountLayer } from '../drivers/storage/overlay.js';
import { CRIU_CONFIG_ANNOTATION, CRIU_CONFIG_FILE, findCriu, findCriuDefaults, findCriuTools, probeCriu, type CriuInfo } from '../drivers/criu/criu.js';
import { attach, containerResolvConf, detach, inSubnet, NetworkStore, parseIPv4, parsePublish, validMac, DEFAULT_NETWORK, releaseTraffic, type NetworkRecord, type PortMapping } from '../drivers/network/cni.js';
import { Paths } from './paths.js';
import { findPod, getPod, podNamespaces, removePodRecord, type PodRecord } from './podstore.js';
import { toAdopted, toExited, toPaused, toRunning, toStartUndone, toUnpaused } from './state.js';
import { ENGINE_MOUNTS, engineMountFile, initialState, type ContainerConfig, type ContainerRecord, type ContainerStatus, type MountSpec, type NetworkConfig, type OpArgs, type OpKind, type OpOf, type PendingOp } from './types.js';
import { checkSelection, pickedByAll, type Selection, type SelectPurpose } from './select.js';
import { appendEvent } from './events.js';
import { parseResources, parseRestartPolicy, specJson, specResources, type ResourceFlags } from './resources.js';
import { checkLogsOptions, readLog, type LogEntry, type LogsOptions } from './logs.js';

export interface EngineOptions {
  root: string;
  runroot: string;
  /** argv prefix that runs this ferry (for conmon's exit command), e.g. [node, ferry.js]. */
  self?: string[];
  /** The OCI runtime binary (default: runc from PATH). */
  runtime?: string;
}

export interface CreateOptions {
  image: string;
  command: string[];
  /** --entrypoint: a command, or a JSON array; replaces the image's Entrypoint and clears its Cmd. */
  entrypoint?: string;
  /** -u/--user USER[:GROUP] (names from the container's /etc/passwd and /etc/group). */
  user?: string;
  /** -P/--publish-all: the image's ExposedPorts on free host ports. */
  publishAll?: boolean;
  /** --pull: always, missing (default) or never; with the registry options for a pull. */
  pull?: 'always' | 'missing' | 'never';
  pullOptions?: PullOptions & { authfile?: string };
  name?: string;
  env?: string[];
  workdir?: string;
  hostname?: string;
  /** -v VOL:/path[:opts] or -v /host:/path[:opts] */
  volumes?: string[];
  tmpfs?: string[];
  autoRemove?: boolean;
  labels?: Record<string, string>;
  stopSignal?: string;
  stopTimeout?: number;
  createCommand?: string[];
  /** bridge (the default network), none, host, or a network's name. */
  network?: string;
  ip?: string;
  mac?: string;
  /** --network-alias: more names for the container on a network with DNS. */
  networkAliases?: string[];
  /** -p [[IP:]HOSTPORT:]CTRPORT[/tcp|udp] */
  publish?: string[];
  /** Pod (name or ID) to join. */
  pod?: string;
  /** Internal: this is the infra container of that pod (ID). */
  infraOf?: string;
  /** -t: give the process a terminal. */
  tty?: boolean;
  /** -i: keep its stdin open for attaching. */
  interactive?: boolean;
  /** --memory, --cpus, --ulimit ... as given (checked by create). */
  resources?: ResourceFlags;
  /** --restart no|on-failure[:N]|always|unless-stopped */
  restart?: string;
  /** --security-opt: only `seccomp=unconfined` (lift the filter that blocks io_uring). */
  securityOpt?: string[];
}

/**
 * How each kind of interrupted operation is repaired: the handler of the module that owns the
 * operation. The engine's own (start, stop, remove) are built in; the rest come from the modules
 * that own them (wired in index.ts). A handler may return the message the container's state
 * shows (default: "a ferry NAME was interrupted; state repaired").
 */
export type RepairHandler<K extends OpKind> = (engine: Engine, rec: ContainerRecord, op: OpOf<K>) => Promise<string | void>;
export type RepairHandlers = { [K in OpKind]: RepairHandler<K> };

/** What the Engine is handed by the modules above it (index.ts wires them in). */
export interface EngineWiring {
  repairs: Pick<RepairHandlers, 'checkpoint' | 'restore' | 'migrate'>;
  /** Starts a pod's infra if it is not running (a member joins its namespaces); returns its record. */
  ensureInfra: (engine: Engine, pod: PodRecord) => Promise<ContainerRecord>;
}

/** Where a container's network should come up (restore keeps its old address). */
export interface NetworkRequest {
  ip?: string;
  mac?: string;
  ports?: PortMapping[];
  /** Hold the new namespace's traffic until released (see AttachOptions.hold); recorded as trafficHeld. */
  holdTraffic?: boolean;
}

/**
 * The engine: containers, images and volumes, and the only place with lifecycle rules.
 * Every state change happens under the container's lock and is saved before the next step;
 * an operation records itself in state.op so that, if it dies half-way, the next command
 * repairs the container from what runc and conmon say is true.
 */
export class Engine {
  readonly paths: Paths;
  readonly images: ImageStore;
  readonly volumes: VolumeStore;
  readonly networks: NetworkStore;
  readonly runtime: RuncRuntime;
  private readonly self?: string[];
  private readonly runtimeOpt?: string;
  private readonly repairs: RepairHandlers;
  private readonly ensureInfra: EngineWiring['ensureInfra'];

  constructor(opts: EngineOptions, wiring: EngineWiring) {
    this.paths = new Paths(path.resolve(opts.root), path.resolve(opts.runroot));
    this.images = new ImageStore(this.paths.images);
    this.volumes = new VolumeStore(this.paths.volumes);
    this.networks = new NetworkStore(path.join(this.paths.root, 'networks'), path.join(this.paths.runroot, 'dns'));
    if (opts.runtime !== undefined) {
      const found = which(opts.runtime);
      if (!found || !isExecutableFile(found)) throw new FerryError('ENOTFOUND', `--runtime ${opts.runtime}: no such executable; give the path of runc or a runc-compatible runtime`);
      opts = { ...opts, runtime: path.resolve(found) };
    }
    const criuPath = findCriu();
    this.runtime = new RuncRuntime({ runcRoot: this.paths.runcRoot, criuPath, criuDefaults: findCriuDefaults(criuPath), criuTools: findCriuTools(), runc: opts.runtime });
    this.runtimeOpt = opts.runtime;
    this.self = opts.self;
    const own = async (_e: Engine, rec: ContainerRecord, op: PendingOp): Promise<void> => {
      if (op.name === 'start') await this.waitForConmon(rec);
      // An interrupted stop or rm had begun to stop the container (its signal may be on its
      // way): finish stopping it, as was asked, rather than adopt as running a process about to die.
      if (op.name === 'stop' || op.name === 'remove') await this.finishStop(rec);
      await this.adoptFromRuntime(rec);
    };
    this.repairs = { start: own, stop: own, remove: own, ...wiring.repairs };
    this.ensureInfra = wiring.ensureInfra;
    for (const d of [this.paths.root, this.paths.containers]) mkdirp(d, 0o700);
    mkdirp(this.paths.locks, 0o700);
    this.sweepAbandonedImports();
  }

  /**
   * Staging dirs of imports (or migrations in) whose ferry was killed: nothing may stay. And
   * trash (discard()) whose background `rm` was killed.
   */
  private sweepAbandonedImports(): void {
    let all: string[];
    try {
      all = fs.readdirSync(this.paths.root).filter((n) => n.startsWith('.'));
    } catch {
      return;
    }
    sweepTrash(this.paths.root, all);
    // A container is made in containers/.tmp-ID and renamed into place under the names lock: one
    // left there when nobody holds that lock is a create (or import) killed half-way.
    let tmps: string[] = [];
    try {
      tmps = fs.readdirSync(this.paths.containers).filter((n) => n.startsWith('.tmp-'));
    } catch {
      /* no containers yet */
    }
    if (tmps.length) ifUnlockedSync(this.paths.namesLock, () => tmps.forEach((n) => fs.rmSync(path.join(this.paths.containers, n), { recursive: true, force: true })));
    for (const n of all.filter((x) => x.startsWith('.import-'))) {
      const pid = Number(n.split('-')[1]);
      if (Number.isInteger(pid) && pid > 0 && !processAlive(pid)) fs.rmSync(path.join(this.paths.root, n), { recursive: true, force: true });
    }
  }

  /** Deletes a tree below the root without waiting for it (a used-up checkpoint's pages). */
  discard(dir: string): void {
    discardDir(dir, this.paths.root);
  }

  // ---------------------------------------------------------------- records

  private load(id: string): ContainerRecord | undefined {
    return readJsonIfExists<ContainerRecord>(this.paths.containerRecord(id));
  }

  /** Writes the record atomically; durable (the default): on disk before this returns. */
  save(rec: ContainerRecord, durable = true): void {
    writeJsonAtomic(this.paths.containerRecord(rec.config.id), rec, 0o600, durable);
  }

  private allRecords(): ContainerRecord[] {
    let ids: string[];
    try {
      ids = fs.readdirSync(this.paths.containers).filter((d) => /^[0-9a-f]{64}$/.test(d));
    } catch {
      return [];
    }
    return ids.map((id) => this.load(id)).filter((r): r is ContainerRecord => !!r);
  }

  /** Finds a container by full ID, name, or unique ID prefix. */
  find(ref: string): ContainerRecord | undefined {
    const all = this.allRecords();
    const exact = all.find((r) => r.config.id === ref || r.config.name === ref);
    if (exact) return exact;
    if (/^[0-9a-f]+$/.test(ref)) {
      const m = all.filter((r) => r.config.id.startsWith(ref));
      if (m.length === 1) return m[0];
      if (m.length > 1) throw new FerryError('EINVAL', `more than one container ID starts with "${ref}": give more characters or the name`);
    }
    return undefined;
  }

  lookup(ref: string): ContainerRecord {
    const r = this.find(ref);
    if (!r) throw new FerryError('ENOTFOUND', `no container with name or ID "${ref}" found: see \`ferry ps -a\``);
    return r;
  }

  /** The most recently created container (for -l/--latest). */
  latest(): ContainerRecord {
    const all = this.allRecords().sort((a, b) => b.config.created.localeCompare(a.config.created));
    if (!all[0]) throw new FerryError('ENOTFOUND', 'no containers exist yet, so --latest has nothing to act on');
    return all[0];
  }

  /** Runs fn with the container locked, on a freshly read and repaired record. */
  async withContainer<T>(ref: string, fn: (rec: ContainerRecord) => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
    const id = this.lookup(ref).config.id;
    return withLock(
      this.paths.containerLock(id),
      async () => {
        const rec = this.load(id);
        if (!rec) throw new FerryError('ENOTFOUND', `container "${ref}" was removed by another command`);
        await this.sync(rec);
        if (!fs.existsSync(this.paths.containerDir(id))) {
          throw new FerryError('ENOTFOUND', `container "${ref}" exited and was removed (--rm)`);
        }
        return fn(rec);
      },
      { what: `container ${ref}`, timeoutMs: opts.timeoutMs },
    );
  }

  /**
   * Records that an operation is in flight, with what its repair needs (so a crash half-way is
   * noticed and repaired by the next command), and saves the record.
   *
   * `durable: false` is for an op whose next save comes before anything it does cannot be undone
   * (a dump's, as soon as runc runs): the record is still written atomically, so a killed ferry
   * leaves the op for the next command; only a power loss before that next save can lose it, and
   * a power loss also ends the container's processes, which is then all the op had done.
   */
  beginOp<K extends OpKind>(rec: ContainerRecord, name: K, args: OpArgs[K], o: { durable?: boolean } = {}): void {
    rec.state.op = { name, args, pid: process.pid, startTime: procStartTime(process.pid), since: new Date().toISOString() } as PendingOp;
    this.save(rec, o.durable ?? true);
  }

  /** Records how far the operation in flight has got (a migration's phase), and saves it. */
  updateOp<K extends OpKind>(rec: ContainerRecord, name: K, patch: Partial<OpArgs[K]>): void {
    const op = rec.state.op;
    if (op?.name !== name) throw new FerryError('ESTATE', `internal error: no ${name} operation in flight on ${rec.config.name}`);
    Object.assign(op.args, patch);
    this.save(rec);
  }

  /** The operation is over (done, or failed cleanly): saves the record without it. */
  endOp(rec: ContainerRecord): void {
    delete rec.state.op;
    this.save(rec);
  }

  // ---------------------------------------------------------------- state sync and repair

  private exitFile(id: string): string {
    return path.join(this.paths.exits, id);
  }

  private readExitCode(id: string): { code: number; at: string } | undefined {
    try {
      const f = this.exitFile(id);
      const code = Number(fs.readFileSync(f, 'utf8').trim());
      return { code: Number.isFinite(code) ? code : -1, at: fs.statSync(f).mtime.toISOString() };
    } catch {
      return undefined;
    }
  }

  /** Appends to the events journal (`ferry events`). */
  event(rec: ContainerRecord, status: string, attributes: Record<string, string> = {}): void {
    appendEvent(this.paths.root, rec, status, attributes);
  }

  /**
   * Whether the OOM killer ended the container's last run: its memory cgroup counts the kills
   * (read before the runtime is released, which removes the cgroup); conmon also marks one with
   * a file in its persist dir, though not always before the exit is seen.
   */
  oomKilled(id: string): boolean {
    return oomKills(this.paths.cgroup(id)) > 0 || fs.existsSync(path.join(this.paths.conmon(id).persistDir, 'oom'));
  }

  /** True when the record says the container runs but its conmon is gone. */
  private looksDead(rec: ContainerRecord): boolean {
    const s = rec.state;
    return (s.status === 'running' || s.status === 'paused') && !processAlive(s.conmonPid, s.conmonStartTime);
  }

  /**
   * Brings the record in line with reality (caller holds the lock): finishes or rolls back an
   * operation whose process died, and records an exit that happened while no ferry ran.
   */
  async sync(rec: ContainerRecord): Promise<void> {
    const op = rec.state.op;
    if (op && op.pid !== process.pid && !processAlive(op.pid, op.startTime)) {
      await this.repairInterrupted(rec, op);
    }
    if (this.looksDead(rec) || (await this.exitedUnderConmon(rec))) await this.recordExit(rec);
  }

  /**
   * A process that has exited while its conmon lives on: conmon writes the exit file, then runs
   * its exit command (`container cleanup`) and waits for it, which may be waiting for this very
   * lock. The exit file and runc say it is gone (as cleanup() decides).
   */
  private async exitedUnderConmon(rec: ContainerRecord): Promise<boolean> {
    if ((rec.state.status !== 'running' && rec.state.status !== 'paused') || rec.state.op || this.readExitCode(rec.config.id) === undefined) return false;
    const rs = await this.runtime.state(rec.config.id);
    return !rs || rs.status === 'stopped';
  }

  /** Records the exit conmon wrote and releases the runtime (network, mount); caller holds the lock. */
  private async recordExit(rec: ContainerRecord): Promise<void> {
    const exit = this.readExitCode(rec.config.id);
    toExited(rec.state, exit?.code ?? -1, exit?.at);
    if (this.oomKilled(rec.config.id)) rec.state.oomKilled = true;
    this.event(rec, 'died', { containerExitCode: String(rec.state.exitCode) });
    await this.releaseRuntime(rec);
    this.save(rec);
    await this.autoRemove(rec);
  }

  /**
   * Removes an exited --rm container, unless a foreground `run --rm` is attached to it: that one
   * reads the exit code first and removes the container itself.
   */
  async autoRemove(rec: ContainerRecord): Promise<void> {
    if (!rec.config.autoRemove) return;
    try {
      (await FileLock.acquire(this.paths.attachLock(rec.config.id), { timeoutMs: 0 })).release();
    } catch {
      return; // attached
    }
    await this.removeFiles(rec);
  }

  /** An operation's process died half-way: its owner's repair decides what is true now. */
  private async repairInterrupted(rec: ContainerRecord, op: PendingOp): Promise<void> {
    const message = await (this.repairs[op.name] as RepairHandler<OpKind>)(this, rec, op);
    rec.state.error = message || `a ferry ${op.name} was interrupted; state repaired`;
    delete rec.state.op;
    this.save(rec);
  }

  /**
   * conmon outlives a killed ferry and may still be running `runc restore` (or create): waits
   * until runc has written the container's PID or conmon has given up.
   */
  async waitForConmon(rec: ContainerRecord): Promise<void> {
    const conmonPid = Number(readText(this.paths.conmon(rec.config.id).conmonPidFile)) || 0;
    await waitFor(() => !processAlive(conmonPid) || fs.existsSync(this.paths.conmon(rec.config.id).pidFile), 120_000, 50);
  }

  /**
   * After an interrupted operation, records what runc says is true: a container that runs is
   * adopted (restored: a restore got that far), one that was only created is undone (the user
   * can start it again), and anything else is released.
   */
  async adoptFromRuntime(rec: ContainerRecord, o: { restored?: boolean } = {}): Promise<void> {
    const id = rec.config.id;
    const rs = await this.runtime.state(id);
    if (rs && (rs.status === 'running' || rs.status === 'paused') && processAlive(rs.pid)) {
      const conmonPid = Number(readText(this.paths.conmon(id).conmonPidFile)) || 0;
      toAdopted(rec.state, rs.status, rs.pid, conmonPid, procStartTime(conmonPid), !!o.restored);
    } else if (rs?.status === 'created') {
      await this.runtime.kill(id, 'KILL');
      await this.releaseRuntime(rec);
      toStartUndone(rec.state);
    } else if (rec.state.status !== 'running') {
      // (A "running" record whose conmon is gone is handled by the exit path in sync().)
      await this.releaseRuntime(rec);
    }
  }

  /** Kills what runs of a container whose stop was interrupted and waits (10 s at most) until conmon has seen it exit. */
  private async finishStop(rec: ContainerRecord): Promise<void> {
    const id = rec.config.id;
    const rs = await this.runtime.state(id);
    if (!rs || (rs.status !== 'running' && rs.status !== 'paused') || !processAlive(rs.pid)) return;
    if (rs.status === 'paused') await this.runtime.resume(id).catch(() => undefined); // a frozen process cannot die
    await this.runtime.kill(id, 'KILL', true).catch(() => undefined);
    const end = Date.now() + 10_000;
    while (Date.now() < end && this.readExitCode(id) === undefined && processAlive(rs.pid)) await sleep(20);
  }

  /**
   * Deletes runc's record, the network and (unless keepRootfs) the rootfs mount of a container
   * that no longer runs. deferRuntimeRecord leaves runc's record (and the cgroups it names) to
   * conmon's exit command (cleanup), which runs once the caller's lock is released, or to the
   * next command that starts, restores or removes the container.
   */
  async releaseRuntime(rec: ContainerRecord, o: { keepRootfs?: boolean; deferRuntimeRecord?: boolean } = {}): Promise<void> {
    if (!o.deferRuntimeRecord) await this.runtime.delete(rec.config.id, true);
    if (rec.state.net) {
      const a = rec.state.net;
      await withLock(this.paths.networkLock, () => detach(this.networks, a, rec.config.id), { what: 'network setup' });
      delete rec.state.net;
      delete rec.state.trafficHeld; // the namespace is gone, and its rules with it
      this.save(rec);
    }
    if (!o.keepRootfs) await unmountLayer(this.paths.layer(rec.config.id));
  }

  /** The DNS server and search domain of the container's network, when it has one (else: the host's). */
  private networkDns(rec: ContainerRecord): { nameservers: string[]; search: string[] } | undefined {
    const n = rec.state.net && this.networks.find(rec.state.net.network);
    return n ? this.networks.dnsConfig(n) : undefined;
  }

  /** Attaches the container to its network (a namespace of its own); caller holds its lock. */
  private async setupNetwork(rec: ContainerRecord, req: NetworkRequest): Promise<void> {
    const n = rec.config.network;
    if (!n || n.mode !== 'bridge' || rec.state.net) return;
    const network = this.networks.get(n.name ?? DEFAULT_NETWORK);
    if (req.ip) {
      // Say who holds a wanted address, rather than let IPAM fail obscurely.
      const holder = this.allRecords().find((r) => r.config.id !== rec.config.id && r.state.net?.ip === req.ip && r.state.net?.network === network.name);
      let other = holder ? undefined : this.networks.holderOf(network.name, req.ip);
      if (other === rec.config.id) {
        // Our own reservation, left by a ferry killed half-way through a network setup.
        await withLock(this.paths.networkLock, () => detach(this.networks, { network: network.name, netnsName: '', netnsPath: '', ip: req.ip!, prefixLength: 0, gateway: '', mac: '', ports: n.ports, result: undefined }, rec.config.id), { what: 'network setup' });
        other = undefined;
      }
      if (holder || other) {
        const who = holder ? `container ${holder.config.name}` : `container ${other!.slice(0, 12)} (of another ferry root or a crashed run)`;
        throw new FerryError('EEXIST', `IP address ${req.ip} is already in use by ${who}: free it, or use --ignore-static-ip for a new address`);
      }
    }
    const a = await withLock(
      this.paths.networkLock,
      () =>
        attach(this.networks, {
          containerId: rec.config.id,
          network,
          ip: req.ip,
          mac: req.mac,
          ports: req.ports ?? n.ports,
          // Its DNS names, on a network with DNS: its name (a pod's infra: the pod's, as Podman's),
          // its aliases and (as Docker) its short ID.
          dnsName: (rec.config.infraOf && findPod(this, rec.config.infraOf)?.name) || rec.config.name,
          aliases: [...(n.aliases ?? []), rec.config.id.slice(0, 12)],
          // Recorded before the plugins run: a ferry killed in the middle leaves something to undo.
          onNetns: (partial) => {
            rec.state.net = partial;
            if (req.holdTraffic) rec.state.trafficHeld = true; // recorded first: a repair releases it
            this.save(rec);
          },
          hold: req.holdTraffic,
        }),
      { what: 'network setup' },
    );
    rec.state.net = a;
    rec.state.address = { ip: a.ip, mac: a.mac };
    this.save(rec); // saved at once: a crash from here on is repaired by releasing it
  }

  // ---------------------------------------------------------------- containers

  /** Fails before anything is created or mounted when runc or conmon is missing. */
  requireRuntime(): void {
    for (const [name, file] of [['runc', this.runtime.runc], ['conmon', this.runtime.conmon]] as const) {
      if (!file.includes('/')) throw new FerryError('EDEPEND', `${name} is not installed (not found in PATH): run \`npm run setup\` (as root) to install Ferry's host dependencies`);
    }
  }

  async create(o: CreateOptions): Promise<ContainerRecord> {
    this.requireRuntime();
    if (o.name !== undefined && !validName(o.name)) {
      throw new FerryError('EINVAL', `invalid container name "${o.name}": use letters, digits, '_', '.', '-', starting with a letter or digit`);
    }
    const mounts = this.parseMounts(o.volumes ?? [], o.tmpfs ?? []);
    const resources = parseResources(o.resources ?? {});
    const restartPolicy = o.restart !== undefined ? parseRestartPolicy(o.restart) : undefined;
    if (restartPolicy && restartPolicy.Name !== 'no' && o.autoRemove) throw new FerryError('EINVAL', `--restart ${o.restart} and --rm conflict: a removed container cannot be restarted; give one of them`);
    const securityOpt = [...new Set(o.securityOpt ?? [])];
    for (const s of securityOpt) {
      if (s !== 'seccomp=unconfined') {
        throw new FerryError('EINVAL', `unsupported --security-opt "${s}": Ferry takes only seccomp=unconfined (its filter blocks nothing but io_uring, which CRIU cannot checkpoint)`);
      }
    }
    const pod = o.pod !== undefined ? getPod(this, o.pod) : undefined;
    if (pod && (o.network || o.ip || o.mac || o.publish?.length || o.networkAliases?.length)) {
      throw new FerryError('EINVAL', `containers in pod ${pod.name} use the pod's network: give --network/-p/--ip to \`ferry pod create\` instead`);
    }
    // Checked before a pull: a bad --network or -p fails fast.
    let network = pod ? undefined : this.parseNetwork(o);
    if (network) await this.pickHostPorts(network);
    const img = await this.imageForRun(o.image, o.pull ?? 'missing', o.pullOptions);
    const c = img.Config;
    if (o.publishAll && Object.keys(c.ExposedPorts ?? {}).length) {
      if (pod) throw new FerryError('EINVAL', `containers in pod ${pod.name} use the pod's network: publish ports with \`ferry pod create -p\``);
      network = this.parseNetwork({ ...o, publish: [...(o.publish ?? []), ...(await this.publishAll(c.ExposedPorts ?? {}, network!))] });
    }
    // Docker's rules: run arguments replace Cmd; --entrypoint replaces Entrypoint and clears Cmd.
    const entrypoint = o.entrypoint !== undefined ? parseEntrypoint(o.entrypoint) : c.Entrypoint ?? [];
    const command = [...entrypoint, ...(o.command.length ? o.command : o.entrypoint !== undefined ? [] : c.Cmd ?? [])];
    if (!command.length) throw new FerryError('EINVAL', `image ${o.image} has no command (no Entrypoint or Cmd): give one after the image name`);
    // The image's VOLUMEs that no -v/--tmpfs covers get an anonymous volume each, as in Podman.
    for (const v of Object.keys(c.Volumes ?? {})) {
      if (!v.startsWith('/')) continue;
      const dest = path.posix.normalize(v).replace(/(.)\/+$/, '$1');
      if (dest === '/' || mounts.some((m) => m.destination === dest)) continue;
      mounts.push({ type: 'volume', source: randomBytes(32).toString('hex'), destination: dest, options: [], anonymous: true });
    }
    const user = o.user ?? c.User ?? '';
    if (!/^[^:\s]*(:[^:\s]*)?$/.test(user)) throw new FerryError('EINVAL', `invalid --user "${o.user}": use USER[:GROUP], by name or number`);
    const id = newId();
    const config: ContainerConfig = {
      id,
      name: o.name ?? '',
      created: new Date().toISOString(),
      imageId: img.Id,
      // As Podman: the name asked for, when the image has it (an image can have several).
      imageName: img.Names.find((n) => n === o.image || n === normalizedOrUndefined(o.image)) ?? img.Names[0] ?? img.Id,
      command,
      env: mergeEnv(c.Env ?? [], o.env ?? []),
      workdir: o.workdir ?? (c.WorkingDir || '/'),
      ...(user ? { user } : {}),
      ...(entrypoint.length ? { entrypointLength: entrypoint.length } : {}),
      hostname: o.hostname ?? (pod?.share.includes('uts') ? pod.hostname : id.slice(0, 12)),
      mounts,
      autoRemove: o.autoRemove ?? false,
      labels: { ...(c.Labels ?? {}), ...(o.labels ?? {}) },
      stopSignal: (o.stopSignal ?? c.StopSignal)?.replace(/^SIG/i, '').toUpperCase() || 'TERM',
      stopTimeout: o.stopTimeout ?? 10,
      createCommand: o.createCommand,
      network,
      pod: pod?.id ?? o.infraOf,
      infraOf: o.infraOf,
      ...(o.tty ? { tty: true } : {}),
      ...(o.interactive ? { stdin: true } : {}),
      ...(resources ? { resources } : {}),
      ...(restartPolicy ? { restartPolicy } : {}),
      ...(securityOpt.length ? { securityOpt } : {}),
    };
    return withLock(
      this.paths.namesLock,
      async () => {
        if (o.name === undefined) {
          do config.name = randomName();
          while (this.allRecords().some((r) => r.config.name === config.name));
        } else if (this.allRecords().some((r) => r.config.name === config.name)) {
          throw new FerryError('EEXIST', `the container name "${config.name}" is already in use: remove that container or choose another name`);
        }
        // Named volumes that do not exist yet are created, as Podman does.
        for (const m of mounts) if (m.type === 'volume') this.volumes.create(m.source, {}, { ifMissing: true, anonymous: m.anonymous });
        const rec: ContainerRecord = { config, state: initialState() };
        const tmp = path.join(this.paths.containers, `.tmp-${id}`);
        mkdirp(path.join(tmp, 'userdata'), 0o700);
        writeJsonAtomic(path.join(tmp, 'container.json'), rec, 0o600);
        fs.renameSync(tmp, this.paths.containerDir(id)); // the container exists from here on
        this.event(rec, 'create');
        return rec;
      },
      { what: 'the container name registry' },
    );
  }

  /** Host ports no container here has asked for: free on this host, and taken by no record. */
  private async freeHostPort(taken: Set<number>): Promise<number> {
    let host: number;
    do host = await freePort();
    while (taken.has(host));
    taken.add(host);
    return host;
  }

  private takenHostPorts(net: NetworkConfig): Set<number> {
    const taken = new Set(this.allRecords().flatMap((r) => (r.config.network?.ports ?? []).map((p) => p.hostPort)));
    for (const p of net.ports) taken.add(p.hostPort);
    return taken;
  }

  /** -p CTRPORT (no host port): a free host port for each, as Podman picks them. */
  async pickHostPorts(net: NetworkConfig): Promise<void> {
    if (!net.ports.some((p) => p.hostPort === 0)) return;
    const taken = this.takenHostPorts(net);
    for (const p of net.ports) if (p.hostPort === 0) p.hostPort = await this.freeHostPort(taken);
  }

  /** -P: each port the image exposes and -p left out, on a free host port (as Podman picks them). */
  private async publishAll(exposed: Record<string, object>, net: NetworkConfig): Promise<string[]> {
    const taken = this.takenHostPorts(net);
    const out: string[] = [];
    for (const key of Object.keys(exposed)) {
      const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(key);
      if (!m) continue; // ranges and other protocols: not published
      const port = Number(m[1]);
      const proto = (m[2] ?? 'tcp').toLowerCase();
      if (port < 1 || port > 65535 || net.ports.some((p) => p.containerPort === port && p.protocol === proto)) continue;
      out.push(`${await this.freeHostPort(taken)}:${port}/${proto}`);
    }
    return out;
  }

  private parseNetwork(o: CreateOptions): NetworkConfig {
    const want = o.network ?? 'bridge';
    const ports = (o.publish ?? []).map(parsePublish);
    const seen = new Set<string>();
    for (const p of ports.filter((x) => x.hostPort !== 0)) {
      const k = `${p.hostIP ?? ''}:${p.hostPort}/${p.protocol}`;
      if (seen.has(k)) throw new FerryError('EINVAL', `host port ${p.hostPort}/${p.protocol} is published twice`);
      seen.add(k);
    }
    if (want === 'none' || want === 'host') {
      if (o.ip || o.mac || ports.length || o.networkAliases?.length) throw new FerryError('EINVAL', `--ip, --mac-address, --publish and --network-alias need a bridge network, not --network ${want}`);
      return { mode: want, ports: [] };
    }
    const name = want === 'bridge' ? DEFAULT_NETWORK : want;
    const net = this.networks.get(name);
    const aliases = [...new Set(o.networkAliases ?? [])];
    for (const a of aliases) if (!validName(a)) throw new FerryError('EINVAL', `invalid --network-alias "${a}": use letters, digits, '_', '.', '-', starting with a letter or digit`);
    if (aliases.length && !net.dns_enabled) throw new FerryError('EINVAL', `--network-alias needs a network with DNS, and network ${name} has none: create one with \`ferry network create NAME\` and run with --network NAME`);
    if (o.ip !== undefined) {
      if (parseIPv4(o.ip) === undefined) throw new FerryError('EINVAL', `invalid --ip "${o.ip}": give an IPv4 address`);
      if (!net.subnets.some((s) => inSubnet(o.ip!, s.subnet))) throw new FerryError('EINVAL', `--ip ${o.ip} is not in network ${name}'s subnet ${net.subnets[0]!.subnet}`);
      if (net.subnets.some((s) => s.gateway === o.ip)) throw new FerryError('EINVAL', `--ip ${o.ip} is the gateway of network ${name}: choose another`);
    }
    if (o.mac !== undefined && !validMac(o.mac)) throw new FerryError('EINVAL', `invalid --mac-address "${o.mac}": give six hex pairs such as 02:42:ac:11:00:02 (unicast)`);
    return { mode: 'bridge', name, ip: o.ip, mac: o.mac?.toLowerCase(), ports, ...(aliases.length ? { aliases } : {}) };
  }

  private parseMounts(volumes: string[], tmpfs: string[]): MountSpec[] {
    const out: MountSpec[] = [];
    for (const v of volumes) {
      const parts = v.split(':');
      if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1]) {
        throw new FerryError('EINVAL', `invalid volume "${v}": use -v NAME:/path, -v /host/path:/path, optionally with :ro`);
      }
      const [src, dst, opt] = parts as [string, string, string | undefined];
      if (!dst.startsWith('/')) throw new FerryError('EINVAL', `invalid volume "${v}": the container path must be absolute`);
      const options = opt ? opt.split(',') : [];
      for (const o of options) if (!['ro', 'rw', 'z', 'Z'].includes(o)) throw new FerryError('EINVAL', `invalid volume option "${o}" in "${v}": use ro or rw`);
      if (src.startsWith('/') || src.startsWith('.')) {
        const abs = path.resolve(src);
        if (!fs.existsSync(abs)) throw new FerryError('ENOTFOUND', `bind mount source ${abs} does not exist: create it first`);
        out.push({ type: 'bind', source: abs, destination: path.posix.normalize(dst), options });
      } else {
        if (!validName(src)) throw new FerryError('EINVAL', `invalid volume name "${src}"`);
        out.push({ type: 'volume', source: src, destination: path.posix.normalize(dst), options });
      }
    }
    for (const t of tmpfs) {
      const [dst, opts] = t.split(':') as [string, string | undefined];
      if (!dst?.startsWith('/')) throw new FerryError('EINVAL', `invalid --tmpfs "${t}": use an absolute path, optionally with :options`);
      out.push({ type: 'tmpfs', source: '', destination: path.posix.normalize(dst), options: opts ? opts.split(',') : [] });
    }
    return out;
  }

  /**
   * Mounts the rootfs, brings up the network and writes the OCI bundle for the container's
   * next start or restore.
   */
  async prepareBundle(rec: ContainerRecord, net: NetworkRequest = {}, consoleSize?: ConsoleSize): Promise<void> {
    const id = rec.config.id;
    const img = this.images.list().find((i) => i.Id === rec.config.imageId);
    if (!img) throw new FerryError('ENOTFOUND', `the image of container ${rec.config.name} (${rec.config.imageName}) is gone: import it again`);
    const layer = this.paths.layer(id);
    createLayer(layer.dir);
    if (rec.config.rootMode !== undefined) fs.chmodSync(layer.upper, rec.config.rootMode & 0o7777);
    await mountLayer(layer, this.images.lowerDirs(img));
    const bundle = this.paths.bundle(id);
    mkdirp(bundle, 0o700);
    fs.rmSync(path.join(this.paths.conmon(id).persistDir, 'oom'), { force: true }); // a new run: no OOM kill yet
    await this.setupNetwork(rec, net);
    // A pod member joins its infra's namespaces (started first if need be).
    let joined: Partial<Record<'network' | 'ipc' | 'uts', string>> | undefined;
    if (rec.config.pod && !rec.config.infraOf) {
      const pod = findPod(this, rec.config.pod);
      if (!pod) throw new FerryError('ENOTFOUND', `the pod of container ${rec.config.name} is gone: remove the container`);
      joined = podNamespaces(pod, await this.ensureInfra(this, pod));
    }
    const ip = rec.state.net?.ip;
    const etc: Mount[] = [];
    for (const [file, content, always] of [
      ['hostname', `${rec.config.hostname}\n`, false],
      ['hosts', `127.0.0.1\tlocalhost\n::1\tlocalhost\n${ip ?? '127.0.1.1'}\t${rec.config.hostname} ${rec.config.name}\n`, true],
      ['resolv.conf', containerResolvConf(readText('/etc/resolv.conf') ?? '', this.networkDns(rec)), false],
    ] as const) {
      const p = path.join(bundle, file);
      if (always || !fs.existsSync(p)) writeFileAtomic(p, content, 0o644, false);
      etc.push({ destination: `/etc/${file}`, type: 'bind', source: p, options: ['rbind', 'rprivate'] });
    }
    const mounts: Mount[] = [...etc];
    for (const dest of rec.config.engineMounts ?? []) {
      const p = path.join(bundle, engineMountFile(dest));
      if (ENGINE_MOUNTS[dest] === 'dir') mkdirp(p, 0o1777);
      else if (!fs.existsSync(p)) writeFileAtomic(p, dest === '/run/.containerenv' ? containerEnv(rec) : '', 0o644, false);
      const opts = dest === '/dev/shm' ? ['rbind', 'rprivate', 'nosuid', 'noexec', 'nodev'] : ['rbind', 'rprivate'];
      mounts.push({ destination: dest, type: 'bind', source: p, options: opts });
    }
    for (const m of rec.config.mounts) {
      if (m.type === 'tmpfs') {
        mounts.push({ destination: m.destination, type: 'tmpfs', source: 'tmpfs', options: ['rw', 'nosuid', 'nodev', ...m.options] });
      } else {
        const src = m.type === 'volume' ? this.volumes.get(m.source).Mountpoint : m.source;
        mounts.push({ destination: m.destination, type: 'bind', source: src, options: ['rbind', 'rprivate', m.options.includes('ro') ? 'ro' : 'rw'] });
      }
    }
    for (const m of rec.config.mounts) if (m.type === 'volume' && m.anonymous) await this.copyUp(m.source, layer.merged, m.destination);
    // The user is looked up in the container's own files, as runc does, at each start.
    const user = rec.config.user ? resolveUser(layer.merged, rec.config.user) : undefined;
    const home = user?.home ?? '/root';
    const env = rec.config.env.some((e) => e.startsWith('HOME=')) ? rec.config.env : [...rec.config.env, `HOME=${home}`];
    const spec = buildSpec({
      rootfs: layer.merged,
      args: rec.config.command,
      env,
      user,
      cwd: rec.config.workdir,
      hostname: rec.config.hostname,
      mounts,
      namespacePaths: joined ?? (rec.state.net ? { network: rec.state.net.netnsPath } : undefined),
      hostNetwork: rec.config.network?.mode === 'host',
      cgroupsPath: this.paths.cgroup(id),
      terminal: !!rec.config.tty,
      consoleSize,
      annotations: { 'io.ferry.name': rec.config.name, [CRIU_CONFIG_ANNOTATION]: path.join(bundle, CRIU_CONFIG_FILE) },
      ...specResources(rec.config.resources),
      allowIoUring: rec.config.securityOpt?.includes('seccomp=unconfined'),
    });
    // The bundle is made anew at every start and restore: no fsync (see writeFileAtomic).
    writeFileAtomic(path.join(bundle, 'config.json'), specJson(spec), 0o644, false);
    mkdirp(this.paths.runDir(id), 0o700);
  }

  /** The exit command conmon runs when the container exits: `ferry container cleanup ID`. */
  exitCommand(id: string): string[] | undefined {
    if (!this.self) return undefined;
    const runtime = this.runtimeOpt ? ['--runtime', this.runtime.runc] : [];
    return [...this.self, '--root', this.paths.root, '--runroot', this.paths.runroot, ...runtime, 'container', 'cleanup', id];
  }

  /**
   * Starts a container; `address` asks for the IP/MAC it had before (a pod's restored infra).
   * `attach` connects this process's stdio to it before its process starts (nothing of its
   * output is lost); the session is handed to onAttach.
   */
  async start(ref: string, o: StartOptions = {}): Promise<ContainerRecord> {
    this.requireRuntime();
    if (o.attach) attachHelper();
    return this.withContainer(ref, async (rec) => {
      if (rec.state.status === 'running') {
        if (o.attach) o.attach.onAttach(await openAttach(this.paths.bundle(rec.config.id), this.attachRequest(rec, o.attach)));
        return rec;
      }
      if (rec.state.status === 'paused') throw new FerryError('ESTATE', `container ${rec.config.name} is paused: unpause it instead`);
      if (!o.byPolicy) delete rec.state.restartCount; // started by hand: its policy counts afresh
      else if (!rec.state.restarting) return rec; // stopped (or started) meanwhile: the policy's turn is over
      // A checkpointed container starts afresh, as with Podman; its checkpoint stays for restore.
      this.beginOp(rec, 'start', {});
      let session: AttachSession | undefined;
      try {
        await this.runtime.delete(rec.config.id, true); // stale runc state from a crash
        await this.prepareBundle(rec, { ip: o.address?.ip ?? rec.config.network?.ip, mac: o.address?.mac ?? rec.config.network?.mac }, o.attach?.consoleSize);
        const started = await this.runtime.createWithConmon({
          id: rec.config.id,
          name: rec.config.name,
          paths: this.paths.conmon(rec.config.id),
          exitCommand: this.exitCommand(rec.config.id),
          terminal: !!rec.config.tty,
          stdin: !!rec.config.stdin,
        });
        if (o.attach) {
          session = await openAttach(this.paths.bundle(rec.config.id), this.attachRequest(rec, o.attach));
          o.attach.onAttach(session);
        }
        await this.runtime.start(rec.config.id);
        toRunning(rec.state, started);
        this.endOp(rec);
        this.event(rec, o.byPolicy ? 'restart' : 'start');
        return rec;
      } catch (e) {
        session?.close();
        await this.runtime.kill(rec.config.id, 'KILL').catch(() => undefined);
        await this.releaseRuntime(rec).catch(() => undefined);
        rec.state.error = (e as Error).message;
        this.endOp(rec);
        throw e;
      }
    });
  }

  /** Waits for conmon to record the container's exit; returns the exit code or undefined on timeout. */
  async waitExit(rec: ContainerRecord, timeoutMs: number): Promise<number | undefined> {
    // conmon writes the exit file first, then runs its exit command (which may wait for our
    // lock), so the file is the signal to wait for. After a dump it is usually there already or
    // within a few milliseconds: polled from 1 ms up, not only every 20.
    const ok = await waitFor(() => this.readExitCode(rec.config.id) !== undefined || !processAlive(rec.state.conmonPid, rec.state.conmonStartTime), timeoutMs, 20, 1);
    if (!ok) return undefined;
    await waitFor(() => this.readExitCode(rec.config.id) !== undefined, 1000);
    return this.readExitCode(rec.config.id)?.code ?? -1;
  }

  /** Stops a running container: its stop signal, then SIGKILL after timeoutSec. Caller holds the lock. */
  async stopLocked(rec: ContainerRecord, timeoutSec: number): Promise<void> {
    if (rec.state.status !== 'running' && rec.state.status !== 'paused') return;
    rec.state.stoppedByUser = true; // not a failure: its restart policy leaves it stopped
    this.beginOp(rec, 'stop', {});
    const id = rec.config.id;
    let code: number | undefined;
    if (timeoutSec > 0) {
      await this.runtime.kill(id, rec.config.stopSignal);
      code = await this.waitExit(rec, timeoutSec * 1000);
    }
    if (code === undefined) {
      await this.runtime.kill(id, 'KILL', true);
      // A frozen task dies only once thawed.
      if ((await this.runtime.state(id))?.status === 'paused') await this.runtime.resume(id).catch(() => undefined);
      code = await this.waitExit(rec, 10_000);
    }
    const oom = this.oomKilled(id);
    await this.releaseRuntime(rec);
    toExited(rec.state, code ?? 137);
    if (oom) rec.state.oomKilled = true;
    this.endOp(rec);
    this.event(rec, 'died', { containerExitCode: String(rec.state.exitCode) });
  }

  async stop(ref: string, timeoutSec?: number): Promise<ContainerRecord> {
    return this.withContainer(ref, async (rec) => {
      const live = rec.state.status === 'running' || rec.state.status === 'paused';
      if (rec.state.restarting) {
        // Between an exit and its policy's restart: stopping means it stays stopped.
        delete rec.state.restarting;
        rec.state.stoppedByUser = true;
        this.save(rec);
      }
      await this.stopLocked(rec, timeoutSec ?? rec.config.stopTimeout);
      if (live) this.event(rec, 'stop');
      await this.autoRemove(rec);
      return rec;
    });
  }

  /** Stops the container if it runs (as stop), then starts it again. */
  async restart(ref: string, timeoutSec?: number): Promise<ContainerRecord> {
    await this.withContainer(ref, (rec) => this.stopLocked(rec, timeoutSec ?? rec.config.stopTimeout));
    const rec = await this.start(ref);
    this.event(rec, 'restart');
    return rec;
  }

  async kill(ref: string, signal = 'KILL'): Promise<ContainerRecord> {
    const sig = signal.replace(/^SIG/i, '').toUpperCase();
    if (!/^([0-9]+|[A-Z0-9+-]+)$/.test(sig)) throw new FerryError('EINVAL', `invalid signal "${signal}"`);
    return this.withContainer(ref, async (rec) => {
      if (rec.state.status !== 'running' && rec.state.status !== 'paused') {
        throw new FerryError('ESTATE', `container ${rec.config.name} is not running: start it first`);
      }
      // As Podman: a container the user signalled is not restarted by its policy when it dies.
      if (rec.config.restartPolicy && !rec.state.stoppedByUser) {
        rec.state.stoppedByUser = true;
        this.save(rec);
      }
      const r = await this.runtime.kill(rec.config.id, sig);
      if (r.code !== 0) throw new FerryError('ERUNTIME', `could not send ${sig} to ${rec.config.name}: ${r.stderr.trim().split('\n').pop()}`);
      this.event(rec, 'kill', { signal: sig });
      return rec;
    });
  }

  /** Freezes every process of a running container (Podman's pause). */
  async pause(ref: string): Promise<ContainerRecord> {
    return this.withContainer(ref, async (rec) => {
      if (rec.state.status === 'paused') throw new FerryError('ESTATE', `container ${rec.config.name} is already paused`);
      if (rec.state.status !== 'running') throw new FerryError('ESTATE', `container ${rec.config.name} is not running: only a running container can be paused`);
      await this.runtime.pause(rec.config.id);
      toPaused(rec.state);
      this.save(rec);
      this.event(rec, 'pause');
      return rec;
    });
  }

  /** Thaws a paused container. */
  async unpause(ref: string): Promise<ContainerRecord> {
    return this.withContainer(ref, async (rec) => {
      if (rec.state.status !== 'paused') throw new FerryError('ESTATE', `container ${rec.config.name} is not paused`);
      await this.runtime.resume(rec.config.id);
      // A migration's frozen copy had its traffic held: it flows again (no chain, nothing to do).
      if (rec.state.trafficHeld && rec.state.net) await releaseTraffic(rec.state.net.netnsPath).catch(() => undefined);
      toUnpaused(rec.state);
      this.save(rec);
      this.event(rec, 'unpause');
      return rec;
    });
  }

  async remove(ref: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<ContainerRecord> {
    return this.withContainer(ref, async (rec) => {
      if (rec.config.infraOf && findPod(this, rec.config.infraOf) && !opts.force) {
        throw new FerryError('ESTATE', `container ${rec.config.name} is the infra container of a pod: remove the pod with \`ferry pod rm\``);
      }
      if ((rec.state.status === 'running' || rec.state.status === 'paused') && !opts.force) {
        throw new FerryError('ESTATE', `container ${rec.config.name} is running: stop it first or use --force`);
      }
      await this.stopLocked(rec, 0);
      await this.removeFiles(rec, { volumes: opts.volumes });
      // Without its infra a pod is gone too.
      if (rec.config.infraOf) removePodRecord(this, rec.config.infraOf);
      return rec;
    });
  }

  /**
   * An anonymous volume's first start: the image's files at its path are copied in (as Podman
   * does), unless the path leads out of the rootfs or is not a directory.
   */
  private async copyUp(volume: string, rootfs: string, dest: string): Promise<void> {
    const v = this.volumes.find(volume);
    if (!v?.NeedsCopyUp) return;
    let src: string | undefined;
    try {
      const real = fs.realpathSync(path.join(rootfs, dest));
      const root = fs.realpathSync(rootfs);
      if (real.startsWith(`${root}/`) && fs.statSync(real).isDirectory()) src = real;
    } catch {
      src = undefined;
    }
    if (src) await runOk(['cp', '-a', '--', `${src}/.`, v.Mountpoint], { what: `copying the image's ${dest} into its volume` });
    this.volumes.copiedUp(volume);
  }

  /** Deletes every file of a stopped container (caller holds the lock); its anonymous volumes too with --rm or `rm -v`. */
  async removeFiles(rec: ContainerRecord, opts: { volumes?: boolean } = {}): Promise<void> {
    const id = rec.config.id;
    this.beginOp(rec, 'remove', {});
    await this.releaseRuntime(rec);
    await removeLayer(this.paths.layer(id));
    // Renaming the directory away (into the trash) is the commit point: from then on the
    // container is gone; its files (a checkpoint's pages) are deleted in the background.
    this.discard(this.paths.containerDir(id));
    fs.rmSync(this.paths.runDir(id), { recursive: true, force: true });
    fs.rmSync(this.exitFile(id), { force: true });
    fs.rmSync(this.paths.containerLock(id), { force: true });
    fs.rmSync(this.paths.attachLock(id), { force: true });
    this.event(rec, 'remove');
    if (opts.volumes || rec.config.autoRemove) {
      for (const m of rec.config.mounts) {
        if (m.type !== 'volume' || !m.anonymous) continue;
        if (this.allRecords().some((r) => r.config.mounts.some((x) => x.type === 'volume' && x.source === m.source))) continue;
        if (this.volumes.find(m.source)) this.volumes.remove(m.source);
      }
    }
  }

  /**
   * conmon's exit command: record the exit, unmount, and remove --rm containers; then, as
   * Podman's cleanup does, start the container again when its restart policy says so.
   */
  async cleanup(ref: string): Promise<void> {
    const rec = this.find(ref);
    if (!rec) return;
    let restart = false;
    // A foreground `run --rm` holds this until it has read the exit code: let it finish first.
    if (rec.config.autoRemove) await withLock(this.paths.attachLock(rec.config.id), async () => undefined, { timeoutMs: 600_000 }).catch(() => undefined);
    await this.withContainer(
      ref,
      async (r) => {
        // conmon runs this after writing the exit file, and waits for it: the exit file and runc
        // say the container is gone (as Podman's cleanup does; sync() above may have recorded it
        // already): release the network and the rootfs now, not at the next command.
        if (this.readExitCode(r.config.id) === undefined || r.state.op) return;
        if (r.state.status === 'running' || r.state.status === 'paused') {
          const rs = await this.runtime.state(r.config.id);
          if (rs && rs.status !== 'stopped') return;
          await this.recordExit(r);
        } else if (r.state.status === 'exited') {
          // Dumped by a checkpoint, which left runc's record of it (and its cgroups) to this.
          await this.runtime.delete(r.config.id, true);
        }
        // This exit (the exit file goes at the next start), recorded here or by a command that
        // synced first while conmon waited for us: the restart policy decides, once.
        if (r.state.status === 'exited' && !r.state.restarting) {
          restart = this.restartWanted(r);
          if (restart) {
            r.state.restartCount = (r.state.restartCount ?? 0) + 1;
            r.state.restarting = true;
            this.save(r);
          }
        }
      },
      { timeoutMs: 600_000 },
    ).catch(() => undefined);
    if (restart) {
      await this.start(rec.config.id, { byPolicy: true }).catch(async (e: Error) => {
        // Nothing to report to: the reason stays in the container's state.
        await this.withContainer(rec.config.id, async (r) => {
          r.state.error = `its restart policy could not start it again: ${e.message}`;
          delete r.state.restarting;
          this.save(r);
        }).catch(() => undefined);
      });
    }
  }

  /** Whether a container that just exited by itself is started again by its --restart policy. */
  private restartWanted(rec: ContainerRecord): boolean {
    const p = rec.config.restartPolicy;
    const s = rec.state;
    if (!p || p.Name === 'no' || s.stoppedByUser || s.checkpointed || s.status !== 'exited') return false;
    if (p.Name === 'on-failure') return s.exitCode !== 0 && (p.MaximumRetryCount === 0 || (s.restartCount ?? 0) < p.MaximumRetryCount);
    return true; // always, unless-stopped
  }

  /** All containers, with state brought up to date for those whose process died unseen. */
  async list(opts: { all?: boolean } = {}): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    for (const rec of this.allRecords()) {
      let r: ContainerRecord | undefined = rec;
      if (this.looksDead(rec) || (rec.state.op && !processAlive(rec.state.op.pid, rec.state.op.startTime))) {
        r = await this.trySync(rec.config.id);
      }
      if (r && (opts.all || r.state.status === 'running' || r.state.status === 'paused')) out.push(r);
    }
    return out.sort((a, b) => b.config.created.localeCompare(a.config.created));
  }

  /**
   * Syncs one container once its lock is free; if it stays taken, returns what is recorded.
   * Only called for a record that is stale (dead conmon, or an op whose ferry died): whoever
   * holds the lock is finishing or repairing it, so wait for that rather than show a dead
   * container as running.
   */
  private async trySync(id: string): Promise<ContainerRecord | undefined> {
    let lock: FileLock | undefined;
    try {
      lock = await FileLock.acquire(this.paths.containerLock(id), { timeoutMs: 15_000 });
    } catch {
      return this.load(id);
    }
    try {
      const rec = this.load(id);
      if (rec) await this.sync(rec);
      return this.load(id);
    } finally {
      lock.release();
    }
  }

  async inspect(ref: string): Promise<ContainerRecord> {
    const rec = this.lookup(ref);
    const op = rec.state.op;
    if (this.looksDead(rec) || (op && !processAlive(op.pid, op.startTime))) return (await this.trySync(rec.config.id)) ?? rec;
    return rec;
  }

  /** What the attach helper is asked for a container: stdin only where the container keeps one open. */
  attachRequest(rec: ContainerRecord, o: AttachOptions): AttachRequest {
    return { stdin: !o.noStdin && !!rec.config.stdin, tty: !!rec.config.tty, detachKeys: o.detachKeys };
  }

  /**
   * Connects this process's stdio to a running container (Podman's attach): its output from now
   * on, our stdin to its stdin (when it was created with -i), our terminal's size to its terminal.
   */
  async attach(ref: string, o: AttachOptions): Promise<AttachSession> {
    const rec = await this.inspect(ref);
    if (rec.state.status !== 'running' && rec.state.status !== 'paused') {
      throw new FerryError('ESTATE', `container ${rec.config.name} is not running: start it with \`ferry start -a ${rec.config.name}\``);
    }
    return openAttach(this.paths.bundle(rec.config.id), this.attachRequest(rec, o));
  }

  /**
   * Runs a command in a running container and returns its exit code. With a terminal it runs
   * under a conmon of its own (as Podman's exec): our terminal is attached to it as to a
   * container's, with detach keys (a detached session goes on; 0 is returned) and resizes.
   */
  async exec(ref: string, argv: string[], o: ExecOptions): Promise<number> {
    const rec = await this.inspect(ref);
    if (rec.state.status !== 'running') throw new FerryError('ESTATE', `container ${rec.config.name} is not running: start it first`);
    if (!argv.length) throw new FerryError('EINVAL', 'exec needs a command to run');
    for (const e of o.env) if (e.indexOf('=') <= 0) throw new FerryError('EINVAL', `invalid environment variable "${e}": use KEY=VALUE`);
    if (!o.tty) {
      o.onSession?.({ resize: () => undefined });
      return this.runtime.exec(rec.config.id, argv, o);
    }
    attachHelper();
    const id = rec.config.id;
    // The session's files (a detached one's stay until the container is removed).
    const dir = path.join(this.paths.runDir(id), `exec-${randomBytes(6).toString('hex')}`);
    let x;
    try {
      x = await execWithConmon(this.runtime, {
        id,
        bundle: this.paths.bundle(id),
        dir,
        socketDir: this.paths.conmon(id).socketDir,
        argv,
        env: mergeEnv(rec.config.env, o.env),
        cwd: o.workdir,
        terminal: true,
        stdin: o.stdin,
        attach: (d) => openAttach(d, { stdin: o.stdin, tty: true, detachKeys: o.detachKeys ?? Buffer.from([16, 17]) }, o.io),
      });
      if (o.consoleSize) resizeTerminal(dir, o.consoleSize.height, o.consoleSize.width);
      o.onSession?.({ resize: (rows, cols) => void resizeTerminal(dir, rows, cols) });
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    try {
      if ((await x.session.done) === 'detached') {
        x.release();
        return 0;
      }
      const code = await x.exitCode;
      fs.rmSync(dir, { recursive: true, force: true });
      return code;
    } finally {
      x.session.close();
    }
  }

  // ---------------------------------------------------------------- images and volumes

  async importImage(tarball: string, name?: string): Promise<ImageRecord> {
    mkdirp(this.paths.images, 0o700);
    return withLock(this.paths.imagesLock, () => this.images.importTarball(tarball, name), { what: 'the image store' });
  }

  /**
   * Pulls an image from a registry (the whole pull holds the image store's lock). A failure
   * frees every layer and blob it stored, so nothing is left of it.
   */
  async pullImage(ref: string, o: PullOptions & { authfile?: string }): Promise<ImageRecord> {
    const r = parseReference(ref);
    const creds = o.creds ?? lookupCredentials(r.domain, o.authfile);
    mkdirp(this.paths.images, 0o700);
    return withLock(
      this.paths.imagesLock,
      async () => {
        try {
          return await pullImage(this.images, r, { ...o, creds });
        } catch (e) {
          this.images.collect();
          throw e;
        }
      },
      { what: 'the image store', timeoutMs: 600_000 },
    );
  }

  /**
   * The image a container is made from, pulled as `--pull` says: always, missing (the
   * default: only when no local image has the name) or never. Short names are local only.
   */
  async imageForRun(ref: string, policy: 'always' | 'missing' | 'never' = 'missing', o: PullOptions & { authfile?: string } = { tlsVerify: true }): Promise<ImageRecord> {
    if (!['always', 'missing', 'never'].includes(policy)) throw new FerryError('EINVAL', `invalid --pull "${policy}": use always, missing or never`);
    const local = this.images.find(ref);
    const plain = ref.split('@')[0]!.replace(/:[\w][\w.-]*$/, '');
    const pullable = !isShortName(plain) && !/^localhost(\/|$)/.test(plain) && !/^(sha256:)?[0-9a-f]{3,64}$/.test(ref);
    if (policy === 'never' || !pullable) {
      if (local) return local;
      if (!pullable && !/^(sha256:)?[0-9a-f]{3,64}$/.test(ref) && isShortName(plain)) throw shortNameError(ref, true);
      return this.images.get(ref);
    }
    if (local && policy === 'missing') return local;
    return this.pullImage(ref, o);
  }

  /**
   * Pushes an image to a registry: to DEST, or to the image's own name when it names a
   * registry. Returns the manifest digest.
   */
  async pushImage(ref: string, dest: string | undefined, o: ClientOptions & Pick<PullOptions, 'progress' | 'bytes'> & { authfile?: string }): Promise<string> {
    const img = this.images.get(ref);
    let target = dest;
    if (target === undefined) {
      let n: string | undefined;
      try {
        n = normalizeImageName(ref);
      } catch {
        n = undefined;
      }
      target = img.Names.find((x) => x === ref || x === n);
      if (!target || target.startsWith('localhost/')) throw new FerryError('EINVAL', `image ${ref} names no registry: give a destination, e.g. \`ferry push ${ref} REGISTRY[:PORT]/NAME[:TAG]\``);
    }
    const r = parseReference(target.replace(/^docker:\/\//, ''));
    const creds = o.creds ?? lookupCredentials(r.domain, o.authfile);
    return pushImage(this.images, img, r, { ...o, creds });
  }

  /** `ferry login`: checks the credentials against the registry, then records them. */
  async login(registry: string, creds: Credentials, o: { tlsVerify: boolean; authfile?: string }): Promise<string> {
    const domain = registryDomain(registry);
    await new RegistryClient({ domain, path: '' }, { tlsVerify: o.tlsVerify, creds }).check();
    const file = o.authfile ?? defaultAuthFile();
    storeCredentials(file, domain, creds);
    return domain;
  }

  /** `ferry load`: images from an archive stream or an OCI layout directory. */
  async loadImages(input: { dir: string } | { stream: Readable }): Promise<{ img: ImageRecord; names: string[] }[]> {
    mkdirp(this.paths.images, 0o700);
    return withLock(this.paths.imagesLock, () => loadImages(this.images, input), { what: 'the image store', timeoutMs: 600_000 });
  }

  /** `ferry save`: images as an archive written to `out`, or an OCI layout at `dir`. */
  async saveImages(refs: string[], format: SaveFormat, target: { dir: string } | { out: Writable }): Promise<void> {
    if (!SAVE_FORMATS.includes(format)) throw new FerryError('EINVAL', `invalid --format "${format}": use ${SAVE_FORMATS.join(', ')}`);
    return withLock(
      this.paths.imagesLock,
      async () => {
        const imgs = refs.map((r) => {
          const img = this.images.get(r);
          let n: string | undefined;
          try {
            n = normalizeImageName(r);
          } catch {
            n = undefined;
          }
          return { img, name: img.Names.find((x) => x === r || x === n) ?? img.Names[0] };
        });
        await saveImages(this.images, imgs, format, target);
      },
      { what: 'the image store', timeoutMs: 600_000 },
    );
  }

  /** Containers (names) made from each image ID. */
  imageUsers(): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const r of this.allRecords()) m.set(r.config.imageId, [...(m.get(r.config.imageId) ?? []), r.config.name]);
    return m;
  }

  /** `ferry tag`: more names for an image (a name another image had moves to this one). */
  async tagImage(ref: string, targets: string[]): Promise<ImageRecord> {
    const names = targets.map((t) => {
      if (t.includes('@')) throw new FerryError('EINVAL', `cannot tag with a digest ("${t}"): give NAME[:TAG]`);
      return normalizeImageName(t);
    });
    return withLock(
      this.paths.imagesLock,
      async () => {
        const img = this.images.get(ref);
        for (const n of names) this.images.tag(img, n);
        return img;
      },
      { what: 'the image store' },
    );
  }

  /** `ferry image prune`: images without a name (with all: every image) that no container uses. */
  async pruneImages(all: boolean): Promise<string[]> {
    return withLock(
      this.paths.imagesLock,
      async () => {
        const used = this.imageUsers();
        const gone: string[] = [];
        for (const img of this.images.list()) {
          if (used.has(img.Id) || (!all && img.Names.length)) continue;
          this.images.remove(img.Id);
          gone.push(img.Id);
        }
        return gone;
      },
      { what: 'the image store' },
    );
  }

  /**
   * Podman's rmi: a name of an image that has others only loses that name; otherwise the image
   * goes (refused while containers use it, unless force removes them), and with it every layer
   * no other image uses.
   */
  /** `all`: an image with several names goes whole when named by ID (`rmi -a`). */
  async removeImage(ref: string, force = false, all = false): Promise<{ untagged: string[]; deleted?: string }> {
    return withLock(
      this.paths.imagesLock,
      async () => {
        const img = this.images.get(ref);
        let byName: string | undefined;
        try {
          const n = normalizeImageName(ref);
          byName = img.Names.find((x) => x === ref || x === n);
        } catch {
          byName = undefined;
        }
        if (byName && img.Names.length > 1) {
          this.images.untag(img, byName);
          return { untagged: [byName] };
        }
        if (!byName && img.Names.length > 1 && !force && !all) {
          throw new FerryError('ESTATE', `image ${ref} has several names (${img.Names.join(', ')}): remove them by name, or use --force`);
        }
        const users = this.allRecords().filter((r) => r.config.imageId === img.Id);
        if (users.length && !force) {
          throw new FerryError('ESTATE', `image ${ref} is in use by container ${users.map((u) => u.config.name).join(', ')}: remove them first or use --force`);
        }
        for (const u of users) await this.remove(u.config.id, { force: true });
        this.images.remove(img.Id);
        return { untagged: img.Names, deleted: img.Id };
      },
      { what: 'the image store' },
    );
  }

  async removeVolume(name: string, force = false): Promise<void> {
    await withLock(
      this.paths.volumesLock,
      async () => {
        this.volumes.get(name);
        const users = this.allRecords().filter((r) => r.config.mounts.some((m) => m.type === 'volume' && m.source === name));
        if (users.length && !force) {
          throw new FerryError('ESTATE', `volume ${name} is in use by container ${users.map((u) => u.config.name).join(', ')}: remove them first or use --force`);
        }
        for (const u of users) await this.remove(u.config.id, { force: true });
        this.volumes.remove(name);
      },
      { what: 'the volume store' },
    );
  }

  // ---------------------------------------------------------------- host

  async criu(): Promise<CriuInfo> {
    return probeCriu(path.join(this.paths.runroot, 'criu-features.json'));
  }

  /**
   * runc's version (recorded in every checkpoint), cached in RUNROOT keyed by the binary's
   * mtime: asking runc costs a process start on every checkpoint.
   */
  async runtimeVersion(): Promise<string> {
    const file = path.join(this.paths.runroot, 'runc-version.json');
    let mtimeMs = 0;
    try {
      mtimeMs = fs.statSync(this.runtime.runc).mtimeMs;
    } catch {
      return 'unknown';
    }
    const cached = readJsonIfExists<{ runc: string; mtimeMs: number; version: string }>(file);
    if (cached && cached.runc === this.runtime.runc && cached.mtimeMs === mtimeMs) return cached.version;
    const r = await run([this.runtime.runc, '--version']).catch(() => undefined);
    const version = r?.stdout.match(/runc version ([^\s]+)/)?.[1] ?? 'unknown';
    if (version !== 'unknown') {
      mkdirp(this.paths.runroot, 0o700);
      writeJsonAtomic(file, { runc: this.runtime.runc, mtimeMs, version });
    }
    return version;
  }

  /** Polls a container's log and exit; used by foreground run and logs --follow. */
  async running(id: string): Promise<boolean> {
    const rec = this.load(id);
    return !!rec && (rec.state.status === 'running' || rec.state.status === 'paused') && processAlive(rec.state.conmonPid, rec.state.conmonStartTime);
  }

  /** The exit code conmon recorded for the container's last run, once it has exited. */
  exitCodeOf(id: string): number | undefined {
    return this.readExitCode(id)?.code;
  }

  // ---------------------------------------------------------------- operations as the CLI and the API ask for them
  // Each takes plain options and holds the operation's whole rule, so that a command of the CLI
  // and an endpoint of the API are one call each.

  /**
   * The containers an operation acts on: the names or IDs given (each checked to exist before
   * anything is done, and returned as given), every container `--all` picks for the purpose
   * (see pickedByAll), or the newest with `--latest` (both as IDs).
   */
  async select(sel: Selection, purpose: SelectPurpose): Promise<string[]> {
    let refs = sel.refs ?? [];
    if (sel.ignoreMissing) {
      const found = refs.filter((r) => this.find(r));
      if (refs.length && !found.length) return [];
      refs = found;
    }
    checkSelection({ ...sel, refs });
    if (sel.latest) return [this.latest().config.id];
    if (sel.all) return (await this.list({ all: true })).filter((r) => pickedByAll(purpose, r.state)).map((r) => r.config.id);
    for (const r of refs) this.lookup(r); // fail before acting on any of them
    return refs;
  }

  /** `port`: the published ports of the containers picked (none named: every running one). */
  async ports(sel: Selection): Promise<{ id: string; name: string; ports: PortMapping[] }[]> {
    const ids = await this.select(sel.refs?.length || sel.latest ? sel : { all: true }, 'port');
    return ids.map((id) => this.lookup(id)).map((r) => ({ id: r.config.id, name: r.config.name, ports: r.config.network?.ports ?? [] }));
  }

  /** Gives a container a new name (running or not; its /etc/hosts gets it at the next start). */
  async rename(ref: string, name: string): Promise<ContainerRecord> {
    if (!validName(name)) throw new FerryError('EINVAL', `invalid container name "${name}": use letters, digits, '_', '.', '-', starting with a letter or digit`);
    const id = this.lookup(ref).config.id;
    return withLock(
      this.paths.namesLock,
      () =>
        this.withContainer(id, async (rec) => {
          const other = this.allRecords().find((r) => r.config.name === name);
          if (other && other.config.id !== id) throw new FerryError('EEXIST', `the container name "${name}" is already in use: remove that container or choose another name`);
          const old = rec.config.name;
          rec.config.name = name;
          this.save(rec);
          this.event(rec, 'rename', { oldName: old });
          return rec;
        }),
      { what: 'the container name registry' },
    );
  }

  /** `ps`: the live containers, or all with `all`, or only the newest (even a stopped one) with `latest`; newest first. */
  async listContainers(o: { all?: boolean; latest?: boolean } = {}): Promise<ContainerRecord[]> {
    const recs = await this.list({ all: o.all || o.latest });
    return o.latest ? recs.slice(0, 1) : recs;
  }

  /**
   * Creates and starts a container (removed again if it cannot start). Detached, that is all.
   * In the foreground the result holds an attachment: the output, signals, and the exit code.
   * A foreground --rm container is held (the attach lock) so that conmon's exit cleanup does not
   * remove it before its exit code is read; exitCode() removes it then.
   */
  async run(o: CreateOptions, r: RunOptions = {}): Promise<RunResult> {
    if (!r.detach && (o.tty || o.interactive)) attachHelper(); // missing: refused before anything is made
    const created = await this.create(o);
    const id = created.config.id;
    const lock = !r.detach && created.config.autoRemove ? await FileLock.acquire(this.paths.attachLock(id)) : undefined;
    let released = false;
    const release = (): void => {
      if (!released) lock?.release();
      released = true;
    };
    let record: ContainerRecord;
    let session: AttachSession | undefined;
    // With a terminal or stdin, this process's stdio is connected through conmon's attach socket.
    const attach = !r.detach && (created.config.tty || created.config.stdin) ? r.attach ?? { detachKeys: Buffer.from([16, 17]) } : undefined;
    try {
      record = await this.start(id, attach ? { attach: { ...attach, onAttach: (s) => (session = s) } } : {});
    } catch (e) {
      await this.remove(id, { force: true }).catch(() => undefined);
      release();
      throw e;
    }
    if (r.detach) return { record };
    // conmon waits for its exit command, which waits for the attach lock: for a held container
    // the exit file, not conmon's end, says it is done.
    const done = async (): Promise<boolean> => !(await this.running(id)) || (!!lock && this.exitCodeOf(id) !== undefined);
    const exitCode = async (): Promise<number> => {
      try {
        while (!(await done())) await sleep(100);
        const code = lock ? this.exitCodeOf(id) : undefined;
        const last = this.find(id) ? await this.inspect(id) : undefined;
        if (lock && last) await this.remove(id, { force: true }).catch(() => undefined);
        return code ?? last?.state.exitCode ?? 0;
      } finally {
        release();
      }
    };
    return {
      record,
      attached: {
        session,
        output: () => readLog(this.paths.logPath(id), { follow: true }, done),
        signal: (sig) => void this.kill(id, sig).catch(() => undefined),
        exitCode,
        release,
      },
    };
  }

  /**
   * Waits until the container no longer runs (or, with conditions, until its status is one of
   * them) and returns its exit code; refused after timeoutMs.
   */
  async wait(ref: string, o: WaitOptions = {}): Promise<number> {
    const conditions = o.conditions?.length ? o.conditions : undefined;
    for (const c of conditions ?? []) {
      if (!WAIT_CONDITIONS.includes(c)) throw new FerryError('EINVAL', `invalid wait condition "${c}": use any of ${WAIT_CONDITIONS.join(', ')}`);
    }
    const rec = this.lookup(ref);
    const id = rec.config.id;
    const end = o.timeoutMs === undefined ? Infinity : Date.now() + o.timeoutMs;
    for (;;) {
      if (conditions ? conditions.includes((await this.inspect(id)).state.status) : !(await this.running(id))) break;
      if (Date.now() >= end) {
        throw new FerryError('ESTATE', `container ${rec.config.name} did not ${conditions ? `become ${conditions.join(' or ')}` : 'stop'} within ${o.timeoutMs} ms`);
      }
      await sleep(100);
    }
    return (await this.inspect(id)).state.exitCode;
  }

  /**
   * Docker's wait conditions. not-running: until it no longer runs; next-exit: until an exit that
   * happens after this call (a container not started yet is waited for through its start);
   * removed: until it is gone (an --rm container is held meanwhile, as a foreground run holds it,
   * so that its exit code is read before its exit cleanup removes it). Returns the exit code;
   * stops waiting (EINVAL) once abort fires.
   */
  async waitCondition(ref: string, condition: 'not-running' | 'next-exit' | 'removed', abort?: AbortSignal): Promise<number> {
    const rec = this.lookup(ref);
    const id = rec.config.id;
    const since = rec.state.finishedAt;
    const started = Date.now();
    const live = (r: ContainerRecord): boolean => r.state.status === 'running' || r.state.status === 'paused';
    const lock = condition === 'removed' && rec.config.autoRemove ? await FileLock.acquire(this.paths.attachLock(id), { timeoutMs: 10_000 }).catch(() => undefined) : undefined;
    let code = rec.state.exitCode;
    try {
      for (;;) {
        if (abort?.aborted) throw new FerryError('EINVAL', 'the waiting client went away');
        if (lock) {
          // Held, its exit cleanup waits: conmon's exit file (of an exit after this call) has the code.
          const exit = this.readExitCode(id);
          if (exit && Date.parse(exit.at) >= started - 1000) {
            lock.release(); // the exit cleanup removes it now
            while (this.find(id) && !abort?.aborted) await sleep(100);
            return exit.code;
          }
        }
        const r = this.find(id);
        if (!r) return code;
        const cur = await this.inspect(id).catch(() => undefined);
        if (!cur) return code;
        code = cur.state.exitCode;
        if (condition === 'not-running' && !live(cur)) return code;
        if (condition === 'next-exit' && !live(cur) && cur.state.finishedAt !== since) return code;
        await sleep(100);
      }
    } finally {
      lock?.release();
    }
  }

  /**
   * Forwards input to a container's stdin (Docker's attach with stdin=1) through conmon's attach
   * socket, once the container runs (it may be started after the client attached); the input's
   * end closes the container's stdin. Only a container created with an open stdin (-i) takes
   * input. Resolves when the connection to the container ends (it exited) or the abort fires.
   */
  async attachInput(ref: string, input: NodeJS.ReadableStream, abort: AbortSignal): Promise<void> {
    const rec = this.lookup(ref);
    if (!rec.config.stdin) throw new FerryError('EINVAL', `container ${rec.config.name} was not created with an open stdin (-i): it takes no input`);
    const id = rec.config.id;
    const finished = rec.state.finishedAt;
    for (;;) {
      if (abort.aborted) return;
      const cur = this.load(id);
      if (!cur) return;
      if (cur.state.finishedAt !== finished) return; // it ran and exited before we could connect
      if (cur.state.status === 'running' || cur.state.status === 'paused') break;
      await sleep(50);
    }
    const drop = (): void => undefined;
    const session = await openAttach(this.paths.bundle(id), { stdin: true, tty: !!rec.config.tty, detachKeys: Buffer.alloc(0) }, { stdin: input, stdout: drop, stderr: drop });
    const onAbort = (): void => session.close();
    abort.addEventListener('abort', onAbort);
    try {
      await session.done.catch(() => undefined);
    } finally {
      abort.removeEventListener('abort', onAbort);
      session.close();
    }
  }

  /** Sets the size of a running container's terminal (Docker's resize); a container without one is refused. */
  async resize(ref: string, rows: number, cols: number): Promise<void> {
    const rec = await this.inspect(ref);
    if (rec.state.status !== 'running' && rec.state.status !== 'paused') throw new FerryError('ESTATE', `container ${rec.config.name} is not running`);
    if (!rec.config.tty) throw new FerryError('EINVAL', `container ${rec.config.name} has no terminal to resize`);
    resizeTerminal(this.paths.bundle(rec.config.id), rows, cols);
  }

  /**
   * What a client attached to a container sees (Docker's attach, without stdin): its output from
   * now on (with logs, from the start), once it has started, until it stops.
   */
  async *attachOutput(ref: string, o: { logs?: boolean; abort?: AbortSignal } = {}): AsyncGenerator<LogEntry> {
    const rec = this.lookup(ref);
    const id = rec.config.id;
    const since = new Date();
    const finished = rec.state.finishedAt;
    // Not started yet: wait for its start (or for an exit that came too quickly to see it run).
    for (;;) {
      if (o.abort?.aborted) return;
      const cur = this.load(id);
      if (!cur) return;
      if (cur.state.status === 'running' || cur.state.status === 'paused' || cur.state.finishedAt !== finished) break;
      await sleep(50);
    }
    yield* readLog(this.paths.logPath(id), { follow: true, since: o.logs ? undefined : since }, async () => !!o.abort?.aborted || !(await this.running(id)) || this.exitCodeOf(id) !== undefined);
  }

  /** A container's output: what is logged so far (picked by since/until/tail), and with follow what comes until it stops. */
  logs(ref: string, o: LogsOptions = {}): AsyncIterable<LogEntry> {
    checkLogsOptions(o);
    const id = this.lookup(ref).config.id;
    return readLog(this.paths.logPath(id), o, async () => !(await this.running(id)));
  }

  /** Removes one container of a selection made with ignoreMissing: one removed meanwhile is then no error (undefined). */
  async removeSelected(ref: string, o: { force?: boolean; ignoreMissing?: boolean; volumes?: boolean } = {}): Promise<ContainerRecord | undefined> {
    try {
      return await this.remove(ref, { force: o.force, volumes: o.volumes });
    } catch (e) {
      if (o.ignoreMissing && e instanceof FerryError && e.code === 'ENOTFOUND') return undefined;
      throw e;
    }
  }

  /** Creates a named volume; without a name it gets a random one (as Podman's). */
  createVolume(name: string | undefined, labels: Record<string, string> = {}): VolumeRecord {
    return this.volumes.create(name ?? randomBytes(32).toString('hex'), labels);
  }

  /** Creates a network (with a DNS server for its containers' names unless disableDns); only the bridge driver exists. */
  createNetwork(name: string, o: { subnet?: string; gateway?: string; driver?: string; disableDns?: boolean; labels?: Record<string, string> } = {}): NetworkRecord {
    if (o.driver !== undefined && o.driver !== 'bridge') throw new FerryError('EINVAL', `unsupported network driver "${o.driver}": only bridge`);
    return this.networks.create(name, { subnet: o.subnet, gateway: o.gateway, dns: !o.disableDns, labels: o.labels });
  }

  /** Removes a network: refused while containers use it, unless force (which removes them first). */
  async removeNetwork(name: string, force = false): Promise<void> {
    // Refused before looking at users: force must not remove the default network's containers.
    if (name === DEFAULT_NETWORK) throw new FerryError('EINVAL', `the default network "${DEFAULT_NETWORK}" cannot be removed`);
    this.networks.get(name);
    const users = (await this.list({ all: true })).filter((r) => r.config.network?.mode === 'bridge' && r.config.network.name === name);
    if (users.length && !force) throw new FerryError('ESTATE', `network ${name} is used by container ${users.map((u) => u.config.name).join(', ')}: remove them first or use --force`);
    for (const u of users) await this.remove(u.config.id, { force: true });
    this.networks.remove(name);
  }
}

export interface RunOptions {
  /** Return once the container runs, without attaching to it. */
  detach?: boolean;
  /** How a foreground container with a terminal or stdin is attached (default: ctrl-p,ctrl-q detaches). */
  attach?: AttachOptions;
}

/** The terminal's size: rows and columns. */
export interface ConsoleSize {
  height: number;
  width: number;
}

/** How this process attaches to a container. */
export interface AttachOptions {
  detachKeys: Buffer;
  /** Do not forward stdin (attach --no-stdin). */
  noStdin?: boolean;
  /** Our terminal's size, for a container started now. */
  consoleSize?: ConsoleSize;
}

export interface ExecOptions {
  stdin: boolean;
  tty: boolean;
  env: string[];
  workdir?: string;
  /** With a terminal: the keys that detach from the session (default ctrl-p,ctrl-q). */
  detachKeys?: Buffer;
  /** The session's stdio as streams (the API) instead of this process's. */
  io?: StreamIO;
  /** The terminal's initial size. */
  consoleSize?: ConsoleSize;
  /** Called once the command is about to run: resizes its terminal (a no-op without one). */
  onSession?: (s: { resize(rows: number, cols: number): void }) => void;
}

export interface StartOptions {
  address?: { ip: string; mac: string };
  attach?: AttachOptions & { onAttach: (s: AttachSession) => void };
  /** Started again by its restart policy (counted in restartCount). */
  byPolicy?: boolean;
}

/** A foreground run's hold on its container. */
export interface Attached {
  /**
   * Set when the container has a terminal or stdin: this process's stdio is connected to it
   * (the output is not read from the log then); it ends with the container's output, or when
   * the user detaches.
   */
  session?: AttachSession;
  /** The container's output from its start until it is done. */
  output(): AsyncIterable<LogEntry>;
  /** Forwards a signal to the container (one that has exited already is no error). */
  signal(sig: string): void;
  /** Waits until the container is done and returns its exit code (an --rm container is removed then); ends the attachment. */
  exitCode(): Promise<number>;
  /** Ends the attachment without waiting (an --rm container is then removed by its exit cleanup). Idempotent. */
  release(): void;
}

export interface RunResult {
  record: ContainerRecord;
  /** Only for a foreground run. */
  attached?: Attached;
}

const WAIT_CONDITIONS: ContainerStatus[] = ['created', 'running', 'paused', 'stopped', 'exited'];

export interface WaitOptions {
  /** Statuses that end the wait (default: as soon as the container no longer runs). */
  conditions?: ContainerStatus[];
  timeoutMs?: number;
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** --entrypoint: a JSON array of strings, or one command (Podman's two forms). */
export function parseEntrypoint(s: string): string[] {
  if (s.trim().startsWith('[')) {
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch {
      v = undefined;
    }
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new FerryError('EINVAL', `invalid --entrypoint "${s}": give a command, or a JSON array of strings`);
    return v as string[];
  }
  return s === '' ? [] : [s];
}

export function mergeEnv(base: string[], extra: string[]): string[] {
  const m = new Map<string, string>();
  for (const e of [...(base.length ? base : [`PATH=${DEFAULT_PATH}`]), ...extra]) {
    const i = e.indexOf('=');
    if (i <= 0) throw new FerryError('EINVAL', `invalid environment variable "${e}": use KEY=VALUE`);
    m.set(e.slice(0, i), e);
  }
  if (!m.has('PATH')) m.set('PATH', `PATH=${DEFAULT_PATH}`);
  return [...m.values()];
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** /run/.containerenv as Podman writes it: what a process that reads it finds. */
function containerEnv(rec: ContainerRecord): string {
  return `engine="ferry"\nname="${rec.config.name}"\nid="${rec.config.id}"\nimage="${rec.config.imageName}"\nimageid="${rec.config.imageId}"\nrootless=0\n`;
}

/** ref as a normalized image name, or undefined when it is no valid name (an ID). */
function normalizedOrUndefined(ref: string): string | undefined {
  try {
    return normalizeImageName(ref);
  } catch {
    return undefined;
  }
}
