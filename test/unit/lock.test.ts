import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileLock, withLock } from '../../src/lib/lock.js';
import { haveLibc, tryLockExclusive } from '../../src/lib/libc.js';
import { FerryError } from '../../src/lib/errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-lock-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const LOCK_JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/lib/lock.ts');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('two acquirers serialize: the second waits until the first releases', async () => {
  const f = path.join(dir, 'a.lock');
  const events: string[] = [];
  const a = withLock(f, async () => {
    events.push('a-in');
    await sleep(300);
    events.push('a-out');
  });
  await sleep(50);
  const t0 = Date.now();
  const b = withLock(f, async () => {
    events.push('b-in');
  });
  await Promise.all([a, b]);
  assert.deepEqual(events, ['a-in', 'a-out', 'b-in']);
  assert.ok(Date.now() - t0 >= 150, 'b waited for a');
});

test('a held lock times out with ELOCK and a clear message; release frees it', async () => {
  const f = path.join(dir, 'b.lock');
  const l = await FileLock.acquire(f);
  await assert.rejects(FileLock.acquire(f, { timeoutMs: 0, what: 'container x' }), (e: unknown) => e instanceof FerryError && e.code === 'ELOCK' && /container x is locked/.test(e.message));
  l.release();
  l.release(); // idempotent
  const again = await FileLock.acquire(f, { timeoutMs: 0 });
  again.release();
});

test('withLock releases the lock when fn throws', async () => {
  const f = path.join(dir, 'c.lock');
  await assert.rejects(withLock(f, async () => { throw new Error('boom'); }), /boom/);
  (await FileLock.acquire(f, { timeoutMs: 0 })).release();
});

test('a lock held by a process that is SIGKILLed is released', async () => {
  const f = path.join(dir, 'd.lock');
  const child = spawn(process.execPath, ['-e', `
    const { FileLock } = await import(${JSON.stringify(LOCK_JS)});
    await FileLock.acquire(${JSON.stringify(f)});
    process.stdout.write('locked\\n');
    setInterval(() => {}, 1000);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => b.toString().includes('locked') && resolve());
      child.on('exit', (c) => reject(new Error(`child exited ${c} before locking`)));
    });
    await assert.rejects(FileLock.acquire(f, { timeoutMs: 0 }), (e: unknown) => e instanceof FerryError && e.code === 'ELOCK', 'the child holds it');
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
    const l = await FileLock.acquire(f, { timeoutMs: 2000 });
    l.release();
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test('locks are taken in this process (flock(2) through libc), not by a flock child per lock', () => {
  assert.ok(haveLibc());
  const f = path.join(dir, 'd.lock');
  const fd1 = fs.openSync(f, 'w');
  const fd2 = fs.openSync(f, 'r');
  try {
    assert.equal(tryLockExclusive(fd1), true);
    assert.equal(tryLockExclusive(fd2), false, 'another open file description is refused');
  } finally {
    fs.closeSync(fd1);
    fs.closeSync(fd2);
  }
});
