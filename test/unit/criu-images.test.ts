import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dumpedArch, dumpedRootMode } from '../../src/drivers/criu/images.js';
import { isPodmanDump } from '../../src/drivers/archive/podman.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-crimg-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// Protobuf, as CRIU writes it: varint keys (field << 3 | wire type), varints, length-delimited.
const varint = (n: number): number[] => {
  const out: number[] = [];
  do {
    out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return out;
};
const num = (field: number, v: number): number[] => [...varint(field << 3), ...varint(v)];
const bytes = (field: number, b: number[] | Buffer): number[] => [...varint((field << 3) | 2), ...varint(b.length), ...b];
/** An image file: two magic words, then each entry preceded by its size. */
const image = (...entries: number[][]): Buffer => {
  const parts = [Buffer.from([0x19, 0x43, 0x56, 0x54, 0, 0, 0, 0])];
  for (const e of entries) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length);
    parts.push(len, Buffer.from(e));
  }
  return Buffer.concat(parts);
};
const regFile = (name: string, mode: number): number[] =>
  [...num(1, 1), ...num(2, 7), ...bytes(3, [...num(1, 7), ...num(2, 0), ...num(3, 0), ...bytes(5, []), ...bytes(6, Buffer.from(name)), ...num(10, mode)])];

test('dumpedArch: CoreEntry mtype in Node\'s names; undefined without a core image', () => {
  const d = path.join(dir, 'arch');
  fs.mkdirSync(d);
  assert.equal(dumpedArch(d), undefined);
  fs.writeFileSync(path.join(d, 'core-1.img'), image([...num(1, 1), ...bytes(2, [8, 1])]));
  assert.equal(dumpedArch(d), 'x64');
  fs.writeFileSync(path.join(d, 'core-1.img'), image(num(1, 3)));
  assert.equal(dumpedArch(d), 'arm64');
});

test('dumpedRootMode: the mode of the directory "." among the regular files; undefined when absent or garbled', () => {
  const d = path.join(dir, 'files');
  fs.mkdirSync(d);
  assert.equal(dumpedRootMode(d), undefined);
  fs.writeFileSync(path.join(d, 'files.img'), image(regFile('/bin/busybox', 0o100755), regFile('.', 0o40555)));
  assert.equal(dumpedRootMode(d), 0o555);
  fs.writeFileSync(path.join(d, 'files.img'), image(regFile('/etc', 0o40755)));
  assert.equal(dumpedRootMode(d), undefined);
  fs.writeFileSync(path.join(d, 'files.img'), Buffer.from('garbage that is no image at all'));
  assert.equal(dumpedRootMode(d), undefined);
});

test('isPodmanDump: libpod\'s config.dump and an OCI spec', () => {
  const spec = { process: { args: ['sh'] } };
  assert.ok(isPodmanDump({ id: 'a', name: 'b', rootfsImageName: 'localhost/x:latest' }, spec));
  assert.ok(!isPodmanDump({ id: 'a', name: 'b' }, spec));
  assert.ok(!isPodmanDump({ id: 'a', name: 'b', rootfsImageName: 'x' }, {}));
  assert.ok(!isPodmanDump(null, spec));
  assert.ok(!isPodmanDump([], spec));
});
