// Pre-copy's pieces that do not need a kernel with soft-dirty tracking: when to stop the
// rounds, how pre-dumps travel in an archive (parents/N, plain CRIU images, no links), and how
// they are linked again under a placed checkpoint. The real rounds run in the migration and
// checkpoint integration tests where the kernel allows them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { ArchiveWriter, HEADER_MEMBER, readArchive } from '../../src/drivers/archive/archive.js';
import { placePreDumps, preDumpChain, removePreDumps } from '../../src/engine/checkpoint-dir.js';
import { MAX_PRE_COPY_ROUNDS, anotherPreCopyRound, checkPreCopyRounds } from '../../src/engine/migrate/precopy.js';

function tmpdir(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-precopy-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Writes an archive with fill, reads it back into dest; returns what readArchive says or throws. */
async function roundTrip(dest: string, fill: (w: ArchiveWriter) => Promise<void>): Promise<Set<string>> {
  const pipe = new PassThrough();
  const w = new ArchiveWriter(pipe, 'none');
  const reading = readArchive(pipe, dest, { onHeader: () => undefined });
  reading.catch(() => undefined);
  await fill(w);
  await w.finish().catch(() => undefined);
  return (await reading).sections;
}

test('anotherPreCopyRound: up to max rounds, stops when small or no longer shrinking', () => {
  assert.equal(anotherPreCopyRound([16384], 3), true, 'the first round sent everything: go on');
  assert.equal(anotherPreCopyRound([16384], 1), false, 'max rounds reached');
  assert.equal(anotherPreCopyRound([16384, 2000], 3), true, 'shrinking fast: go on');
  assert.equal(anotherPreCopyRound([16384, 2000, 300], 3), false, 'max rounds reached');
  assert.equal(anotherPreCopyRound([16384, 100], 5), false, 'little left: the final dump takes it');
  assert.equal(anotherPreCopyRound([16384, 9000, 8000], 5), false, 'not converging (8000 >= 0.75 x 9000)');
  assert.equal(anotherPreCopyRound([16384, 9000, 4000], 5), true);
  assert.equal(anotherPreCopyRound([16384, 16384], 5), false, 'memory dirtied as fast as it is sent');
});

test('checkPreCopyRounds: 1 to 20 rounds, or none; anything else refused as the CLI words it', () => {
  for (const n of [undefined, 1, 3, MAX_PRE_COPY_ROUNDS]) assert.doesNotThrow(() => checkPreCopyRounds(n), String(n));
  assert.equal(MAX_PRE_COPY_ROUNDS, 20);
  for (const n of [0, -1, 21, 2.5, NaN, Infinity]) {
    assert.throws(() => checkPreCopyRounds(n), { code: 'EINVAL', message: `invalid --pre-copy "${n}": give a number of rounds from 1 to 20` }, String(n));
  }
});

test('pre-dumps travel as parents/N: plain images only, read back into their sections', async (t) => {
  const d = tmpdir(t);
  for (const k of [1, 2]) {
    fs.mkdirSync(path.join(d, `pre-${k}`));
    fs.writeFileSync(path.join(d, `pre-${k}`, 'pages-1.img'), `pages of round ${k}`);
  }
  fs.symlinkSync('../pre-1', path.join(d, 'pre-2', 'parent')); // CRIU's link: never carried
  const dest = path.join(d, 'in');
  fs.mkdirSync(dest);
  const sections = await roundTrip(dest, async (w) => {
    await w.addJson(HEADER_MEMBER, { format: 1, kind: 'test' });
    await w.addPlainDir('parents/1', path.join(d, 'pre-1'));
    await w.addPlainDir('parents/2', path.join(d, 'pre-2'));
  });
  assert.deepEqual([...sections].sort(), ['parents/1', 'parents/2']);
  assert.equal(fs.readFileSync(path.join(dest, 'parents/2/pages-1.img'), 'utf8'), 'pages of round 2');
  assert.equal(fs.existsSync(path.join(dest, 'parents/2/parent')), false, 'the link stayed behind');
});

test('parents/N refuses links, other numbers and other names', async (t) => {
  const d = tmpdir(t);
  const cases: [string, (w: ArchiveWriter) => Promise<void>, RegExp][] = [
    ['link', (w) => (w as unknown as { entry(h: object): Promise<void> }).entry({ name: 'parents/1/parent', type: 'symlink', linkname: '../../../etc' }), /parents\/1\/parent" is a symlink; CRIU images are regular files/],
    ['zero', (w) => w.addBuffer('parents/0/pages-1.img', 'x'), /unexpected member "parents\/0\/pages-1.img"/],
    ['name', (w) => w.addBuffer('parents/x/pages-1.img', 'x'), /unexpected member "parents\/x\/pages-1.img"/],
    ['bare', (w) => w.addBuffer('parents', 'x'), /unexpected member "parents"/],
    ['file', (w) => w.addBuffer('parents/1', 'x'), /member "parents\/1" should be a directory of CRIU images/],
  ];
  for (const [label, add, why] of cases) {
    const dest = path.join(d, label);
    fs.mkdirSync(dest);
    await assert.rejects(
      roundTrip(dest, async (w) => {
        await w.addJson(HEADER_MEMBER, { format: 1, kind: 'test' });
        await add(w);
      }),
      why,
      label,
    );
  }
});

test('placePreDumps links the rounds in order under the checkpoint; preDumpChain follows them back', (t) => {
  const d = tmpdir(t);
  const staged = path.join(d, 'staged');
  const ctr = path.join(d, 'ctr');
  fs.mkdirSync(path.join(ctr, 'checkpoint'), { recursive: true });
  const sources = [1, 2, 3].map((k) => {
    const s = path.join(staged, String(k));
    fs.mkdirSync(s, { recursive: true });
    fs.writeFileSync(path.join(s, 'pages-1.img'), String(k));
    return s;
  });
  placePreDumps(ctr, sources);
  assert.equal(fs.readlinkSync(path.join(ctr, 'checkpoint', 'parent')), '../pre-3');
  assert.equal(fs.readlinkSync(path.join(ctr, 'pre-3', 'parent')), '../pre-2');
  assert.equal(fs.readlinkSync(path.join(ctr, 'pre-2', 'parent')), '../pre-1');
  assert.equal(fs.existsSync(path.join(ctr, 'pre-1', 'parent')), false);
  // CRIU reads through the links: the oldest round's pages are where the newest dump looks.
  assert.equal(fs.readFileSync(path.join(ctr, 'checkpoint', 'parent', 'parent', 'parent', 'pages-1.img'), 'utf8'), '1');
  assert.deepEqual(preDumpChain(path.join(ctr, 'checkpoint')), ['pre-1', 'pre-2', 'pre-3'].map((p) => path.join(ctr, p)));
  assert.deepEqual(preDumpChain(path.join(ctr, 'pre-1')), []);

  // A link that leaves the container's directory is refused, not followed.
  fs.rmSync(path.join(ctr, 'pre-2', 'parent'));
  fs.symlinkSync('../../etc', path.join(ctr, 'pre-2', 'parent'));
  assert.throws(() => preDumpChain(path.join(ctr, 'checkpoint')), /points to \.\.\/\.\.\/etc, not to a pre-dump beside it/);

  removePreDumps(ctr);
  assert.deepEqual(fs.readdirSync(ctr), ['checkpoint']);
});
