/**
 * Migration to a `ferry system service` (ferry://host:port, mutual TLS with certificates derived from a shared secret) instead
 * of ssh. The service runs inside host B's network namespace; A reaches it over the veth pair.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { FERRY_BIN, skipWith, LOOPER, assertCleanError, buildFixture, busyboxTarball, eventually, lastCount, ServiceProcess } from '../helpers/ferry.js';
import { HostPair, assertContinues, assertHostClean, bytesArrived, hasSshd, names, runcContainers, type NetHost } from '../helpers/hosts.js';

// HostPair starts an sshd per host; the service itself needs none.
const skip = hasSshd() ? false : 'openssh-server is not installed (npm run setup installs it)';
const PORT = 7797;
const pair = new HostPair();
const { a, b } = pair;
let service: Service | undefined;
let secretA = '';
let wrongA = '';
let secretB = '';

/** `ferry system service` in a host's netns, with its log collected. */
/** The migration service on a host's address, in its network namespace. */
class Service extends ServiceProcess {
  get stderr(): string {
    return this.log;
  }

  static start(h: NetHost, secretFile: string, port = PORT): Promise<Service> {
    const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, FERRY_BIN, ...h.args(), 'system', 'service', '--listen', `tcp://${h.ip}:${port}`, '--secret-file', secretFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return new Service(child).listening();
  }
}

function writeSecret(file: string, content: string, mode = 0o600): string {
  fs.writeFileSync(file, content, { mode });
  fs.chmodSync(file, mode);
  return file;
}

before(async () => {
  if (skip) return;
  await pair.setup();
  for (const h of [a, b]) await h.ok(['import', busyboxTarball(), 'busybox']);
  const key = randomBytes(32).toString('base64') + '\n';
  secretA = writeSecret(path.join(a.dir, 'secret'), key);
  secretB = writeSecret(path.join(b.dir, 'secret'), key);
  wrongA = writeSecret(path.join(a.dir, 'wrong'), randomBytes(32).toString('base64') + '\n');
  service = await Service.start(b, secretB);
});

after(async () => {
  await service?.stop(5000);
  await pair.destroy();
});

function dest(): string {
  return `ferry://${b.ip}:${PORT}`;
}






/** After a fault test: a fresh service on B, and the memhog container and its volume gone from A. */
async function restartServiceAndRemove(name: string): Promise<void> {
  await service!.stop(5000);
  service = await Service.start(b, secretB);
  await a.run(['rm', '-f', name]);
  await a.run(['volume', 'rm', `${name}-bin`]);
}

test('the service refuses to start without a secret, or with a weak or exposed one', { skip }, async () => {
  const listen = ['system', 'service', '--listen', `tcp://${b.ip}:${PORT + 1}`];
  assertCleanError(await b.run(listen), /never runs unauthenticated on TCP: .*--secret-file FILE .*head -c 32 \/dev\/urandom/);
  const open = writeSecret(path.join(b.dir, 'open'), randomBytes(32).toString('base64'), 0o644);
  assertCleanError(await b.run([...listen, '--secret-file', open]), /secret file .*open is accessible by group or others \(mode 644\): `chmod 600 /);
  const short = writeSecret(path.join(b.dir, 'short'), 'hunter2\n');
  assertCleanError(await b.run([...listen, '--secret-file', short]), /holds 8 bytes of key material, fewer than 32; make one with `head -c 32 \/dev\/urandom \| base64 > /);
  assertCleanError(await b.run([...listen, '--secret-file', path.join(b.dir, 'missing')]), /cannot read secret file .*missing: ENOENT/);
  assertCleanError(await b.run(['system', 'service', '--listen', 'http://x:1', '--secret-file', secretB]), /invalid --listen "http:\/\/x:1": use unix:\/\/\/PATH .*tcp:\/\/ADDR:PORT/);
  // The source side is as strict: no secret, ssh-only options, a bad URL.
  assertCleanError(await a.run(['migrate', 'x', dest()]), /needs --secret-file FILE/);
  assertCleanError(await a.run(['migrate', 'x', dest(), '--secret-file', secretA, '--identity', secretA]), /--identity applies only to ssh:\/\//);
  assertCleanError(await a.run(['migrate', 'x', `ferry://${b.ip}`, '--secret-file', secretA]), /invalid address .*use ferry:\/\/host:port/);
  assert.ok(service!.running, 'the running service is unaffected');
});

test('a wrong secret is refused at the handshake: nothing frozen, nothing on B', { skip }, async () => {
  await a.ok(['run', '-d', '--name', 'guarded', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(a, 'guarded')) >= 1);
  const pid = (await a.inspect('guarded')).State.Pid;
  const r = await a.run(['migrate', 'guarded', dest(), '--secret-file', wrongA]);
  assertCleanError(r, new RegExp(`authentication with the ferry service at ${b.ip.replace(/\./g, '\\.')}:${PORT} failed: check --secret-file`));
  const ins = await a.inspect('guarded');
  assert.equal(ins.State.Running, true);
  assert.equal(ins.State.Pid, pid, 'the same process: never frozen');
  assert.deepEqual(await names(b), []);
  await eventually(() => /refused a connection from .*wrong secret/.test(service!.stderr), 5000);
  assert.ok(service!.running);
  // Nothing listens on an unreachable port: a different, clear error.
  const r2 = await a.run(['migrate', 'guarded', `ferry://${b.ip}:${PORT + 2}`, '--secret-file', secretA]);
  assertCleanError(r2, /cannot reach the ferry service at .*ECONNREFUSED/);
  await a.ok(['rm', '-f', 'guarded']);
});

test('stop-and-copy A -> ferry://B: the counter continues, exactly one copy, source clean', { skip }, async () => {
  await a.ok(['run', '-d', '--name', 'looper', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(a, 'looper')) >= 2);
  const r = await a.run(['--log-level', 'debug', 'migrate', 'looper', dest(), '--secret-file', secretA]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /migrated looper to ferry:\/\/.* \(stop-and-copy\): downtime \d+ ms, total [0-9.]+ s, .* sent/);
  // A tiny container's pages go in the archive: a page server would cost it ~200 ms.
  assert.doesNotMatch(r.stderr, /memory sent to the page server/);
  assert.match(r.stderr, /migrate looper: archive sent/);
  assert.deepEqual(await names(a), [], 'nothing left on the source');
  assert.deepEqual(runcContainers(a), []);
  assert.deepEqual(await names(b, false), ['looper']);
  assert.equal(runcContainers(b).length, 1);
  await assertContinues(b, 'looper', await lastCount(b, 'looper'));
  await eventually(() => /migration from .*: committed/.test(service!.stderr), 5000);
  await b.ok(['rm', '-f', 'looper']);
});

test('lazy (post-copy) A -> ferry://B: pages through the authenticated tunnel', { skip }, async (t) => {
  const info = JSON.parse(await a.ok(['info', '--format', 'json']));
  if (!info.host.checkpointModes.lazyPages) return skipWith(t, `lazy pages unavailable here: ${info.host.notes.join('; ')}`);
  await a.ok(['run', '-d', '--name', 'lazy', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(a, 'lazy')) >= 2);
  const st = JSON.parse(await a.ok(['migrate', 'lazy', dest(), '--secret-file', secretA, '--lazy', '--print-stats']));
  assert.equal(st.mode, 'lazy');
  assert.ok(st.downtime_ms > 0 && st.bytes_sent > 0, JSON.stringify(st));
  assert.deepEqual(await names(a), []);
  assert.deepEqual(runcContainers(a), []);
  assert.deepEqual(await names(b, false), ['lazy']);
  assert.equal(runcContainers(b).length, 1);
  await assertContinues(b, 'lazy', await lastCount(b, 'lazy'));
  await b.ok(['rm', '-f', 'lazy']);
});

/** A container holding `mib` MiB of memory it checks itself (test/fixtures/memhog.c), its binary in a volume. */
async function startMemhog(name: string, mib: number): Promise<() => Promise<number>> {
  await a.ok(['volume', 'create', `${name}-bin`]);
  const mp = JSON.parse(await a.ok(['volume', 'inspect', `${name}-bin`]))[0].Mountpoint;
  buildFixture('memhog', mp);
  await a.ok(['run', '-d', '--name', name, '-v', `${name}-bin:/opt`, 'busybox', '/opt/memhog', String(mib)]);
  const oks = async (): Promise<number> => (await a.logs(name)).filter((l) => l.startsWith('ok')).length;
  await eventually(async () => (await oks()) >= 2, 30_000);
  return oks;
}

test('stop-and-copy of 48 MiB A -> ferry://B: memory through the page-server tunnel, intact', { skip }, async () => {
  await startMemhog('big', 48);
  try {
    const r = await a.run(['--log-level', 'debug', 'migrate', 'big', dest(), '--secret-file', secretA, '--print-stats']);
    assert.equal(r.code, 0, r.stderr);
    const st = JSON.parse(r.stdout);
    assert.equal(st.mode, 'stop-and-copy');
    assert.ok(st.bytes_sent > 48 << 20, `the pages went over (${st.bytes_sent} bytes)`);
    assert.match(r.stderr, /migrate big: dumped in [0-9.]+ms, memory sent to the page server/);
    const oks = async (): Promise<number> => (await b.logs('big')).filter((l) => l.startsWith('ok')).length;
    const before = await oks();
    await eventually(async () => (await oks()) >= before + 2, 30_000);
    assert.ok(!(await b.logs('big')).some((l) => l.includes('CORRUPT')), 'memory intact');
    assert.deepEqual(await names(a, true), []);
  } finally {
    await b.run(['rm', '-f', 'big']);
    await b.run(['volume', 'rm', 'big-bin']);
    await a.run(['rm', '-f', 'big']);
    await a.run(['volume', 'rm', 'big-bin']);
  }
});

/** Migrates `name` to B and calls `interrupt` once the archive is flowing into B. */
async function migrateAndInterrupt(name: string, interrupt: () => unknown): Promise<{ code: number | null; stderr: string }> {
  const running = a.run(['migrate', name, dest(), '--secret-file', secretA, '--compress', 'none'], { timeoutMs: 180_000 });
  // Memory is flowing into the destination (the container is frozen by now).
  await eventually(() => bytesArrived(b) > 16 << 20, 60_000, 10);
  await interrupt();
  return running;
}

async function assertBackOnA(name: string, r: { code: number | null; stderr: string }, oks: () => Promise<number>): Promise<void> {
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`migration of ${name} failed: .*${name} is running here again`));
  assert.equal((await a.inspect(name)).State.Running, true);
  const before = await oks();
  await eventually(async () => (await oks()) >= before + 2, 30_000);
  assert.ok(!(await a.logs(name)).some((l) => l.includes('CORRUPT')), 'memory intact');
}

test('service killed during the transfer: the container runs again on A, B clean', { skip }, async () => {
  const oks = await startMemhog('cut', 192);
  try {
    const r = await migrateAndInterrupt('cut', () => service!.child.kill('SIGKILL'));
    await assertBackOnA('cut', r, oks);
    await assertHostClean(b); // the ps in there sweeps the killed service's staging
  } finally {
    await restartServiceAndRemove('cut');
  }
});

test('a second SIGTERM cuts a migration in progress: the service rolls it back itself and exits', { skip }, async () => {
  const oks = await startMemhog('sever', 192);
  try {
    let exited: Promise<number | null> | undefined;
    const r = await migrateAndInterrupt('sever', async () => {
      exited = new Promise((res) => service!.child.once('close', (code) => res(code)));
      service!.child.kill('SIGTERM');
      // The first one only stops new connections (signals sent at once would merge into one).
      await eventually(() => /SIGTERM: stopping; 1 migration\(s\) in progress/.test(service!.stderr), 10_000, 5);
      service!.child.kill('SIGTERM');
    });
    assert.equal(await exited, 0, service!.stderr);
    assert.match(service!.stderr, /cutting the migrations in progress/);
    assert.match(service!.stderr, /not committed \(anything received was removed\)/);
    // Before any other ferry runs on B (which would sweep): the service left nothing behind.
    assert.deepEqual(fs.readdirSync(b.root).filter((f) => f.startsWith('.import-') || f.startsWith('.tmp-')), []);
    await assertBackOnA('sever', r, oks);
    await assertHostClean(b);
  } finally {
    await restartServiceAndRemove('sever');
  }
});

test('SIGTERM stops the service cleanly', { skip }, async () => {
  assert.equal(await service!.stop(), 0);
  assert.match(service!.stderr, /SIGTERM: stopping/);
  assert.match(service!.stderr, /stopped\n$/);
  service = undefined;
});
