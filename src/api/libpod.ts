/**
 * Podman's libpod API (what `podman --remote` 4.3.1 asks for), in Podman's shapes
 * (engine/shapes.ts, the same as the CLI's JSON). Each endpoint is one engine call.
 */
import * as os from 'node:os';
import { PassThrough } from 'node:stream';
import type { Engine } from '../engine/engine.js';
import { checkpointContainers, restoreContainers } from '../engine/checkpoint.js';
import { hostInfo } from '../engine/host.js';
import { matchesFilters } from '../engine/select.js';
import { containerFacts, psExtras } from '../engine/facts.js';
import { checkpointStats, imageEntry, imageInspectEntry, libpodInspectEntry, libpodPsEntry } from '../engine/shapes.js';
import { goArch } from '../engine/host.js';
import { VERSION, bunVersion } from '../lib/version.js';
import { ApiError, Router, boolParam, intParam, sendEmpty, sendJson, sendPing } from './http.js';
import { DOCKER_API_VERSION, DOCKER_MIN_API_VERSION, logsOptions, parseFilters, streamLogs } from './docker.js';

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

  r.on('POST', '/containers/:name/wait', async ({ res, params }) => {
    engine.lookup(params.name!);
    const code = await engine.wait(params.name!);
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
    const common = {
      keep: boolParam(query, 'keep'),
      tcpEstablished: boolParam(query, 'tcpEstablished'),
      tcpClose: boolParam(query, 'tcpClose'),
      fileLocks: boolParam(query, 'fileLocks'),
      ignoreStaticIp: boolParam(query, 'ignoreStaticIP'),
      ignoreStaticMac: boolParam(query, 'ignoreStaticMAC'),
    };
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

  r.on('GET', '/images/json', ({ res }) => {
    const users = engine.imageUsers();
    sendJson(res, 200, engine.images.list().map((i) => imageEntry(i, users.get(i.Id)?.length ?? 0)));
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
