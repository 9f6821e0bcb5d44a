import { test } from 'node:test';
import assert from 'node:assert/strict';
import { humanDuration, inspectEntry, psEntry, statusText } from '../../src/engine/shapes.js';
import { Paths } from '../../src/engine/paths.js';
import { initialState, type ContainerRecord } from '../../src/engine/types.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

test('humanDuration follows go-units HumanDuration', () => {
  const cases: [number, string][] = [
    [0, 'Less than a second'],
    [400, 'Less than a second'],
    [1 * S, '1 second'],
    [1400, '1 second'],
    [2 * S, '2 seconds'],
    [59 * S, '59 seconds'],
    [60 * S, 'About a minute'],
    [119 * S, 'About a minute'],
    [2 * M, '2 minutes'],
    [59 * M, '59 minutes'],
    [60 * M, 'About an hour'],
    [89 * M, 'About an hour'],
    [2 * H, '2 hours'],
    [47 * H, '47 hours'],
    [48 * H, '2 days'],
    [13 * D, '13 days'],
    [14 * D, '2 weeks'],
    [59 * D, '8 weeks'],
    [60 * D, '2 months'],
    [729 * D, '24 months'],
    [730 * D, '2 years'],
    [3650 * D, '10 years'],
  ];
  for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, `${ms} ms`);
});

function rec(state: Partial<ContainerRecord['state']>, created = '2024-01-01T00:00:00.000Z'): ContainerRecord {
  return {
    config: {
      id: 'a'.repeat(64), name: 'n', created, imageId: 'b'.repeat(64), imageName: 'localhost/busybox:latest', command: ['sh'], env: [],
      workdir: '/', hostname: 'h', mounts: [], autoRemove: false, labels: {}, stopSignal: 'TERM', stopTimeout: 10,
    },
    state: { ...initialState(), ...state },
  };
}

test('statusText: Created, Up, Paused, Exited (code) ago, Checkpointed', () => {
  const t0 = Date.parse('2024-01-01T00:00:00.000Z');
  assert.equal(statusText(rec({}), t0 + 5 * S), 'Created');
  assert.equal(statusText(rec({ status: 'running', startedAt: '2024-01-01T00:00:10.000Z' }), t0 + 10 * S + 3 * M), 'Up 3 minutes');
  assert.equal(statusText(rec({ status: 'paused' }), t0), 'Paused');
  assert.equal(statusText(rec({ status: 'exited', exitCode: 3, finishedAt: '2024-01-01T00:00:00.000Z' }), t0 + 2 * H), 'Exited (3) 2 hours ago');
  assert.equal(statusText(rec({ status: 'stopped', exitCode: 137, finishedAt: '2024-01-01T00:00:00.000Z' }), t0 + 30 * S), 'Exited (137) 30 seconds ago');
  assert.equal(
    statusText(rec({ status: 'exited', exitCode: 137, checkpointed: true, checkpointedAt: '2024-01-01T00:00:00.000Z', finishedAt: '2024-01-01T00:00:00.000Z' }), t0 + 1 * S),
    'Checkpointed 1 second ago',
  );
});

test('psEntry: Podman field names and types', () => {
  const e = psEntry(rec({ status: 'running', pid: 42, startedAt: '2024-01-01T00:00:01.000Z' }));
  assert.deepEqual(e.Names, ['n']);
  assert.equal(e.Id, 'a'.repeat(64));
  assert.equal(e.State, 'running');
  assert.equal(e.Pid, 42);
  assert.equal(e.Exited, false);
  assert.equal(e.Created, Date.parse('2024-01-01T00:00:00.000Z') / 1000);
  assert.equal(e.Labels, null);
  const x = psEntry(rec({ status: 'exited', pid: 42, exitCode: 1, finishedAt: '2024-01-01T00:01:00.000Z' }));
  assert.equal(x.Pid, 0, 'no PID once exited');
  assert.equal(x.Exited, true);
  assert.equal(x.ExitCode, 1);
});

test("inspectEntry: Podman 4.3.1's types (Entrypoint one string, StopSignal a number), pod and infra", () => {
  const paths = new Paths('/r', '/rr');
  const base = rec({ status: 'running', pid: 42 });
  const c = { ...base, config: { ...base.config, command: ['/bin/echo', 'ep', 'x'], entrypointLength: 2, stopSignal: 'INT', pod: 'p'.repeat(64) } };
  const e = inspectEntry(c, paths) as any;
  assert.equal(e.Config.Entrypoint, '/bin/echo ep');
  assert.deepEqual(e.Config.Cmd, ['x']);
  assert.equal(e.Config.StopSignal, 2);
  assert.equal(e.Pod, 'p'.repeat(64));
  assert.equal(e.IsInfra, false);
  const infra = inspectEntry({ ...base, config: { ...base.config, infraOf: 'q'.repeat(64) } }, paths) as any;
  assert.equal(infra.Pod, 'q'.repeat(64));
  assert.equal(infra.IsInfra, true);
  assert.equal(psEntry({ ...base, config: { ...base.config, infraOf: 'q'.repeat(64) } }).IsInfra, true);
  assert.equal(psEntry(base).Size, null, 'no size unless asked');
  assert.deepEqual(psEntry(base, { size: { rootFsSize: 2, rwSize: 1 } }).Size, { rootFsSize: 2, rwSize: 1 });
});
