// The runtime driver's pure parts: the runc flags a checkpoint or restore asks for, the error
// a user sees when runc fails, and the OCI spec (config.json) a container runs with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkpointArgs, cleanRuntimeMessage, restoreArgs } from '../../src/drivers/runtime/runc.js';
import { LOOPBACK_UP_HELPER, buildSpec, loopbackUpHook, type SpecOptions } from '../../src/drivers/runtime/spec.js';

// ------------------------------------------------------------------------- runc argv

test('checkpointArgs: image and work paths always, then one flag per option asked for', () => {
  assert.deepEqual(checkpointArgs({ imagePath: '/c/checkpoint', workPath: '/c/bundle' }), ['--image-path', '/c/checkpoint', '--work-path', '/c/bundle']);
  assert.deepEqual(
    checkpointArgs({
      imagePath: '/c/checkpoint',
      workPath: '/c/bundle',
      leaveRunning: true,
      tcpEstablished: true,
      fileLocks: true,
      extUnixSk: true,
      shellJob: true,
      manageCgroupsMode: 'soft',
      emptyNs: ['network', 'ipc'],
      autoDedup: true,
      preDump: true,
      parentPath: '../pre-2',
      pageServer: '127.0.0.1:40123',
      lazyPages: true,
      statusFd: 3,
    }),
    [
      '--image-path', '/c/checkpoint', '--work-path', '/c/bundle',
      '--leave-running', '--tcp-established', '--file-locks', '--ext-unix-sk', '--shell-job',
      '--manage-cgroups-mode', 'soft',
      '--empty-ns', 'network', '--empty-ns', 'ipc',
      '--auto-dedup', '--pre-dump',
      '--parent-path', '../pre-2',
      '--page-server', '127.0.0.1:40123',
      '--lazy-pages',
      '--status-fd', '3',
    ],
  );
  // false and empty ask for nothing; a status fd of 0 is still a descriptor.
  assert.deepEqual(
    checkpointArgs({ imagePath: 'i', workPath: 'w', leaveRunning: false, tcpEstablished: false, emptyNs: [], parentPath: '', pageServer: '', statusFd: 0 }),
    ['--image-path', 'i', '--work-path', 'w', '--status-fd', '0'],
  );
  // A path with spaces or dashes stays one argument.
  assert.deepEqual(checkpointArgs({ imagePath: '/a b/--x', workPath: '-w' }), ['--image-path', '/a b/--x', '--work-path', '-w']);
});

test('restoreArgs: one word per flag (conmon passes each with --runtime-opt); --tcp-close is not runc\'s', () => {
  assert.deepEqual(restoreArgs({}), []);
  assert.deepEqual(
    restoreArgs({ tcpEstablished: true, tcpClose: true, fileLocks: true, extUnixSk: true, shellJob: true, manageCgroupsMode: 'ignore', autoDedup: true, lazyPages: true }),
    ['--tcp-established', '--file-locks', '--ext-unix-sk', '--shell-job', '--manage-cgroups-mode=ignore', '--auto-dedup', '--lazy-pages'],
  );
  assert.deepEqual(restoreArgs({ tcpClose: true }), [], 'runc 1.1 has no --tcp-close: a CRIU config file carries it');
  assert.deepEqual(restoreArgs({ manageCgroupsMode: 'full' }), ['--manage-cgroups-mode=full']);
});

// ------------------------------------------------------------------------- runc errors

test('cleanRuntimeMessage: the human part of what runc (through conmon) said', () => {
  const cases: [string, string][] = [
    // runc's text log line on stderr, as conmon passes it on
    [
      'time="2026-11-30T12:10:26Z" level=error msg="runc create failed: unable to start container process: exec: \\"nope\\": executable file not found in $PATH"\n',
      'runc create failed: unable to start container process: exec: \\"nope\\": executable file not found in $PATH',
    ],
    ['time="2026-11-30T12:10:26Z" level=error msg="exec failed: container does not exist"', 'exec failed: container does not exist'],
    ['time="2026-11-30T12:10:26Z" level=error msg=unquoted', 'unquoted'],
    // runc's JSON log line
    ['{"level":"error","msg":"runc create failed: chdir /b: no such file or directory","time":"2026-11-30T12:10:26Z"}\n', 'runc create failed: chdir /b: no such file or directory'],
    ['{"level":"error","msg":"exec: \\"nope\\": not found","time":"t"}', 'exec: "nope": not found'],
    ['{"level":"warning","msg":"first a warning","time":"t"}\n{"level":"error","msg":"then the error","time":"t"}\n', 'then the error'],
    // A message of several lines: its last
    ['{"level":"error","msg":"criu failed: type NOTIFY errno 0\\nlog file: /b/restore.log","time":"t"}', 'log file: /b/restore.log'],
    ['runtime failed: container "x" does not exist\n', 'container "x" does not exist'],
    ['Runtime failed container is paused', 'container is paused'],
    ['  plain words  \n\n', 'plain words'],
  ];
  for (const [input, want] of cases) assert.equal(cleanRuntimeMessage(input), want, JSON.stringify(input));
});

test('cleanRuntimeMessage: a warning line before runc\'s error, and nothing but "runtime failed"', () => {
  assert.equal(
    cleanRuntimeMessage('time="2026-11-30T12:10:25Z" level=warning msg="cgroup: subsystem does not exist"\ntime="2026-11-30T12:10:26Z" level=error msg="runc create failed: permission denied"\n'),
    'runc create failed: permission denied',
  );
  // conmon reports a failure without a message when runc wrote nothing; the engine passes this.
  assert.equal(cleanRuntimeMessage('runtime failed'), 'runtime failed');
  // A plain message ending in a quote keeps it.
  assert.equal(cleanRuntimeMessage('cannot open "/x"'), 'cannot open "/x"');
  assert.equal(cleanRuntimeMessage(''), '');
});

// ------------------------------------------------------------------------- OCI spec

type Spec = {
  ociVersion: string;
  process: { terminal: boolean; user: { uid: number; gid: number }; args: string[]; env: string[]; cwd: string; capabilities: Record<string, string[]>; noNewPrivileges: boolean };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  annotations: Record<string, string>;
  hooks?: { prestart: { path: string; args: string[]; env: string[]; timeout: number }[] };
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath: string;
    resources: { devices: { allow: boolean; access: string }[] };
    maskedPaths: string[];
    readonlyPaths: string[];
    seccomp?: { defaultAction: string; architectures?: string[]; syscalls: { names: string[]; action: string; errnoRet?: number }[] };
  };
};

const base: SpecOptions = {
  rootfs: '/var/lib/ferry/overlay/x/merged',
  args: ['sh', '-c', 'echo "$HOME"'],
  env: ['PATH=/usr/bin:/bin', 'A=b=c'],
  cwd: '/srv',
  hostname: 'web1',
  mounts: [],
  cgroupsPath: '/ferry/abc',
};

const spec = (o: Partial<SpecOptions> = {}): Spec => buildSpec({ ...base, ...o }) as Spec;

const DEFAULT_MOUNTS = ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup'];

test('buildSpec: process, root, hostname, cgroups path; a container of its own by default', () => {
  const s = spec();
  assert.equal(s.ociVersion, '1.0.2');
  assert.deepEqual(s.process.args, ['sh', '-c', 'echo "$HOME"']);
  assert.deepEqual(s.process.env, ['PATH=/usr/bin:/bin', 'A=b=c']);
  assert.equal(s.process.cwd, '/srv');
  assert.equal(s.process.terminal, false);
  assert.deepEqual(s.process.user, { uid: 0, gid: 0 });
  assert.equal(s.process.noNewPrivileges, false);
  assert.deepEqual(s.root, { path: '/var/lib/ferry/overlay/x/merged', readonly: false });
  assert.equal(s.hostname, 'web1');
  assert.equal(s.linux.cgroupsPath, '/ferry/abc');
  assert.deepEqual(s.annotations, {});
  assert.deepEqual(s.linux.namespaces, [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }]);
  assert.deepEqual(s.mounts.map((m) => m.destination), DEFAULT_MOUNTS);
  assert.deepEqual(s.mounts.find((m) => m.destination === '/sys'), { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] });
  // Podman's default capabilities, the same in every set; no CAP_SYS_ADMIN.
  const caps = s.process.capabilities;
  assert.deepEqual(Object.keys(caps), ['bounding', 'effective', 'permitted']);
  assert.equal(caps.bounding!.length, 11);
  assert.deepEqual(caps.effective, caps.bounding);
  assert.deepEqual(caps.permitted, caps.bounding);
  assert.ok(caps.bounding!.includes('CAP_NET_BIND_SERVICE'));
  assert.ok(!caps.bounding!.includes('CAP_SYS_ADMIN'));
  assert.deepEqual(s.linux.resources, { devices: [{ allow: false, access: 'rwm' }] });
  assert.ok(s.linux.maskedPaths.includes('/proc/kcore'));
  assert.ok(s.linux.readonlyPaths.includes('/proc/sys'));
  // Its own network namespace: a prestart hook brings lo up (CRIU restores it down).
  assert.equal(s.hooks?.prestart.length, 1);
  assert.equal(s.hooks!.prestart[0]!.path, LOOPBACK_UP_HELPER, 'the helper npm run setup builds');
  assert.equal(s.hooks!.prestart[0]!.timeout, 10);
  // All of it is plain JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
});

test('buildSpec: terminal, annotations, and mounts after the defaults in their order', () => {
  const mounts = [
    { destination: '/data', type: 'bind', source: '/var/lib/ferry/volumes/v/_data', options: ['rbind', 'rw'] },
    { destination: '/etc/hosts', type: 'bind', source: '/run/ferry/x/hosts', options: ['rbind', 'ro'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] },
  ];
  const s = spec({ terminal: true, annotations: { 'io.ferry.name': 'web1', 'org.criu.config': '/b/criu.conf' }, mounts });
  assert.equal(s.process.terminal, true);
  assert.deepEqual(s.annotations, { 'io.ferry.name': 'web1', 'org.criu.config': '/b/criu.conf' });
  assert.deepEqual(s.mounts.map((m) => m.destination), [...DEFAULT_MOUNTS, '/data', '/etc/hosts', '/tmp']);
  assert.deepEqual(s.mounts.slice(DEFAULT_MOUNTS.length), mounts);
});

test('buildSpec: namespaces joined by path (the mount namespace never); no lo hook when the network namespace is not its own', () => {
  const s = spec({
    namespacePaths: { network: '/run/netns/ferry-0123456789ab', ipc: '/proc/42/ns/ipc', uts: '/proc/42/ns/uts', pid: '/proc/42/ns/pid' },
  });
  assert.deepEqual(s.linux.namespaces, [
    { type: 'pid', path: '/proc/42/ns/pid' },
    { type: 'network', path: '/run/netns/ferry-0123456789ab' },
    { type: 'ipc', path: '/proc/42/ns/ipc' },
    { type: 'uts', path: '/proc/42/ns/uts' },
    { type: 'mount' },
  ]);
  assert.equal(s.hooks, undefined);
  assert.equal('hooks' in s, false);

  // Only some joined: the others are new; a network namespace of its own keeps the hook.
  const p = spec({ namespacePaths: { ipc: '/proc/42/ns/ipc' } });
  assert.deepEqual(p.linux.namespaces, [{ type: 'pid' }, { type: 'network' }, { type: 'ipc', path: '/proc/42/ns/ipc' }, { type: 'uts' }, { type: 'mount' }]);
  assert.equal(p.hooks?.prestart.length, 1);
  // An empty path is no path.
  assert.deepEqual(spec({ namespacePaths: { network: '' } }).linux.namespaces[1], { type: 'network' });
  // The mount namespace is always the container's own, even if a path slips in.
  const m = spec({ namespacePaths: { mount: '/proc/42/ns/mnt', uts: '/proc/42/ns/uts' } as unknown as SpecOptions['namespacePaths'] });
  assert.deepEqual(m.linux.namespaces.slice(3), [{ type: 'uts', path: '/proc/42/ns/uts' }, { type: 'mount' }]);
});

test('buildSpec: io_uring answers ENOSYS, everything else is allowed; --security-opt seccomp=unconfined lifts the filter', () => {
  const f = spec().linux.seccomp;
  assert.equal(f?.defaultAction, 'SCMP_ACT_ALLOW');
  assert.deepEqual(f?.syscalls, [{ names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
  if (process.arch === 'x64') assert.deepEqual(f?.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], 'the 32-bit entry points too');
  assert.equal('seccomp' in spec({ allowIoUring: true }).linux, false);
  assert.ok(spec({ allowIoUring: false }).linux.seccomp);
});

test('buildSpec: --network host has no network namespace at all, even with a path given', () => {
  for (const s of [spec({ hostNetwork: true }), spec({ hostNetwork: true, namespacePaths: { network: '/run/netns/ferry-0123456789ab', uts: '/proc/42/ns/uts' } })]) {
    assert.deepEqual(s.linux.namespaces.map((n) => n.type), ['pid', 'ipc', 'uts', 'mount']);
    assert.equal(s.hooks, undefined);
  }
});

test('buildSpec: the lo hook finds the PID in the state runc gives it and brings lo up there', (t) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-hook-'));
  // A process in a network namespace of its own (made by name, so that nothing here ever acts
  // on a PID that is still in this host's namespace), lo down: what runc hands the hook.
  const nsName = `fy-hook-${process.pid}`;
  assert.equal(spawnSync('ip', ['netns', 'add', nsName]).status, 0);
  const ns = spawn('ip', ['netns', 'exec', nsName, 'sleep', '60'], { stdio: 'ignore' });
  t.after(() => {
    ns.kill('SIGKILL');
    spawnSync('ip', ['netns', 'delete', nsName]);
    fs.rmSync(d, { recursive: true, force: true });
  });
  const own = fs.readlinkSync('/proc/self/ns/net');
  const inNs = (): boolean => {
    try {
      return fs.readlinkSync(`/proc/${ns.pid}/ns/net`) !== own;
    } catch {
      return false;
    }
  };
  for (const end = Date.now() + 10_000; !inNs(); ) {
    assert.ok(Date.now() < end, 'the sleeper entered its namespace');
    spawnSync('sleep', ['0.01']);
  }
  const lo = (): string => spawnSync('ip', ['-n', nsName, '-o', 'link', 'show', 'lo'], { encoding: 'utf8' }).stdout;
  const runHook = (hook: ReturnType<typeof loopbackUpHook>, state: string, env: NodeJS.ProcessEnv = {}) =>
    spawnSync(hook.path, hook.args.slice(1), { argv0: hook.args[0], input: state, encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
  const states = (pid: number): string[] => [
    // runc's state as it writes it (compact JSON, an annotation that says "pid" after the real one), and spaced
    `{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":${pid},"bundle":"/b","annotations":{"pid":"7"}}`,
    `{\n  "ociVersion": "1.0.2",\n  "id": "abc",\n  "status": "creating",\n  "pid": ${pid},\n  "bundle": "/b"\n}`,
  ];
  // The helper (scripts/ferry-lo-up.c): for real, in the namespace.
  const helper = loopbackUpHook();
  assert.equal(helper.path, LOOPBACK_UP_HELPER);
  for (const state of states(ns.pid!)) {
    spawnSync('ip', ['-n', nsName, 'link', 'set', 'lo', 'down']);
    assert.doesNotMatch(lo(), /[<,]UP[,>]/);
    const r = runHook(helper, state);
    assert.equal(r.status, 0, r.stderr);
    assert.match(lo(), /<LOOPBACK,UP,LOWER_UP>/);
  }
  const bad = runHook(helper, '{"id":"abc"}');
  assert.notEqual(bad.status, 0, 'no PID: the hook fails rather than touch another namespace');
  assert.match(bad.stderr, /^ferry-lo-up: no "pid" in the container state on stdin$/m);
  // Without the helper: a shell with sed, nsenter and ip (a stand-in nsenter says what it was asked).
  const fallback = loopbackUpHook(path.join(d, 'missing'));
  assert.equal(fallback.path, '/bin/sh');
  assert.deepEqual(fallback.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  fs.writeFileSync(path.join(d, 'nsenter'), '#!/bin/sh\necho "nsenter $*"\n', { mode: 0o755 });
  for (const state of states(4242)) {
    const r = runHook(fallback, state, { PATH: `${d}:/usr/bin:/bin` });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'nsenter -t 4242 -n ip link set lo up\n');
  }
  const none = runHook(fallback, '{"id":"abc"}', { PATH: `${d}:/usr/bin:/bin` });
  assert.notEqual(none.status, 0);
  assert.equal(none.stdout, '');
  assert.match(spawnSync('ip', ['-o', 'link', 'show', 'lo'], { encoding: 'utf8' }).stdout, /[<,]UP[,>]/, "this host's own lo is untouched");
});
