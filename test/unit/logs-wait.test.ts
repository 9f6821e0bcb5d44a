import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkLogsOptions, pickLogEntries, readLog, type LogEntry } from '../../src/engine/logs.js';
import type { Engine } from '../../src/engine/engine.js';
import type { ContainerStatus } from '../../src/engine/types.js';
import { FerryError } from '../../src/lib/errors.js';
import { fakeContainer, scratchEngine } from '../helpers/records.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-logread-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const entry = (sec: number, content: string): LogEntry => ({ time: `2024-01-01T00:00:0${sec}.123456789+00:00`, stream: 'stdout', partial: false, content });
const E = [entry(1, 'a'), entry(2, 'b'), entry(3, 'c'), entry(4, 'd')];
const texts = (es: LogEntry[]): string[] => es.map((e) => e.content);

test('pickLogEntries: tail keeps the last N (0: none), since/until bound by time first', () => {
  assert.deepEqual(texts(pickLogEntries(E, {})), ['a', 'b', 'c', 'd']);
  assert.deepEqual(texts(pickLogEntries(E, { tail: 2 })), ['c', 'd']);
  assert.deepEqual(texts(pickLogEntries(E, { tail: 0 })), []);
  assert.deepEqual(texts(pickLogEntries(E, { tail: 10 })), ['a', 'b', 'c', 'd']);
  assert.deepEqual(texts(pickLogEntries(E, { since: new Date('2024-01-01T00:00:02Z') })), ['b', 'c', 'd'], 'nanosecond times compare by their milliseconds');
  assert.deepEqual(texts(pickLogEntries(E, { until: new Date('2024-01-01T00:00:02.5Z') })), ['a', 'b']);
  assert.deepEqual(texts(pickLogEntries(E, { since: new Date('2024-01-01T00:00:02Z'), until: new Date('2024-01-01T00:00:03.5Z'), tail: 1 })), ['c']);
  assert.deepEqual(texts(pickLogEntries([{ ...entry(1, 'x'), time: 'garbled' }], { since: new Date('2030-01-01') })), ['x'], 'an unreadable time is kept');
});

test('checkLogsOptions refuses a tail that is no count and dates that are none', () => {
  for (const ok of [{}, { tail: 0 }, { tail: 5 }, { since: new Date(0), until: new Date() }]) assert.doesNotThrow(() => checkLogsOptions(ok));
  for (const bad of [{ tail: -1 }, { tail: 1.5 }, { tail: NaN }, { since: new Date('x') }, { until: new Date('x') }]) {
    assert.throws(() => checkLogsOptions(bad), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL', JSON.stringify(bad));
  }
});

async function collect(it: AsyncIterable<LogEntry>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of it) out.push(e.content);
  return out;
}

test('readLog without follow: what is there now, picked', async () => {
  const f = path.join(dir, 'now.log');
  fs.writeFileSync(f, 'T1 stdout F one\nT2 stderr F two\nT3 stdout F thr');
  let asked = 0;
  const done = async (): Promise<boolean> => (asked++, true);
  assert.deepEqual(await collect(readLog(f, {}, done)), ['one', 'two'], 'an incomplete last line is not read');
  assert.deepEqual(await collect(readLog(f, { tail: 1 }, done)), ['two']);
  assert.equal(asked, 0, 'without follow the writer is not asked about');
  assert.deepEqual(await collect(readLog(path.join(dir, 'missing.log'), {}, done)), [], 'no log yet: nothing');
});

test('readLog with follow: new lines as they come, until the writer is done, then the last ones', async () => {
  const f = path.join(dir, 'follow.log');
  fs.writeFileSync(f, 'T1 stdout F old1\nT2 stdout F old2\n');
  let finished = false;
  const got: string[] = [];
  const reader = (async () => {
    for await (const e of readLog(f, { follow: true, tail: 1 }, async () => finished, 10)) got.push(e.content);
  })();
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, ['old2'], 'tail applies to what was there');
  fs.appendFileSync(f, 'T3 stdout F new1\nT4 stdout F par');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(got, ['old2', 'new1'], 'a followed line arrives; a half-written one waits');
  // The writer finishes its line and is done at once: the last read still gets it.
  fs.appendFileSync(f, 'tial\n');
  finished = true;
  await reader;
  assert.deepEqual(got, ['old2', 'new1', 'partial']);
});

// ------------------------------------------------------------------ Engine.logs and Engine.wait on records

const einval = (re: RegExp) => (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && re.test(e.message);
const e1 = scratchEngine(dir, 'eng');
const ids = {
  created: fakeContainer(e1, 'c-created', 'created'),
  running: fakeContainer(e1, 'c-running', 'running'),
  exited: fakeContainer(e1, 'c-exited', 'exited', { exitCode: 3 }),
};

test('Engine.wait: the exit code once the container no longer runs; conditions; timeout', async () => {
  assert.equal(await e1.wait('c-exited'), 3);
  assert.equal(await e1.wait('c-created'), 0, 'a created container does not run: no wait');
  assert.equal(await e1.wait('c-created', { conditions: ['created'] }), 0);
  const t0 = Date.now();
  await assert.rejects(e1.wait('c-created', { conditions: ['running', 'exited'], timeoutMs: 250 }), (e: unknown) => e instanceof FerryError && e.code === 'ESTATE' && /c-created did not become running or exited within 250 ms/.test(e.message));
  assert.ok(Date.now() - t0 >= 250, 'it waited for the timeout');
  await assert.rejects(e1.wait('c-running', { timeoutMs: 150 }), (e: unknown) => e instanceof FerryError && /c-running did not stop within 150 ms/.test(e.message));
  await assert.rejects(e1.wait('c-exited', { conditions: ['gone' as ContainerStatus] }), einval(/invalid wait condition "gone"/));
  await assert.rejects(e1.wait('ghost'), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND');
});

test('Engine.logs: entries by tail and time; a stopped container ends a follow at once; bad options refused', async () => {
  const log = e1.paths.logPath(ids.exited);
  fs.writeFileSync(log, ['2024-01-01T00:00:01.000000000Z stdout F one', '2024-01-01T00:00:02.000000000Z stderr F two', '2024-01-01T00:00:03.000000000Z stdout F three', ''].join('\n'));
  const read = async (o: Parameters<Engine['logs']>[1]): Promise<string[]> => {
    const got: string[] = [];
    for await (const e of e1.logs('c-exited', o)) got.push(e.content);
    return got;
  };
  assert.deepEqual(await read({}), ['one', 'two', 'three']);
  assert.deepEqual(await read({ tail: 2 }), ['two', 'three']);
  assert.deepEqual(await read({ follow: true, tail: 1 }), ['three']);
  assert.deepEqual(await read({ since: new Date('2024-01-01T00:00:02Z') }), ['two', 'three']);
  assert.throws(() => e1.logs('ghost'), (e: unknown) => e instanceof FerryError && e.code === 'ENOTFOUND');
  assert.throws(() => e1.logs('c-exited', { tail: -1 }), einval(/invalid tail -1/));
  assert.throws(() => e1.logs('c-exited', { tail: 1.5 }), einval(/invalid tail/));
  assert.throws(() => e1.logs('c-exited', { since: new Date('nonsense') }), einval(/invalid since time/));
});
