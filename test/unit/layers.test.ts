import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { LayerStore } from '../../src/drivers/storage/layers.js';
import { normalizeMemberPath } from '../../src/drivers/storage/tar.js';
import { layerTar, sha, type Member } from '../helpers/oci.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-layers-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const store = new LayerStore(path.join(dir, 'store'));
const root = process.getuid?.() === 0;

const stored = (): string[] => {
  try {
    return fs.readdirSync(store.layersDir).sort();
  } catch {
    return [];
  }
};

async function refused(members: Member[], re: RegExp): Promise<void> {
  const before = stored();
  await assert.rejects(store.unpack(Readable.from([layerTar(members, dir)]), {}, 'the layer'), (e: Error) => {
    assert.match(e.message, re);
    assert.match(e.message, /nothing was stored$/);
    return true;
  });
  assert.deepEqual(stored(), before, 'nothing stored');
  assert.ok(!fs.existsSync(path.join(dir, 'escaped')), 'nothing written outside');
}

test('member names: ./ dropped; absolute and .. refused', () => {
  assert.equal(normalizeMemberPath('./a//b/'), 'a/b');
  assert.equal(normalizeMemberPath('./'), '');
  assert.throws(() => normalizeMemberPath('/etc/passwd'), /absolute path/);
  assert.throws(() => normalizeMemberPath('a/../../x'), /leads out of the layer/);
});

test('a layer unpacks with whiteouts and an opaque dir as overlay wants them; digests recorded', { skip: !root && 'needs root (whiteouts are device nodes)' }, async () => {
  const tar = layerTar(
    [
      { name: 'etc', type: 'dir' },
      { name: 'etc/.wh.motd', type: 'file' },
      { name: 'opt', type: 'dir', mode: 0o750 },
      { name: 'opt/.wh..wh..opq', type: 'file' },
      { name: 'opt/new', type: 'file', data: 'new\n' },
      { name: 'bin', type: 'dir' },
      { name: 'bin/tool', type: 'file', data: 'x', mode: 0o755 },
      { name: 'bin/alias', type: 'hardlink', target: 'bin/tool' },
      { name: 'bin/sh', type: 'symlink', target: '/bin/busybox' },
    ],
    dir,
  );
  const gz = zlib.gzipSync(tar);
  const rec = await store.unpack(Readable.from([gz]), { digest: sha(gz), size: gz.length, diffId: sha(tar) }, 'the layer');
  assert.equal(rec.DiffID, sha(tar));
  assert.equal(rec.Size, tar.length);
  assert.deepEqual(rec.CompressedDigests, [sha(gz)]);
  const d = store.diffDir(rec.DiffID.slice(7));
  const wh = fs.lstatSync(path.join(d, 'etc/motd'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is a 0/0 char device');
  assert.ok(!fs.existsSync(path.join(d, 'etc/.wh.motd')));
  assert.ok(!fs.existsSync(path.join(d, 'opt/.wh..wh..opq')));
  const x = spawnSync('python3', ['-c', 'import os,sys;print(os.getxattr(sys.argv[1],"trusted.overlay.opaque").decode())', path.join(d, 'opt')], { encoding: 'utf8' });
  assert.equal(x.stdout.trim(), 'y', 'opaque dir marked');
  assert.equal(fs.statSync(path.join(d, 'opt')).mode & 0o777, 0o750, 'the dir keeps its mode');
  assert.equal(fs.statSync(path.join(d, 'bin/alias')).ino, fs.statSync(path.join(d, 'bin/tool')).ino);
  assert.equal(fs.readlinkSync(path.join(d, 'bin/sh')), '/bin/busybox');
  // The same content as zstd is the same layer (stored once).
  const zst = spawnSync('zstd', ['-q', '-c'], { input: tar });
  const again = await store.unpack(Readable.from([zst.stdout]), { diffId: sha(tar) }, 'the layer');
  assert.equal(again.DiffID, rec.DiffID);
  assert.equal(store.list().length, 1);
  // lower dirs: relative short links, top first
  const lo = store.lowerDirs([rec.DiffID.slice(7)]);
  assert.match(lo.lower[0]!, /^l\/[A-Z0-9]{26}$/);
  assert.equal(fs.realpathSync(path.join(lo.cwd, lo.lower[0]!)), fs.realpathSync(d));
  assert.deepEqual(store.removeUnused(new Set()), [rec.DiffID.slice(7)]);
  assert.deepEqual(fs.readdirSync(store.linksDir), []);
});

test('hostile layers are refused, nothing stored, nothing written outside', async () => {
  await refused([{ name: '../escaped', type: 'file', data: 'x' }], /leads out of the layer/);
  await refused([{ name: '/escaped', type: 'file', data: 'x' }], /absolute path/);
  await refused(
    [
      { name: 'lnk', type: 'symlink', target: dir },
      { name: 'lnk/escaped', type: 'file', data: 'x' },
    ],
    /would be written through the symlink "lnk"/,
  );
  await refused([{ name: 'h', type: 'hardlink', target: '../../etc/passwd' }], /leads out of the layer/);
  await refused(
    [
      { name: 'lnk', type: 'symlink', target: '/etc' },
      { name: 'h', type: 'hardlink', target: 'lnk/passwd' },
    ],
    /hard link "h" points to "lnk\/passwd", which is not a file earlier in the layer/,
  );
  // A dir replaced by a symlink out: what was below it is no hard-link target any more.
  await refused(
    [
      { name: 'a', type: 'dir' },
      { name: 'a/f', type: 'file', data: 'x' },
      { name: 'a', type: 'symlink', target: '/etc' },
      { name: 'h', type: 'hardlink', target: 'a/f' },
    ],
    /hard link "h" points to "a\/f", which is not a file earlier in the layer/,
  );
  if (!root) await refused([{ name: 'dev/null', type: 'char', major: 1, minor: 3 }], /device node/);
});

test('digest mismatches are refused: compressed digest, size, diff_id', async () => {
  const tar = layerTar([{ name: 'f', type: 'file', data: 'hello' }], dir);
  const gz = zlib.gzipSync(tar);
  const before = stored();
  await assert.rejects(store.unpack(Readable.from([gz]), { digest: sha('other'), size: gz.length }, 'layer X'), /layer X does not match its digest .*tampered with; nothing was stored/);
  await assert.rejects(store.unpack(Readable.from([gz]), { digest: sha(gz), size: gz.length - 1 }, 'layer X'), /larger than its manifest says/);
  await assert.rejects(store.unpack(Readable.from([gz]), { diffId: sha('other') }, 'layer X'), /unpacks to sha256:[0-9a-f]{64}, not the diff_id/);
  await assert.rejects(store.unpack(Readable.from([gz.subarray(0, gz.length - 8)]), {}, 'layer X'), /unpacking layer X failed/);
  assert.deepEqual(stored(), before);
});

test('a blob unpacked as it arrives: a tampered or cut one is named as such, nothing kept; a good one keeps its blob', async () => {
  const tar = layerTar([{ name: 'big', type: 'file', data: randomBytes(150_000).toString('base64') }], dir);
  const gz = zlib.gzipSync(tar);
  const expect = { digest: sha(gz), size: gz.length, diffId: sha(tar) };
  // Several chunks, as a download comes.
  const chunks = (b: Buffer): Buffer[] => Array.from({ length: Math.ceil(b.length / 4096) }, (_, i) => b.subarray(i * 4096, (i + 1) * 4096));
  const kept: string[] = [];
  const keep = (f: string): void => {
    kept.push(fs.readFileSync(f).toString('base64'));
  };
  const before = stored();
  // One byte flipped mid-stream: gunzip fails first, but the whole blob is read and its digest named.
  const bad = Buffer.from(gz);
  bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0xff;
  await assert.rejects(store.unpackBlob(Readable.from(chunks(bad)), expect, 'layer X', keep), /layer X does not match its digest \(got sha256:[0-9a-f]{64}\): the source is corrupt or tampered with; nothing was stored$/);
  // Cut half-way (the stream fails, as a dropped connection does).
  const cut = new Readable({ read() {} });
  for (const c of chunks(gz.subarray(0, gz.length >> 1))) cut.push(c);
  setTimeout(() => cut.destroy(new Error('aborted')), 50);
  await assert.rejects(store.unpackBlob(cut, expect, 'layer X', keep), /downloading layer X failed: it was cut after \d+ of its \d+ bytes; try again; nothing was stored$/);
  assert.deepEqual(stored(), before, 'nothing stored, no staging left');
  assert.deepEqual(kept, [], 'no blob kept');
  const progress: number[] = [];
  const rec = await store.unpackBlob(Readable.from(chunks(gz)), expect, 'layer X', keep, (n) => progress.push(n));
  assert.equal(rec.DiffID, sha(tar));
  assert.deepEqual(kept, [gz.toString('base64')], 'the blob kept as it came');
  assert.equal(progress.at(-1), gz.length);
  assert.ok(progress.length > 1, 'bytes reported as they came');
});

test('gzip that its digest vouches for but that does not inflate is refused; a cut download leaves nothing open; a good one stores the layer', async () => {
  const tar = layerTar([{ name: 'f', type: 'file', data: randomBytes(60_000).toString('hex') }], dir);
  const gz = zlib.gzipSync(tar);
  const before = stored();
  const crc = Buffer.from(gz);
  crc[crc.length - 6] = crc[crc.length - 6]! ^ 0xff; // the gzip trailer's checksum
  const cut = gz.subarray(0, gz.length >> 1);
  for (const [bad, why] of [
    [crc, /incorrect data check/],
    [cut, /unexpected end of file/],
  ] as const) {
    await assert.rejects(store.unpackBlob(Readable.from([bad]), { digest: sha(bad), size: bad.length }, 'layer X', () => assert.fail('kept')), (e: Error) => {
      assert.match(e.message, /^unpacking layer X failed: .*; nothing was stored$/);
      assert.match(e.message, why);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  }
  await refused([{ name: '../escaped', type: 'file', data: 'x' }], /leads out of the layer/);
  // A download cut mid-layer: the unpacking stops, no pipe or file is left open.
  const open = (): string[] =>
    fs
      .readdirSync('/proc/self/fd')
      .map((f) => {
        try {
          return `${f} ${fs.readlinkSync(`/proc/self/fd/${f}`)}`;
        } catch {
          return '';
        }
      })
      .filter((l) => / (pipe:|\/)/.test(l) && !l.startsWith('0 ') && !/ \/proc\//.test(l))
      .sort();
  const fds = open();
  const big = zlib.gzipSync(layerTar([{ name: 'r', type: 'file', data: randomBytes(3 << 20).toString('base64') }], dir));
  const cutoff = new Readable({ read() {} });
  for (let o = 0; o < big.length >> 1; o += 65536) cutoff.push(big.subarray(o, Math.min(o + 65536, big.length >> 1)));
  setTimeout(() => cutoff.destroy(new Error('aborted')), 100);
  await assert.rejects(store.unpackBlob(cutoff, { digest: sha(big), size: big.length }, 'layer X', () => assert.fail('kept')), { message: /^downloading layer X failed: it was cut after \d+ of its \d+ bytes; try again; nothing was stored$/ });
  assert.deepEqual(open(), fds, 'no pipe or file left open');
  assert.deepEqual(stored(), before, 'nothing stored');
  const rec = await store.unpackBlob(Readable.from([gz]), { digest: sha(gz), size: gz.length, diffId: sha(tar) }, 'layer X');
  assert.equal(rec.DiffID, sha(tar));
  assert.equal(rec.Size, tar.length);
  assert.equal(fs.readFileSync(path.join(store.diffDir(rec.DiffID.slice(7)), 'f'), 'utf8').length, 120_000);
  store.removeUnused(new Set());
});
