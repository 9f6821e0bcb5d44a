import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { discardDir, sweepTrash, TRASH_PREFIX } from '../../src/lib/fsutil.js';

const until = async (cond: () => boolean, ms = 5000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('discardDir: the tree is gone from its place at once, and deleted in the background', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-trash-'));
  try {
    const dir = path.join(root, 'c', 'checkpoint');
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'sub', 'pages-1.img'), Buffer.alloc(1 << 20));
    discardDir(dir, root);
    assert.equal(fs.existsSync(dir), false, 'renamed away before discardDir returns');
    await until(() => fs.readdirSync(root).every((n) => !n.startsWith(TRASH_PREFIX)));
    assert.deepEqual(fs.readdirSync(root), ['c']);
    discardDir(path.join(root, 'missing'), root); // nothing there: nothing to do
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('sweepTrash removes trash older than a minute (its rm was killed), and nothing else', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-trash-'));
  try {
    for (const n of [`${TRASH_PREFIX}1-abc`, '.import-1-x', 'containers']) fs.mkdirSync(path.join(root, n, 'x'), { recursive: true });
    const names = fs.readdirSync(root);
    sweepTrash(root, names);
    assert.equal(fs.readdirSync(root).length, 3, 'fresh trash stays: an rm may still work on it');
    sweepTrash(root, names, Date.now() + 61_000);
    assert.deepEqual(fs.readdirSync(root).sort(), ['.import-1-x', 'containers']);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
