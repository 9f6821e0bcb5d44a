// A migration's small archive (a lazy one carries no memory): compressed and decompressed with
// zstd in this process (no `zstd` child on either end), its small members read and written whole.
// The bytes must be what the `zstd` command reads and writes, and every check of the stream path
// (checksums, truncation, corruption, files that exist already) must still hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { PassThrough, Writable } from 'node:stream';
import { ArchiveWriter, HEADER_MEMBER, readArchive } from '../../src/drivers/archive/archive.js';
import { compressor } from '../../src/drivers/archive/compress.js';

function tmpdir(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-small-archive-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A fake CRIU images dir: small files, one larger than the whole-file limit (256 KiB). */
function images(dir: string): Record<string, Buffer> {
  fs.mkdirSync(dir, { recursive: true });
  const files: Record<string, Buffer> = {
    'inventory.img': Buffer.from('inventory'),
    'pstree.img': Buffer.alloc(300, 1),
    'empty.img': Buffer.alloc(0),
    'pages-1.img': Buffer.from(Array.from({ length: 600 << 10 }, (_, i) => (i * 7) & 0xff)),
  };
  for (const [n, b] of Object.entries(files)) fs.writeFileSync(path.join(dir, n), b);
  return files;
}

/** The archive's bytes, written with the in-process codec. */
async function writeSmall(src: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
  });
  const w = new ArchiveWriter(sink, 'zstd', { inProcess: true });
  await w.addJson(HEADER_MEMBER, { format: w.format, kind: 'test' });
  await w.addPlainDir('checkpoint', src);
  await w.finish();
  return Buffer.concat(chunks);
}

async function read(bytes: Buffer, dest: string, inProcess: boolean): Promise<void> {
  const input = new PassThrough();
  const p = readArchive(input, dest, { onHeader: () => undefined, inProcess });
  input.end(bytes);
  await p;
}

test('in-process zstd: a real zstd stream both ways, the members intact', async (t) => {
  const d = tmpdir(t);
  const files = images(path.join(d, 'src'));
  const bytes = await writeSmall(path.join(d, 'src'));
  assert.equal(bytes.readUInt32LE(0), 0xfd2fb528, 'a zstd frame');
  // The zstd command reads what was written here...
  const tarBytes = spawnSync('zstd', ['-q', '-d', '-c'], { input: bytes, maxBuffer: 64 << 20 });
  assert.equal(tarBytes.status, 0, String(tarBytes.stderr));
  // ...and the reader takes it, in process and through the zstd child alike.
  for (const inProcess of [true, false]) {
    const dest = path.join(d, `dest-${inProcess}`);
    fs.mkdirSync(dest);
    await read(bytes, dest, inProcess);
    for (const [n, b] of Object.entries(files)) assert.deepEqual(fs.readFileSync(path.join(dest, 'checkpoint', n)), b, `${n} (inProcess ${inProcess})`);
    assert.equal(fs.statSync(path.join(dest, 'checkpoint', 'pstree.img')).mode & 0o777, 0o600);
  }
  // What the zstd command compressed is read in process too.
  const viaCli = spawnSync('zstd', ['-q', '-c', '-3'], { input: tarBytes.stdout, maxBuffer: 64 << 20 });
  const dest = path.join(d, 'dest-cli');
  fs.mkdirSync(dest);
  await read(viaCli.stdout, dest, true);
  assert.deepEqual(fs.readFileSync(path.join(dest, 'checkpoint', 'pages-1.img')), files['pages-1.img']);
});

test('in-process zstd: corrupt or truncated streams are refused, nothing half-read passes', async (t) => {
  const d = tmpdir(t);
  images(path.join(d, 'src'));
  const bytes = await writeSmall(path.join(d, 'src'));
  const corrupt = Buffer.from(bytes);
  for (let i = 64; i < corrupt.length; i += 97) corrupt[i] ^= 0x5a;
  const cases: [string, Buffer][] = [
    ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2))],
    ['corrupt', corrupt],
  ];
  for (const [what, b] of cases) {
    const dest = path.join(d, what);
    fs.mkdirSync(dest);
    await assert.rejects(read(b, dest, true), /bad checkpoint archive/, what);
  }
});

test('a small member is never written through a file that exists (whole-file writes keep O_EXCL)', async (t) => {
  const d = tmpdir(t);
  images(path.join(d, 'src'));
  const bytes = await writeSmall(path.join(d, 'src'));
  const dest = path.join(d, 'dest');
  fs.mkdirSync(path.join(dest, 'checkpoint'), { recursive: true });
  const victim = path.join(d, 'victim');
  fs.writeFileSync(victim, 'keep me');
  fs.symlinkSync(victim, path.join(dest, 'checkpoint', 'inventory.img'));
  await assert.rejects(read(bytes, dest, true));
  assert.equal(fs.readFileSync(victim, 'utf8'), 'keep me');
});

test('compressor: in process only when asked, the zstd child otherwise', async () => {
  const small = compressor('zstd', { inProcess: true });
  const child = compressor('zstd');
  const out = (c: typeof small): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      c.stream.on('data', (b: Buffer) => parts.push(b));
      c.stream.on('end', () => resolve(Buffer.concat(parts)));
      c.stream.on('error', reject);
      c.stream.end(Buffer.from('hello '.repeat(1000)));
    });
  const [a, b] = await Promise.all([out(small), out(child), child.done]);
  for (const z of [a, b]) assert.equal(spawnSync('zstd', ['-q', '-d', '-c'], { input: z }).stdout.toString(), 'hello '.repeat(1000));
  // The child's stream is a duplex over a process's pipes; the in-process one is zlib's.
  assert.notEqual(small.stream.constructor.name, child.stream.constructor.name);
});

test('in-process zstd: input beyond a frame (1 MiB) goes as several frames, one stream to every reader', async (t) => {
  const d = tmpdir(t);
  const src = path.join(d, 'src');
  fs.mkdirSync(src);
  const big = Buffer.from(Array.from({ length: 2600 << 10 }, (_, i) => (i * 13 + (i >> 12)) & 0xff));
  fs.writeFileSync(path.join(src, 'pages-1.img'), big);
  const bytes = await writeSmall(src);
  let frames = 0;
  for (let i = bytes.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); i >= 0; i = bytes.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), i + 4)) frames++;
  assert.ok(frames >= 3, `${frames} frames`);
  const cli = spawnSync('zstd', ['-q', '-d', '-c'], { input: bytes, maxBuffer: 64 << 20 });
  assert.equal(cli.status, 0, String(cli.stderr));
  for (const inProcess of [true, false]) {
    const dest = path.join(d, `dest-${inProcess}`);
    fs.mkdirSync(dest);
    await read(bytes, dest, inProcess);
    assert.deepEqual(fs.readFileSync(path.join(dest, 'checkpoint', 'pages-1.img')), big);
  }
});
