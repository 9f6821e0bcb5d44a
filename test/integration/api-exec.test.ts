/**
 * Exec and attach with stdin over the Docker API, driven by the real docker CLI: the hijacked
 * connection with and without a terminal (the multiplexed framing without), piped input,
 * `docker exec -it` and `docker run -it` under a real terminal (tmux), resizes, exit codes.
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Host, LOOPER, eventually, skipWith } from '../helpers/ferry.js';
import { DOCKER, Service } from '../helpers/api.js';
import { Terminal } from '../helpers/terminal.js';

const h = new Host('apiex');
let svc: Service | undefined;
const terms: Terminal[] = [];

before(async () => {
  if (!DOCKER) return;
  await h.importBusybox();
  svc = await Service.start(h);
});

afterEach(async () => {
  for (const t of terms.splice(0)) t.kill();
  await h.run(['rm', '-a', '-f']);
});

after(async () => {
  for (const t of terms.splice(0)) t.kill();
  await svc?.stop(5000);
  await h.destroy();
  assert.ok(!svc || !fs.existsSync(svc.sock), 'the socket is gone with the service');
});

/** A running container made through the API. */
async function looper(name: string): Promise<string> {
  return svc!.dockerOk(['run', '-d', '--network', 'none', '--name', name, 'busybox', ...LOOPER]);
}

test('docker exec without a terminal: stdout and stderr apart (framed), the exit code, inspect', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  await looper('ex1');
  const r = await svc.docker(['exec', 'ex1', 'sh', '-c', 'echo out; echo err >&2; echo more; exit 3']);
  assert.equal(r.code, 3);
  assert.equal(r.stdout, 'out\nmore\n');
  assert.equal(r.stderr, 'err\n');
  // Environment and working directory reach the command.
  assert.equal(await svc.dockerOk(['exec', '-e', 'GREETING=hi there', '-w', '/tmp', 'ex1', 'sh', '-c', 'echo "$GREETING in $(pwd)"']), 'hi there in /tmp');
  // A command that does not exist: 127 and the runtime's reason, as Docker.
  const nf = await svc.docker(['exec', 'ex1', 'no-such-command']);
  assert.equal(nf.code, 127);
  assert.match(nf.stderr, /not found/);
  // A detached exec runs on; its instance says when it has finished.
  await svc.dockerOk(['exec', '-d', 'ex1', 'sh', '-c', 'echo detached > /tmp/d']);
  await eventually(async () => (await svc!.dockerOk(['exec', 'ex1', 'cat', '/tmp/d'])) === 'detached', 10_000, 200);
});

test('docker exec -i: piped input reaches the command, its end closes the command\'s stdin', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  await looper('ex2');
  assert.equal((await svc.docker(['exec', '-i', 'ex2', 'cat'], { input: 'hello\nworld\n' })).stdout, 'hello\nworld\n');
  // A larger input, counted inside: nothing lost, nothing added.
  const big = Buffer.alloc(300_000, 'abcdefghij');
  const r = await svc.docker(['exec', '-i', 'ex2', 'sh', '-c', 'wc -c; echo done >&2'], { input: big });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), String(big.length));
  assert.equal(r.stderr, 'done\n');
});

test('docker exec -t without -i: the command has a terminal, output raw', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  await looper('ex3');
  const r = await svc.docker(['exec', '-t', 'ex3', 'sh', '-c', 'tty; test -t 1 && echo isatty; exit 4']);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stdout, /^\/dev\/pts\/[0-9]+\r?\nisatty\r?\n$/);
});

test('the exec endpoints refuse bad input with Docker-shaped errors, nothing run', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const id = await looper('ex4');
  const bad = async (method: string, p: string, body: string | undefined, status: number, re: RegExp): Promise<void> => {
    const r = await svc!.request(method, p, body);
    assert.equal(r.status, status, `${method} ${p}: ${r.body}`);
    assert.match(JSON.parse(r.body).message, re);
  };
  await bad('POST', '/v1.41/containers/ex4/exec', '{}', 400, /No exec command/);
  await bad('POST', '/v1.41/containers/ex4/exec', '{"Cmd": "ls"}', 400, /Cmd/);
  await bad('POST', '/v1.41/containers/ex4/exec', '{"Cmd": ["ls"], "Env": ["NOEQUALS"]}', 400, /environment variable/);
  await bad('POST', '/v1.41/containers/ex4/exec', '{"Cmd": ["ls"], "WorkingDir": "relative"}', 400, /absolute/);
  await bad('POST', '/v1.41/containers/ex4/exec', '{"Cmd": [', 400, /JSON/);
  await bad('POST', '/v1.41/containers/nosuch/exec', '{"Cmd": ["ls"]}', 404, /nosuch/);
  await bad('GET', '/v1.41/exec/0123/json', undefined, 404, /No such exec instance/);
  await bad('POST', '/v1.41/exec/0123/resize?h=10&w=10', undefined, 404, /No such exec instance/);
  const created = await svc.request('POST', '/v1.41/containers/ex4/exec', JSON.stringify({ Cmd: ['sh', '-c', 'echo ran > /tmp/ran'], AttachStdout: true }));
  assert.equal(created.status, 201);
  const xid = JSON.parse(created.body).Id as string;
  const before = JSON.parse((await svc.request('GET', `/v1.41/exec/${xid}/json`)).body);
  assert.equal(before.Running, false);
  assert.equal(before.ContainerID, id);
  assert.deepEqual(before.ProcessConfig.arguments, ['-c', 'echo ran > /tmp/ran']);
  await bad('POST', `/v1.41/exec/${xid}/resize?h=0&w=10`, undefined, 400, /size/);
  // Started without hijacking: the output is the body; a second start is refused.
  const started = await svc.request('POST', `/v1.41/exec/${xid}/start`, '{"Detach": false}');
  assert.equal(started.status, 200);
  const after = JSON.parse((await svc.request('GET', `/v1.41/exec/${xid}/json`)).body);
  assert.equal(after.Running, false);
  assert.equal(after.ExitCode, 0);
  await bad('POST', `/v1.41/exec/${xid}/start`, '{}', 409, /already been started/);
  assert.equal(await svc.dockerOk(['exec', 'ex4', 'cat', '/tmp/ran']), 'ran');
  // A stopped container takes no exec.
  await svc.dockerOk(['stop', '-t', '1', 'ex4']);
  await bad('POST', '/v1.41/containers/ex4/exec', '{"Cmd": ["ls"]}', 409, /not running/);
});

test('docker run -i: piped input reaches the container through attach, its end closes stdin', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const r = await svc.docker(['run', '-i', '--name', 'ri', '--network', 'none', 'busybox', 'sh', '-c', 'cat; echo eof; exit 7'], { input: 'line one\nline two\n' });
  assert.equal(r.code, 7, r.stderr);
  assert.equal(r.stdout, 'line one\nline two\neof\n');
  assert.deepEqual(await h.logs('ri'), ['line one', 'line two', 'eof']);
});

test('docker exec -it and docker run -it under a real terminal: keys in, screen out, resize, exit code', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  await looper('ex5');
  const env = Object.entries(svc.dockerEnv()).map(([k, v]) => `${k}=${v}`);
  const term = new Terminal('apiex');
  terms.push(term);
  term.start(['env', ...env, DOCKER!, 'exec', '-it', 'ex5', 'sh'], { width: 90, height: 25 });
  await term.waitFor(/^\/ #\s*$/m);
  term.line('stty size');
  await term.waitFor(/^25 90$/m);
  term.line('echo $((6 * 7))');
  await term.waitFor(/^42$/m);
  await term.resizeShell(70, 20);
  term.line('exit 5');
  assert.equal(await term.exitStatus(), 5);
  term.kill();

  const run = new Terminal('apirun');
  terms.push(run);
  run.start(['env', ...env, DOCKER!, 'run', '-it', '--name', 'rit', '--network', 'none', 'busybox', 'sh'], { width: 80, height: 24 });
  await run.waitFor(/^\/ #\s*$/m, 20_000);
  run.line('echo $((5 * 5)) from run');
  await run.waitFor(/^25 from run/m);
  run.line('stty size');
  await run.waitFor(/^24 80$/m);
  run.line('exit 6');
  assert.equal(await run.exitStatus(20_000), 6);
});
