import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseResources, parseRestartPolicy, parseSize, parseUlimit, resourcesFromSpec, specJson, specResources } from '../../src/engine/resources.js';
import { goDuration } from '../../src/engine/everyday.js';
import { statsSize } from '../../src/engine/shapes.js';
import { FerryError } from '../../src/lib/errors.js';

test('sizes, ulimits and restart policies as Podman reads them', () => {
  assert.equal(parseSize('64m', '--memory'), 64 * 1024 * 1024);
  assert.equal(parseSize('1g', '--memory'), 1024 ** 3);
  assert.equal(parseSize('512k', '--memory'), 512 * 1024);
  assert.equal(parseSize('1000', '--memory'), 1000);
  assert.equal(parseSize('1.5GB', '--memory'), 1.5 * 1024 ** 3);
  assert.throws(() => parseSize('lots', '--memory'), FerryError);
  assert.deepEqual(parseUlimit('nofile=1024:2048'), { Name: 'RLIMIT_NOFILE', Soft: 1024, Hard: 2048 });
  assert.deepEqual(parseUlimit('core=-1'), { Name: 'RLIMIT_CORE', Soft: -1, Hard: -1 });
  assert.throws(() => parseUlimit('nofile=10:5'), /soft limit must not be above/);
  assert.throws(() => parseUlimit('nofile'), /use TYPE=SOFT/);
  assert.deepEqual(parseRestartPolicy('on-failure:3'), { Name: 'on-failure', MaximumRetryCount: 3 });
  assert.deepEqual(parseRestartPolicy('always'), { Name: 'always', MaximumRetryCount: 0 });
  assert.throws(() => parseRestartPolicy('always:3'), /only on-failure takes a retry count/);
});

test('limits: Podman\'s defaults and rules, the spec\'s shapes, and back from a spec', () => {
  assert.equal(parseResources({}), undefined);
  const r = parseResources({ memory: '64m', cpus: '1.5', cpuShares: '512', pidsLimit: '-1', ulimit: ['nofile=1:2', 'nofile=3:4'], shmSize: '1g' })!;
  assert.deepEqual(r, { memory: 64 * 1024 ** 2, memorySwap: 128 * 1024 ** 2, nanoCpus: 1.5e9, cpuShares: 512, pidsLimit: -1, ulimits: [{ Name: 'RLIMIT_NOFILE', Soft: 3, Hard: 4 }], shmSize: 1024 ** 3 });
  assert.throws(() => parseResources({ memorySwap: '1g' }), /needs --memory/);
  assert.throws(() => parseResources({ memory: '1m' }), /too small/);
  const s = specResources({ ...r, ulimits: [{ Name: 'RLIMIT_CORE', Soft: -1, Hard: -1 }] });
  assert.deepEqual(s.resources, { memory: { limit: 64 * 1024 ** 2, swap: 128 * 1024 ** 2 }, cpu: { shares: 512, quota: 150000, period: 100000 }, pids: { limit: -1 } });
  assert.equal(s.shmSize, 1024 ** 3);
  // RLIM_INFINITY is written as the exact uint64 runc reads.
  assert.match(specJson({ process: { rlimits: s.rlimits } }), /"soft": 18446744073709551615,/);
  assert.deepEqual(resourcesFromSpec({ linux: { resources: s.resources } }), { memory: 64 * 1024 ** 2, memorySwap: 128 * 1024 ** 2, nanoCpus: 1.5e9, cpuShares: 512 });
  assert.equal(resourcesFromSpec({ linux: { resources: { memory: { limit: 'x' } } } }), undefined);
});

test('stats\' sizes and Go durations as Podman prints them', () => {
  assert.equal(statsSize(0), '0B');
  assert.equal(statsSize(626700), '626.7kB');
  assert.equal(statsSize(67108864), '67.11MB');
  assert.equal(statsSize(999), '999B');
  assert.equal(goDuration(0), '0s');
  assert.equal(goDuration(24406903), '24.406903ms');
  assert.equal(goDuration(1649262482), '1.649262482s');
  assert.equal(goDuration(62.5e9), '1m2.5s');
  assert.equal(goDuration(3.6e12 + 1e9), '1h0m1s');
});
