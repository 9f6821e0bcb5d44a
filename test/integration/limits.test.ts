/**
 * Resource limits on run/create (issue 18): --memory, --memory-swap, --cpus, --cpu-shares,
 * --pids-limit, --ulimit, --shm-size reach the container's cgroup, rlimits and /dev/shm;
 * `inspect` shows them in Podman's HostConfig fields (compared with the real Podman); a memory
 * hog over --memory is OOM-killed and inspect says so; the limits hold again after a restore
 * and after an export/import on another root; bad values are refused with nothing created.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Host, assertCleanError, buildFixture, eventually } from '../helpers/ferry.js';
import { Podman, hasPodman } from '../helpers/podman.js';
import { HostPair, hasSshd } from '../helpers/hosts.js';

const A = new Host('limA');
const B = new Host('limB');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-lim-'));

before(async () => {
  buildFixture('memhog', tmp);
  await Promise.all([A.importBusybox(), B.importBusybox()]);
});
after(async () => {
  await A.destroy();
  await B.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const LIMITS = ['--memory', '48m', '--memory-swap', '96m', '--cpus', '0.5', '--cpu-shares', '512', '--pids-limit', '40', '--shm-size', '16m'];
const SLEEPER = ['sh', '-c', 'while true; do sleep 1; done'];

/** The container's cgroup (v1, cgroupfs) file under a controller, from its OCI spec. */
async function cgroupFile(h: Host, ref: string, controller: string, file: string): Promise<string> {
  const i = await h.inspect(ref);
  const spec = JSON.parse(fs.readFileSync(i.OCIConfigPath, 'utf8'));
  return fs.readFileSync(path.join('/sys/fs/cgroup', controller, spec.linux.cgroupsPath, file), 'utf8').trim();
}

/** What the kernel enforces on a running container: cgroup files, its process's rlimits, /dev/shm's size. */
async function enforced(h: Host, ref: string): Promise<Record<string, string>> {
  const pid = (await h.inspect(ref)).State.Pid;
  const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  const nofile = /Max open files\s+(\d+)\s+(\d+)/.exec(limits)!;
  const shm = await h.ok(['exec', ref, 'sh', '-c', "df -k /dev/shm | awk 'NR==2 {print $2}'"]);
  return {
    memory: await cgroupFile(h, ref, 'memory', 'memory.limit_in_bytes'),
    memsw: await cgroupFile(h, ref, 'memory', 'memory.memsw.limit_in_bytes'),
    quota: await cgroupFile(h, ref, 'cpu', 'cpu.cfs_quota_us'),
    period: await cgroupFile(h, ref, 'cpu', 'cpu.cfs_period_us'),
    shares: await cgroupFile(h, ref, 'cpu', 'cpu.shares'),
    pids: await cgroupFile(h, ref, 'pids', 'pids.max'),
    nofile: `${nofile[1]}:${nofile[2]}`,
    shmKiB: shm,
  };
}

const EXPECTED = {
  memory: String(48 * 1024 * 1024),
  memsw: String(96 * 1024 * 1024),
  quota: '50000',
  period: '100000',
  shares: '512',
  pids: '40',
  nofile: '1000:2000',
  shmKiB: String(16 * 1024),
};

test('limits reach the cgroup, rlimits and /dev/shm; inspect shows them as Podman does', async () => {
  await A.ok(['run', '-d', '--name', 'lim', '--network', 'none', ...LIMITS, '--ulimit', 'nofile=1000:2000', 'busybox', ...SLEEPER]);
  assert.deepEqual(await enforced(A, 'lim'), EXPECTED);
  const hc = (await A.inspect('lim')).HostConfig;
  assert.deepEqual(
    { Memory: hc.Memory, MemorySwap: hc.MemorySwap, NanoCpus: hc.NanoCpus, CpuShares: hc.CpuShares, PidsLimit: hc.PidsLimit, ShmSize: hc.ShmSize, Ulimits: hc.Ulimits },
    { Memory: 48 * 1024 * 1024, MemorySwap: 96 * 1024 * 1024, NanoCpus: 5e8, CpuShares: 512, PidsLimit: 40, ShmSize: 16 * 1024 * 1024, Ulimits: [{ Name: 'RLIMIT_NOFILE', Soft: 1000, Hard: 2000 }] },
  );
  // --memory alone: swap defaults to as much again (Podman's MemorySwap = 2 x Memory).
  await A.ok(['create', '--name', 'memonly', '--network', 'none', '-m', '32m', 'busybox', 'true']);
  assert.equal((await A.inspect('memonly')).HostConfig.MemorySwap, 64 * 1024 * 1024);
  await A.ok(['rm', 'memonly']);
});

test('the HostConfig limit fields equal Podman\'s for the same flags', async (t) => {
  if (!hasPodman()) return t.skip('podman is not installed');
  const p = new Podman('limpod');
  try {
    await p.importBusybox();
    // (No --ulimit here: the peer's own default ulimits are merged into its list.)
    await p.ok(['create', '--name', 'lp', ...LIMITS, 'localhost/busybox', 'true']);
    await A.ok(['create', '--name', 'lf', '--network', 'none', ...LIMITS, 'busybox', 'true']);
    const pick = (h: any): unknown => ({ Memory: h.Memory, MemorySwap: h.MemorySwap, NanoCpus: h.NanoCpus, CpuShares: h.CpuShares, CpuQuota: h.CpuQuota, CpuPeriod: h.CpuPeriod, PidsLimit: h.PidsLimit, ShmSize: h.ShmSize });
    assert.deepEqual(pick((await A.inspect('lf')).HostConfig), pick((await p.inspect('lp')).HostConfig));
    await A.ok(['rm', 'lf']);
  } finally {
    await p.destroy();
  }
});

test('a memory hog over --memory is OOM-killed and inspect says so', async () => {
  await A.ok(['run', '-d', '--name', 'hog', '--network', 'none', '--memory', '16m', '--memory-swap', '16m', '-v', `${tmp}:/opt:ro`, 'busybox', '/opt/memhog', '64']);
  await eventually(async () => (await A.inspect('hog')).State.Status === 'exited', 20_000);
  const s = (await A.inspect('hog')).State;
  assert.equal(s.OOMKilled, true);
  assert.equal(s.ExitCode, 137);
  // The same program within its limit is not OOM-killed (the flag is not always set).
  await A.ok(['run', '-d', '--name', 'fits', '--network', 'none', '--memory', '64m', '-v', `${tmp}:/opt:ro`, 'busybox', '/opt/memhog', '8']);
  await eventually(async () => (await A.logs('fits')).some((l) => l.startsWith('ok')), 15_000);
  await A.ok(['rm', '-f', 'fits']);
  assert.equal((await A.inspect('hog')).State.OOMKilled, true);
  // A new run clears it.
  await A.ok(['start', 'hog']);
  assert.equal((await A.inspect('hog')).State.OOMKilled, false);
  await A.ok(['rm', '-f', 'hog']);
});

test('limits hold again after a restore, and after an export/import on another root', async () => {
  await A.ok(['checkpoint', 'lim']);
  await A.ok(['restore', 'lim']);
  assert.equal((await A.inspect('lim')).State.Restored, true);
  assert.deepEqual(await enforced(A, 'lim'), EXPECTED);
  const archive = path.join(tmp, 'lim.tar.zst');
  await A.ok(['checkpoint', 'lim', '--export', archive]);
  await B.ok(['restore', '--import', archive]);
  assert.deepEqual(await enforced(B, 'lim'), EXPECTED);
  assert.equal((await B.inspect('lim')).HostConfig.Memory, 48 * 1024 * 1024);
  await B.ok(['rm', '-f', 'lim']);
  await A.ok(['rm', '-f', 'lim']);
});

test('a Podman checkpoint archive brings its cgroup limits along (restore --import)', async (t) => {
  if (!hasPodman()) return t.skip('podman is not installed');
  const p = new Podman('limimp');
  try {
    await p.importBusybox();
    await p.ok(['run', '-d', '--name', 'plim', '--network', 'none', '--memory', '48m', '--memory-swap', '96m', '--cpus', '0.5', '--cpu-shares', '512', '--pids-limit', '40', 'localhost/busybox:latest', ...SLEEPER]);
    const archive = path.join(tmp, 'plim.tar.zst');
    await p.ok(['container', 'checkpoint', '--export', archive, 'plim']);
    await B.ok(['restore', '--import', archive]);
    const got = await enforced(B, 'plim');
    assert.deepEqual([got.memory, got.memsw, got.quota, got.shares, got.pids], [EXPECTED.memory, EXPECTED.memsw, EXPECTED.quota, EXPECTED.shares, EXPECTED.pids]);
    const hc = (await B.inspect('plim')).HostConfig;
    assert.deepEqual([hc.Memory, hc.NanoCpus, hc.PidsLimit], [48 * 1024 * 1024, 5e8, 40]);
    await B.ok(['rm', '-f', 'plim']);
  } finally {
    await p.destroy();
  }
});

test('limits hold again after a live migration', { skip: hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)' }, async () => {
  const pair = new HostPair();
  try {
    await pair.setup();
    await Promise.all([pair.a.importBusybox(), pair.b.importBusybox()]);
    await pair.a.ok(['run', '-d', '--name', 'mig', '--network', 'none', ...LIMITS, '--ulimit', 'nofile=1000:2000', 'busybox', ...SLEEPER]);
    await pair.a.ok(['migrate', 'mig', pair.b.url(), '--remote-command', pair.b.remoteCommand(), ...pair.sshArgs()]);
    assert.deepEqual(await enforced(pair.b, 'mig'), EXPECTED);
    assert.equal((await pair.b.inspect('mig')).HostConfig.NanoCpus, 5e8);
    await pair.b.ok(['rm', '-f', 'mig']);
  } finally {
    await pair.destroy();
  }
});

test('bad limits are refused with one clear line, and nothing is created', async () => {
  for (const [flags, re] of [
    [['--memory', 'lots'], /invalid --memory "lots": give a size/],
    [['--memory-swap', '64m'], /--memory-swap needs --memory/],
    [['--memory', '64m', '--memory-swap', '32m'], /--memory-swap 32m is below --memory 64m/],
    [['--cpus', '0'], /invalid --cpus "0"/],
    [['--cpu-shares', '1'], /invalid --cpu-shares "1"/],
    [['--pids-limit', '0'], /invalid --pids-limit "0"/],
    [['--ulimit', 'nofile=10:5'], /soft limit must not be above the hard one/],
    [['--ulimit', 'files=10'], /unknown type/],
    [['--shm-size', '-1'], /invalid --shm-size/],
    [['--restart', 'sometimes'], /invalid --restart "sometimes"/],
    [['--restart', 'always', '--rm'], /--restart always and --rm conflict/],
  ] as [string[], RegExp][]) {
    assertCleanError(await A.run(['run', '-d', '--name', 'bad', '--network', 'none', ...flags, 'busybox', 'true']), re);
  }
  assert.equal((await A.ok(['ps', '-a', '-q'])).trim(), '');
});
