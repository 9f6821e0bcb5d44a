import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podStatus, type PodView } from '../../src/engine/pods.js';
import type { PodRecord } from '../../src/engine/podstore.js';
import { podInspectEntry, podPsEntry } from '../../src/engine/shapes.js';
import { initialState, type ContainerRecord, type ContainerStatus } from '../../src/engine/types.js';

function rec(name: string, status: ContainerStatus): ContainerRecord {
  return {
    config: { id: name.padEnd(64, '0'), name, created: '2024-01-01T00:00:00.000Z', imageId: '', imageName: '', command: [], env: [], workdir: '/', hostname: '', mounts: [], autoRemove: false, labels: {}, stopSignal: 'TERM', stopTimeout: 10 },
    state: { ...initialState(), status },
  };
}

test('podStatus: Dead without infra; Created/Stopped while the infra is down; Running or Degraded by the members', () => {
  assert.equal(podStatus(undefined, []), 'Dead');
  assert.equal(podStatus(undefined, [rec('m', 'running')]), 'Dead');
  assert.equal(podStatus(rec('i', 'created'), []), 'Created');
  assert.equal(podStatus(rec('i', 'exited'), [rec('m', 'exited')]), 'Stopped');
  assert.equal(podStatus(rec('i', 'running'), []), 'Running');
  assert.equal(podStatus(rec('i', 'running'), [rec('a', 'running'), rec('b', 'running')]), 'Running');
  assert.equal(podStatus(rec('i', 'running'), [rec('a', 'running'), rec('b', 'exited')]), 'Degraded');
  assert.equal(podStatus(rec('i', 'running'), [rec('a', 'paused')]), 'Degraded');
});

test('pod shapes: ps and inspect entries in Podman\'s field names', () => {
  const pod: PodRecord = { id: 'p'.repeat(64), name: 'p1', created: '2024-01-01T00:00:00.000Z', infraId: 'i'.repeat(64), share: ['ipc', 'net', 'uts'], hostname: 'h' };
  const web = rec('web', 'running');
  const v: PodView = { pod, infra: rec('i', 'running'), members: [web], status: 'Running', containers: 2 };
  const infra = v.infra!;
  assert.deepEqual(podPsEntry(v), {
    Cgroup: '', Namespace: '', Networks: [], Labels: {},
    Id: pod.id, Name: 'p1', Status: 'Running', Created: pod.created, InfraId: pod.infraId, Share: pod.share, Hostname: 'h', NumberOfContainers: 2,
    Containers: [{ Id: web.config.id, Names: 'web', Status: 'running' }, { Id: infra.config.id, Names: infra.config.name, Status: 'running' }],
  });
  const ins = podInspectEntry(v);
  assert.deepEqual(
    { Id: ins.Id, Name: ins.Name, Created: ins.Created, Hostname: ins.Hostname, SharedNamespaces: ins.SharedNamespaces, InfraContainerID: ins.InfraContainerID, State: ins.State, NumContainers: ins.NumContainers },
    { Id: pod.id, Name: 'p1', Created: pod.created, Hostname: 'h', SharedNamespaces: pod.share, InfraContainerID: pod.infraId, State: 'Running', NumContainers: 2 },
  );
  assert.deepEqual(ins.Containers, [{ Id: web.config.id, Name: 'web', State: 'running' }, { Id: infra.config.id, Name: infra.config.name, State: 'running' }]);
});
