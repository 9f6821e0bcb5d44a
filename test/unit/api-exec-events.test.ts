/**
 * The API's pieces that need no container: routes whose parameter holds slashes (image names),
 * exec instances' checks, and the events filter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, Router } from '../../src/api/http.js';
import { ExecStore, execInspect, resizeExec } from '../../src/api/exec.js';
import { eventFilter, type DockerEvent } from '../../src/api/events.js';

test('pattern routes: an image name with a registry, a port and slashes; the segment routes still match', () => {
  const r = new Router();
  const hits: string[] = [];
  r.on('GET', '/images/json', () => void hits.push('list'));
  r.onPattern('GET', /^\/images\/(.+)\/json$/, ['name'], () => void hits.push('inspect'));
  r.onPattern('DELETE', /^\/images\/(.+)$/, ['name'], () => void hits.push('delete'));
  const m = r.match('GET', '/images/127.0.0.1:5000/app/web:1/json');
  assert.ok(typeof m === 'object');
  assert.equal(m.params.name, '127.0.0.1:5000/app/web:1');
  const list = r.match('GET', '/images/json');
  assert.ok(typeof list === 'object' && Object.keys(list.params).length === 0, 'a fixed route is not taken for a name');
  const del = r.match('DELETE', '/images/a%2Fb');
  assert.ok(typeof del === 'object');
  assert.equal(del.params.name, 'a/b');
  assert.equal(r.match('PUT', '/images/x'), 405);
  assert.equal(r.match('GET', '/images/%E0%A4%A/json'), 404, 'a bad escape is no route');
});

test('exec instances: checked at create, started once, inspect and resize', () => {
  const s = new ExecStore();
  const bad = (body: Record<string, unknown>, re: RegExp): void => {
    assert.throws(() => s.create('c1', body), (e: unknown) => e instanceof ApiError && e.status === 400 && re.test(e.message));
  };
  bad({}, /No exec command/);
  bad({ Cmd: [] }, /No exec command/);
  bad({ Cmd: 'ls' }, /Cmd/);
  bad({ Cmd: ['ls', 3] }, /Cmd/);
  bad({ Cmd: ['ls'], User: 'nobody' }, /User/);
  bad({ Cmd: ['ls'], Privileged: true }, /Privileged/);
  bad({ Cmd: ['ls'], Env: ['=x'] }, /environment variable/);
  bad({ Cmd: ['ls'], WorkingDir: 'tmp' }, /absolute/);
  const x = s.create('c1', { Cmd: ['sh', '-c', 'true'], Tty: true, AttachStdin: true });
  assert.match(x.id, /^[0-9a-f]{64}$/);
  const i = execInspect(x);
  assert.equal(i.Running, false);
  assert.equal(i.ExitCode, null);
  assert.equal(i.ProcessConfig.entrypoint, 'sh');
  assert.deepEqual(i.ProcessConfig.arguments, ['-c', 'true']);
  resizeExec(x, 30, 100);
  assert.deepEqual(x.size, { rows: 30, cols: 100 }, 'a size given before the start is kept for it');
  assert.throws(() => resizeExec(x, 0, 100), ApiError);
  s.take(x.id);
  assert.equal(s.get(x.id).running, true);
  assert.throws(() => s.take(x.id), (e: unknown) => e instanceof ApiError && e.status === 409);
  assert.throws(() => s.get('nosuch'), (e: unknown) => e instanceof ApiError && e.status === 404);
});

test('events filter: type, event, container by name or ID prefix, label; unknown keys and bad JSON refused', () => {
  const e: DockerEvent = { status: 'start', id: 'abcdef0123', from: 'busybox', Type: 'container', Action: 'start', Actor: { ID: 'abcdef0123', Attributes: { name: 'web', image: 'busybox' } }, scope: 'local', time: 1, timeNano: 1 };
  const f = (q: unknown) => eventFilter(JSON.stringify(q));
  assert.equal(eventFilter(null)(e, {}), true);
  assert.equal(f({ event: ['start'] })(e, {}), true);
  assert.equal(f({ event: ['die'] })(e, {}), false);
  assert.equal(f({ container: { web: true } })(e, {}), true, "Docker's old map form");
  assert.equal(f({ container: ['abcdef'] })(e, {}), true);
  assert.equal(f({ container: ['other'] })(e, {}), false);
  assert.equal(f({ type: ['image'] })(e, {}), false);
  assert.equal(f({ label: ['app=web'] })(e, { app: 'web' }), true);
  assert.equal(f({ label: ['app=db'] })(e, { app: 'web' }), false);
  assert.equal(f({ label: ['app'] })(e, { app: 'web' }), true);
  assert.throws(() => f({ nosuch: ['x'] }), /unsupported events filter/);
  assert.throws(() => f({ event: 'start' }), /list of strings/);
  assert.throws(() => eventFilter('{'), /invalid filters/);
  assert.throws(() => eventFilter('[]'), /JSON object/);
});
