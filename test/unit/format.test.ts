import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatOutput, humanSize, renderTemplate, table } from '../../src/cli/format.js';

test('table pads columns to the widest cell and trims trailing space', () => {
  const t = table(['A', 'LONGER', 'C'], [['xxxx', 'y', ''], ['z', 'yyyyyyyy', 'last']]);
  const lines = t.split('\n');
  assert.equal(lines.length, 4, 'header, two rows, trailing newline');
  assert.equal(lines[3], '');
  // Every column starts at the same offset on every line.
  const col2 = lines[0]!.indexOf('LONGER');
  assert.equal(lines[1]!.indexOf('y'), col2);
  assert.equal(lines[2]!.indexOf('yyyyyyyy'), col2);
  const col3 = lines[0]!.indexOf('C');
  assert.equal(lines[2]!.indexOf('last'), col3);
  assert.ok(col3 - col2 >= 'yyyyyyyy'.length + 3, 'at least three spaces between columns');
  for (const l of lines) assert.equal(l, l.trimEnd(), 'no trailing blanks');
  assert.equal(lines[1], 'xxxx   y', 'an empty last cell leaves no padding');
});

test('table with no rows prints only the header', () => {
  assert.equal(table(['ID', 'NAME'], []), 'ID   NAME\n');
});

test('renderTemplate renders fields, nested fields and {{.}} per item', () => {
  const items = [{ Names: 'a', State: { Status: 'running', Pid: 5 } }, { Names: 'b', State: { Status: 'exited', Pid: 0 } }];
  assert.equal(renderTemplate('{{.Names}}', items), 'a\nb\n');
  assert.equal(renderTemplate('{{.Names}} {{ .State.Status }} {{.State.Pid}}', items), 'a running 5\nb exited 0\n');
  assert.equal(renderTemplate('{{.}}', ['x', 'y']), 'x\ny\n');
  assert.equal(renderTemplate('{{.Missing}}', [{}]), '<no value>\n');
  assert.equal(renderTemplate('{{.State}}', [{ State: { A: 1, B: [1, 2] } }]), 'map[A:1 B:[1 2]]\n');
});

test('renderTemplate: json function, escaped tabs and newlines', () => {
  assert.equal(renderTemplate('{{json .State}}', [{ State: { Status: 'up', N: [1] } }]), '{"Status":"up","N":[1]}\n');
  assert.equal(renderTemplate('{{json .Names}}', [{ Names: ['a'] }]), '["a"]\n');
  assert.equal(renderTemplate('{{.A}}\\t{{.B}}', [{ A: 1, B: 2 }]), '1\t2\n');
  assert.equal(renderTemplate('{{.A}}\\n{{.B}}', [{ A: 1, B: 2 }]), '1\n2\n');
});

test('renderTemplate: a leading "table" prints a header of the field names', () => {
  const out = renderTemplate('table {{.Names}}\\t{{.State.Status}}', [{ Names: 'a', State: { Status: 'running' } }]);
  assert.equal(out, 'NAMES\tSTATE.STATUS\na\trunning\n');
  assert.equal(renderTemplate('table {{.ID}}', []), 'ID\n', 'header even with no items');
});

test('formatOutput: json, template, and the fallback table', () => {
  const items = [{ Id: 'x', N: 1 }];
  assert.deepEqual(JSON.parse(formatOutput('json', items, () => 'no')), items);
  assert.equal(formatOutput('json', [], () => 'no').trim(), '[]');
  assert.equal(formatOutput('{{.Id}}', items, () => 'no'), 'x\n');
  assert.equal(formatOutput(undefined, items, () => 'fallback'), 'fallback');
  assert.equal(formatOutput('', items, () => 'fallback'), 'fallback');
});

test('humanSize uses decimal units with three significant digits', () => {
  assert.equal(humanSize(0), '0 B');
  assert.equal(humanSize(999), '999 B');
  assert.equal(humanSize(1000), '1.00 kB');
  assert.equal(humanSize(1_980_000), '1.98 MB');
  assert.equal(humanSize(5e12), '5.00 TB');
});
