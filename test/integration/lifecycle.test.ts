import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Host, eventually } from '../helpers/ferry.js';

const h = new Host('life');
before(() => h.importBusybox());
after(() => h.destroy());

const alive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`);
const mounted = (p: string): boolean => h.mounts().includes(p);
const runcState = (id: string): string | undefined => {
  const r = spawnSync('runc', ['--root', path.join(h.runroot, 'runc'), 'state', id], { encoding: 'utf8' });
  return r.status === 0 ? (JSON.parse(r.stdout) as { status: string }).status : undefined;
};

test('create, start, stop, start again, kill, rm: states, PIDs and exit codes', async () => {
  const id = await h.ok(['create', '--name', 'life1', 'busybox', 'sleep', '1000']);
  assert.match(id, /^[0-9a-f]{64}$/);
  let i = await h.inspect('life1');
  assert.equal(i.State.Status, 'created');
  assert.equal(i.State.Running, false);
  assert.equal(i.State.Pid, 0);
  assert.match(await h.ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^life1 Created$/m);
  assert.deepEqual(await h.names(false), [], 'a created container is not running');

  assert.equal(await h.ok(['start', 'life1']), 'life1');
  i = await h.inspect('life1');
  assert.equal(i.State.Status, 'running');
  assert.equal(i.State.Running, true);
  assert.ok(i.State.Pid > 0 && alive(i.State.Pid), 'the container process exists');
  assert.ok(mounted(i.GraphDriver.Data.MergedDir), 'rootfs mounted while running');
  assert.equal(runcState(id), 'running');
  assert.match(await h.ok(['ps', '--format', '{{.Names}} {{.Status}}']), /^life1 Up /m);
  assert.equal(await h.ok(['start', 'life1']), 'life1', 'starting a running container is a no-op');
  assert.equal((await h.inspect('life1')).State.Pid, i.State.Pid);

  const pid = i.State.Pid as number;
  assert.equal(await h.ok(['stop', '-t', '0', 'life1']), 'life1');
  i = await h.inspect('life1');
  assert.equal(i.State.Status, 'exited');
  assert.equal(i.State.ExitCode, 137, 'stop -t 0 kills: 128+9');
  assert.equal(i.State.Pid, 0);
  assert.ok(!alive(pid), 'the process is gone');
  assert.ok(!mounted(i.GraphDriver.Data.MergedDir), 'rootfs unmounted after stop');
  assert.equal(runcState(id), undefined, 'runc state deleted');
  assert.match(await h.ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^life1 Exited \(137\) /m);
  assert.equal(await h.ok(['stop', 'life1']), 'life1', 'stopping a stopped container succeeds');

  await h.ok(['start', 'life1']);
  i = await h.inspect('life1');
  assert.equal(i.State.Status, 'running');
  assert.notEqual(i.State.Pid, pid, 'a new process');
  assert.equal(await h.ok(['kill', '-s', 'TERM', 'life1']), 'life1');
  // sleep is PID 1 in its namespace: TERM has no default action there, so it keeps running.
  await h.ok(['kill', 'life1']); // default KILL
  await eventually(async () => (await h.inspect('life1')).State.Status === 'exited');
  assert.equal((await h.inspect('life1')).State.ExitCode, 137);

  assert.equal(await h.ok(['rm', 'life1']), 'life1');
  await h.fails(['inspect', 'life1']);
  assert.ok(!h.containerDirs().includes(id), 'record gone');
  assert.ok(!fs.existsSync(path.join(h.root, 'overlay', id)), 'layer gone');
  assert.deepEqual(h.mounts(), []);
});

test('stop sends the stop signal first: a container that handles TERM exits with its own code', async () => {
  await h.ok(['run', '-d', '--name', 'trap', 'busybox', 'sh', '-c', 'trap "exit 42" TERM; while true; do sleep 0.1; done']);
  const t0 = Date.now();
  await h.ok(['stop', 'trap']); // default 10 s timeout: must not be needed
  assert.ok(Date.now() - t0 < 8000, `stop took ${Date.now() - t0} ms`);
  const i = await h.inspect('trap');
  assert.equal(i.State.Status, 'exited');
  assert.equal(i.State.ExitCode, 42);
  // --stop-signal is used by stop
  await h.ok(['run', '-d', '--name', 'trap2', '--stop-signal', 'SIGUSR1', 'busybox', 'sh', '-c', 'trap "exit 7" USR1; while true; do sleep 0.1; done']);
  assert.equal((await h.inspect('trap2')).Config.StopSignal, 10, 'SIGUSR1, a number as in Podman 4.3.1');
  await h.ok(['stop', '-t', '5', 'trap2']);
  assert.equal((await h.inspect('trap2')).State.ExitCode, 7);
  await h.ok(['rm', 'trap', 'trap2']);
});

test('a container that exits by itself: ps -a shows Exited (3), inspect ExitCode 3, rootfs unmounted', async () => {
  const id = await h.ok(['run', '-d', '--name', 'ex3', 'busybox', 'sh', '-c', 'sleep 0.3; exit 3']);
  const merged = (await h.inspect('ex3')).GraphDriver.Data.MergedDir as string;
  await eventually(async () => /^ex3 Exited \(3\) /m.test(await h.ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}'])));
  const i = await h.inspect('ex3');
  assert.equal(i.State.Status, 'exited');
  assert.equal(i.State.ExitCode, 3);
  assert.equal(i.State.Running, false);
  assert.equal(i.State.Pid, 0);
  assert.notEqual(i.State.FinishedAt, '0001-01-01T00:00:00Z');
  assert.ok(Date.parse(i.State.FinishedAt) >= Date.parse(i.State.StartedAt));
  // conmon's exit command records the exit and unmounts without anyone running ferry.
  await eventually(() => !mounted(merged));
  await eventually(() => runcState(id) === undefined);
  assert.deepEqual(await h.names(false), [], 'not in ps');
  await h.ok(['rm', 'ex3']);
});

test('foreground run prints the output and returns the container exit code', async () => {
  const r = await h.run(['run', '--name', 'fg', 'busybox', 'sh', '-c', 'echo out1; echo err1 >&2; echo out2; exit 4']);
  assert.equal(r.code, 4, r.stderr);
  assert.equal(r.stdout, 'out1\nout2\n');
  assert.equal(r.stderr, 'err1\n');
  const ok = await h.run(['run', '--name', 'fg0', 'busybox', 'echo', 'hello world']);
  assert.equal(ok.code, 0);
  assert.equal(ok.stdout, 'hello world\n');
  assert.equal((await h.inspect('fg')).State.ExitCode, 4);
  assert.equal((await h.inspect('fg')).State.Status, 'exited');
  assert.deepEqual(h.mounts(), [], 'nothing left mounted');
  await h.ok(['rm', 'fg', 'fg0']);
});

test('--rm: foreground and detached containers disappear after they exit', async () => {
  const before = h.containerDirs();
  const r = await h.run(['run', '--rm', '--name', 'rmfg', 'busybox', 'sh', '-c', 'echo bye; exit 5']);
  assert.equal(r.stdout, 'bye\n');
  assert.equal(r.code, 5, `run --rm returns the exit code (stderr: ${r.stderr})`);
  assert.ok(!(await h.names()).includes('rmfg'));
  assert.deepEqual(h.containerDirs(), before);

  const id = await h.ok(['run', '-d', '--rm', '--name', 'rmbg', 'busybox', 'sh', '-c', 'sleep 0.5; exit 2']);
  assert.ok((await h.names()).includes('rmbg'), 'exists while it runs');
  await eventually(async () => !(await h.names()).includes('rmbg'));
  await eventually(() => !h.containerDirs().includes(id));
  assert.ok(!fs.existsSync(path.join(h.root, 'overlay', id)));
  await eventually(() => h.mounts().length === 0);
  assert.equal(runcState(id), undefined);
  assert.deepEqual(h.containerDirs(), before);

  // stop of a --rm container removes it too.
  await h.ok(['run', '-d', '--rm', '--name', 'rmstop', 'busybox', 'sleep', '1000']);
  await h.ok(['stop', '-t', '0', 'rmstop']);
  await eventually(async () => !(await h.names()).includes('rmstop'));
  assert.deepEqual(h.containerDirs(), before);
});

test('a container whose process is killed while no ferry runs shows as exited', async () => {
  await h.ok(['run', '-d', '--name', 'victim', 'busybox', 'sleep', '1000']);
  const i = await h.inspect('victim');
  process.kill(i.State.Pid, 'SIGKILL');
  await eventually(async () => /^victim Exited \(137\) /m.test(await h.ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}'])));
  assert.equal((await h.inspect('victim')).State.ExitCode, 137);
  await eventually(() => !mounted(i.GraphDriver.Data.MergedDir));

  // Harder: conmon dies too, so no exit command runs and no exit file is written.
  await h.ok(['start', 'victim']);
  const j = await h.inspect('victim');
  process.kill(j.State.ConmonPid, 'SIGKILL');
  process.kill(j.State.Pid, 'SIGKILL');
  await eventually(() => !alive(j.State.Pid) && !alive(j.State.ConmonPid));
  assert.deepEqual(await h.names(false), [], 'ps no longer lists it as running');
  const k = await h.inspect('victim');
  assert.equal(k.State.Status, 'exited');
  assert.equal(k.State.Running, false);
  assert.ok(!mounted(k.GraphDriver.Data.MergedDir), 'the next command unmounted it');
  // And it can be started again.
  await h.ok(['start', 'victim']);
  assert.equal((await h.inspect('victim')).State.Status, 'running');
  await h.ok(['rm', '-f', 'victim']);
});

test('files written in a container survive a restart (its own overlay layer)', async () => {
  await h.ok(['run', '-d', '--name', 'persist', 'busybox', 'sh', '-c', 'echo kept > /state; sleep 1000']);
  await eventually(async () => (await h.run(['exec', 'persist', 'cat', '/state'])).stdout === 'kept\n');
  await h.ok(['stop', '-t', '0', 'persist']);
  await h.ok(['start', 'persist']);
  assert.equal((await h.run(['exec', 'persist', 'cat', '/state'])).stdout, 'kept\n');
  // ... but not into another container of the same image.
  const other = await h.run(['run', '--rm', 'busybox', 'cat', '/state']);
  assert.notEqual(other.code, 0);
  await h.ok(['rm', '-f', 'persist']);
});

test('rm refuses a running container without -f; rm -f stops and removes it', async () => {
  await h.ok(['run', '-d', '--name', 'busy', 'busybox', 'sleep', '1000']);
  const merged = (await h.inspect('busy')).GraphDriver.Data.MergedDir as string;
  const r = await h.fails(['rm', 'busy']);
  assert.match(r.stderr, /^Error: .*running.*(--force|-f)/);
  assert.equal((await h.inspect('busy')).State.Status, 'running', 'still running after the refusal');
  const t0 = Date.now();
  assert.equal(await h.ok(['rm', '-f', 'busy']), 'busy');
  assert.ok(Date.now() - t0 < 8000, 'rm -f does not wait for a stop timeout');
  assert.ok(!(await h.names()).includes('busy'));
  assert.ok(!mounted(merged));
});

test('-l/--latest acts on the most recently created container', async () => {
  await h.ok(['run', '-d', '--name', 'older', 'busybox', 'sleep', '1000']);
  await h.ok(['run', '-d', '--name', 'newer', 'busybox', 'sleep', '1000']);
  assert.equal(await h.ok(['ps', '-l', '--format', '{{.Names}}']), 'newer');
  assert.equal((JSON.parse(await h.ok(['inspect', '-l'])) as { Name: string }[])[0]!.Name, 'newer');
  assert.equal(await h.ok(['inspect', '--latest', '-f', '{{.Name}}']), 'newer');
  assert.equal((await h.run(['exec', '-l', 'hostname'])).stdout.trim(), (await h.inspect('newer')).Config.Hostname);
  await h.ok(['stop', '-l', '-t', '0']);
  assert.equal((await h.inspect('newer')).State.Status, 'exited');
  assert.equal((await h.inspect('older')).State.Status, 'running');
  await h.ok(['start', '--latest']);
  assert.equal((await h.inspect('newer')).State.Status, 'running');
  await h.ok(['rm', '-f', '-l']);
  assert.ok(!(await h.names()).includes('newer'));
  assert.ok((await h.names()).includes('older'));
  const both = await h.fails(['stop', '-l', 'older']);
  assert.match(both.stderr, /^Error: .*cannot be used together/);
  await h.ok(['rm', '-f', 'older']);
});

test('ps --format json and inspect have Podman\'s shapes', async () => {
  const id = await h.ok(['run', '-d', '--name', 'shape', '-e', 'FOO=bar', '--label', 'k=v', 'busybox', 'sleep', '1000']);
  const ps = JSON.parse(await h.ok(['ps', '--format', 'json'])) as Record<string, unknown>[];
  assert.ok(Array.isArray(ps));
  const e = ps.find((x) => x.Id === id)!;
  assert.ok(e, 'the container is in ps json');
  assert.deepEqual(e.Names, ['shape']);
  assert.equal(e.Id, id);
  assert.equal(e.State, 'running');
  assert.equal(e.Image, 'localhost/busybox:latest');
  assert.equal(typeof e.Created, 'number');
  assert.ok(Math.abs((e.Created as number) - Date.now() / 1000) < 120);
  assert.deepEqual(e.Command, ['sleep', '1000']);
  assert.equal(typeof e.Pid, 'number');
  assert.ok((e.Pid as number) > 0);
  assert.deepEqual(e.Labels, { k: 'v' });
  assert.match(e.Status as string, /^Up /);

  const out = JSON.parse(await h.ok(['inspect', 'shape'])) as Record<string, any>[];
  assert.equal(out.length, 1);
  const i = out[0]!;
  assert.equal(i.Id, id);
  assert.equal(i.Name, 'shape');
  assert.ok(!Number.isNaN(Date.parse(i.Created)));
  assert.equal(i.Path, 'sleep');
  assert.deepEqual(i.Args, ['1000']);
  assert.match(i.Image, /^[0-9a-f]{64}$/);
  assert.equal(i.ImageName, 'localhost/busybox:latest');
  assert.equal(i.State.Status, 'running');
  assert.equal(i.State.Running, true);
  assert.equal(i.State.Paused, false);
  assert.equal(typeof i.State.Pid, 'number');
  assert.ok(i.State.Pid > 0);
  assert.equal(i.State.ExitCode, 0);
  assert.ok(i.Config.Env.includes('FOO=bar'));
  assert.ok(i.Config.Env.some((x: string) => x.startsWith('PATH=')));
  assert.deepEqual(i.Config.Cmd, ['sleep', '1000']);
  assert.deepEqual(i.Config.Labels, { k: 'v' });
  // The PID is real: its environment holds FOO=bar.
  assert.ok(fs.readFileSync(`/proc/${i.State.Pid}/environ`, 'utf8').split('\0').includes('FOO=bar'));
  // By short ID prefix too, and several at once.
  assert.equal(await h.ok(['inspect', '-f', '{{.Name}}', id.slice(0, 12)]), 'shape');
  const two = JSON.parse(await h.ok(['inspect', 'shape', id])) as unknown[];
  assert.equal(two.length, 2);
  // -q prints short IDs; --no-trunc full ones.
  assert.ok((await h.ok(['ps', '-q'])).split('\n').includes(id.slice(0, 12)));
  assert.ok((await h.ok(['ps', '-q', '--no-trunc'])).split('\n').includes(id));
  // The default table has Podman's columns.
  const table = (await h.ok(['ps'])).split('\n');
  assert.match(table[0]!, /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
  assert.ok(table.some((l) => new RegExp(`^${id.slice(0, 12)}\\s+localhost/busybox:latest\\s+sleep 1000\\s+.* ago\\s+Up .*\\s+shape$`).test(l)));

  await h.ok(['stop', '-t', '0', 'shape']);
  const s = await h.inspect('shape');
  assert.equal(s.State.Status, 'exited');
  assert.equal(s.State.Running, false);
  assert.equal(s.State.Pid, 0);
  assert.equal(s.State.ExitCode, 137);
  const pa = JSON.parse(await h.ok(['ps', '-a', '--format', 'json'])) as Record<string, unknown>[];
  const x = pa.find((p) => p.Id === id)!;
  assert.equal(x.State, 'exited');
  assert.equal(x.Exited, true);
  assert.equal(x.ExitCode, 137);
  assert.ok(!(JSON.parse(await h.ok(['ps', '--format', 'json'])) as { Id: string }[]).some((p) => p.Id === id), 'ps json without -a omits it');
  await h.ok(['rm', 'shape']);
});

test('pause freezes a container and unpause thaws it; rm -f removes a paused one; wrong states are refused', async () => {
  await h.ok(['run', '-d', '--name', 'frozen', 'busybox', 'sh', '-c', 'i=0; while true; do echo $i; i=$(expr $i + 1); usleep 100000; done']);
  const id = (await h.inspect('frozen')).Id as string;
  const count = async (): Promise<number> => Number((await h.ok(['logs', 'frozen'])).trim().split('\n').pop());
  await eventually(async () => (await count()) >= 2);
  assert.equal(await h.ok(['pause', 'frozen']), 'frozen');
  const i = await h.inspect('frozen');
  assert.equal(i.State.Status, 'paused');
  assert.equal(i.State.Paused, true);
  assert.equal(runcState(id), 'paused');
  const held = await count();
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(await count(), held, 'no output while paused');
  const again = await h.fails(['pause', 'frozen']);
  assert.match(again.stderr, /^Error: container frozen is already paused\n$/);
  assert.equal(await h.ok(['unpause', 'frozen']), 'frozen');
  assert.equal((await h.inspect('frozen')).State.Status, 'running');
  await eventually(async () => (await count()) > held + 2);
  assert.match((await h.fails(['unpause', 'frozen'])).stderr, /^Error: container frozen is not paused\n$/);
  await h.ok(['pause', 'frozen']);
  await h.ok(['rm', '-f', 'frozen']); // a frozen task dies only once thawed: rm -f thaws it
  assert.equal(runcState(id), undefined);
  assert.deepEqual(await h.names(), []);
});

test('--network none: a namespace of its own with lo up (the prestart hook), also after a restore', async () => {
  await h.ok(['run', '-d', '--network', 'none', '--name', 'lonly', 'busybox', 'sleep', '1000']);
  const links = async (): Promise<string> => h.ok(['exec', 'lonly', 'ip', '-o', 'link', 'show']);
  const before = await links();
  assert.match(before, /^1: lo: <LOOPBACK,UP,LOWER_UP>/m);
  assert.equal(before.trim().split('\n').length, 1, 'nothing but lo');
  await h.ok(['container', 'checkpoint', 'lonly']);
  await h.ok(['container', 'restore', 'lonly']);
  assert.match(await links(), /^1: lo: <LOOPBACK,UP,LOWER_UP>/m);
  await h.ok(['rm', '-f', 'lonly']);
});
