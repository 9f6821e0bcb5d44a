// A stop-and-copy migration's memory arrives apart from its archive, written by a CRIU page
// server on the destination: what may be taken from there into the checkpoint, and the
// receiver's progress notices, which are never replies. Each root's cgroups are its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { adoptPageImages, pageImageBytes } from '../../src/engine/checkpoint-dir.js';
import { LineReader } from '../../src/drivers/transport/channel.js';
import { parseReply } from '../../src/engine/migrate/protocol.js';
import { Paths } from '../../src/engine/paths.js';

function dirs(t: { after: (fn: () => void) => void }): { from: string; images: string } {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-pages-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  const from = path.join(d, 'pages');
  const images = path.join(d, 'checkpoint');
  fs.mkdirSync(from);
  fs.mkdirSync(images);
  fs.writeFileSync(path.join(images, 'inventory.img'), 'x');
  return { from, images };
}

test('adoptPageImages moves the page server\'s pagemap and pages images into the checkpoint', (t) => {
  const { from, images } = dirs(t);
  fs.writeFileSync(path.join(from, 'pagemap-1.img'), 'pm');
  fs.writeFileSync(path.join(from, 'pages-65537.img'), Buffer.alloc(8192));
  // Shared memory's maps: a System V segment (by its ID) and a shared anonymous mapping (by its inode).
  fs.writeFileSync(path.join(from, 'pagemap-shmem-4.img'), 's');
  fs.writeFileSync(path.join(from, 'pagemap-shmem-5859364.img'), 'a');
  fs.writeFileSync(path.join(from, 'page-server.log'), 'not an image');
  fs.writeFileSync(path.join(from, 'pagemap-shmem-x.img'), 'not an image');
  assert.equal(pageImageBytes(from), 8192, 'what has arrived: the pages, not their map');
  assert.equal(pageImageBytes(path.join(from, 'not-yet')), 0);
  assert.equal(adoptPageImages(from, images), 8196);
  assert.deepEqual(fs.readdirSync(images).sort(), ['inventory.img', 'pagemap-1.img', 'pagemap-shmem-4.img', 'pagemap-shmem-5859364.img', 'pages-65537.img']);
  assert.deepEqual(fs.readdirSync(from).sort(), ['page-server.log', 'pagemap-shmem-x.img'], 'only page images are taken');
});

test('adoptPageImages refuses what a page server never writes, and an image the archive also had', (t) => {
  const { from, images } = dirs(t);
  assert.throws(() => adoptPageImages(from, images), /the memory of the checkpoint never arrived/);
  fs.writeFileSync(path.join(from, 'pagemap-1.img'), 'pm');
  fs.symlinkSync('/etc/passwd', path.join(from, 'pages-1.img'));
  assert.throws(() => adoptPageImages(from, images), /bad page image pages-1\.img: not a regular file/);
  fs.rmSync(path.join(from, 'pages-1.img'));
  fs.writeFileSync(path.join(images, 'pagemap-1.img'), 'from the archive');
  assert.throws(() => adoptPageImages(from, images), /pagemap-1\.img came both in the archive and from the page server/);
  assert.equal(fs.readFileSync(path.join(images, 'pagemap-1.img'), 'utf8'), 'from the archive', 'nothing replaced');
  assert.ok(fs.existsSync(path.join(from, 'pagemap-1.img')), 'nothing moved when refused');
});

test('LineReader: progress notices go to onProgress, never to next()', async () => {
  const input = new PassThrough();
  const r = new LineReader(input, parseReply);
  const seen: number[] = [];
  r.onProgress = (m) => seen.push(m.pageBytes);
  const id = 'c'.repeat(64);
  input.write(`{"type":"progress","pageBytes":4096}\n{"type":"progress","pageBytes":8192}\n{"type":"restored","id":"${id}","pageBytes":8192}\n`);
  assert.deepEqual(await r.next(1000), { type: 'restored', id, pageBytes: 8192 });
  assert.deepEqual(seen, [4096, 8192]);
  input.end('{"type":"progress","pageBytes":1}\n');
  assert.equal(await r.next(1000), undefined, 'a notice is no reply, even the last one');
});

test('cgroups: the default root keeps /ferry/ID; another root on the same kernel gets its own', () => {
  const id = 'a'.repeat(64);
  assert.equal(new Paths('/var/lib/ferry', '/run/ferry').cgroup(id), `/ferry/${id}`);
  const x = new Paths('/tmp/x/root', '/tmp/x/run').cgroup(id);
  const y = new Paths('/tmp/y/root', '/tmp/y/run').cgroup(id);
  assert.match(x, new RegExp(`^/ferry/[0-9a-f]{8}-${id}$`));
  assert.notEqual(x, y);
  assert.equal(new Paths('/tmp/x/root/', '/run').cgroup(id), x, 'the same root, however written');
});
