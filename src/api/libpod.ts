/**
 * Podman's libpod API (what `podman --remote` 4.3.1 asks for), in Podman's shapes
 * (engine/shapes.ts, the same as the CLI's JSON). Each endpoint is one engine call.
 */
import * as os from 'node:os';
import { PassThrough } from 'node:stream';
import type { CreateOptions, Engine } from '../engine/engine.js';
import type { ResourceFlags } from '../engine/resources.js';
import { checkpointContainers, restoreContainers } from '../engine/checkpoint.js';
import { createPod, inspectPods, killPod, listPodViews, removePod, startPod, stopPod, type PodCreateOptions } from '../engine/pods.js';
import { checkpointPodRequest, restorePodRequest } from '../engine/podcheckpoint.js';
import { migrate } from '../engine/migrate/source.js';
import { waitOrRecorded } from '../engine/events.js';
import type { ContainerStatus } from '../engine/types.js';
import { COMPRESSIONS, type Compression } from '../drivers/archive/compress.js';
import { hostInfo } from '../engine/host.js';
import { matchesFilters } from '../engine/select.js';
import { containerFacts, psExtras } from '../engine/facts.js';
import { checkpointStats, imageEntry, imageInspectEntry, libpodInspectEntry, libpodPsEntry, podInspectEntry, podPsEntry } from '../engine/shapes.js';
import { goArch } from '../engine/host.js';
import { VERSION, bunVersion } from '../lib/version.js';
import { ApiError, Router, bool, boolParam, intParam, obj, readJson, sendEmpty, sendJson, sendPing, str, strList, strMap } from './http.js';
import { DOCKER_API_VERSION, DOCKER_MIN_API_VERSION, logsOptions, parseFilters, registryAuthOf, streamLogs } from './docker.js';

/** The libpod API version Ferry answers as (the podman client compares major and minor). */
export const LIBPOD_API_VERSION = '4.3.1';

export const LIBPOD_HEADERS: Record<string, string> = {
  'Libpod-Api-Version': LIBPOD_API_VERSION,
  'Api-Version': DOCKER_API_VERSION,
  Server: `Ferry/${VERSION} (linux)`,
};

export function libpodRoutes(engine: Engine): Router {
  const r = new Router();

  r.on('GET', '/_ping', ({ res }) => sendPing(res, { 'Libpod-Buildah-Version': '' }));

  r.on('GET', '/version', async ({ res }) => {
    const details = { APIVersion: LIBPOD_API_VERSION, MinAPIVersion: '4.0.0', Os: 'linux', Arch: goArch(), KernelVersion: os.release(), BunVersion: bunVersion() };
    sendJson(res, 200, {
      Platform: { Name: 'linux/' + goArch() + '/ferry' },
      Components: [{ Name: 'Podman Engine', Version: LIBPOD_API_VERSION, Details: details }],
      Version: LIBPOD_API_VERSION,
      ApiVersion: DOCKER_API_VERSION,
      MinAPIVersion: DOCKER_MIN_API_VERSION,
      GitCommit: '',
      GoVersion: `bun${bunVersion()}`,
      Os: 'linux',
      Arch: goArch(),
      KernelVersion: os.release(),
      BuildTime: new Date(0).toISOString(),
    });
  });

  r.on('GET', '/info', async ({ res }) => sendJson(res, 200, await hostInfo(engine)));

  r.on('GET', '/containers/json', async ({ res, query }) => {
    const filters = parseFilters(query.get('filters'));
    const last = query.get('last');
    let recs = (await engine.listContainers({ all: boolParam(query, 'all') })).filter((x) => matchesFilters(x, filters));
    if (last !== null && last !== '-1') recs = recs.slice(0, intParam(query, 'last'));
    const extras = psExtras(engine, recs, { size: boolParam(query, 'size') });
    sendJson(res, 200, recs.map((x, i) => libpodPsEntry(x, extras[i])));
  });

  // podman create / run: Podman's SpecGenerator, mapped onto the same options as `ferry create`.
  r.on('POST', '/containers/create', async ({ raw, res }) => {
    const rec = await engine.create(specOptions(await readJson(raw)));
    sendJson(res, 201, { Id: rec.config.id, Warnings: [] });
  });

  r.on('POST', '/containers/:name/kill', async ({ res, params, query }) => {
    await engine.kill(params.name!, query.get('signal') || 'KILL');
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:name/pause', async ({ res, params }) => {
    await engine.pause(params.name!);
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:name/unpause', async ({ res, params }) => {
    await engine.unpause(params.name!);
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:name/restart', async ({ res, params, query }) => {
    await engine.restart(params.name!, intParam(query, 't', 86_400));
    sendEmpty(res, 204);
  });

  r.on('GET', '/containers/:name/json', async ({ res, params, query }) => {
    const rec = await engine.inspect(params.name!);
    sendJson(res, 200, libpodInspectEntry(rec, engine.paths, containerFacts(engine, rec, { size: boolParam(query, 'size') })));
  });

  r.on('GET', '/containers/:name/exists', ({ res, params }) => {
    engine.lookup(params.name!);
    sendEmpty(res, 204);
  });

  r.on('GET', '/containers/:name/logs', async (req) => {
    const { query, params } = req;
    // Podman's client sends neither when it wants both.
    const both = !query.has('stdout') && !query.has('stderr');
    const stdout = both || boolParam(query, 'stdout');
    const stderr = both || boolParam(query, 'stderr');
    if (!stdout && !stderr) throw new ApiError(400, 'you must choose at least one stream');
    engine.lookup(params.name!);
    // libpod always frames (Podman's client demultiplexes), terminal or not.
    await streamLogs(req, engine.logs(params.name!, logsOptions(query)), { stdout, stderr, timestamps: boolParam(query, 'timestamps'), framed: true });
  });

  r.on('POST', '/containers/:name/start', async ({ res, params }) => {
    const before = await engine.inspect(params.name!);
    if (before.state.status === 'running') return sendEmpty(res, 304);
    await engine.start(params.name!);
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:name/stop', async ({ res, params, query }) => {
    const before = await engine.inspect(params.name!);
    if (before.state.status !== 'running' && before.state.status !== 'paused') return sendEmpty(res, 304);
    await engine.stop(params.name!, intParam(query, 'timeout', 86_400) ?? intParam(query, 't', 86_400));
    sendEmpty(res, 204);
  });

  r.on('POST', '/containers/:name/wait', async ({ res, params, query }) => {
    const conditions = query.getAll('condition').flatMap((c) => c.split(',')).filter(Boolean);
    const code = await waitOrRecorded(engine, params.name!, { conditions: conditions.length ? (conditions as ContainerStatus[]) : undefined });
    sendJson(res, 200, code);
  });

  r.on('DELETE', '/containers/:name', async ({ res, params, query }) => {
    const rec = await engine.remove(params.name!, { force: boolParam(query, 'force'), volumes: boolParam(query, 'v') });
    sendJson(res, 200, [{ Id: rec.config.id }]);
  });

  r.on('POST', '/containers/:name/checkpoint', async ({ res, params, query }) => {
    const exported = boolParam(query, 'export');
    const req = {
      refs: [params.name!],
      keep: boolParam(query, 'keep'),
      leaveRunning: boolParam(query, 'leaveRunning'),
      tcpEstablished: boolParam(query, 'tcpEstablished'),
      fileLocks: boolParam(query, 'fileLocks'),
      preCheckpoint: boolParam(query, 'preCheckpoint'),
      withPrevious: boolParam(query, 'withPrevious'),
      ignoreRootfs: boolParam(query, 'ignoreRootFS'),
      ignoreVolumes: boolParam(query, 'ignoreVolumes'),
      createImage: query.get('createImage') || undefined,
    };
    if (exported) {
      // The archive is the body, uncompressed as Podman's; an error before its first byte is JSON.
      // The response ends only once the checkpoint is done (state saved), not when the archive is.
      res.setHeader('Content-Type', 'application/x-tar');
      const body = new PassThrough();
      body.pipe(res, { end: false });
      const sent = new Promise<void>((resolve) => body.once('end', resolve));
      await checkpointContainers(engine, { ...req, export: body, compression: 'none' });
      await sent;
      res.end();
      return;
    }
    const reports = await checkpointContainers(engine, req);
    const stats = checkpointStats('checkpoint', reports).container_statistics as Record<string, unknown>[];
    sendJson(res, 200, boolParam(query, 'printStats') ? stats[0] : { Id: reports[0]!.id });
  });

  r.on('POST', '/containers/:name/restore', async ({ raw, res, params, query }) => {
    const imported = boolParam(query, 'import');
    if (query.getAll('publishPorts').length) throw new ApiError(400, 'publishPorts is not supported over the API yet');
    const common = restoreQuery(query);
    const reports = imported
      ? await restoreContainers(engine, {
          ...common,
          import: raw,
          name: query.get('name') || undefined,
          ignoreRootfs: boolParam(query, 'ignoreRootFS'),
          ignoreVolumes: boolParam(query, 'ignoreVolumes'),
          pod: query.get('pod') || undefined,
        })
      : // {name} is a container, or a checkpoint image (then name, ignoreRootFS, ... apply as with import).
        await restoreContainers(engine, {
          ...common,
          refs: [params.name!],
          name: query.get('name') || undefined,
          ignoreRootfs: boolParam(query, 'ignoreRootFS') || undefined,
          ignoreVolumes: boolParam(query, 'ignoreVolumes') || undefined,
          pod: query.get('pod') || undefined,
        });
    const stats = checkpointStats('restore', reports).container_statistics as Record<string, unknown>[];
    sendJson(res, 200, boolParam(query, 'printStats') ? stats[0] : { Id: reports[0]!.id });
  });

  // ----------------------------------------------------------------------- pods

  r.on('GET', '/pods/json', async ({ res, query }) => {
    const f = query.get('filters');
    if (f && Object.keys(parseFilters(f)).length) throw new ApiError(400, 'pod filters are not supported yet: list without them');
    sendJson(res, 200, (await listPodViews(engine)).map(podPsEntry));
  });

  r.on('POST', '/pods/create', async ({ raw, res }) => {
    const pod = await createPod(engine, podSpecOptions(await readJson(raw)));
    sendJson(res, 201, { Id: pod.id });
  });

  r.on('GET', '/pods/:name/json', async ({ res, params }) => sendJson(res, 200, podInspectEntry((await inspectPods(engine, [params.name!]))[0]!)));

  r.on('GET', '/pods/:name/exists', async ({ res, params }) => {
    await inspectPods(engine, [params.name!]);
    sendEmpty(res, 204);
  });

  r.on('POST', '/pods/:name/start', async ({ res, params }) => sendJson(res, 200, { Id: (await startPod(engine, params.name!)).id, Errs: null }));

  r.on('POST', '/pods/:name/stop', async ({ res, params, query }) => {
    const timeout = query.get('timeout') === '-1' ? undefined : intParam(query, 'timeout', 86_400) ?? intParam(query, 't', 86_400); // -1: each container's own
    sendJson(res, 200, { Id: (await stopPod(engine, params.name!, timeout)).id, Errs: null });
  });

  r.on('POST', '/pods/:name/kill', async ({ res, params, query }) => sendJson(res, 200, { Id: (await killPod(engine, params.name!, query.get('signal') || 'KILL')).id, Errs: null }));

  r.on('DELETE', '/pods/:name', async ({ res, params, query }) => {
    const members = (await inspectPods(engine, [params.name!]))[0]!;
    const pod = await removePod(engine, params.name!, boolParam(query, 'force'));
    sendJson(res, 200, { Err: null, Id: pod.id, RemovedCtrs: Object.fromEntries([...members.members.map((m) => m.config.id), pod.infraId].map((id) => [id, null])) });
  });

  // ----------------------------------------------------------------------- Ferry's own additions

  // `ferry pod checkpoint` (every member frozen together); export=true answers with the archive.
  r.on('POST', '/pods/:name/checkpoint', async ({ res, params, query }) => {
    const req = {
      leaveRunning: boolParam(query, 'leaveRunning'),
      keep: boolParam(query, 'keep'),
      tcpEstablished: boolParam(query, 'tcpEstablished'),
      fileLocks: boolParam(query, 'fileLocks'),
      ignoreRootfs: boolParam(query, 'ignoreRootFS'),
      ignoreVolumes: boolParam(query, 'ignoreVolumes'),
    };
    if (boolParam(query, 'export')) {
      res.setHeader('Content-Type', 'application/x-tar');
      const body = new PassThrough();
      body.pipe(res, { end: false });
      const sent = new Promise<void>((resolve) => body.once('end', resolve));
      await checkpointPodRequest(engine, params.name!, { ...req, export: body, compression: 'none' });
      await sent;
      return void res.end();
    }
    const r = await checkpointPodRequest(engine, params.name!, req);
    sendJson(res, 200, { Id: r.id, Name: r.name, FrozenMs: Math.round(r.frozenMs), TotalMs: Math.round(r.totalMs), Containers: r.members.map((m) => ({ Id: m.id, Name: m.name })) });
  });

  // `ferry pod restore` of a checkpointed pod.
  r.on('POST', '/pods/:name/restore', async ({ res, params, query }) => {
    if (boolParam(query, 'import')) throw new ApiError(400, 'import is not supported for pods over the API yet: use `ferry pod restore --import FILE`');
    const r = await restorePodRequest(engine, { pod: params.name!, ...restoreQuery(query) });
    sendJson(res, 200, { Id: r.id, Name: r.name, TotalMs: Math.round(r.totalMs), Containers: r.members.map((m) => ({ Id: m.id, Name: m.name })) });
  });

  // `ferry migrate`: the container moves to destination (ssh://... or ferry://HOST:PORT with
  // secretFile, a file on the service's host); the answer is the migration's report.
  r.on('POST', '/containers/:name/migrate', async ({ res, params, query }) => {
    const destination = query.get('destination');
    if (!destination || destination.length > 1024) throw new ApiError(400, 'give destination=ssh://HOST or ferry://HOST:PORT');
    const compress = query.get('compress') || 'zstd';
    if (!COMPRESSIONS.includes(compress as Compression)) throw new ApiError(400, `invalid compress "${compress}": use zstd, gzip or none`);
    const report = await migrate(engine, params.name!, {
      destination,
      secretFile: query.get('secretFile') || undefined,
      identity: query.get('identity') || undefined,
      remoteCommand: query.get('remoteCommand') || undefined,
      lazy: boolParam(query, 'lazy'),
      preCopy: intParam(query, 'preCopy', 1000),
      tcpEstablished: boolParam(query, 'tcpEstablished'),
      withImage: boolParam(query, 'withImage'),
      compression: compress as Compression,
    });
    sendJson(res, 200, report);
  });

  // libpod's ImageSummary: as `images --format json`, with the names in RepoTags (the client makes its columns from them).

  r.on('GET', '/images/json', ({ res }) => {
    const users = engine.imageUsers();
    // The API's ImageSummary carries the tags in RepoTags (the CLI's JSON has them in Names only).
    sendJson(res, 200, engine.images.list().map((i) => ({ ...imageEntry(i, users.get(i.Id)?.length ?? 0), RepoTags: i.Names.length ? i.Names : null, Dangling: !i.Names.length })));
  });

  // podman pull, and podman run's pull (policy=missing): a JSON stream, the image's ID at the end.
  r.on('POST', '/images/pull', async ({ raw, res, query }) => {
    const ref = query.get('reference');
    if (!ref || ref.length > 1024) throw new ApiError(400, 'give reference=IMAGE: the image to pull');
    if (boolParam(query, 'allTags')) throw new ApiError(400, 'allTags is not supported: pull one tag at a time');
    const policy = query.get('policy') || 'always';
    if (!['always', 'missing', 'never', 'newer'].includes(policy)) throw new ApiError(400, `invalid policy "${policy}": use always, missing, never or newer`);
    const os_ = query.get('os') || 'linux';
    const arch = query.get('arch') || '';
    const variant = query.get('variant') || '';
    const platform = arch ? `${os_}/${arch}${variant ? `/${variant}` : ''}` : undefined;
    const creds = registryAuthOf(raw.headers['x-registry-auth']);
    const tlsVerify = boolParam(query, 'tlsVerify', true);
    const quiet = boolParam(query, 'quiet');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    const write = (o: Record<string, unknown>): void => void res.write(JSON.stringify(o) + '\n');
    try {
      const img = await engine.imageForRun(ref, policy === 'newer' ? 'always' : (policy as 'always' | 'missing' | 'never'), {
        tlsVerify,
        platform,
        creds,
        progress: quiet ? undefined : (line: string) => write({ stream: line.endsWith('\n') ? line : `${line}\n` }),
      });
      write({ id: img.Id, images: [img.Id] });
    } catch (e) {
      write({ error: ((e as Error)?.message ?? String(e)).split('\n')[0] });
    }
    res.end();
  });

  // Podman's image inspect (its manifest's annotations included: `podman --remote container
  // restore IMAGE` checks a checkpoint image's by them).
  r.on('GET', '/images/:name/json', ({ res, params }) => {
    const store = engine.images;
    const img = store.get(params.name!);
    sendJson(res, 200, imageInspectEntry(img, store.config(img), img.Layers.map((l) => store.layers.diffDir(l)), store.manifest(img).annotations ?? {}));
  });

  return r;
}

/** A signal as Podman's client sends it (a number, or a name): its name. */
function signalName(v: unknown): string | undefined {
  if (v === undefined || v === null || v === 0) return undefined;
  if (typeof v === 'string' && /^(SIG)?[A-Z0-9+-]{1,16}$/i.test(v)) return v;
  if (typeof v === 'number' && Number.isInteger(v)) {
    const name = Object.entries(os.constants.signals).find(([, n]) => n === v)?.[0];
    if (name) return name;
  }
  throw new ApiError(400, 'invalid stop_signal: give a signal number or name');
}

/** Fields of Podman's SpecGenerator that Ferry cannot honour: refused when given, never dropped. */
const UNSUPPORTED_SPEC = ['cap_add', 'cap_drop', 'devices', 'privileged', 'secrets', 'dns_server', 'dns_search', 'dns_option', 'hostadd', 'overlay_volumes', 'image_volumes', 'rootfs', 'healthconfig', 'init', 'groups', 'sysctl', 'expose'];

/** A whole non-negative number of a limit (or absent). */
function limitNum(o: Record<string, unknown> | undefined, key: string, what: string): number | undefined {
  const v = o?.[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < -1) throw new ApiError(400, `invalid ${what}: give a whole number`);
  return v;
}

/**
 * resource_limits (memory limit/swap, cpu quota/period/shares, pids limit), r_limits and
 * shm_size as `ferry create`'s --memory, --memory-swap, --cpus, --cpu-shares, --pids-limit,
 * --ulimit, --shm-size; any other limit is refused.
 */
function specResources(b: Record<string, unknown>): ResourceFlags | undefined {
  const rl = obj(b, 'resource_limits') ?? {};
  const mem = obj(rl, 'memory');
  const cpu = obj(rl, 'cpu');
  const pids = obj(rl, 'pids');
  const known: Record<string, string[]> = { memory: ['limit', 'swap'], cpu: ['quota', 'period', 'shares'], pids: ['limit'] };
  for (const [k, v] of Object.entries(rl)) {
    if (v === null || v === undefined || (typeof v === 'object' && !Object.keys(v as object).length)) continue;
    if (!(k in known) || typeof v !== 'object') throw new ApiError(400, `resource_limits.${k} is not supported by Ferry: give memory, cpu or pids limits`);
    for (const [f, x] of Object.entries(v as object)) if (x !== null && x !== undefined && x !== 0 && !known[k]!.includes(f)) throw new ApiError(400, `resource_limits.${k}.${f} is not supported by Ferry`);
  }
  const r: ResourceFlags = {};
  const limit = limitNum(mem, 'limit', 'memory limit');
  if (limit !== undefined && limit > 0) r.memory = String(limit);
  const swap = limitNum(mem, 'swap', 'memory swap');
  if (swap !== undefined && swap !== 0) r.memorySwap = String(swap);
  const quota = limitNum(cpu, 'quota', 'cpu quota');
  const period = limitNum(cpu, 'period', 'cpu period') || 100_000;
  if (quota !== undefined && quota > 0) r.cpus = String(Math.round((quota / period) * 1000) / 1000);
  const shares = limitNum(cpu, 'shares', 'cpu shares');
  if (shares) r.cpuShares = String(shares);
  const pl = limitNum(pids, 'limit', 'pids limit');
  if (pl) r.pidsLimit = String(pl);
  const rlimits = b.r_limits;
  if (rlimits !== undefined && rlimits !== null) {
    if (!Array.isArray(rlimits) || rlimits.length > 64) throw new ApiError(400, 'invalid r_limits: give a list of {type, soft, hard}');
    r.ulimit = (rlimits as Record<string, unknown>[]).map((x) => {
      const type = typeof x?.type === 'string' ? x.type.toLowerCase().replace(/^rlimit_/, '') : '';
      if (!/^[a-z]{1,16}$/.test(type) || typeof x.soft !== 'number' || typeof x.hard !== 'number') throw new ApiError(400, 'invalid r_limits: give {type, soft, hard}');
      return `${type}=${x.soft}:${x.hard}`;
    });
    if (!r.ulimit.length) delete r.ulimit;
  }
  const shm = b.shm_size;
  if (shm !== undefined && shm !== null) {
    if (typeof shm !== 'number' || !Number.isSafeInteger(shm) || shm < 0) throw new ApiError(400, 'invalid shm_size: give a number of bytes');
    if (shm > 0) r.shmSize = String(shm);
  }
  return Object.keys(r).length ? r : undefined;
}

/** Podman's SpecGenerator (POST /libpod/containers/create) as the options of `ferry create`. */
export function specOptions(b: Record<string, unknown>): CreateOptions {
  for (const k of UNSUPPORTED_SPEC) {
    const v = b[k];
    if (v === undefined || v === null || v === false || v === 0 || v === '' || (Array.isArray(v) && !v.length) || (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v as object).length)) continue;
    throw new ApiError(400, `${k} is not supported by Ferry over the API: create the container without it`);
  }
  const image = str(b, 'image') || str(b, 'raw_image_name');
  if (!image) throw new ApiError(400, 'image is required: name the image to create the container from');
  const entrypoint = strList(b, 'entrypoint');
  const env = strMap(b, 'env');
  const netns = obj(b, 'netns') ?? {};
  const nsmode = str(netns, 'nsmode') ?? '';
  const networks = Object.keys(obj(b, 'Networks') ?? {});
  if (networks.length > 1) throw new ApiError(400, 'a container joins one network in Ferry: give one');
  if (!['', 'default', 'bridge', 'private', 'none', 'host'].includes(nsmode)) throw new ApiError(400, `network mode "${nsmode}" is not supported: use bridge, none or host`);
  const network = nsmode === 'none' || nsmode === 'host' ? nsmode : networks[0];
  const ports = b.portmappings;
  if (ports !== undefined && ports !== null && !Array.isArray(ports)) throw new ApiError(400, 'invalid portmappings: give a list');
  const publish = ((ports as Record<string, unknown>[] | null) ?? []).map((p) => {
    if (typeof p !== 'object' || p === null) throw new ApiError(400, 'invalid portmappings: give objects');
    const cport = p.container_port;
    const hport = p.host_port ?? 0;
    const range = p.range ?? 1;
    const proto = p.protocol || 'tcp';
    const ip = p.host_ip || '';
    if (typeof cport !== 'number' || typeof hport !== 'number' || typeof range !== 'number' || typeof proto !== 'string' || typeof ip !== 'string') throw new ApiError(400, 'invalid portmappings: container_port and host_port are numbers');
    if (range !== 1 && range !== 0) throw new ApiError(400, 'port ranges are not supported: publish each port');
    if (proto.includes(',')) throw new ApiError(400, 'one protocol per port mapping: give tcp or udp');
    return `${ip ? `${ip}:` : ''}${hport ? `${hport}:` : ''}${cport}/${proto}`;
  });
  const volumes: string[] = [];
  const tmpfs: string[] = [];
  const mounts = b.mounts;
  if (mounts !== undefined && mounts !== null) {
    if (!Array.isArray(mounts)) throw new ApiError(400, 'invalid mounts: give a list');
    for (const m of mounts as Record<string, unknown>[]) {
      const dest = m?.destination;
      const type = m?.type;
      const opts = Array.isArray(m?.options) ? (m.options as unknown[]).filter((x): x is string => typeof x === 'string') : [];
      if (typeof dest !== 'string' || typeof type !== 'string') throw new ApiError(400, 'invalid mounts: each needs destination and type');
      if (type === 'tmpfs') tmpfs.push(opts.length ? `${dest}:${opts.join(',')}` : dest);
      else if (type === 'bind' && typeof m.source === 'string') volumes.push(`${m.source}:${dest}${opts.filter((o) => o !== 'rbind' && o !== 'bind').length ? `:${opts.filter((o) => o !== 'rbind' && o !== 'bind').join(',')}` : ''}`);
      else throw new ApiError(400, `mount type "${type}" is not supported: use bind or tmpfs`);
    }
  }
  const vols = b.volumes;
  if (vols !== undefined && vols !== null) {
    if (!Array.isArray(vols)) throw new ApiError(400, 'invalid volumes: give a list');
    for (const v of vols as Record<string, unknown>[]) {
      if (typeof v?.Name !== 'string' || typeof v?.Dest !== 'string') throw new ApiError(400, 'invalid volumes: each needs Name and Dest');
      const opts = Array.isArray(v.Options) ? (v.Options as unknown[]).filter((x): x is string => typeof x === 'string') : [];
      volumes.push(`${v.Name}:${v.Dest}${opts.length ? `:${opts.join(',')}` : ''}`);
    }
  }
  const restartPolicy = str(b, 'restart_policy');
  const tries = b.restart_tries;
  const stopTimeout = b.stop_timeout;
  if (stopTimeout !== undefined && stopTimeout !== null && (typeof stopTimeout !== 'number' || !Number.isInteger(stopTimeout) || stopTimeout < 0)) throw new ApiError(400, 'invalid stop_timeout: give a whole number of seconds');
  const createCommand = strList(b, 'containerCreateCommand');
  return {
    image,
    name: str(b, 'name') || undefined,
    command: strList(b, 'command') ?? [],
    entrypoint: entrypoint ? JSON.stringify(entrypoint) : undefined,
    env: env ? Object.entries(env).map(([k, v]) => `${k}=${v}`) : undefined,
    workdir: str(b, 'work_dir') || undefined,
    hostname: str(b, 'hostname') || undefined,
    user: str(b, 'user') || undefined,
    labels: strMap(b, 'labels'),
    stopSignal: signalName(b.stop_signal),
    stopTimeout: typeof stopTimeout === 'number' ? stopTimeout : undefined,
    tty: bool(b, 'terminal'),
    interactive: bool(b, 'stdin'),
    volumes: volumes.length ? volumes : undefined,
    tmpfs: tmpfs.length ? tmpfs : undefined,
    network,
    ip: str(b, 'static_ip') || undefined,
    mac: str(b, 'static_mac') || undefined,
    publish: publish.length ? publish : undefined,
    publishAll: bool(b, 'publish_image_ports'),
    autoRemove: bool(b, 'remove'),
    resources: specResources(b),
    pod: str(b, 'pod') || undefined,
    restart: restartPolicy && restartPolicy !== 'no' ? (restartPolicy === 'on-failure' && typeof tries === 'number' && tries > 0 ? `on-failure:${tries}` : restartPolicy) : undefined,
    pull: 'never', // podman's client pulls first (POST /libpod/images/pull), as the policy says
    createCommand: createCommand && createCommand.length <= 4096 ? createCommand : undefined,
  };
}

/** Podman's PodSpecGenerator (POST /libpod/pods/create) as the options of `ferry pod create`. */
export function podSpecOptions(b: Record<string, unknown>): PodCreateOptions {
  if (bool(b, 'no_infra')) throw new ApiError(400, 'no_infra is not supported: a Ferry pod always has its infra container');
  for (const k of ['labels', 'dns_server', 'dns_search', 'hostadd', 'infra_image', 'infra_command', 'volumes', 'mounts', 'devices', 'sysctl']) {
    const v = b[k];
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length) || (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v as object).length)) continue;
    throw new ApiError(400, `${k} is not supported for pods by Ferry over the API: create the pod without it`);
  }
  const networks = Object.keys(obj(b, 'Networks') ?? {});
  if (networks.length > 1) throw new ApiError(400, 'a pod joins one network in Ferry: give one');
  const ports = b.portmappings;
  if (ports !== undefined && ports !== null && !Array.isArray(ports)) throw new ApiError(400, 'invalid portmappings: give a list');
  const publish = ((ports as Record<string, unknown>[] | null) ?? []).map((p) => {
    const ip = typeof p?.host_ip === 'string' && p.host_ip ? `${p.host_ip}:` : '';
    if (typeof p?.container_port !== 'number') throw new ApiError(400, 'invalid portmappings: container_port is a number');
    const hp = typeof p.host_port === 'number' && p.host_port ? `${p.host_port}:` : '';
    return `${ip}${hp}${p.container_port}/${typeof p.protocol === 'string' && p.protocol ? p.protocol : 'tcp'}`;
  });
  const share = strList(b, 'shared_namespaces');
  return {
    name: str(b, 'name') || undefined,
    hostname: str(b, 'hostname') || undefined,
    share: share?.length ? share.filter((n) => n !== 'cgroup') : undefined,
    publish: publish.length ? publish : undefined,
    network: networks[0],
  };
}

/** The restore options a container's and a pod's restore endpoints share (libpod's query names). */
function restoreQuery(query: URLSearchParams) {
  return {
    keep: boolParam(query, 'keep'),
    tcpEstablished: boolParam(query, 'tcpEstablished'),
    tcpClose: boolParam(query, 'tcpClose'),
    fileLocks: boolParam(query, 'fileLocks'),
    ignoreStaticIp: boolParam(query, 'ignoreStaticIP'),
    ignoreStaticMac: boolParam(query, 'ignoreStaticMAC'),
  };
}
