// The runtime driver's pure parts: what a dump asks of CRIU, the runc flags a restore asks for, the error
// a user sees when runc fails, and the OCI spec (config.json) a container runs with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import protobuf from 'protobufjs';
import { RuncRuntime, cleanRuntimeMessage, isDumpOf, restoreArgs } from '../../src/drivers/runtime/runc.js';
import { dumpOptions, type RuncStateFile } from '../../src/drivers/runtime/dumpopts.js';
import { resolveIn } from '../../src/lib/fsutil.js';
import { decodeResponse, encodeDumpRequest, REQ_PRE_DUMP } from '../../src/drivers/criu/swrk.js';
import { LOOPBACK_UP_HELPER, buildSpec, loopbackUpHook, type SpecOptions } from '../../src/drivers/runtime/spec.js';

// ------------------------------------------------------------------------- CRIU's request, runc argv

test('dumpOptions: what runc checkpoint asks of CRIU, from runc\'s record', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-dumpopts-'));
  try {
    const rootfs = path.join(dir, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'run', 'data'), { recursive: true });
    fs.symlinkSync('/run', path.join(rootfs, 'var-run')); // absolute: resolved inside the rootfs
    const netns = path.join(dir, 'netns');
    fs.writeFileSync(netns, '');
    const st: RuncStateFile = {
      init_process_pid: 4242,
      config: {
        rootfs,
        mounts: [
          { destination: '/proc', device: 'proc' },
          { destination: '/etc/hosts', device: 'bind', source: '/x/hosts' },
          { destination: '/var-run/data', device: 'bind', source: '/x/data' },
          { destination: '/sys/fs/cgroup', device: 'cgroup' },
        ],
        mask_paths: ['/proc/kcore', '/proc/acpi', '/proc/gone'],
        devices: [{ path: '/dev/null' }],
        namespaces: [{ type: 'NEWPID' }, { type: 'NEWNET', path: netns }],
        labels: ['bundle=/b', 'org.criu.config=/b/criu.conf'],
      },
      cgroup_paths: { freezer: '/sys/fs/cgroup/freezer/ferry/x' },
    };
    const isDir = (p: string): boolean | undefined => ({ '/proc/kcore': false, '/proc/acpi': true })[p];
    const ctx = { imagesDirFd: 7, workDirFd: 8, cgroupMounts: ['cpu', 'systemd'], isDir };
    const o = dumpOptions(st, { imagePath: '/i', workPath: '/w', logFile: 'dump.log', tcpEstablished: true }, ctx);
    assert.equal(o.pid, 4242);
    assert.equal(o.root, rootfs);
    assert.equal(o.imagesDirFd, 7);
    assert.equal(o.workDirFd, 8);
    assert.equal(o.tcpEstablished, true);
    assert.equal(o.leaveRunning, false);
    assert.equal(o.orphanPtsMaster, true);
    assert.equal(o.manageCgroups, true);
    assert.equal(o.emptyNs, 0x40000000, 'runc always dumps the network namespace empty');
    assert.equal(o.freezeCgroup, '/sys/fs/cgroup/freezer/ferry/x');
    assert.equal(o.configFile, '/b/criu.conf');
    assert.deepEqual(o.external, [`net[${fs.statSync(netns).ino}]:extRootNetNS`]);
    assert.deepEqual(o.extMnt, [
      ['/etc/hosts', '/etc/hosts'],
      ['/run/data', '/run/data'],
      ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu'],
      ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/systemd'],
      ['/proc/kcore', '/dev/null'],
      ['/dev/null', '/dev/null'],
    ]);
    // A pre-dump sends no mounts; a parent means memory tracking; the page server is split.
    const pre = dumpOptions(st, { imagePath: '/i', workPath: '/w', preDump: true, parentPath: '../pre', pageServer: '[::1]:4000', manageCgroupsMode: 'soft' }, ctx);
    assert.deepEqual(pre.extMnt, []);
    assert.equal(pre.parentImg, '../pre');
    assert.equal(pre.trackMem, true);
    assert.deepEqual(pre.pageServer, { address: '::1', port: 4000 });
    assert.equal(pre.manageCgroupsMode, 3);
    // No annotation: runc's own configuration file; an empty one: none.
    assert.equal(dumpOptions({ ...st, config: { ...st.config, labels: [] } }, { imagePath: '/i', workPath: '/w' }, ctx).configFile, '/etc/criu/runc.conf');
    assert.equal(dumpOptions({ ...st, config: { ...st.config, labels: ['org.criu.config='] } }, { imagePath: '/i', workPath: '/w' }, ctx).configFile, undefined);
    assert.throws(() => dumpOptions(st, { imagePath: '/i', workPath: '/w', pageServer: 'nohost' }, ctx), /ADDRESS:PORT/);
    assert.throws(() => dumpOptions(st, { imagePath: '/i', workPath: '/w', emptyNs: ['ipc'] }, ctx), /only "network"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('isDumpOf: a CRIU dumping this container, by its title once it has the request', () => {
  const ld = ['/usr/lib/ld-linux-x86-64.so.2', '--preload', '/x/rlimits.so', '--library-path', '/x/lib'];
  assert.equal(isDumpOf([...ld, 'criu: dump --rpc -t 4242', '', ''], 4242, '/b', '0'), true);
  assert.equal(isDumpOf(['criu: pre-dump --rpc -t 4242', ''], 4242, undefined, '0'), true);
  assert.equal(isDumpOf([...ld, 'criu: dump --rpc -t 42420'], 4242, '/b', '0'), false, 'another container');
  assert.equal(isDumpOf(['criu: restore --rpc'], 4242, '/b', '0'), false);
  // Before its title: `criu swrk 3` started in the bundle (this process's cwd is not it).
  assert.equal(isDumpOf(['/bin/sh', '/usr/local/lib/ferry/bin/criu', 'swrk', '3'], 4242, '/nowhere', String(process.pid)), false);
  assert.equal(isDumpOf(['/bin/sh', '/usr/local/lib/ferry/bin/criu', 'swrk', '3'], 4242, process.cwd(), String(process.pid)), true);
  assert.equal(isDumpOf(['/usr/bin/conmon', '--runtime-arg', '/usr/local/lib/ferry/bin/criu'], 4242, process.cwd(), String(process.pid)), false);
});

test('resolveIn: links resolve inside the root, never out of it (the dump keys its mounts so)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-resolvein-'));
  try {
    fs.mkdirSync(path.join(dir, 'etc'));
    fs.symlinkSync('../../../../etc', path.join(dir, 'up')); // climbs: stops at the root
    fs.symlinkSync('etc', path.join(dir, 'rel'));
    fs.symlinkSync('loop', path.join(dir, 'loop'));
    const host = (p: string): string => dir + p;
    assert.equal(resolveIn(host, '/up/passwd'), '/etc/passwd');
    assert.equal(resolveIn(host, '/rel/x/'), '/etc/x');
    assert.equal(resolveIn(host, '/a/../../b'), '/b');
    assert.equal(resolveIn(host, '/missing/y'), '/missing/y');
    assert.throws(() => resolveIn(host, '/loop/z'), /too many levels of symbolic links/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The request as CRIU decodes it: its own field numbers and types (images/rpc.proto).
const RPC_PROTO = `
syntax = "proto2";
message criu_page_server_info { optional string address = 1; optional int32 port = 2; }
message ext_mount_map { required string key = 1; required string val = 2; }
message criu_opts {
  required int32 images_dir_fd = 1; optional int32 pid = 2; optional bool leave_running = 3;
  optional bool ext_unix_sk = 4; optional bool tcp_established = 5; optional bool shell_job = 7;
  optional bool file_locks = 8; optional int32 log_level = 9; optional string log_file = 10;
  optional criu_page_server_info ps = 11; optional bool notify_scripts = 12; optional string root = 13;
  optional string parent_img = 14; optional bool track_mem = 15; optional bool auto_dedup = 16;
  optional int32 work_dir_fd = 17; repeated ext_mount_map ext_mnt = 23; optional bool manage_cgroups = 24;
  optional int32 manage_cgroups_mode = 34; repeated string external = 37; optional uint32 empty_ns = 38;
  optional string freeze_cgroup = 44; optional bool lazy_pages = 48; optional int32 status_fd = 49;
  optional bool orphan_pts_master = 50; optional string config_file = 51;
}
message criu_req { required int32 type = 1; optional criu_opts opts = 2; }
message criu_resp { required int32 type = 1; required bool success = 2; optional int32 cr_errno = 7; optional string cr_errmsg = 9; }
`;

test('encodeDumpRequest: a criu_req that protobuf decodes field for field; decodeResponse reads the answer', () => {
  const root = protobuf.parse(RPC_PROTO).root;
  const Req = root.lookupType('criu_req');
  // Fields that decode as they were given (a negative descriptor, the largest PID, UTF-8).
  const same = { imagesDirFd: -1, workDirFd: 9, pid: 2147483647, logFile: 'predump.log', logLevel: 4, root: '/r/ü', leaveRunning: true };
  const b = encodeDumpRequest(REQ_PRE_DUMP, {
    ...same,
    pageServer: { address: '10.77.0.2', port: 65535 },
    extMnt: [['/a', '/a'], ['/proc/kcore', '/dev/null']],
    external: ['net[1]:extRootNetNS'],
    emptyNs: 0xc0000000,
    statusFd: 0,
    manageCgroupsMode: 0,
    orphanPtsMaster: true,
  });
  assert.deepEqual(Req.toObject(Req.decode(b)), {
    type: 4,
    opts: {
      ...same,
      ps: { address: '10.77.0.2', port: 65535 },
      extMnt: [{ key: '/a', val: '/a' }, { key: '/proc/kcore', val: '/dev/null' }],
      external: ['net[1]:extRootNetNS'],
      emptyNs: 0xc0000000,
      statusFd: 0,
      manageCgroupsMode: 0,
      orphanPtsMaster: true,
    },
  });
  const Resp = root.lookupType('criu_resp');
  const ok = Resp.encode(Resp.create({ type: 1, success: true })).finish();
  assert.deepEqual(decodeResponse(ok), { type: 1, success: true });
  const failed = Resp.encode(Resp.create({ type: 1, success: false, crErrno: 2, crErrmsg: 'no such file' })).finish();
  assert.deepEqual(decodeResponse(failed), { type: 1, success: false, crErrno: 2, crErrmsg: 'no such file' });
  assert.equal(decodeResponse(Uint8Array.from([0x08, 0x01])), undefined, 'success is required');
  assert.equal(decodeResponse(Uint8Array.from([0xff])), undefined);
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

test('criuEnv: the CRIU that runc or Ferry starts finds CRIU\'s tar first, and the options file', () => {
  const rt = new RuncRuntime({ runcRoot: '/run/x', criuDefaults: '/etc/x/criu.conf', criuTools: '/opt/criu-path' });
  const env = rt.criuEnv({ _OCI_SYNCPIPE: '3' });
  assert.equal(env.PATH, `/opt/criu-path:${process.env.PATH}`);
  assert.equal(env.CRIU_CONFIG_FILE, '/etc/x/criu.conf');
  assert.equal(env._OCI_SYNCPIPE, '3');
  // Without them (no setup-built tar, a CRIU of the host's): the environment as it is.
  const plain = new RuncRuntime({ runcRoot: '/run/x' }).criuEnv();
  assert.equal(plain.PATH, process.env.PATH);
  assert.equal(plain.CRIU_CONFIG_FILE, process.env.CRIU_CONFIG_FILE);
});
