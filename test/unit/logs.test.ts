import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseLogLine, readLogFrom } from '../../src/drivers/runtime/logs.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-logs-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('parseLogLine reads conmon k8s-file lines', () => {
  assert.deepEqual(parseLogLine('2024-01-01T00:00:00.000000000+00:00 stdout F hello world'), {
    time: '2024-01-01T00:00:00.000000000+00:00', stream: 'stdout', partial: false, content: 'hello world',
  });
  assert.deepEqual(parseLogLine('T stderr P part'), { time: 'T', stream: 'stderr', partial: true, content: 'part' });
  assert.deepEqual(parseLogLine('T stdout F '), { time: 'T', stream: 'stdout', partial: false, content: '' });
  assert.deepEqual(parseLogLine('T stdout F'), { time: 'T', stream: 'stdout', partial: false, content: '' }, 'empty line without trailing space');
  assert.equal(parseLogLine('T stdout F  two  spaces ')!.content, ' two  spaces ', 'content kept verbatim');
});

test('parseLogLine rejects garbage', () => {
  for (const bad of ['', 'nospace', 'T stdin F x', 'T bogus F x', 'onlytime ']) assert.equal(parseLogLine(bad), undefined, JSON.stringify(bad));
});

test('readLogFrom returns complete lines and the offset after them', () => {
  const f = path.join(dir, 'a.log');
  fs.writeFileSync(f, 'T1 stdout F one\nT2 stderr F two\n');
  const r = readLogFrom(f, 0);
  assert.deepEqual(r.entries.map((e) => [e.stream, e.content]), [['stdout', 'one'], ['stderr', 'two']]);
  assert.equal(r.next, fs.statSync(f).size);
  assert.deepEqual(readLogFrom(f, r.next), { entries: [], next: r.next }, 'nothing new');
});

test('readLogFrom leaves a line still being written for the next read', () => {
  const f = path.join(dir, 'b.log');
  fs.writeFileSync(f, 'T1 stdout F one\nT2 stdout F tw');
  const r1 = readLogFrom(f, 0);
  assert.deepEqual(r1.entries.map((e) => e.content), ['one']);
  assert.equal(r1.next, 'T1 stdout F one\n'.length);
  fs.appendFileSync(f, 'o\nT3 stdout P thr');
  const r2 = readLogFrom(f, r1.next);
  assert.deepEqual(r2.entries.map((e) => e.content), ['two']);
  fs.appendFileSync(f, 'ee\n');
  const r3 = readLogFrom(f, r2.next);
  assert.deepEqual(r3.entries.map((e) => [e.content, e.partial]), [['three', true]], 'a P (partial) entry once its log line is complete');
  // No newline at all yet: nothing, offset unchanged.
  const g = path.join(dir, 'c.log');
  fs.writeFileSync(g, 'T1 stdout F no newline yet');
  assert.deepEqual(readLogFrom(g, 0), { entries: [], next: 0 });
});

test('readLogFrom: missing file, and a file that shrank (rotated) restarts at 0', () => {
  assert.deepEqual(readLogFrom(path.join(dir, 'missing.log'), 7), { entries: [], next: 7 });
  const f = path.join(dir, 'd.log');
  fs.writeFileSync(f, 'T stdout F x\n');
  assert.deepEqual(readLogFrom(f, 1000), { entries: [], next: 0 });
});

test('readLogFrom keeps multi-byte characters whole', () => {
  const f = path.join(dir, 'e.log');
  fs.writeFileSync(f, 'T stdout F héllo ✓\n');
  assert.equal(readLogFrom(f, 0).entries[0]!.content, 'héllo ✓');
});
