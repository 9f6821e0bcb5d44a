/**
 * The offline reader of CRIU's images (src/drivers/criu/image.ts, messages.ts, explore.ts) on
 * image files written here as CRIU writes them: magic words, then size-prefixed protobuf entries.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageDir } from '../../src/drivers/criu/explore.js';
import { ImageError, imageEntries, readImage } from '../../src/drivers/criu/image.js';
import { decodeMessage } from '../../src/drivers/criu/messages.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-crexp-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const varint = (n: number): number[] => {
  const out: number[] = [];
  do {
    out.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return out;
};
const num = (field: number, v: number): number[] => [...varint(field << 3), ...varint(v)];
const bytes = (field: number, b: number[] | Buffer | string): number[] => {
  const buf = typeof b === 'string' ? Buffer.from(b) : Buffer.from(b);
  return [...varint((field << 3) | 2), ...varint(buf.length), ...buf];
};
const image = (...entries: number[][]): Buffer => {
  const parts = [Buffer.from([0x19, 0x43, 0x56, 0x54, 0x01, 0x02, 0x03, 0x04])];
  for (const e of entries) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(e.length);
    parts.push(len, Buffer.from(e));
  }
  return Buffer.concat(parts);
};

/** A two-process dump: sh (1) with fd 3 on a file, and its child nc (7) listening on 127.0.0.1:8080 and holding a UNIX socket. */
function writeDump(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const w = (name: string, b: Buffer): void => fs.writeFileSync(path.join(dir, name), b);
  w('pstree.img', image([...num(1, 1), ...num(2, 0), ...num(3, 1), ...num(4, 1), ...num(5, 1)], [...num(1, 7), ...num(2, 1), ...num(3, 1), ...num(4, 1)]));
  const core = (comm: string, state = 1) => image([...num(1, 1), ...bytes(3, [...num(1, state), ...num(2, 0), ...num(3, 0), ...num(4, 0), ...num(5, 0), ...bytes(6, comm)])]);
  w('core-1.img', core('sh'));
  w('core-7.img', core('nc'));
  // ids in ids-PID.img, as CRIU writes them: files_id 11 and 12.
  w('ids-1.img', image([...num(1, 1), ...num(2, 11), ...num(3, 1), ...num(4, 1)]));
  w('ids-7.img', image([...num(1, 2), ...num(2, 12), ...num(3, 1), ...num(4, 1)]));
  // Memory of sh: two pages at 0x7f0000000000 (argv and environment there), a page in a parent between.
  const base = 0x7f0000000000;
  const argv = Buffer.from('sh\0-c\0echo hi\0');
  const env = Buffer.from('A=1\0SECRET=hunter2\0');
  const pages = Buffer.alloc(2 * 4096);
  argv.copy(pages, 100);
  env.copy(pages, 4096 + 10);
  w('pages-5.img', pages);
  w('pagemap-1.img', image(num(1, 5), [...num(1, base), ...num(2, 1), ...num(4, 4)], [...num(1, base + 4096), ...num(2, 1), ...num(4, 1)], [...num(1, base + 8192), ...num(2, 0), ...num(5, 1), ...num(4, 4)]));
  w('mm-1.img', image([...num(1, 0), ...num(8, base + 100), ...num(9, base + 100 + argv.length), ...num(10, base + 8192 + 10), ...num(11, base + 8192 + 10 + env.length)]));
  // Files: the regular file, the two sockets, the cwd.
  const fown = bytes(5, [...num(1, 0), ...num(2, 0), ...num(3, 0), ...num(4, 0), ...num(5, 0)]);
  const reg = (id: number, name: string) => [...num(1, 1), ...num(2, id), ...bytes(3, [...num(1, id), ...num(2, 0), ...num(3, 0), ...fown, ...bytes(6, name)])];
  const inet = [...num(1, 4), ...num(2, 30), ...bytes(4, [...num(1, 30), ...num(2, 999), ...num(3, 2), ...num(4, 1), ...num(5, 6), ...num(6, 10), ...num(7, 8080), ...num(8, 0), ...num(9, 0), ...num(10, 5), ...num(11, 0x0100007f)])];
  const unix = [...num(1, 5), ...num(2, 31), ...bytes(16, [...num(1, 31), ...num(2, 1000), ...num(3, 1), ...num(4, 10), ...bytes(11, '\0abstract')])];
  w('files.img', image(reg(20, '/tmp/held'), reg(21, '/'), inet, unix));
  w('fdinfo-11.img', image([...num(1, 20), ...num(2, 0), ...num(3, 1), ...num(4, 3)]));
  w('fdinfo-12.img', image([...num(1, 30), ...num(2, 0), ...num(3, 4), ...num(4, 4)], [...num(1, 31), ...num(2, 0), ...num(3, 5), ...num(4, 5)]));
  w('fs-1.img', image([...num(1, 21), ...num(2, 21)]));
}

test('messages: repeated fields packed or not, sub-messages, bytes, 64-bit addresses, fields Ferry does not declare', () => {
  // threads twice unpacked then packed; field 9 is not Ferry's (skipped).
  const p = decodeMessage('PstreeEntry', Buffer.from([...num(1, 3), ...num(2, 1), ...num(3, 1), ...num(4, 1), ...num(5, 3), ...num(5, 4), ...bytes(5, [5, 6]), ...num(9, 1)]));
  assert.deepEqual(p, { pid: 3, ppid: 1, pgid: 1, sid: 1, threads: [3, 4, 5, 6] });
  const core = decodeMessage('CoreEntry', Buffer.from([...num(1, 1), ...bytes(2, [1, 2, 3]), ...bytes(3, [...num(1, 2), ...num(2, 0), ...bytes(6, 'httpd')])]));
  assert.equal(core.mtype, 1);
  assert.equal(core.tc?.comm, 'httpd');
  assert.equal(core.tc?.taskState, 2);
  assert.equal(core.ids, undefined);
  const pe = decodeMessage('PagemapEntry', Buffer.from([...num(1, 0x7ffe89ec1000), ...num(2, 0), ...num(5, 2 ** 33)]));
  assert.equal(pe.vaddr, 0x7ffe89ec1000, 'a 47-bit address is exact');
  assert.equal(pe.nrPages, 2 ** 33);
  assert.equal(pe.flags, undefined);
  const usk = decodeMessage('UnixSkEntry', Buffer.from([...num(1, 1), ...num(2, 2), ...num(3, 1), ...num(4, 7), ...bytes(11, [0, 0x61, 0, 0x62])]));
  assert.ok(Buffer.isBuffer(usk.name));
  assert.deepEqual([...usk.name], [0, 0x61, 0, 0x62]);
  // What CRIU requires must be there; a field cut short does not decode.
  assert.throws(() => decodeMessage('PstreeEntry', Buffer.from(num(1, 3))), /missing required 'ppid'/);
  assert.throws(() => decodeMessage('TaskCoreEntry', Buffer.from([...num(1, 1), ...num(2, 0)])), /missing required 'comm'/);
  assert.throws(() => decodeMessage('PstreeEntry', Buffer.from([0x0a, 0x05, 1, 2])));
  assert.throws(() => decodeMessage('PstreeEntry', Buffer.from([0x08])));
  assert.throws(() => decodeMessage('PstreeEntry', Buffer.from([0x0f])), 'wire type 7');
});

test('imageEntries, readImage: magic words, entries; a cut-short or garbled file is an ImageError naming the file', () => {
  assert.equal(imageEntries(image(num(1, 1), num(1, 2)), 'x.img').length, 2);
  const cut = image(num(1, 1), [...bytes(2, 'abcdef')]);
  assert.throws(() => imageEntries(cut.subarray(0, cut.length - 2), 'core-9.img'), (e: unknown) => e instanceof ImageError && /corrupt CRIU image core-9\.img: entry 2 is cut short/.test((e as Error).message));
  assert.throws(() => imageEntries(Buffer.from('garbage!'), 'pstree.img'), /pstree\.img: it does not start with CRIU's magic/);
  fs.writeFileSync(path.join(tmp, 'files.img'), image([0x0f]));
  assert.throws(() => readImage(path.join(tmp, 'files.img'), 'FileEntry'), (e: unknown) => e instanceof ImageError && /corrupt CRIU image files\.img: entry 1 does not decode as FileEntry/.test((e as Error).message));
  fs.writeFileSync(path.join(tmp, 'pstree.img'), image([...num(1, 1), ...num(2, 0), ...num(3, 1), ...num(4, 1)], num(1, 2)));
  assert.throws(() => readImage(path.join(tmp, 'pstree.img'), 'PstreeEntry'), /pstree\.img: entry 2 does not decode as PstreeEntry \(missing required 'ppid'\)/);
  assert.throws(() => readImage(path.join(tmp, 'absent.img'), 'PstreeEntry'), /absent\.img: it cannot be read \(ENOENT\)/);
});

test('ImageDir: the process tree, command lines and environment from the dumped memory', () => {
  const dir = path.join(tmp, 'dump');
  writeDump(dir);
  const images = new ImageDir(dir);
  const root = images.processTree();
  assert.equal(root.pid, 1);
  assert.equal(root.comm, 'sh');
  assert.equal(root.taskState, 'Alive');
  assert.deepEqual(root.children.map((c) => [c.pid, c.comm]), [[7, 'nc']]);
  assert.deepEqual(images.cmdline(1), ['sh', '-c', 'echo hi']);
  assert.deepEqual(images.environment(1), ['A=1', 'SECRET=hunter2']);
  assert.equal(images.cmdline(7), undefined, 'no memory dumped: no command line');
  // Only the pages in this image count (the one in a parent does not); the third entry uses nr_pages.
  assert.equal(images.memorySize(1), 2 * 4096);
  const regions = [...images.memory(1)];
  assert.deepEqual(regions.map((r) => r.vaddr), [0x7f0000000000, 0x7f0000002000]);
  assert.ok(regions[1]!.bytes.includes('SECRET=hunter2'));
});

test('ImageDir: open files with cwd and root; sockets with protocol, state, address and port', () => {
  const images = new ImageDir(path.join(tmp, 'dump'));
  const root = images.processTree();
  assert.deepEqual(images.openFiles(root), [
    { type: 'REG', fd: '3', path: '/tmp/held' },
    { type: 'DIR', fd: 'cwd', path: '/' },
    { type: 'DIR', fd: 'root', path: '/' },
  ]);
  assert.deepEqual(images.sockets(root), []);
  const nc = root.children[0]!;
  assert.deepEqual(images.sockets(nc), [
    { fd: 4, protocol: 'TCP', family: 'IPv4', type: 'STREAM', state: 'LISTEN', src: '127.0.0.1', srcPort: 8080, dst: '0.0.0.0', dstPort: 0 },
    { fd: 5, protocol: 'UNIX', family: 'UNIX', type: 'STREAM', state: 'LISTEN', address: '@abstract' },
  ]);
});

test('ImageDir: a missing or corrupt image stops with its name', () => {
  const dir = path.join(tmp, 'bad');
  writeDump(dir);
  fs.rmSync(path.join(dir, 'core-7.img'));
  assert.throws(() => new ImageDir(dir).processTree(), /corrupt CRIU image core-7\.img: it is missing/);
  writeDump(dir);
  const pm = fs.readFileSync(path.join(dir, 'pagemap-1.img'));
  fs.writeFileSync(path.join(dir, 'pagemap-1.img'), pm.subarray(0, pm.length - 3));
  assert.throws(() => new ImageDir(dir).cmdline(1), /pagemap-1\.img: entry 4 is cut short/);
  writeDump(dir);
  fs.writeFileSync(path.join(dir, 'pages-5.img'), Buffer.alloc(100));
  assert.equal(new ImageDir(dir).cmdline(1), undefined, 'a short pages image: no command line rather than garbage');
  assert.throws(() => [...new ImageDir(dir).memory(1)], /pages-5\.img: it is shorter than its pagemap says/);
});
