/**
 * The Docker Engine API (v1.41) over Ferry's engine: each endpoint reads its request, makes one
 * engine call and answers in Docker's shapes (engine/shapes.ts). No lifecycle rule lives here.
 */
import * as os from 'node:os';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Engine, CreateOptions } from '../engine/engine.js';
import { checkpoint, containerCheckpoints, removeCheckpoint } from '../engine/checkpoint.js';
import { restore } from '../engine/restore.js';
import { containerDiff, containerStats, containerTop, type StatsSample } from '../engine/everyday.js';
import { pruneContainers } from '../engine/housekeeping.js';
import { archiveFromContainer, archiveToContainer, statContainerPath, type PathStat } from '../engine/copy.js';
import { checkFilters, checkNetworkFilters, matchesFilters, matchesNetworkFilters } from '../engine/select.js';
import { dockerImageEntry, dockerImageInspectEntry, dockerInspectEntry, dockerPsEntry } from '../engine/shapes.js';
import { containerFacts } from '../engine/facts.js';
import { goArch } from '../engine/host.js';
import type { LogEntry } from '../engine/logs.js';
import { VERSION, bunVersion } from '../lib/version.js';
import { ExecStore, execInspect, forwardInput, resizeExec, responseSink, runExec, upgradeHead, hijackedBody } from './exec.js';
import { PassThrough, Transform, pipeline } from 'node:stream';
import { EventWatcher, streamEvents } from './events.js';
import { parseReference } from '../drivers/registry/reference.js';
import type { VolumeRecord } from '../drivers/storage/volumes.js';
import { DEFAULT_NETWORK, type NetworkRecord } from '../drivers/network/cni.js';
import type { ContainerRecord } from '../engine/types.js';
import { ApiError, Router, bool, boolParam, intParam, muxFrame, obj, readJson, sendEmpty, sendJson, sendPing, str, strList, strMap, type Request } from './http.js';

export const DOCKER_API_VERSION = '1.41';
export const DOCKER_MIN_API_VERSION = '1.24';

/** Headers every Docker API answer carries (the CLI reads them from /_ping). */
export const DOCKER_HEADERS: Record<string, string> = {
  'Api-Version': DOCKER_API_VERSION,
  'Docker-Experimental': 'true',
  Ostype: 'linux',
  Server: `Ferry/${VERSION} (linux)`,
};

/** The largest tar a `docker cp` into a container may send. */
export const MAX_ARCHIVE_BODY = 4 * 2 ** 30;

/** Passes at most limit bytes; past that, fails the stream. */
function sizeLimit(limit: number): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      cb(n > limit ? new ApiError(413, `archive too large: at most ${limit} bytes`) : null, chunk);
    },
  });
}

/** How often a stats stream samples (Docker's: 1 s). */
const STATS_INTERVAL_MS = 1000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A filters parameter that must be empty (the endpoint takes none yet). */
function refuseFilters(q: URLSearchParams, what: string): void {
  const f = q.get('filters');
  if (f && Object.keys(parseJsonObject(f, 'filters')).length) throw new ApiError(400, `${what} filters are not supported yet: prune without them`);
}

/** A filter's values as Docker's clients send them: ["v"] or {"v": true}. */
function filterValues(v: unknown): string[] {
  if (v === undefined) return [];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  if (v && typeof v === 'object' && !Array.isArray(v)) return Object.keys(v);
  throw new ApiError(400, 'invalid filters: give {"NAME": ["VALUE"]}');
}

/** One of Docker's stats objects (GET /containers/{id}/stats) from a sample and the one before it. */
function dockerStats(s: StatsSample, prev: StatsSample | undefined): Record<string, unknown> {
  const cpu = (x: StatsSample | undefined): Record<string, unknown> => ({
    cpu_usage: { total_usage: x ? Math.round(x.cpuNs) : 0, usage_in_kernelmode: 0, usage_in_usermode: 0 },
    system_cpu_usage: x ? Math.round(x.systemNs) : 0,
    online_cpus: x ? x.onlineCpus : 0,
    throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
  });
  const io = (op: string, value: number): Record<string, unknown> => ({ major: 0, minor: 0, op, value });
  return {
    read: new Date(s.at).toISOString(),
    preread: prev ? new Date(prev.at).toISOString() : '0001-01-01T00:00:00Z',
    pids_stats: { current: s.pids },
    blkio_stats: {
      io_service_bytes_recursive: [io('read', s.blockRead), io('write', s.blockWrite)],
      io_serviced_recursive: null,
      io_queue_recursive: null,
      io_service_time_recursive: null,
      io_wait_time_recursive: null,
      io_merged_recursive: null,
      io_time_recursive: null,
      sectors_recursive: null,
    },
    num_procs: 0,
    storage_stats: {},
    cpu_stats: cpu(s),
    precpu_stats: cpu(prev),
    memory_stats: { usage: s.memUsage, stats: {}, limit: s.memLimit },
    name: `/${s.name}`,
    id: s.id,
    networks: { eth0: { rx_bytes: s.netIn, rx_packets: 0, rx_errors: 0, rx_dropped: 0, tx_bytes: s.netOut, tx_packets: 0, tx_errors: 0, tx_dropped: 0 } },
  };
}

/** Docker's architecture names (uname -m). */
function unameArch(): string {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch;
}

export function dockerRoutes(engine: Engine, execs: ExecStore): Router {
  const r = new Router();
  // Events: the watcher looks at once after each change made here.
  const watcher = new EventWatcher(engine);
  const poke = (): Promise<void> => watcher.poke();

  r.on('GET', '/_ping', ({ res }) => sendPing(res, { 'Builder-Version': '1' }));

  r.on('GET', '/version', async ({ res }) => {
    const runc = await engine.runtimeVersion().catch(() => 'unknown');
    sendJson(res, 200, {
      Platform: { Name: 'Ferry' },
      Components: [
        { Name: 'Engine', Version: VERSION, Details: { ApiVersion: DOCKER_API_VERSION, MinAPIVersion: DOCKER_MIN_API_VERSION, Os: 'linux', Arch: goArch(), KernelVersion: os.release(), Experimental: 'true', BunVersion: bunVersion() } },
        { Name: 'runc', Version: runc, Details: {} },
      ],
      Version: VERSION,
      ApiVersion: DOCKER_API_VERSION,
      MinAPIVersion: DOCKER_MIN_API_VERSION,
      GitCommit: '',
      GoVersion: `bun${bunVersion()}`,
      Os: 'linux',
      Arch: goArch(),
      KernelVersion: os.release(),
      Experimental: true,
      BuildTime: '',
    });
  });

  r.on('GET', '/info', async ({ res }) => {
    const recs = await engine.list({ all: true });
    const count = (s: string): number => recs.filter((x) => x.state.status === s).length;
    const running = count('running');
    const paused = count('paused');
    sendJson(res, 200, {
      ID: '',
      Containers: recs.length,
      ContainersRunning: running,
      ContainersPaused: paused,
      ContainersStopped: recs.length - running - paused,
      Images: engine.images.list().length,
      Driver: 'overlay',
      DriverStatus: [],
      Plugins: { Volume: ['local'], Network: ['bridge', 'host', 'none'], Authorization: null, Log: ['k8s-file'] },
      MemoryLimit: true,
      SwapLimit: false,
      KernelMemory: false,
      CpuCfsPeriod: true,
      CpuCfsQuota: true,
      CPUShares: true,
      CPUSet: true,
      PidsLimit: true,
      IPv4Forwarding: true,
      BridgeNfIptables: true,
      BridgeNfIp6tables: true,
      Debug: false,
      NFd: 0,
      OomKillDisable: false,
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: 'k8s-file',
      CgroupDriver: 'cgroupfs',
      CgroupVersion: '1',
      NEventsListener: 0,
      KernelVersion: os.release(),
      OperatingSystem: 'linux',
      OSVersion: '',
      OSType: 'linux',
      Architecture: unameArch(),
      IndexServerAddress: '',
      RegistryConfig: null,
      NCPU: os.cpus().length,
      MemTotal: os.totalmem(),
      GenericResources: null,
      DockerRootDir: engine.paths.root,
      HttpProxy: '',
      HttpsProxy: '',
      NoProxy: '',
      Name: os.hostname(),
      Labels: [],
      ExperimentalBuild: true,
      ServerVersion: VERSION,
      Runtimes: { runc: { path: engine.runtime.runc } },
      DefaultRuntime: 'runc',
      Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
      LiveRestoreEnabled: true,
      Isolation: '',
      InitBinary: '',
      ContainerdCommit: { ID: '', Expected: '' },
      RuncCommit: { ID: '', Expected: '' },
      InitCommit: { ID: '', Expected: '' },
      SecurityOptions: [],
      Warnings: [],
    });
  });

  // ----------------------------------------------------------------------- containers

  r.on('GET', '/containers/json', async ({ res, query }) => {
    const filters = parseFilters(query.get('filters'));
    const limit = query.get('limit') === '-1' ? undefined : intParam(query, 'limit'); // -1: no limit
    // As Docker: a status filter looks at every container.
    let recs = (await engine.listContainers({ all: boolParam(query, 'all') || !!filters.status?.length })).filter((x) => matchesFilters(x, filters));
    if (limit !== undefined && limit > 0) recs = recs.slice(0, limit);
    const size = boolParam(query, 'size');
    // The facts (spec, volumes, sizes) only where the entry shows them: a listing stays cheap.
    sendJson(res, 200, recs.map((x) => dockerPsEntry(x, size || x.config.mounts.length ? containerFacts(engine, x, { size }) : undefined)));
  });

  r.on('POST', '/containers/create', async ({ raw, res, query }) => {
    const o = createOptions(await readJson(raw), query.get('name') ?? undefined);
    const rec = await engine.create(o);
    await poke();
    sendJson(res, 201, { Id: rec.config.id, Warnings: [] });
  });

  r.on('GET', '/containers/:id/json', async ({ res, params, query }) => {
    const rec = await engine.inspect(params.id!);
    sendJson(res, 200, dockerInspectEntry(rec, engine.paths, containerFacts(engine, rec, { size: boolParam(query, 'size') })));
  });

  r.on('POST', '/containers/:id/start', async ({ res, params, query }) => {
    const label = query.get('checkpoint') || undefined;
    if (query.get('checkpoint-dir')) throw new ApiError(400, 'checkpoint-dir is not supported: Ferry keeps checkpoints with their containers');
    const before = await engine.inspect(params.id!);
    if (label !== undefined) {
      await restore(engine, params.id!, { label });
      return sendEmpty(res, 204);
    }
    if (before.state.status === 'running') return sendEmpty(res, 304);
    await engine.start(params.id!);
    await poke();
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:id/stop', async ({ res, params, query }) => {
    const t = intParam(query, 't', 86_400);
    const before = await engine.inspect(params.id!);
    if (before.state.status !== 'running' && before.state.status !== 'paused') return sendEmpty(res, 304);
    await engine.stop(params.id!, t);
    await poke();
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:id/restart', async ({ res, params, query }) => {
    const t = intParam(query, 't', 86_400);
    await engine.restart(params.id!, t);
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:id/kill', async ({ res, params, query }) => {
    await engine.kill(params.id!, query.get('signal') || 'KILL');
    await poke();
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:id/pause', async ({ res, params }) => {
    await engine.pause(params.id!);
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:id/unpause', async ({ res, params }) => {
    await engine.unpause(params.id!);
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:id/wait', async ({ res, params, query }) => {
    const condition = query.get('condition') || 'not-running';
    if (!['not-running', 'next-exit', 'removed'].includes(condition)) throw new ApiError(400, `invalid condition "${condition}": use not-running, next-exit or removed`);
    engine.lookup(params.id!);
    // Headers now (the CLI waits for them before it starts the container), the code when it exits.
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    const gone = new AbortController();
    res.once('close', () => gone.abort());
    let code: number;
    try {
      code = await engine.waitCondition(params.id!, condition as 'not-running' | 'next-exit' | 'removed', gone.signal);
    } catch (e) {
      res.end(JSON.stringify({ StatusCode: -1, Error: { Message: (e as Error).message } }) + '\n');
      return;
    }
    await poke();
    res.end(JSON.stringify({ StatusCode: code, Error: null }) + '\n');
  });

  r.on('DELETE', '/containers/:id', async ({ res, params, query }) => {
    await poke(); // a death not seen yet comes before the destroy
    await engine.remove(params.id!, { force: boolParam(query, 'force'), volumes: boolParam(query, 'v') });
    await poke();
    sendEmpty(res, 204);
  });

  r.on('GET', '/containers/:id/logs', async (req) => {
    const { query, params } = req;
    const stdout = boolParam(query, 'stdout');
    const stderr = boolParam(query, 'stderr');
    if (!stdout && !stderr) throw new ApiError(400, 'Bad parameters: you must choose at least one stream');
    const rec = await engine.inspect(params.id!);
    await streamLogs(req, engine.logs(params.id!, logsOptions(query)), { stdout, stderr, timestamps: boolParam(query, 'timestamps'), framed: !rec.config.tty });
  });

  r.on('POST', '/containers/:id/resize', async ({ res, params, query }) => {
    const { rows, cols } = sizeParams(query);
    await engine.resize(params.id!, rows, cols);
    sendEmpty(res, 200);
  });

  // ----------------------------------------------------------------------- top, stats, changes, rename, prune

  r.on('GET', '/containers/:id/top', async ({ res, params, query }) => {
    // As Podman's compat API: ps_args (default -ef) run the container's own ps; Podman's
    // descriptors (pid,user,args, ...) are read from /proc instead.
    const psArgs = (query.get('ps_args') ?? '-ef').trim().split(/\s+/).filter(Boolean);
    if (psArgs.length > 32 || psArgs.some((a) => a.length > 256)) throw new ApiError(400, 'invalid ps_args: at most 32 arguments of 256 bytes');
    const [titles, ...rows] = await containerTop(engine, params.id!, psArgs);
    sendJson(res, 200, { Titles: titles ?? [], Processes: rows });
  });

  r.on('GET', '/containers/:id/stats', async ({ res, params, query }) => {
    const stream = boolParam(query, 'stream', true) && !boolParam(query, 'one-shot');
    const id = (await engine.inspect(params.id!)).config.id;
    let prev = (await containerStats(engine, [id]))[0];
    if (!stream) {
      if (!boolParam(query, 'one-shot')) {
        // Two samples, so that the client's CPU % has a previous one to compare with.
        await sleep(STATS_INTERVAL_MS / 2);
        const cur = (await containerStats(engine, [id]))[0];
        return sendJson(res, 200, dockerStats(cur ?? prev, cur ? prev : undefined));
      }
      return sendJson(res, 200, dockerStats(prev, undefined));
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write(JSON.stringify(dockerStats(prev, undefined)) + '\n');
    while (!res.destroyed) {
      await sleep(STATS_INTERVAL_MS);
      if (res.destroyed) break;
      const cur = await containerStats(engine, [id], prev ? new Map([[id, prev]]) : undefined).catch(() => undefined);
      if (!cur?.length) break; // it stopped: the stream ends, as Docker's does
      res.write(JSON.stringify(dockerStats(cur[0], prev)) + '\n');
      prev = cur[0];
    }
    res.end();
  });

  r.on('GET', '/containers/:id/changes', async ({ res, params }) => {
    const kinds = { C: 0, A: 1, D: 2 } as const;
    const changes = await containerDiff(engine, params.id!);
    sendJson(res, 200, changes.length ? changes.map((c) => ({ Path: c.path, Kind: kinds[c.kind] })) : null);
  });

  r.on('POST', '/containers/:id/rename', async ({ res, params, query }) => {
    const name = query.get('name');
    if (!name) throw new ApiError(400, 'give name=NEW_NAME');
    await engine.rename(params.id!, name.replace(/^\//, ''));
    await poke();
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/prune', async ({ res, query }) => {
    refuseFilters(query, 'container prune');
    const pruned = await pruneContainers(engine);
    await poke();
    sendJson(res, 200, { ContainersDeleted: pruned.ids.length ? pruned.ids : null, SpaceReclaimed: pruned.reclaimed });
  });

  r.on('POST', '/images/prune', async ({ res, query }) => {
    // docker image prune sends dangling=true (the default), -a dangling=false.
    const filters = parseJsonObject(query.get('filters') || '{}', 'filters') as Record<string, unknown>;
    const dangling = filterValues(filters.dangling);
    const others = Object.keys(filters).filter((k) => k !== 'dangling');
    if (others.length) throw new ApiError(400, `image prune filter "${others[0]}" is not supported: only dangling`);
    if (dangling.some((v) => !['true', 'false', '1', '0'].includes(v))) throw new ApiError(400, 'invalid dangling filter: give true or false');
    const all = dangling.length > 0 && dangling.every((v) => v === 'false' || v === '0');
    const sizes = new Map(engine.images.list().map((i) => [i.Id, i.Size]));
    const gone = await engine.pruneImages(all);
    sendJson(res, 200, { ImagesDeleted: gone.length ? gone.map((id) => ({ Deleted: `sha256:${id}` })) : null, SpaceReclaimed: gone.reduce((a, id) => a + (sizes.get(id) ?? 0), 0) });
  });

  // ----------------------------------------------------------------------- archive (docker cp)

  r.on('GET', '/containers/:id/archive', async ({ method, res, params, query }) => {
    const p = query.get('path') ?? '';
    const header = (s: PathStat): string => Buffer.from(JSON.stringify(s)).toString('base64');
    if (method === 'HEAD') {
      const stat = await statContainerPath(engine, params.id!, p);
      res.writeHead(200, { 'X-Docker-Container-Path-Stat': header(stat), 'Content-Type': 'application/json' });
      return void res.end();
    }
    await archiveFromContainer(engine, params.id!, p, res, (stat) => res.writeHead(200, { 'X-Docker-Container-Path-Stat': header(stat), 'Content-Type': 'application/x-tar' }));
    res.end();
  });

  r.on('PUT', '/containers/:id/archive', async ({ raw, res, params, query }) => {
    const declared = Number(raw.headers['content-length'] ?? 0);
    if (declared > MAX_ARCHIVE_BODY) throw new ApiError(413, `archive too large: at most ${MAX_ARCHIVE_BODY} bytes`);
    const body = sizeLimit(MAX_ARCHIVE_BODY);
    pipeline(raw, body, () => undefined); // a client gone half-way fails the body too
    await archiveToContainer(engine, params.id!, query.get('path') ?? '', body, {
      noOverwriteDirNonDir: boolParam(query, 'noOverwriteDirNonDir'),
      copyUIDGID: boolParam(query, 'copyUIDGID'),
    });
    sendEmpty(res, 200);
  });

  // ----------------------------------------------------------------------- exec

  r.on('POST', '/containers/:id/exec', async ({ raw, res, params }) => {
    const body = await readJson(raw);
    const rec = await engine.inspect(params.id!);
    if (rec.state.status !== 'running') throw new ApiError(409, `Container ${rec.config.id} is not running`);
    const x = execs.create(rec.config.id, body);
    sendJson(res, 201, { Id: x.id });
  });

  r.on('GET', '/exec/:id/json', ({ res, params }) => {
    sendJson(res, 200, execInspect(execs.get(params.id!)));
  });

  r.on('POST', '/exec/:id/resize', ({ res, params, query }) => {
    const { rows, cols } = sizeParams(query);
    resizeExec(execs.get(params.id!), rows, cols);
    sendEmpty(res, 200);
  });

  // Without hijacking: detached (the command runs on; 200 at once), or the output as the response body.
  r.on('POST', '/exec/:id/start', async ({ raw, res, params }) => {
    const body = await readJson(raw);
    const detach = bool(body, 'Detach') ?? false;
    const x = execs.get(params.id!);
    if (bool(body, 'Tty') !== undefined) x.tty = bool(body, 'Tty')!;
    execs.take(x.id);
    if (detach) {
      void runExec(engine, x, { write: () => undefined, end: () => undefined }, undefined);
      return sendEmpty(res, 200);
    }
    await runExec(engine, x, responseSink(res, x.tty), undefined);
  });

  // ----------------------------------------------------------------------- events

  r.on('GET', '/events', ({ res, query }) => streamEvents(watcher, res, query));

  // ----------------------------------------------------------------------- volumes

  r.on('GET', '/volumes', ({ res, query }) => {
    if (query.get('filters') && Object.keys(parseJsonObject(query.get('filters')!, 'filters')).length) throw new ApiError(400, 'volume filters are not supported yet');
    sendJson(res, 200, { Volumes: engine.volumes.list().map(dockerVolume), Warnings: [] });
  });

  r.on('POST', '/volumes/create', async ({ raw, res }) => {
    const body = await readJson(raw);
    const driver = str(body, 'Driver');
    if (driver && driver !== 'local') throw new ApiError(400, `unsupported volume driver "${driver}": only local`);
    const opts = strMap(body, 'DriverOpts');
    if (opts && Object.keys(opts).length) throw new ApiError(400, 'DriverOpts are not supported: volumes are plain directories');
    const name = str(body, 'Name') || undefined;
    if (name !== undefined && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/.test(name)) throw new ApiError(400, `invalid volume name "${name}": use letters, digits, '_', '.', '-'`);
    sendJson(res, 201, dockerVolume(engine.createVolume(name, strMap(body, 'Labels') ?? {})));
  });

  r.on('GET', '/volumes/:name', ({ res, params }) => {
    sendJson(res, 200, dockerVolume(engine.volumes.get(params.name!)));
  });

  r.on('DELETE', '/volumes/:name', async ({ res, params, query }) => {
    await engine.removeVolume(params.name!, boolParam(query, 'force'));
    sendEmpty(res, 204);
  });

  // ----------------------------------------------------------------------- networks

  const network = (ref: string): NetworkRecord => {
    const all = engine.networks.list();
    const exact = all.find((n) => n.name === ref || n.id === ref);
    if (exact) return exact;
    const byPrefix = /^[0-9a-f]{1,64}$/.test(ref) ? all.filter((n) => n.id.startsWith(ref)) : [];
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1) throw new ApiError(400, `network ID prefix "${ref}" is ambiguous: give more characters`);
    throw new ApiError(404, `network ${ref} not found`);
  };
  const users = async (n: NetworkRecord) => (await engine.listContainers({ all: true })).filter((r) => r.config.network?.mode === 'bridge' && r.config.network.name === n.name);

  r.on('GET', '/networks', async ({ res, query }) => {
    const filters = checkNetworkFilters(filterLists(query.get('filters')));
    sendJson(res, 200, engine.networks.list().filter((n) => matchesNetworkFilters(n, filters)).map((n) => dockerNetwork(n, [])));
  });

  r.on('GET', '/networks/:id', async ({ res, params }) => {
    const n = network(params.id!);
    sendJson(res, 200, dockerNetwork(n, await users(n)));
  });

  r.on('POST', '/networks/create', async ({ raw, res }) => {
    const body = await readJson(raw);
    const name = str(body, 'Name');
    if (!name) throw new ApiError(400, 'Name is required: name the network');
    const driver = str(body, 'Driver') || 'bridge';
    // Attachable is about swarm services (compose asks for it); every local network takes containers.
    bool(body, 'Attachable');
    if (bool(body, 'Internal') || bool(body, 'EnableIPv6') || bool(body, 'Ingress')) throw new ApiError(400, 'Internal, EnableIPv6 and Ingress networks are not supported');
    // What Ferry would not keep is refused rather than dropped.
    const options = strMap(body, 'Options');
    if (options && Object.keys(options).length) throw new ApiError(400, 'network Options are not supported yet');
    const labels = strMap(body, 'Labels');
    const ipam = obj(body, 'IPAM');
    const configs = ipam?.Config;
    if (configs !== undefined && configs !== null && !Array.isArray(configs)) throw new ApiError(400, 'invalid IPAM.Config: give a list');
    if (Array.isArray(configs) && configs.length > 1) throw new ApiError(400, 'give at most one IPAM.Config: a network has one subnet');
    const c = Array.isArray(configs) && configs[0] && typeof configs[0] === 'object' ? (configs[0] as Record<string, unknown>) : {};
    if (engine.networks.list().some((n) => n.name === name)) throw new ApiError(409, `network with name ${name} already exists`);
    const n = engine.createNetwork(name, { driver, subnet: str(c, 'Subnet') || undefined, gateway: str(c, 'Gateway') || undefined, labels });
    sendJson(res, 201, { Id: n.id, Warning: '' });
  });

  // A container joins its one network when it is created (compose does so): no joining later.
  for (const action of ['connect', 'disconnect']) {
    r.on('POST', `/networks/:id/${action}`, async ({ raw, params }) => {
      const n = network(params.id!);
      const ref = str(await readJson(raw), 'Container');
      if (!ref) throw new ApiError(400, 'Container is required: name the container');
      const rec = engine.lookup(ref);
      const on = rec.config.network?.mode === 'bridge' && (rec.config.network.name ?? DEFAULT_NETWORK) === n.name;
      if (action === 'connect' && on) throw new ApiError(403, `endpoint with name ${rec.config.name} already exists in network ${n.name}`);
      if (action === 'disconnect' && !on) throw new ApiError(400, `container ${rec.config.name} is not connected to network ${n.name}`);
      throw new ApiError(400, `a container joins one network, when it is created: ${action === 'connect' ? `create it with --network ${n.name}` : 'create it again with another --network'}`);
    });
  }

  r.on('DELETE', '/networks/:id', async ({ res, params }) => {
    await engine.removeNetwork(network(params.id!).name);
    sendEmpty(res, 204);
  });

  // ----------------------------------------------------------------------- checkpoints (Docker's experimental API)

  r.on('POST', '/containers/:id/checkpoints', async ({ raw, res, params }) => {
    const body = await readJson(raw);
    const label = str(body, 'CheckpointID');
    if (!label) throw new ApiError(400, 'CheckpointID is required');
    if (str(body, 'CheckpointDir')) throw new ApiError(400, 'CheckpointDir is not supported: Ferry keeps checkpoints with their containers');
    const exit = bool(body, 'Exit') ?? false;
    await checkpoint(engine, params.id!, { label, leaveRunning: !exit });
    sendEmpty(res, 201);
  });

  r.on('GET', '/containers/:id/checkpoints', async ({ res, params, query }) => {
    if (query.get('dir')) throw new ApiError(400, 'dir is not supported: Ferry keeps checkpoints with their containers');
    sendJson(res, 200, (await containerCheckpoints(engine, params.id!)).map((c) => ({ Name: c.label })));
  });

  r.on('DELETE', '/containers/:id/checkpoints/:name', async ({ res, params, query }) => {
    if (query.get('dir')) throw new ApiError(400, 'dir is not supported: Ferry keeps checkpoints with their containers');
    await removeCheckpoint(engine, params.id!, params.name!);
    sendEmpty(res, 204);
  });

  // ----------------------------------------------------------------------- images

  r.on('GET', '/images/json', ({ res }) => {
    const users = engine.imageUsers();
    sendJson(res, 200, engine.images.list().map((i) => dockerImageEntry(i, users.get(i.Id)?.length ?? 0)));
  });

  // Pull (fromImage); importing a root filesystem (fromSrc) is not supported.
  r.on('POST', '/images/create', async ({ raw, res, query }) => {
    if (query.get('fromSrc')) throw new ApiError(400, 'fromSrc (docker import) is not supported: use docker load');
    const from = query.get('fromImage');
    if (!from) throw new ApiError(400, 'fromImage is required: name the image to pull');
    const tag = query.get('tag') || '';
    if (tag && !/^([\w][\w.-]{0,127}|sha256:[0-9a-f]{64})$/.test(tag)) throw new ApiError(400, `invalid tag "${tag}"`);
    const ref = !tag ? from : tag.startsWith('sha256:') ? `${from}@${tag}` : `${from}:${tag}`;
    const platform = query.get('platform') || undefined;
    const creds = registryAuth(raw.headers['x-registry-auth']);
    const domain = parseReference(ref).domain; // a bad name fails here, before the stream starts
    const progress = jsonStream(res);
    progress.write({ status: `Pulling from ${ref.replace(/[:@][^/:@]*$/, '')}`, id: tag || 'latest' });
    try {
      const img = await engine.pullImage(ref, { tlsVerify: !insecureByDefault(domain), platform, creds, progress: (line) => progress.write({ status: line.trim() }) });
      progress.write({ status: `Digest: ${img.Digest}` });
      progress.write({ status: `Status: Downloaded newer image for ${ref}` });
    } catch (e) {
      progress.error(e);
    }
    progress.end();
  });

  r.onPattern('GET', /^\/images\/(.+)\/json$/, ['name'], ({ res, params }) => {
    const img = engine.images.get(dockerImageName(engine, params.name!));
    sendJson(res, 200, dockerImageInspectEntry(img, engine.images.config(img), img.Layers.map((l) => engine.images.layers.diffDir(l))));
  });

  r.onPattern('DELETE', /^\/images\/(.+)$/, ['name'], async ({ res, params, query }) => {
    const out = await engine.removeImage(dockerImageName(engine, params.name!), boolParam(query, 'force'));
    sendJson(res, 200, [...out.untagged.map((n) => ({ Untagged: familiarName(n) })), ...(out.deleted ? [{ Deleted: `sha256:${out.deleted}` }] : [])]);
  });

  r.onPattern('POST', /^\/images\/(.+)\/tag$/, ['name'], async ({ res, params, query }) => {
    const repo = query.get('repo');
    if (!repo) throw new ApiError(400, 'repo is required: name the new repository');
    const tag = query.get('tag') || 'latest';
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw new ApiError(400, `invalid tag "${tag}"`);
    await engine.tagImage(dockerImageName(engine, params.name!), [`${repo}:${tag}`]);
    sendEmpty(res, 201);
  });

  r.onPattern('POST', /^\/images\/(.+)\/push$/, ['name'], async ({ raw, res, params, query }) => {
    const tag = query.get('tag') || '';
    if (tag && !/^[\w][\w.-]{0,127}$/.test(tag)) throw new ApiError(400, `invalid tag "${tag}"`);
    const ref = dockerImageName(engine, tag ? `${params.name!}:${tag}` : params.name!);
    const creds = registryAuth(raw.headers['x-registry-auth']);
    const img = engine.images.get(ref);
    const domain = parseReference(ref).domain;
    const progress = jsonStream(res);
    progress.write({ status: `The push refers to repository [${ref.replace(/:[\w][\w.-]*$/, '')}]` });
    try {
      const digest = await engine.pushImage(ref, ref, { tlsVerify: !insecureByDefault(domain), creds, progress: (line) => progress.write({ status: line.trim() }) });
      progress.write({ status: `${tag || 'latest'}: digest: ${digest} size: ${img.Size}` });
      progress.write({ progressDetail: {}, aux: { Tag: tag || 'latest', Digest: digest, Size: img.Size } });
    } catch (e) {
      progress.error(e);
    }
    progress.end();
  });

  // docker save: a docker-archive of the named images.
  const save = async (res: ServerResponse, names: string[]): Promise<void> => {
    if (!names.length) throw new ApiError(400, 'name at least one image to save');
    names = names.map((n) => dockerImageName(engine, n));
    for (const n of names) engine.images.get(n); // a missing image: 404 before the stream starts
    res.writeHead(200, { 'Content-Type': 'application/x-tar' });
    await engine.saveImages(names, 'docker-archive', { out: res });
    res.end();
  };
  r.on('GET', '/images/get', ({ res, query }) => save(res, query.getAll('names')));
  r.onPattern('GET', /^\/images\/(.+)\/get$/, ['name'], ({ res, params }) => save(res, [params.name!]));

  // docker load: the archive is the request body.
  r.on('POST', '/images/load', async ({ raw, res, query }) => {
    const quiet = boolParam(query, 'quiet');
    const loaded = await engine.loadImages({ stream: raw });
    const progress = jsonStream(res);
    for (const l of loaded) {
      const names = l.names.length ? l.names : [`sha256:${l.img.Id}`];
      for (const n of names) progress.write({ stream: l.names.length ? `Loaded image: ${familiarName(n)}\n` : `Loaded image ID: ${n}\n` });
    }
    if (quiet && !loaded.length) progress.write({ stream: '' });
    progress.end();
  });

  return r;
}

/**
 * An image name as Docker's clients mean it: as given when Ferry has it so, else in its
 * normalized form (a short name is docker.io/library/NAME to Docker, which is how Ferry stores a
 * tag such as `docker tag busybox web:1`).
 */
function dockerImageName(engine: Engine, name: string): string {
  if (engine.images.find(name)) return name;
  const first = name.split('/')[0]!;
  if (name.includes('@') || (name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost'))) return name;
  const docker = `docker.io/${name.includes('/') ? '' : 'library/'}${name}`;
  return engine.images.find(docker) ? docker : name;
}

/** A query parameter that must be a JSON object. */
function parseJsonObject(text: string, name: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ApiError(400, `invalid ${name}: give JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, `invalid ${name}: give a JSON object`);
  return v as Record<string, unknown>;
}

/** Docker's volume shape. */
function dockerVolume(v: VolumeRecord): Record<string, unknown> {
  return { Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, CreatedAt: v.CreatedAt, Labels: v.Labels ?? {}, Scope: 'local', Options: {} };
}

/** Docker's network shape (with the containers on it, for inspect). */
function dockerNetwork(n: NetworkRecord, users: ContainerRecord[]): Record<string, unknown> {
  return {
    Name: n.name,
    Id: n.id,
    Created: n.created,
    Scope: 'local',
    Driver: n.driver,
    EnableIPv6: n.ipv6_enabled,
    IPAM: { Driver: 'default', Options: null, Config: n.subnets.map((s) => ({ Subnet: s.subnet, Gateway: s.gateway })) },
    Internal: n.internal,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: Object.fromEntries(
      users.map((r) => [r.config.id, { Name: r.config.name, EndpointID: '', MacAddress: r.config.network?.mac ?? '', IPv4Address: r.config.network?.ip ? `${r.config.network.ip}/${n.subnets[0]?.subnet.split('/')[1] ?? '16'}` : '', IPv6Address: '' }]),
    ),
    // As Docker: the options a network was created with (compose compares them with its file's),
    // so none for a user network.
    Options: n.name === DEFAULT_NETWORK ? { 'com.docker.network.bridge.name': n.network_interface } : {},
    Labels: n.labels ?? {},
  };
}

/** A name as Docker prints it: docker.io/library/web:1 is web:1. */
function familiarName(n: string): string {
  return n.replace(/^docker\.io\/(library\/)?/, '');
}

/** Docker treats registries on the loopback as insecure (plain HTTP) without configuration. */
function insecureByDefault(domain: string): boolean {
  const host = domain.replace(/:[0-9]+$/, '');
  return host === 'localhost' || /^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$/.test(host) || host === '[::1]';
}

/** The X-Registry-Auth header (base64url JSON {username, password}): credentials, or none. */
export const registryAuthOf = (h: string | string[] | undefined): { username: string; password: string } | undefined => registryAuth(h);

function registryAuth(h: string | string[] | undefined): { username: string; password: string } | undefined {
  if (typeof h !== 'string' || !h) return undefined;
  if (h.length > 16384) throw new ApiError(400, 'X-Registry-Auth is too long');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  } catch {
    throw new ApiError(400, 'invalid X-Registry-Auth: give base64url-encoded JSON');
  }
  if (v === null || typeof v !== 'object') throw new ApiError(400, 'invalid X-Registry-Auth: give a JSON object');
  const o = v as Record<string, unknown>;
  const username = typeof o.username === 'string' ? o.username : '';
  const password = typeof o.password === 'string' ? o.password : '';
  return username || password ? { username, password } : undefined;
}

/** Docker's JSON message stream (pull, push, load): one object a line; an error ends it as {"error", "errorDetail"}. */
function jsonStream(res: ServerResponse) {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.flushHeaders();
  return {
    write: (o: Record<string, unknown>) => void res.write(JSON.stringify(o) + '\n'),
    error: (e: unknown) => {
      const message = ((e as Error)?.message ?? String(e)).split('\n')[0]!;
      res.write(JSON.stringify({ errorDetail: { message }, error: message }) + '\n');
    },
    end: () => res.end(),
  };
}

/** A resize request's h and w. */
function sizeParams(q: URLSearchParams): { rows: number; cols: number } {
  const rows = intParam(q, 'h', 65535);
  const cols = intParam(q, 'w', 65535);
  if (!rows || !cols) throw new ApiError(400, 'give the terminal size as h and w (rows and columns, 1 to 65535)');
  return { rows, cols };
}

/**
 * `POST /exec/{id}/start` on a hijacked connection: the body ({"Detach": false, "Tty": ...})
 * comes first, then the command's input (when it attached stdin) until the client half-closes;
 * its output goes back raw (terminal) or framed.
 */
export async function serveExecStart(engine: Engine, execs: ExecStore, id: string, req: IncomingMessage, sock: Duplex, head: Buffer, headers: Record<string, string>): Promise<void> {
  const x = execs.get(id);
  if (x.started) throw new ApiError(409, `exec ${id} has already been started`);
  const { body, input } = await hijackedBody(req, head, Number(req.headers['content-length'] ?? 0));
  let parsed: unknown = {};
  if (body.length) {
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw new ApiError(400, 'invalid JSON in the request body');
    }
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ApiError(400, 'the request body must be a JSON object');
  const tty = bool(parsed as Record<string, unknown>, 'Tty');
  if (bool(parsed as Record<string, unknown>, 'Detach')) throw new ApiError(400, 'a detached exec is started without hijacking the connection');
  if (tty !== undefined) x.tty = tty;
  execs.take(id);
  sock.write(upgradeHead(!x.tty, headers));
  if (x.stdin) forwardInput(sock, input);
  else sock.resume(); // what the client sends is dropped
  const gone = (): void => {
    input.end();
  };
  sock.once('close', gone);
  await runExec(engine, x, { write: (d) => void (sock.destroyed || sock.write(d)), end: () => sock.end() }, x.stdin ? input : undefined);
}

/** Docker's `filters` query: JSON, {"key": ["v", ...]} or the old {"key": {"v": true}}. */
export function parseFilters(text: string | null) {
  return checkFilters(filterLists(text));
}

/** The `filters` query as lists of values per key, unchecked. */
function filterLists(text: string | null): Record<string, unknown> {
  if (!text) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ApiError(400, 'invalid filters: give JSON such as {"label":["app=web"]}');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, 'invalid filters: give a JSON object');
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, x !== null && typeof x === 'object' && !Array.isArray(x) ? Object.keys(x) : x]));
}

/** A list given as a string or a list of strings (Docker's StrSlice: Cmd, Entrypoint). */
function strSlice(body: Record<string, unknown>, key: string): string[] | undefined {
  const v = body[key];
  if (typeof v === 'string') return [v];
  return strList(body, key);
}

/** Docker's create request as Ferry's create options; anything Ferry would not honour is refused. */
export function createOptions(body: Record<string, unknown>, name: string | undefined): CreateOptions {
  const image = str(body, 'Image');
  if (!image) throw new ApiError(400, 'Config.Image is required: name the image to create the container from');
  // Docker's rules, as `ferry create`'s: Entrypoint replaces the image's (and then its Cmd is
  // not used); Cmd replaces the image's Cmd.
  const entrypoint = body.Entrypoint === undefined || body.Entrypoint === null ? undefined : strSlice(body, 'Entrypoint');
  const cmd = strSlice(body, 'Cmd');
  const hc = obj(body, 'HostConfig') ?? {};
  if (bool(hc, 'Privileged')) throw new ApiError(400, 'HostConfig.Privileged is not supported');
  const { volumes, tmpfs: mountTmpfs } = hostMounts(hc.Mounts);
  const restart = obj(hc, 'RestartPolicy');
  const restartName = restart ? str(restart, 'Name') : undefined;
  const retries = restart?.MaximumRetryCount;
  if (retries !== undefined && retries !== null && (typeof retries !== 'number' || !Number.isInteger(retries) || retries < 0)) throw new ApiError(400, 'invalid HostConfig.RestartPolicy.MaximumRetryCount: give a whole number');
  const endpoint = endpointConfig(body, str(hc, 'NetworkMode'));
  const networkMode = endpoint.network;
  const tmpfs = strMap(hc, 'Tmpfs');
  const stopTimeout = body.StopTimeout;
  if (stopTimeout !== undefined && stopTimeout !== null && (typeof stopTimeout !== 'number' || !Number.isInteger(stopTimeout) || stopTimeout < 0)) throw new ApiError(400, 'invalid StopTimeout: give a whole number of seconds');
  return {
    image,
    name,
    command: cmd ?? [],
    entrypoint: entrypoint === undefined ? undefined : JSON.stringify(entrypoint),
    user: str(body, 'User') || undefined,
    env: strList(body, 'Env'),
    workdir: str(body, 'WorkingDir') || undefined,
    hostname: str(body, 'Hostname') || undefined,
    labels: strMap(body, 'Labels'),
    stopSignal: str(body, 'StopSignal') || undefined,
    stopTimeout: typeof stopTimeout === 'number' ? stopTimeout : undefined,
    tty: bool(body, 'Tty'),
    interactive: bool(body, 'OpenStdin'),
    volumes: [...(strList(hc, 'Binds') ?? []), ...volumes],
    tmpfs: [...(tmpfs ? Object.entries(tmpfs).map(([d, o]) => (o ? `${d}:${o}` : d)) : []), ...mountTmpfs],
    network: !networkMode || networkMode === 'default' ? undefined : networkMode,
    ip: endpoint.ip,
    networkAliases: endpoint.aliases,
    publish: portBindings(obj(hc, 'PortBindings')),
    publishAll: bool(hc, 'PublishAllPorts'),
    autoRemove: bool(hc, 'AutoRemove'),
    resources: hostResources(hc),
    restart: restartName ? (restartName === 'on-failure' && retries ? `on-failure:${retries}` : restartName) : undefined,
    securityOpt: strList(hc, 'SecurityOpt'),
    createCommand: undefined,
  };
}

/**
 * NetworkingConfig.EndpointsConfig: the one network a container joins (Ferry's containers have
 * one), its aliases and static address. With HostConfig.NetworkMode both must name the same network.
 */
function endpointConfig(body: Record<string, unknown>, networkMode: string | undefined): { network?: string; aliases?: string[]; ip?: string } {
  const eps = obj(obj(body, 'NetworkingConfig') ?? {}, 'EndpointsConfig') ?? {};
  const names = Object.keys(eps);
  if (names.length > 1) throw new ApiError(400, `a container joins one network, not ${names.length}: give one in NetworkingConfig.EndpointsConfig`);
  const name = names[0];
  if (name === undefined) return { network: networkMode };
  const mode = !networkMode || networkMode === 'default' ? undefined : networkMode;
  if (mode !== undefined && mode !== name && !(mode === 'bridge' && name === 'bridge')) {
    throw new ApiError(400, `NetworkingConfig names network "${name}" but HostConfig.NetworkMode is "${mode}": give the same network in both`);
  }
  const ep = obj(eps, name) ?? {};
  const ipam = obj(ep, 'IPAMConfig') ?? {};
  if (str(ipam, 'IPv6Address')) throw new ApiError(400, 'IPv6 addresses are not supported: Ferry\'s networks are IPv4');
  const aliases = strList(ep, 'Aliases');
  if (strList(ep, 'Links')?.length) throw new ApiError(400, 'links are not supported: containers on a network reach each other by name');
  return { network: mode ?? name, aliases: aliases?.length ? aliases : undefined, ip: str(ipam, 'IPv4Address') || undefined };
}

/** A whole number field of HostConfig (bytes, counts), if given and not 0 (Docker's "unset"). */
function positiveInt(hc: Record<string, unknown>, key: string, allowMinusOne = false): number | undefined {
  const v = hc[key];
  if (v === undefined || v === null || v === 0) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || (v < 0 && !(allowMinusOne && v === -1))) throw new ApiError(400, `invalid HostConfig.${key}: give a whole number`);
  return v;
}

/** HostConfig's limits (Memory, MemorySwap, NanoCpus, CpuShares, PidsLimit, Ulimits, ShmSize) as `ferry create`'s flags. */
function hostResources(hc: Record<string, unknown>): CreateOptions['resources'] {
  const r: NonNullable<CreateOptions['resources']> = {};
  const memory = positiveInt(hc, 'Memory');
  if (memory !== undefined) r.memory = String(memory);
  const swap = positiveInt(hc, 'MemorySwap', true);
  if (swap !== undefined) r.memorySwap = String(swap);
  const nano = positiveInt(hc, 'NanoCpus');
  if (nano !== undefined) r.cpus = String(nano / 1e9);
  const shares = positiveInt(hc, 'CpuShares');
  if (shares !== undefined) r.cpuShares = String(shares);
  const pids = positiveInt(hc, 'PidsLimit', true);
  if (pids !== undefined) r.pidsLimit = String(pids);
  const shm = positiveInt(hc, 'ShmSize');
  if (shm !== undefined) r.shmSize = String(shm);
  const ulimits = hc.Ulimits;
  if (ulimits !== undefined && ulimits !== null) {
    if (!Array.isArray(ulimits)) throw new ApiError(400, 'invalid HostConfig.Ulimits: give a list of {Name, Soft, Hard}');
    r.ulimit = ulimits.map((u: unknown) => {
      const o = u && typeof u === 'object' ? (u as Record<string, unknown>) : {};
      if (typeof o.Name !== 'string' || !Number.isInteger(o.Soft) || !Number.isInteger(o.Hard)) throw new ApiError(400, 'invalid HostConfig.Ulimits entry: give {"Name": "nofile", "Soft": 1024, "Hard": 2048}');
      return `${o.Name}=${o.Soft as number}:${o.Hard as number}`;
    });
  }
  return Object.keys(r).length ? r : undefined;
}

/**
 * HostConfig.Mounts (Docker's --mount): bind and volume mounts as -v specs, tmpfs ones as
 * --tmpfs specs. Options Ferry would not honour are refused, never dropped.
 */
function hostMounts(v: unknown): { volumes: string[]; tmpfs: string[] } {
  const out = { volumes: [] as string[], tmpfs: [] as string[] };
  if (v === undefined || v === null) return out;
  if (!Array.isArray(v)) throw new ApiError(400, 'invalid HostConfig.Mounts: give a list');
  for (const m of v as unknown[]) {
    const o = m && typeof m === 'object' ? (m as Record<string, unknown>) : {};
    const type = str(o, 'Type');
    const target = str(o, 'Target');
    if (!target || !target.startsWith('/')) throw new ApiError(400, 'HostConfig.Mounts: each mount needs an absolute Target');
    const ro = bool(o, 'ReadOnly');
    for (const k of ['BindOptions', 'VolumeOptions']) {
      const opts = obj(o, k);
      if (opts && Object.values(opts).some((x) => x !== undefined && x !== null && x !== false && x !== '' && !(typeof x === 'object' && !Object.keys(x as object).length))) {
        throw new ApiError(400, `HostConfig.Mounts: ${k} are not supported: give the mount without them`);
      }
    }
    if (type === 'bind' || type === 'volume') {
      const source = str(o, 'Source');
      if (!source) throw new ApiError(400, `HostConfig.Mounts: a ${type} mount needs a Source${type === 'volume' ? ' (anonymous volumes: leave Mounts out and use the image\'s VOLUME)' : ''}`);
      if (type === 'bind' && !source.startsWith('/')) throw new ApiError(400, 'HostConfig.Mounts: a bind mount\'s Source must be an absolute path');
      if (type === 'volume' && source.startsWith('/')) throw new ApiError(400, 'HostConfig.Mounts: a volume mount\'s Source is a volume name, not a path');
      out.volumes.push(`${source}:${target}${ro ? ':ro' : ''}`);
    } else if (type === 'tmpfs') {
      const t = obj(o, 'TmpfsOptions') ?? {};
      const size = t.SizeBytes;
      const mode = t.Mode;
      if (size !== undefined && size !== null && (typeof size !== 'number' || !Number.isInteger(size) || size < 0)) throw new ApiError(400, 'invalid TmpfsOptions.SizeBytes: give a whole number of bytes');
      if (mode !== undefined && mode !== null && (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777)) throw new ApiError(400, 'invalid TmpfsOptions.Mode: give a file mode');
      const opts = [...(ro ? ['ro'] : []), ...(size ? [`size=${size}`] : []), ...(typeof mode === 'number' ? [`mode=${mode.toString(8)}`] : [])];
      out.tmpfs.push(opts.length ? `${target}:${opts.join(',')}` : target);
    } else {
      throw new ApiError(400, `HostConfig.Mounts: type "${type ?? ''}" is not supported: use bind, volume or tmpfs`);
    }
  }
  return out;
}

/** HostConfig.PortBindings {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]} as -p specs. */
function portBindings(pb: Record<string, unknown> | undefined): string[] | undefined {
  if (!pb) return undefined;
  const out: string[] = [];
  for (const [port, binds] of Object.entries(pb)) {
    if (!/^[0-9]{1,5}(\/(tcp|udp))?$/.test(port)) throw new ApiError(400, `invalid port "${port}" in HostConfig.PortBindings: use PORT/tcp or PORT/udp`);
    const [ctr, proto = 'tcp'] = port.split('/');
    if (binds === null) continue;
    if (!Array.isArray(binds)) throw new ApiError(400, `invalid HostConfig.PortBindings["${port}"]: give a list`);
    for (const b of binds as Record<string, unknown>[]) {
      const ip = b && typeof b === 'object' ? str(b, 'HostIp') : undefined;
      const hp = b && typeof b === 'object' ? str(b, 'HostPort') : undefined;
      // No HostPort: a free one is picked (docker run -p 80, compose's `ports: ["80"]`).
      out.push(hp ? `${ip ? `${ip}:` : ''}${hp}:${ctr}/${proto}` : `${ip ? `${ip}::` : ''}${ctr}/${proto}`);
    }
  }
  return out;
}

/** since (Unix seconds, fractions allowed), until, tail (N or all), follow. */
export function logsOptions(q: URLSearchParams) {
  const time = (k: string): Date | undefined => {
    const v = q.get(k);
    if (!v || v === '0' || v.startsWith('0001-01-01T')) return undefined; // Go's zero time: not given
    if (/^[0-9]{1,12}(\.[0-9]{1,9})?$/.test(v)) return new Date(Number(v) * 1000);
    const d = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})$/.test(v) ? new Date(v) : undefined;
    if (!d || Number.isNaN(d.getTime())) throw new ApiError(400, `invalid ${k}=${v}: give Unix seconds or an RFC 3339 time`);
    return d;
  };
  const tailText = q.get('tail');
  const tail = !tailText || tailText === 'all' || tailText === '-1' ? undefined : intParam(q, 'tail');
  return { follow: boolParam(q, 'follow'), tail, since: time('since'), until: time('until') };
}

/** Docker's timestamp: RFC 3339 with nanoseconds, in UTC. */
function dockerTime(t: string): string {
  return t.replace(/\+00:00$/, 'Z');
}

/**
 * Streams a container's log: with framing (no terminal), each entry in the multiplexed stream
 * framing; without, raw. Ends when the log does (follow: when the container stops) or the client goes.
 */
export async function streamLogs(req: Request, entries: AsyncIterable<LogEntry>, o: { stdout: boolean; stderr: boolean; timestamps: boolean; framed: boolean }): Promise<void> {
  const res: ServerResponse = req.res;
  res.writeHead(200, { 'Content-Type': o.framed ? 'application/vnd.docker.multiplexed-stream' : 'application/vnd.docker.raw-stream' });
  res.flushHeaders();
  let gone = false;
  res.once('close', () => (gone = true));
  let lineStart = true;
  for await (const e of entries) {
    if (gone) break;
    if (e.stream === 'stdout' ? !o.stdout : !o.stderr) continue;
    const text = `${o.timestamps && lineStart ? `${dockerTime(e.time)} ` : ''}${e.content}${e.partial ? '' : '\n'}`;
    lineStart = !e.partial;
    const payload = Buffer.from(text, 'utf8');
    if (!res.write(o.framed ? muxFrame(e.stream, payload) : payload)) await new Promise<void>((r) => (gone ? r() : res.once('drain', r).once('close', r)));
  }
  res.end();
}

/**
 * Docker's attach on a hijacked connection (`POST /containers/{id}/attach` with `Upgrade: tcp`),
 * output only: what the container writes from now on (with logs=1, from its start), framed when
 * it has no terminal, until it stops. Stdin is not forwarded yet (read and dropped).
 */
export async function serveAttach(engine: Engine, ref: string, q: URLSearchParams, sock: Duplex, head: Buffer, headers: Record<string, string>): Promise<void> {
  const stdout = boolParam(q, 'stdout');
  const stderr = boolParam(q, 'stderr');
  const logs = boolParam(q, 'logs');
  const stream = boolParam(q, 'stream');
  const stdin = boolParam(q, 'stdin');
  const rec = engine.lookup(ref);
  const framed = !rec.config.tty;
  sock.write(upgradeHead(framed, headers));
  const gone = new AbortController();
  sock.once('close', () => gone.abort());
  // Stdin goes to a container that keeps one open (created with OpenStdin); otherwise it is dropped, as Docker does.
  let input: Promise<void> | undefined;
  if (stdin && stream && rec.config.stdin) {
    const pass = new PassThrough();
    if (head.length) pass.write(head);
    forwardInput(sock, pass);
    input = engine.attachInput(ref, pass, gone.signal).catch(() => undefined);
  } else {
    sock.on('data', () => undefined);
  }
  const entries = stream ? engine.attachOutput(ref, { logs, abort: gone.signal }) : logs ? engine.logs(ref, {}) : undefined;
  if (entries) {
    for await (const e of entries) {
      if (gone.signal.aborted) break;
      if (e.stream === 'stdout' ? !stdout : !stderr) continue;
      const payload = Buffer.from(`${e.content}${e.partial ? '' : '\n'}`, 'utf8');
      if (!sock.write(framed ? muxFrame(e.stream, payload) : payload)) await new Promise<void>((r) => (gone.signal.aborted ? r() : sock.once('drain', r).once('close', r)));
    }
  }
  gone.abort();
  await input;
  sock.end();
}
