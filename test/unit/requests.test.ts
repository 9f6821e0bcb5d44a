// The rules of checkpoint/restore requests (the CLI's flags, the API's parameters): refused
// before any container is touched.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkpointContainers, removeCheckpoints, restoreContainers } from '../../src/engine/checkpoint.js';
import { checkpointPodRequest, restorePodRequest } from '../../src/engine/podcheckpoint.js';
import { checkpointStats } from '../../src/engine/shapes.js';
import { FerryError } from '../../src/lib/errors.js';
import { fakeContainer, scratchEngine } from '../helpers/records.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-req-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const engine = scratchEngine(dir, 'req');
const a = fakeContainer(engine, 'a', 'running');
fakeContainer(engine, 'b', 'running');
fakeContainer(engine, 'old', 'exited');
const before = JSON.stringify(fs.readFileSync(engine.paths.containerRecord(a), 'utf8'));

const einval = (re: RegExp) => (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && re.test(e.message);
const never = (): never => assert.fail('no container may be acted on');

test('checkpointContainers: export options need an export; emptyNs only network; an export takes one container', async () => {
  await assert.rejects(checkpointContainers(engine, { refs: ['a'], ignoreRootfs: true }, never), einval(/^--ignore-rootfs and --ignore-volumes only apply with --export$/));
  await assert.rejects(checkpointContainers(engine, { refs: ['a'], ignoreVolumes: true, export: '' }, never), einval(/only apply with --export/));
  await assert.rejects(checkpointContainers(engine, { refs: ['a'], emptyNs: ['network', 'ipc'] }, never), einval(/^invalid --empty-ns "ipc": only network is supported$/));
  await assert.rejects(checkpointContainers(engine, { all: true, export: path.join(dir, 'x.tar') }, never), einval(/^--export takes exactly one container$/));
  await assert.rejects(checkpointContainers(engine, { refs: ['a', 'b'], export: '-' }, never), einval(/exactly one container/));
  await assert.rejects(checkpointContainers(engine, { refs: ['a', 'b'], createImage: 'x' }, never), einval(/^--create-image takes exactly one container$/));
  await assert.rejects(checkpointContainers(engine, { refs: ['a'], latest: true }, never), einval(/cannot be used together/));
  await assert.rejects(checkpointContainers(engine, { refs: ['a', 'ghost'] }, never), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND');
  assert.equal(JSON.stringify(fs.readFileSync(engine.paths.containerRecord(a), 'utf8')), before, 'the container was not touched');
});

test('restoreContainers: import excludes a selection; import options need an import; --all picks none here', async () => {
  for (const sel of [{ refs: ['a'] }, { all: true }, { latest: true }]) {
    await assert.rejects(restoreContainers(engine, { ...sel, import: path.join(dir, 'none.tar') }, never), einval(/^--import restores a new container from the archive: do not name containers, --all or --latest with it$/), JSON.stringify(sel));
  }
  for (const opt of [{ name: 'n' }, { ignoreRootfs: true }, { ignoreVolumes: true }, { allowHostMounts: true }, { pod: 'p' }]) {
    await assert.rejects(restoreContainers(engine, { refs: ['old'], ...opt }, never), einval(/^--name, --ignore-rootfs, --ignore-volumes, --allow-host-mounts and --pod only apply with --import or a checkpoint image$/), JSON.stringify(opt));
  }
  assert.deepEqual(await restoreContainers(engine, { all: true }, never), [], 'no checkpointed container: nothing to do');
  await assert.rejects(restoreContainers(engine, {}, never), einval(/give at least one container/));
});

test('removeCheckpoints: names or --all; --all with no checkpoints removes nothing', async () => {
  await assert.rejects(removeCheckpoints(engine, { refs: [] }), einval(/^give at least one container name or ID, or --all$/));
  assert.deepEqual(await removeCheckpoints(engine, { all: true }, never), []);
  await assert.rejects(removeCheckpoints(engine, { refs: ['old'] }, never), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND' && /has no checkpoint/.test(e.message));
});

test('pod requests: a pod or an archive, not both; import options need an import; TCP kept or closed', async () => {
  await assert.rejects(checkpointPodRequest(engine, 'p', { ignoreRootfs: true }), einval(/^--ignore-rootfs and --ignore-volumes only apply with --export$/));
  await assert.rejects(restorePodRequest(engine, { pod: 'p', import: 'x.tar' }), einval(/^give either a pod or --import FILE, not both$/));
  await assert.rejects(restorePodRequest(engine, {}), einval(/^name the pod to restore, or give --import FILE$/));
  await assert.rejects(restorePodRequest(engine, { pod: 'p', name: 'n' }), einval(/only apply with --import$/));
  await assert.rejects(restorePodRequest(engine, { pod: 'p', tcpClose: true, tcpEstablished: true }), einval(/^--tcp-close and --tcp-established cannot be used together$/));
  await assert.rejects(restorePodRequest(engine, { pod: 'p' }), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND' && /no pod with name or ID "p"/.test(e.message), 'a valid request reaches the pod lookup');
});

test('checkpointStats: Podman\'s --print-stats document, microseconds and CRIU\'s snake_case names', () => {
  const doc = checkpointStats('checkpoint', [
    { id: 'a', name: 'a', path: '/x', totalMs: 10.5, runtimeMs: 4.25, criu: { freezingTimeUs: 7, frozenTimeUs: 8, memdumpTimeUs: 1, memwriteTimeUs: 2, pagesScanned: 5, pagesSkippedParent: 0, pagesWritten: 3, pagesLazy: 0 } },
    { id: 'b', name: 'b', path: '/y', totalMs: 1, runtimeMs: 0.5 },
  ]);
  assert.deepEqual(doc, {
    podman_checkpoint_duration: 11500,
    container_statistics: [
      { Id: 'a', runtime_checkpoint_duration: 4250, engine_duration: 10500, criu_statistics: { freezing_time: 7, frozen_time: 8, memdump_time: 1, memwrite_time: 2, pages_scanned: 5, pages_skipped_parent: 0, pages_written: 3, pages_lazy: 0 } },
      { Id: 'b', runtime_checkpoint_duration: 500, engine_duration: 1000, criu_statistics: null },
    ],
  });
  assert.deepEqual(Object.keys(checkpointStats('restore', [])), ['podman_restore_duration', 'container_statistics']);
});
