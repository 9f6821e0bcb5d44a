/**
 * The REST API of `ferry system service --listen unix://...`, driven by real clients: the docker
 * CLI (DOCKER_HOST=unix://...), the Docker SDK for Python, and `podman --remote`. Never dockerd.
 * A container made by either side shows on the other: the service and the CLI share one state.
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { FERRY_BIN, Host, LOOPER, ServiceProcess, eventually, sleep, skipWith, runCommand } from '../helpers/ferry.js';

const h = new Host('api');
const SOCK = path.join(h.dir, 'ferry.sock');
const DOCKER = ['/usr/local/bin/docker', '/usr/bin/docker'].find((f) => fs.existsSync(f));
/** Debian's docker CLI 20.10 (client only), as `npm run setup` extracts it. */
const DOCKER20 = ['/usr/local/lib/ferry/docker-20.10/docker'].find((f) => fs.existsSync(f));
const CLIENTS: [string, string | undefined][] = [
  ['on PATH', DOCKER],
  ['20.10', DOCKER20],
];
const PODMAN = ['/usr/bin/podman', '/usr/local/bin/podman'].find((f) => fs.existsSync(f));
const HAS_PY_DOCKER = spawnSync('python3', ['-c', 'import docker'], { stdio: 'ignore' }).status === 0;

/** `ferry system service` on this host's root. */
class Service extends ServiceProcess {
  static spawn(args: string[] = ['--listen', `unix://${SOCK}`]): Service {
    return new Service(spawn(FERRY_BIN, [...h.args(), 'system', 'service', ...args], { stdio: ['ignore', 'ignore', 'pipe'] }));
  }

  static start(): Promise<Service> {
    return Service.spawn().listening();
  }
}

let service: Service | undefined;

interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runTool(argv: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<Out> {
  return runCommand(argv, { env: { ...process.env, ...env }, timeoutMs });
}

/** A docker CLI binary against the service (a config dir of its own: no user config reaches it). */
const dockerWith = (bin: string, args: string[]): Promise<Out> => runTool([bin, ...args], { DOCKER_HOST: `unix://${SOCK}`, DOCKER_CONFIG: path.join(h.dir, 'docker-config') });
const docker = (args: string[]): Promise<Out> => dockerWith(DOCKER!, args);
async function dockerOk(args: string[]): Promise<string> {
  const r = await docker(args);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}
/** docker and dockerOk for one of the docker CLIs (28.2 on PATH, Debian's 20.10). */
function dockerClient(bin: string): { docker: (args: string[]) => Promise<Out>; dockerOk: (args: string[]) => Promise<string> } {
  const docker = (args: string[]): Promise<Out> => dockerWith(bin, args);
  const dockerOk = async (args: string[]): Promise<string> => {
    const r = await docker(args);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  };
  return { docker, dockerOk };
}
const podman = (args: string[]): Promise<Out> => runTool([PODMAN!, '--remote', '--url', `unix://${SOCK}`, ...args]);
async function podmanOk(args: string[]): Promise<string> {
  const r = await podman(args);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** One raw HTTP request over the socket. */
function request(method: string, p: string, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: SOCK, method, path: p, headers: body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {} }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Numeric lines of a container's log, through the ferry CLI. */
async function counts(ref: string): Promise<number[]> {
  return (await h.logs(ref)).filter((l) => /^[0-9]+$/.test(l)).map(Number);
}

before(async () => {
  await h.importBusybox();
  service = await Service.start();
});

// Whatever a test leaves (it failed half-way) goes before the next one starts.
afterEach(async () => {
  await h.run(['rm', '-a', '-f']);
});

after(async () => {
  await service?.stop(5000);
  await h.destroy(); // every container, mount and file of this host, even after a failure
  assert.ok(!fs.existsSync(SOCK), 'the socket is gone with the service');
});

test('the socket: mode 0660, ping headers docker relies on, version prefixes, Docker-shaped errors', async () => {
  const st = fs.statSync(SOCK);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o660);
  assert.equal(st.uid, 0);
  for (const method of ['GET', 'HEAD']) {
    const r = await request(method, '/_ping');
    assert.equal(r.status, 200);
    assert.equal(r.body, method === 'GET' ? 'OK' : '');
    assert.equal(r.headers['api-version'], '1.41');
    assert.equal(r.headers['docker-experimental'], 'true');
    assert.equal(r.headers['ostype'], 'linux');
  }
  const v = await request('GET', '/v1.41/version');
  assert.equal(v.status, 200);
  assert.equal(JSON.parse(v.body).ApiVersion, '1.41');
  const tooNew = await request('GET', '/v1.99/version');
  assert.equal(tooNew.status, 400);
  assert.match(JSON.parse(tooNew.body).message, /too new.*1\.41/);
  const missing = await request('GET', '/v1.41/containers/nosuch/json');
  assert.equal(missing.status, 404);
  assert.deepEqual(Object.keys(JSON.parse(missing.body)), ['message']);
  assert.equal((await request('GET', '/v1.41/nosuchpath')).status, 404);
  const lp = await request('GET', '/v4.3.1/libpod/_ping');
  assert.equal(lp.status, 200);
  assert.equal(lp.headers['libpod-api-version'], '4.3.1');
});

test('bad requests: one Docker-shaped error line, nothing created', async () => {
  const before = h.containerDirs();
  const cases: [string, number, RegExp][] = [
    ['{not json', 400, /invalid JSON/],
    ['[1,2]', 400, /JSON object/],
    ['{"Cmd":["true"]}', 400, /Image is required/],
    ['{"Image":"busybox","Cmd":"x","Env":[1]}', 400, /invalid Env/],
    ['{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"npipe","Target":"/x"}]}}', 400, /type "npipe" is not supported/],
    ['{"Image":"busybox","HostConfig":{"Binds":["/nonexistent-ferry-path:/x"]}}', 404, /does not exist/],
    ['{"Image":"nosuchimage"}', 404, /nosuchimage/],
  ];
  for (const [body, status, re] of cases) {
    const r = await request('POST', '/v1.41/containers/create?name=bad1', body);
    assert.equal(r.status, status, `${body}: ${r.body}`);
    const doc = JSON.parse(r.body);
    assert.deepEqual(Object.keys(doc), ['message']);
    assert.match(doc.message, re);
    assert.ok(!doc.message.includes('\n'));
  }
  const badName = await request('POST', '/v1.41/containers/create?name=bad%20name', '{"Image":"busybox"}');
  assert.equal(badName.status, 400);
  const badFilter = await request('GET', `/v1.41/containers/json?filters=${encodeURIComponent('{"colour":["red"]}')}`);
  assert.equal(badFilter.status, 400);
  const huge = await request('POST', '/v1.41/containers/create', JSON.stringify({ Image: 'busybox', Labels: { x: 'y'.repeat(2 << 20) } }));
  assert.equal(huge.status, 413);
  assert.deepEqual(h.containerDirs(), before, 'no container was created');
  assert.deepEqual(await h.names(), []);
});

// Both real clients: the docker CLI on PATH (28.x, negotiating down to v1.41) and Debian's 20.10
// (API v1.41 itself; `npm run setup` extracts its client binary).
for (const [label, bin] of CLIENTS) {
  test(`docker CLI ${label}: run -d, ps both ways, logs, exec, inspect, checkpoint create/ls, start --checkpoint (the counter continues), checkpoint rm, stop, rm`, { timeout: 240_000 }, async (t) => {
    if (!bin) return skipWith(t, `no docker CLI ${label} on this machine (npm run setup)`);
    const { docker, dockerOk } = dockerClient(bin);
    // No network: its address could be taken by another root's container while it is checkpointed.
    const id = await dockerOk(['run', '-d', '--name', 'looper', '--network', 'none', '--label', 'app=api-test', 'busybox', ...LOOPER]);
    assert.match(id, /^[0-9a-f]{64}$/);
    // The container made through the API is the CLI's too, and the other way round.
    assert.deepEqual(await h.names(false), ['looper']);
    await h.ok(['run', '-d', '--name', 'fromcli', 'busybox', 'sleep', '1000']);
    const ps = await dockerOk(['ps', '--format', '{{.Names}} {{.State}}']);
    assert.deepEqual(ps.split('\n').sort(), ['fromcli running', 'looper running']);
    assert.equal(await dockerOk(['ps', '--filter', 'label=app=api-test', '--format', '{{.Names}}']), 'looper');
    assert.equal(await dockerOk(['ps', '-q', '--no-trunc', '--filter', `id=${id.slice(0, 10)}`]), id);

    await eventually(async () => (await counts('looper')).length >= 3, 15_000);
    const logs = (await dockerOk(['logs', 'looper'])).split('\n');
    assert.deepEqual(logs.slice(0, 3), ['0', '1', '2']);
    const tail = await docker(['logs', '--tail', '1', '--timestamps', 'looper']);
    assert.match(tail.stdout.trim(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z \d+$/);
    // logs -f: what the container prints after the command started arrives while it runs.
    const follow = spawn(bin, ['logs', '-f', '--tail', '1', 'looper'], { env: { ...process.env, DOCKER_HOST: `unix://${SOCK}`, DOCKER_CONFIG: path.join(h.dir, 'docker-config') }, stdio: ['ignore', 'pipe', 'pipe'] });
    let followed = '';
    follow.stdout!.on('data', (d: Buffer) => (followed += d.toString()));
    try {
      const first = Number(tail.stdout.trim().split(' ')[1]);
      await eventually(() => followed.split('\n').filter(Boolean).map(Number).some((n) => n >= first + 2), 15_000, 100);
      const seen = followed.split('\n').filter(Boolean).map(Number);
      assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => seen[0]! + i), 'logs -f: each line once, in order');
      assert.equal(follow.exitCode, null, 'logs -f still follows');
    } finally {
      follow.kill();
    }
    assert.equal(await dockerOk(['exec', 'looper', 'sh', '-c', 'echo in-$HOSTNAME-ok']), `in-${id.slice(0, 12)}-ok`);
    const failed = await docker(['exec', 'looper', 'sh', '-c', 'exit 7']);
    assert.equal(failed.code, 7, 'exec: the command\'s exit code');

    const [insp] = JSON.parse(await dockerOk(['inspect', 'looper']));
    assert.equal(insp.Id, id);
    assert.equal(insp.Name, '/looper');
    assert.equal(insp.State.Status, 'running');
    assert.equal(insp.State.Running, true);
    assert.ok(insp.State.Pid > 0 && fs.existsSync(`/proc/${insp.State.Pid}`));
    assert.equal(insp.Config.Labels.app, 'api-test');
    assert.equal(insp.HostConfig.NetworkMode, 'none');
    assert.equal(insp.Config.Tty, false);

    // Checkpoint: Docker keeps it behind the server's experimental flag, which /_ping reports.
    assert.equal(await dockerOk(['checkpoint', 'create', 'looper', 'cp1']), 'cp1');
    assert.equal((await h.inspect('looper')).State.Checkpointed, true);
    assert.equal(await dockerOk(['inspect', '-f', '{{.State.Status}}', 'looper']), 'exited');
    assert.deepEqual((await dockerOk(['checkpoint', 'ls', 'looper'])).split('\n'), ['CHECKPOINT NAME', 'cp1']);
    const before = await counts('looper');
    const last = before[before.length - 1]!;
    await sleep(1500);
    const wrong = await docker(['start', '--checkpoint', 'cp9', 'looper']);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /no checkpoint named cp9/);
    await dockerOk(['start', '--checkpoint', 'cp1', 'looper']);
    await eventually(async () => (await counts('looper')).length >= before.length + 2, 15_000);
    const after = (await counts('looper')).slice(before.length);
    assert.equal(after[0], last + 1, `the counter continues where it was: ${last} then ${after.join(',')}`);
    assert.equal((await h.inspect('looper')).State.Restored, true);

    // A second checkpoint, leaving it running; then removed by name.
    await dockerOk(['checkpoint', 'create', '--leave-running', 'looper', 'cp2']);
    assert.equal(await dockerOk(['inspect', '-f', '{{.State.Status}}', 'looper']), 'running');
    // A container holds one checkpoint: another name is refused rather than replacing it.
    const third = await docker(['checkpoint', 'create', '--leave-running', 'looper', 'cp3']);
    assert.notEqual(third.code, 0);
    assert.match(third.stderr, /already has checkpoint cp2/);
    const rmWrong = await docker(['checkpoint', 'rm', 'looper', 'cp1']);
    assert.notEqual(rmWrong.code, 0);
    await dockerOk(['checkpoint', 'rm', 'looper', 'cp2']);
    assert.deepEqual((await dockerOk(['checkpoint', 'ls', 'looper'])).split('\n'), ['CHECKPOINT NAME']);
    assert.equal((await h.inspect('looper')).State.Checkpointed, false);

    // A running container is not removed without force.
    const busy = await docker(['rm', 'looper']);
    assert.notEqual(busy.code, 0);
    assert.equal(busy.stderr.trim().split('\n').length, 1);
    assert.match(busy.stderr, /^Error response from daemon: .*running/);
    await dockerOk(['stop', '-t', '1', 'looper']);
    assert.equal((await h.inspect('looper')).State.Status, 'exited');
    assert.match(await dockerOk(['ps', '-a', '--filter', 'status=exited', '--format', '{{.Names}} {{.Status}}']), /^looper Exited \(\d+\) /);
    await dockerOk(['rm', 'looper']);
    await dockerOk(['rm', '-f', 'fromcli']);
    assert.deepEqual(await h.names(), []);
    assert.equal(await dockerOk(['ps', '-a', '-q']), '');
    const gone = await docker(['rm', 'looper']);
    assert.notEqual(gone.code, 0);
    // (20.10 words a 404 itself, as it does with dockerd.)
    assert.match(gone.stderr, /^(Error response from daemon: no container with name or ID "looper"|Error: No such container: looper)/);

    // A bad create through the docker CLI: one error line, nothing made.
    const bad = await docker(['run', '-d', '--mount', 'type=bind,source=relative,target=/x', '--name', 'badmount', 'busybox', 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr.trim(), /absolute/);
    assert.deepEqual(await h.names(), []);

    // What `ferry create` honours, through Docker's create: user, entrypoint, a random host
    // port, limits, --mount, a restart policy.
    const vol = path.join(h.dir, `mnt-${label.replace(/\W/g, '')}`);
    fs.mkdirSync(vol, { recursive: true });
    fs.writeFileSync(path.join(vol, 'f'), 'from the host\n');
    await dockerOk(['run', '-d', '--name', 'opts', '--user', '1000:1000', '--entrypoint', 'sh', '-p', '127.0.0.1::80', '--memory', '64m', '--pids-limit', '50',
      '--mount', `type=bind,source=${vol},target=/data,readonly`, '--restart', 'on-failure:2', 'busybox', '-c', 'id -u; id -g; cat /data/f; sleep 1000']);
    await eventually(async () => (await dockerOk(['logs', 'opts'])).includes('from the host'), 10_000, 100);
    assert.deepEqual((await dockerOk(['logs', 'opts'])).split('\n'), ['1000', '1000', 'from the host']);
    const port = await dockerOk(['port', 'opts', '80']);
    assert.match(port, /^127\.0\.0\.1:(\d+)$/);
    assert.notEqual(port, '127.0.0.1:80', 'no host port given: a free one was picked');
    const ins = await h.inspect('opts');
    assert.equal(ins.HostConfig.Memory, 64 * 2 ** 20);
    assert.equal(ins.HostConfig.PidsLimit, 50);
    assert.equal(ins.HostConfig.RestartPolicy.Name, 'on-failure');
    await dockerOk(['rm', '-f', 'opts']);
  });

  test(`docker run ${label} in the foreground: output on the right streams, the exit code, --rm leaves nothing`, { timeout: 120_000 }, async (t) => {
    if (!bin) return skipWith(t, `no docker CLI ${label} on this machine (npm run setup)`);
    const { docker, dockerOk } = dockerClient(bin);
    const r = await docker(['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; sleep 1; echo late; exit 3']);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout, 'out\nlate\n');
    assert.equal(r.stderr, 'err\n');
    assert.deepEqual(await h.names(), [], '--rm: removed once it exited');
    const kept = await docker(['run', '--name', 'kept', 'busybox', 'sh', '-c', 'echo done; exit 4']);
    assert.equal(kept.code, 4);
    assert.equal(kept.stdout, 'done\n');
    assert.equal((await h.inspect('kept')).State.ExitCode, 4);
    assert.equal(await dockerOk(['wait', 'kept']), '4');
    await dockerOk(['restart', 'kept']);
    assert.equal(await dockerOk(['wait', 'kept']), '4', 'it ran again and exited again');
    assert.equal((await h.logs('kept')).filter((l) => l === 'done').length, 2);
    await dockerOk(['rm', 'kept']);
    assert.deepEqual(await h.names(), []);
  });
}

test('docker images lists the imported image', async (t) => {
  if (!DOCKER) return skipWith(t, 'no docker CLI on this machine');
  assert.match(await dockerOk(['images', '--format', '{{.Repository}}:{{.Tag}}']), /^localhost\/busybox:latest$/m);
});

test('Docker SDK for Python: create, start, inspect, list by label, remove', { timeout: 120_000 }, async (t) => {
  if (!HAS_PY_DOCKER) return skipWith(t, 'the Docker SDK for Python is not installed (python3-docker)');
  const script = `
import docker, json, os, sys
c = docker.DockerClient(base_url=os.environ['DOCKER_HOST'])
ct = c.containers.create('busybox', ['sleep', '1000'], name='pyctr', labels={'made-by': 'sdk'}, environment=['X=1'], working_dir='/tmp')
ct.start()
ct.reload()
found = [x.name for x in c.containers.list(filters={'label': 'made-by=sdk'})]
out = {'status': ct.status, 'env': ct.attrs['Config']['Env'], 'wd': ct.attrs['Config']['WorkingDir'], 'found': found}
ct.remove(force=True)
try:
    c.containers.get('pyctr')
    out['gone'] = False
except docker.errors.NotFound:
    out['gone'] = True
print(json.dumps(out))
`;
  const r = await runTool(['python3', '-c', script], { DOCKER_HOST: `unix://${SOCK}` });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.status, 'running');
  assert.ok(out.env.includes('X=1'));
  assert.equal(out.wd, '/tmp');
  assert.deepEqual(out.found, ['pyctr']);
  assert.equal(out.gone, true);
  assert.deepEqual(await h.names(), []);
});

test('podman --remote: ps, inspect, logs, stop, rm; checkpoint --export and restore --import over the API', { timeout: 240_000 }, async (t) => {
  if (!PODMAN) return skipWith(t, 'podman is not installed');
  await h.ok(['run', '-d', '--name', 'pl', '--network', 'none', 'busybox', ...LOOPER]);
  assert.equal(await podmanOk(['ps', '--format', '{{.Names}}']), 'pl');
  const [insp] = JSON.parse(await podmanOk(['inspect', 'pl']));
  assert.equal(insp.Name, 'pl');
  assert.equal(insp.State.Status, 'running');
  await eventually(async () => (await podmanOk(['logs', 'pl'])).split('\n').length >= 3, 15_000);
  assert.deepEqual((await podmanOk(['logs', 'pl'])).split('\n').slice(0, 3), ['0', '1', '2']);
  assert.equal((await podman(['container', 'exists', 'pl'])).code, 0);
  assert.equal((await podman(['container', 'exists', 'nosuch'])).code, 1);

  const archive = path.join(h.dir, 'pl.tar');
  await podmanOk(['container', 'checkpoint', '--export', archive, 'pl']);
  assert.ok(fs.statSync(archive).size > 0);
  assert.equal((await h.inspect('pl')).State.Status, 'exited', 'the response ends once the checkpoint is saved');
  const before = await counts('pl');
  await podmanOk(['rm', 'pl']);
  assert.deepEqual(await h.names(), []);
  await podmanOk(['container', 'restore', '--import', archive]);
  assert.equal((await h.inspect('pl')).State.Status, 'running');
  await eventually(async () => (await counts('pl')).length >= before.length + 2, 15_000);
  assert.equal((await counts('pl'))[before.length], before[before.length - 1]! + 1, 'the imported container continues counting');
  await podmanOk(['stop', '-t', '1', 'pl']);
  assert.match(await podmanOk(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^pl Exited/);
  await podmanOk(['rm', 'pl']);
  assert.deepEqual(await h.names(), []);
});

test('the service stops cleanly: containers keep running, the socket goes; a stale socket is replaced, a live one refused', { timeout: 120_000 }, async () => {
  await h.ok(['run', '-d', '--name', 'survivor', 'busybox', 'sleep', '1000']);
  // A second service on the same socket is refused while the first listens.
  const second = Service.spawn();
  assert.equal(await second.exited(), 125);
  assert.match(second.log, /another service is listening/);
  assert.ok(service!.running);

  assert.equal(await service!.stop(), 0);
  assert.ok(!fs.existsSync(SOCK), 'socket removed on exit');
  assert.equal((await h.inspect('survivor')).State.Status, 'running', 'containers belong to conmon, not to the service');

  // Killed: its socket stays behind, stale; the next service replaces it.
  service = await Service.start();
  service.child.kill('SIGKILL');
  await service.exited();
  assert.ok(fs.existsSync(SOCK));
  service = await Service.start();
  const r = await request('GET', '/v1.41/containers/json');
  assert.deepEqual(JSON.parse(r.body).map((c: { Names: string[] }) => c.Names[0]), ['/survivor']);

  // A path that is not a socket is never deleted.
  const plain = path.join(h.dir, 'not-a-socket');
  fs.writeFileSync(plain, 'keep me');
  const refused = Service.spawn(['--listen', `unix://${plain}`]);
  assert.equal(await refused.exited(), 125);
  assert.match(refused.log, /not a socket/);
  assert.equal(fs.readFileSync(plain, 'utf8'), 'keep me');
  await h.ok(['rm', '-f', 'survivor']);
});
