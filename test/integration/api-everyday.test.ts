/**
 * top, stats (one-shot and stream), changes, rename and prune over the Docker API, with the real
 * docker CLI: `docker top`, `docker stats --no-stream`, `docker diff`, `docker rename`,
 * `docker container prune`, `docker image prune`; the same engine calls as `ferry top/stats/
 * diff/rename/container prune`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { Host, eventually, skipWith } from '../helpers/ferry.js';
import { DOCKER, Service } from '../helpers/api.js';

const h = new Host('apiev');
let svc: Service | undefined;

before(async () => {
  if (!DOCKER) return;
  await h.importBusybox();
  svc = await Service.start(h);
  // A CPU burner and a sleeper with a child.
  await svc.dockerOk(['run', '-d', '--name', 'busy', '--network', 'none', 'busybox', 'sh', '-c', 'while :; do :; done']);
  await svc.dockerOk(['run', '-d', '--name', 'quiet', '--network', 'none', 'busybox', 'sh', '-c', 'sleep 1000 & wait']);
});

after(async () => {
  await h.run(['rm', '-a', '-f', '-t', '0']);
  await svc?.stop(5000);
  await h.destroy();
});

/** The first n JSON lines of a streamed answer, then the connection is closed. */
function firstLines(sock: string, p: string, n: number): Promise<Record<string, any>[]> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, method: 'GET', path: p }, (res) => {
      let buf = '';
      const out: Record<string, any>[] = [];
      res.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0 && out.length < n) {
          out.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
        if (out.length >= n) {
          req.destroy();
          resolve(out);
        }
      });
      res.on('end', () => resolve(out));
    });
    req.on('error', (e) => (e.message.includes('socket hang up') ? undefined : reject(e)));
    req.end();
  });
}

test('docker top: the container\'s processes (its ps -ef, as Podman\'s compat API), ps options', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const top = await svc.dockerOk(['top', 'quiet']);
  const lines = top.split('\n');
  assert.match(lines[0]!, /^PID\s+USER\s+(TIME\s+)?COMMAND$/, 'busybox\'s ps -ef');
  assert.ok(lines.some((l) => /sleep 1000/.test(l)), top);
  assert.ok(lines.some((l) => /sh -c sleep 1000 & wait/.test(l)), top);
  // Podman's descriptors, from /proc.
  const d = await svc.request('GET', '/v1.41/containers/quiet/top?ps_args=pid,args');
  assert.equal(d.status, 200, d.body);
  const body = JSON.parse(d.body);
  assert.deepEqual(body.Titles, ['PID', 'COMMAND']);
  assert.ok(body.Processes.some((p: string[]) => p[0] === '1' && /^sh -c/.test(p[1]!)), d.body);
  const bad = await svc.docker(['top', 'quiet', 'nosuch']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /unknown top descriptor "nosuch"/);
  await svc.dockerOk(['create', '--name', 'notrunning', '--network', 'none', 'busybox', 'true']);
  const stopped = await svc.docker(['top', 'notrunning']);
  assert.notEqual(stopped.code, 0);
  assert.match(stopped.stderr, /is not running/);
  await svc.dockerOk(['rm', 'notrunning']);
});

test('docker stats --no-stream: CPU % of a busy container, memory, PIDs; the stream moves', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const out = await svc.dockerOk(['stats', '--no-stream', '--format', '{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}', 'busy', 'quiet']);
  const rows = new Map(out.split('\n').map((l) => [l.split(' ')[0]!, l]));
  const busyCpu = Number(/^busy ([0-9.]+)%/.exec(rows.get('busy') ?? '')?.[1]);
  const quietCpu = Number(/^quiet ([0-9.]+)%/.exec(rows.get('quiet') ?? '')?.[1]);
  // (Loose bounds: other work shares this machine's CPUs.)
  assert.ok(busyCpu > 5 && busyCpu > quietCpu + 5, `a spinning shell uses CPU: ${out}`);
  assert.ok(quietCpu < 5, `a sleeper does not: ${out}`);
  assert.match(rows.get('quiet')!, / [0-9.]+[KMG]i?B \/ [0-9.]+[KMG]i?B 2$/, 'memory used / limit, 2 processes');
  // Without names: every running container.
  const all = await svc.dockerOk(['stats', '--no-stream', '--format', '{{.Name}}']);
  assert.deepEqual(all.split('\n').sort(), ['busy', 'quiet']);
  // The stream: one object a second, CPU time growing, precpu the previous sample.
  const samples = await firstLines(svc.sock, '/v1.41/containers/busy/stats?stream=true', 3);
  assert.equal(samples.length, 3);
  assert.equal(samples[0]!.name, '/busy');
  assert.ok(samples[2]!.cpu_stats.cpu_usage.total_usage > samples[1]!.cpu_stats.cpu_usage.total_usage);
  assert.equal(samples[2]!.precpu_stats.cpu_usage.total_usage, samples[1]!.cpu_stats.cpu_usage.total_usage);
  assert.ok(samples[2]!.cpu_stats.system_cpu_usage > samples[1]!.cpu_stats.system_cpu_usage);
  const one = JSON.parse((await svc.request('GET', '/v1.41/containers/quiet/stats?stream=false&one-shot=true')).body);
  assert.equal(one.pids_stats.current, 2);
  assert.equal(one.precpu_stats.cpu_usage.total_usage, 0, 'one-shot: no previous sample');
  assert.equal((await svc.request('GET', '/v1.41/containers/nosuch/stats?stream=false')).status, 404);
});

test('docker diff, rename, container prune, image prune', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  await svc.dockerOk(['exec', 'quiet', 'sh', '-c', 'echo x > /added; rm /etc/group; echo y >> /etc/passwd']);
  const diff = (await svc.dockerOk(['diff', 'quiet'])).split('\n');
  for (const line of ['A /added', 'D /etc/group', 'C /etc/passwd', 'C /etc']) assert.ok(diff.includes(line), `${line} in ${diff.join(', ')}`);
  assert.equal(diff.join('\n'), await h.ok(['diff', 'quiet']), 'the same as ferry diff');
  // rename: running; the old name is gone, the new one answers; a name in use is refused.
  await svc.dockerOk(['rename', 'quiet', 'calm']);
  assert.equal(await svc.dockerOk(['inspect', '-f', '{{.Name}}', 'calm']), '/calm');
  assert.notEqual((await svc.docker(['inspect', 'quiet'])).code, 0);
  const taken = await svc.docker(['rename', 'calm', 'busy']);
  assert.notEqual(taken.code, 0);
  assert.match(taken.stderr, /already in use/);
  const bad = await svc.docker(['rename', 'calm', 'no/slash']);
  assert.notEqual(bad.code, 0);
  // container prune: the stopped ones only.
  await svc.dockerOk(['run', '--name', 'done1', '--network', 'none', 'busybox', 'true']);
  await svc.dockerOk(['create', '--name', 'done2', '--network', 'none', 'busybox', 'true']);
  const pruned = await svc.dockerOk(['container', 'prune', '-f']);
  assert.match(pruned, /Deleted Containers:/);
  assert.equal(pruned.split('\n').filter((l) => /^[0-9a-f]{64}$/.test(l)).length, 2, pruned);
  assert.deepEqual((await svc.dockerOk(['ps', '-a', '--format', '{{.Names}}'])).split('\n').sort(), ['busy', 'calm']);
  // image prune: nothing dangling here; -a keeps the image in use.
  assert.match(await svc.dockerOk(['image', 'prune', '-f']), /Total reclaimed space: 0B/);
  await svc.dockerOk(['image', 'prune', '-a', '-f']);
  assert.match(await svc.dockerOk(['images', '--format', '{{.Repository}}']), /busybox/, 'an image in use stays');
  const f = await svc.request('POST', '/v1.41/containers/prune?filters=' + encodeURIComponent('{"until":["1h"]}'));
  assert.equal(f.status, 400);
  await eventually(async () => (await h.ok(['ps', '-a', '--format', '{{.Names}}'])).split('\n').sort().join(',') === 'busy,calm');
});
