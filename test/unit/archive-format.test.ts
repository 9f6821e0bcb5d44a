// The checkpoint archive's formats: a zstd archive (format 2) is written by the writer itself
// into zstd's pipe (headers by write(2), files by sendfile(2)) and its bytes are covered by
// zstd's frame checksum; format 1 (sha256 of every member's bytes) is what -c none and gzip
// write, and what older zstd archives hold: both must read, and corruption and truncation of
// either must be refused before anything is used.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArchiveWriter, CHECKSUMS_MEMBER, HEADER_MEMBER, memberHash, readArchive, type Header } from '../../src/drivers/archive/archive.js';
import type { Compression } from '../../src/drivers/archive/compress.js';
import { tarHeader, tarPadding, TAR_END } from '../../src/drivers/archive/tarheader.js';
import { pack, readEntries } from '../helpers/tarcraft.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-arch-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A checkpoint-like directory: a 9 MiB "pages" image and small ones. */
const SRC = path.join(tmp, 'src');
fs.mkdirSync(path.join(SRC, 'sub'), { recursive: true });
const pages = randomBytes(9 * 1024 * 1024 + 123); // more than two of sendfile's 4 MiB steps
fs.writeFileSync(path.join(SRC, 'pages-1.img'), pages);
fs.writeFileSync(path.join(SRC, 'inventory.img'), 'inventory\n');
fs.writeFileSync(path.join(SRC, 'empty.img'), '');
fs.writeFileSync(path.join(SRC, 'sub', 'core-1.img'), Buffer.alloc(4097, 7));

let seq = 0;
async function write(compression: Compression): Promise<string> {
  const file = path.join(tmp, `a-${++seq}.tar${compression === 'zstd' ? '.zst' : compression === 'gzip' ? '.gz' : ''}`);
  const w = new ArchiveWriter(fs.openSync(file, 'w', 0o600), compression);
  await w.addJson(HEADER_MEMBER, { format: w.format, kind: 'test' });
  await w.addPlainDir('checkpoint', SRC);
  await w.finish();
  return file;
}

async function read(file: string): Promise<{ dest: string; header: Record<string, unknown> }> {
  const dest = fs.mkdtempSync(path.join(tmp, 'dest-'));
  const r = await readArchive(fs.openSync(file, 'r'), dest, { onHeader: () => undefined });
  return { dest, header: r.header };
}

function sameTree(dest: string): void {
  for (const f of ['pages-1.img', 'inventory.img', 'empty.img', 'sub/core-1.img']) {
    assert.ok(fs.readFileSync(path.join(dest, 'checkpoint', f)).equals(fs.readFileSync(path.join(SRC, f))), `${f} came back byte for byte`);
  }
}

const zstd = (args: string[], input: Buffer): Buffer => {
  const r = spawnSync('zstd', ['-q', ...args], { input, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout;
};

async function refused(file: string, re: RegExp): Promise<void> {
  const dest = fs.mkdtempSync(path.join(tmp, 'dest-'));
  await assert.rejects(readArchive(fs.openSync(file, 'r'), dest, { onHeader: () => undefined }), (e: Error) => {
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /\n/, 'one line');
    return true;
  });
}

test('tarHeader: what tar-stream reads back is what was written (ustar, prefix, pax path/linkpath/size/xattrs), and memberHash agrees', async () => {
  const long = `rootfs/${'d'.repeat(120)}/${'f'.repeat(90)}`; // splits into ustar's prefix and name
  const longer = `rootfs/${'x/'.repeat(100)}${'n'.repeat(120)}`; // needs a pax path
  const headers: Header[] = [
    { name: 'a/file', type: 'file', size: 5, mode: 0o640, uid: 1000, gid: 1001, mtime: new Date(1_700_000_000_000) },
    { name: 'a/dir/', type: 'directory', mode: 0o755, mtime: new Date(1_700_000_000_000) },
    { name: 'a/sym', type: 'symlink', linkname: '../elsewhere', mode: 0o777 },
    { name: 'a/hard', type: 'link', linkname: 'a/file', mode: 0o640 },
    { name: 'a/.wh.gone', type: 'character-device', devmajor: 0, devminor: 0, mode: 0o600 },
    { name: long, type: 'file', size: 0, mode: 0o600 },
    { name: longer, type: 'file', size: 3, mode: 0o600, uid: 0o10000000 },
    { name: 'a/longlink', type: 'symlink', linkname: 'l'.repeat(150), mode: 0o777 },
    { name: 'a/xattr', type: 'file', size: 0, mode: 0o644, pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.user.k': 'v' } },
  ];
  const parts: Buffer[] = [];
  for (const h of headers) {
    parts.push(tarHeader(h));
    const size = h.type === 'file' ? h.size! : 0;
    parts.push(Buffer.alloc(size, 0x61), tarPadding(size));
  }
  parts.push(TAR_END);
  const file = path.join(tmp, 'headers.tar');
  fs.writeFileSync(file, Buffer.concat(parts));
  const back = await readEntries(file);
  assert.equal(back.length, headers.length);
  for (const [i, h] of headers.entries()) {
    const r = back[i]!.header;
    assert.equal(r.name, h.name);
    assert.equal(r.type, h.type);
    assert.equal(r.mode, h.mode);
    assert.equal(r.uid ?? 0, h.uid ?? 0);
    assert.equal(r.gid ?? 0, h.gid ?? 0);
    if (h.linkname) assert.equal(r.linkname, h.linkname);
    if (h.mtime) assert.equal(r.mtime!.getTime(), h.mtime.getTime());
    assert.equal(r.size, h.type === 'file' ? h.size : 0);
    assert.equal(memberHash(r as Header).digest('hex'), memberHash(h).digest('hex'), `${h.name}: the reader's metadata hash is the writer's`);
  }
  // GNU tar reads the same stream without complaint.
  const t = spawnSync('tar', ['-tvf', file], { encoding: 'utf8' });
  assert.equal(t.status, 0, t.stderr);
  assert.equal(t.stdout.trim().split('\n').length, headers.length);
});

test('zstd archives are format 2: zstd\'s frame carries a checksum, checksums.json covers metadata, the files come back byte for byte', async () => {
  const file = await write('zstd');
  const head = fs.readFileSync(file).subarray(0, 5);
  assert.equal(head.readUInt32LE(0), 0xfd2fb528);
  assert.ok(head[4]! & 0x04, 'Content_Checksum_flag set');
  const entries = await readEntries(await decompressed(file));
  assert.deepEqual(JSON.parse(entries[0]!.data.toString()), { format: 2, kind: 'test' });
  const sums = JSON.parse(entries.at(-1)!.data.toString());
  assert.equal(entries.at(-1)!.header.name, CHECKSUMS_MEMBER);
  assert.equal(sums.covers, 'metadata');
  const pagesEntry = entries.find((e) => e.header.name === 'checkpoint/pages-1.img')!;
  assert.equal(sums.members['checkpoint/pages-1.img'], memberHash(pagesEntry.header as Header).digest('hex'));
  const { dest, header } = await read(file);
  assert.equal(header.format, 2);
  sameTree(dest);
});

test('-c none and gzip stay format 1 (sha256 of every member\'s bytes), and read back', async () => {
  for (const c of ['none', 'gzip'] as const) {
    const file = await write(c);
    const plain = c === 'gzip' ? await decompressed(file, 'gzip') : file;
    const entries = await readEntries(plain);
    assert.equal(JSON.parse(entries[0]!.data.toString()).format, 1);
    const sums = JSON.parse(entries.at(-1)!.data.toString());
    assert.equal(sums.covers, undefined);
    const e = entries.find((x) => x.header.name === 'checkpoint/pages-1.img')!;
    assert.equal(sums.members['checkpoint/pages-1.img'], memberHash(e.header as Header).update(e.data).digest('hex'));
    sameTree((await read(file)).dest);
  }
});

test('an older zstd archive (format 1: sha256 of the bytes) still reads, and its checksums are still checked', async () => {
  const plain = fs.readFileSync(await write('none'));
  const old = path.join(tmp, 'old.tar.zst');
  fs.writeFileSync(old, zstd(['-c'], plain));
  sameTree((await read(old)).dest);
  // A flipped byte inside pages-1.img, zstd's own checksum made anew: sha256 still finds it.
  const at = plain.indexOf(Buffer.from('checkpoint/pages-1.img\0'));
  assert.ok(at >= 0 && at % 512 === 0);
  const bad = Buffer.from(plain);
  bad[at + 512 + 1_000_000] = bad[at + 512 + 1_000_000]! ^ 0x01;
  fs.writeFileSync(old, zstd(['-c'], bad));
  await refused(old, /member "checkpoint\/pages-1\.img" does not match its checksum/);
});

test('format 2: a flipped byte in the middle of the compressed archive, or a truncated one, is refused in one line', async () => {
  const good = fs.readFileSync(await write('zstd'));
  const flipped = Buffer.from(good);
  const mid = Math.floor(good.length / 2);
  flipped[mid] = flipped[mid]! ^ 0x10;
  const f1 = path.join(tmp, 'flipped.tar.zst');
  fs.writeFileSync(f1, flipped);
  await refused(f1, /bad checkpoint archive: .*(corrupt|truncated|checksum)/);
  for (const frac of [0.3, 0.9]) {
    const f2 = path.join(tmp, `cut-${frac}.tar.zst`);
    fs.writeFileSync(f2, good.subarray(0, Math.floor(good.length * frac)));
    await refused(f2, /bad checkpoint archive: .*(corrupt|truncated)/);
  }
  // Cut just before the last bytes (zstd's checksum itself).
  const f3 = path.join(tmp, 'cut-end.tar.zst');
  fs.writeFileSync(f3, good.subarray(0, good.length - 2));
  await refused(f3, /bad checkpoint archive: .*(corrupt|truncated)/);
});

test('format 2 without zstd\'s checksum (recompressed with --no-check, or not compressed) is refused', async () => {
  const plain = await decompressed(await write('zstd'));
  const unchecked = path.join(tmp, 'nocheck.tar.zst');
  fs.writeFileSync(unchecked, zstd(['-c', '--no-check'], fs.readFileSync(plain)));
  await refused(unchecked, /format 2, whose content only zstd's checksum protects, but it is not a zstd stream with a checksum/);
  await refused(plain, /format 2, whose content only zstd's checksum protects/);
});

test('checksums.json must fit the format: a format 1 list in a format 2 archive is refused', async () => {
  const entries = await readEntries(await decompressed(await write('zstd')));
  const last = entries.at(-1)!;
  const doc = JSON.parse(last.data.toString());
  delete doc.covers;
  last.data = Buffer.from(JSON.stringify(doc));
  last.header.size = last.data.length;
  const f = path.join(tmp, 'mismatch.tar.zst');
  fs.writeFileSync(f, zstd(['-c'], await pack(entries)));
  await refused(f, /checksums\.json does not fit the archive's format/);
});

test('format 2 export fails cleanly when zstd cannot write (the reason is zstd\'s, the command does not hang)', async () => {
  // /dev/full: every write fails with ENOSPC.
  const w = new ArchiveWriter(fs.openSync('/dev/full', 'w'), 'zstd');
  await w.addJson(HEADER_MEMBER, { format: w.format, kind: 'test' });
  await assert.rejects(
    (async () => {
      await w.addPlainDir('checkpoint', SRC);
      await w.finish();
    })(),
    (e: Error) => /compressing the archive failed \(zstd: .*No space left on device/.test(e.message),
  );
  w.abort(new Error('test'));
});

async function decompressed(file: string, how: 'zstd' | 'gzip' = 'zstd'): Promise<string> {
  const out = `${file}.plain-${createHash('md5').update(file).digest('hex').slice(0, 6)}.tar`;
  const r = spawnSync(how, ['-q', '-d', '-c', file], { maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr.toString());
  fs.writeFileSync(out, r.stdout);
  return out;
}
