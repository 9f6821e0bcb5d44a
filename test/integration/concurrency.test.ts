import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Host, eventually } from '../helpers/ferry.js';

const h = new Host('conc');
before(() => h.importBusybox());
after(() => h.destroy());

test('10 parallel `run -d` with distinct names all succeed and ps shows all 10', async () => {
  const names = Array.from({ length: 10 }, (_, i) => `par${i}`);
  const rs = await Promise.all(names.map((n) => h.run(['run', '-d', '--name', n, 'busybox', 'sleep', '1000'])));
  for (const [i, r] of rs.entries()) assert.equal(r.code, 0, `${names[i]}: ${r.stderr}`);
  const ids = rs.map((r) => r.stdout.trim());
  assert.equal(new Set(ids).size, 10, 'distinct IDs');
  assert.deepEqual(await h.names(false), [...names].sort());
  const ps = JSON.parse(await h.ok(['ps', '--format', 'json'])) as { Id: string; State: string; Pid: number }[];
  assert.equal(ps.length, 10);
  assert.ok(ps.every((p) => p.State === 'running' && p.Pid > 0));
  assert.equal(new Set(ps.map((p) => p.Pid)).size, 10);
  assert.equal(h.mounts().filter((m) => m.endsWith('/merged')).length, 10);

  // And 10 parallel rm -f leave nothing behind.
  const rm = await Promise.all(names.map((n) => h.run(['rm', '-f', n])));
  for (const r of rm) assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await h.names(), []);
  assert.deepEqual(h.containerDirs(), []);
  assert.deepEqual(h.mounts(), []);
});

test('two parallel runs with the same name: exactly one succeeds', async () => {
  for (let round = 0; round < 3; round++) {
    const name = `same${round}`;
    const rs = await Promise.all([0, 1].map(() => h.run(['run', '-d', '--name', name, 'busybox', 'sleep', '1000'])));
    const ok = rs.filter((r) => r.code === 0);
    const bad = rs.filter((r) => r.code !== 0);
    assert.equal(ok.length, 1, `round ${round}: ${rs.map((r) => r.stderr).join(' | ')}`);
    assert.equal(bad[0]!.code, 125);
    assert.match(bad[0]!.stderr, /^Error: the container name "same\d" is already in use/);
    assert.deepEqual((await h.names()).filter((n) => n === name), [name], 'one container with that name');
    assert.equal((await h.inspect(name)).Id, ok[0]!.stdout.trim());
  }
  assert.equal(h.containerDirs().length, 3, 'no half-created container of the losers');
  await h.ok(['rm', '-a', '-f']);
});

test('parallel commands on one container serialize: stop and start races end in a consistent state', async () => {
  await h.ok(['run', '-d', '--name', 'racer', 'busybox', 'sleep', '1000']);
  const rs = await Promise.all([
    h.run(['stop', '-t', '0', 'racer']),
    h.run(['start', 'racer']),
    h.run(['stop', '-t', '0', 'racer']),
    h.run(['inspect', 'racer']),
    h.run(['ps', '-a']),
  ]);
  for (const r of rs) assert.equal(r.code, 0, r.stderr);
  const i = await h.inspect('racer');
  const merged = i.GraphDriver.Data.MergedDir as string;
  if (i.State.Status === 'running') {
    assert.ok(i.State.Pid > 0);
    assert.ok(h.mounts().includes(merged));
  } else {
    assert.equal(i.State.Status, 'exited');
    await eventually(() => !h.mounts().includes(merged));
  }
  await h.ok(['rm', '-f', 'racer']);
  assert.deepEqual(h.mounts(), []);
});
