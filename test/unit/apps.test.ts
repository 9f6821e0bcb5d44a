// The test helper that builds real applications' images: its cache key changes with the recipe
// and only with it, and it finds the machine's apt sources file for a suite in either format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { APPS, hostSourcesFile, recipeHash } from '../helpers/apps.js';

test('recipeHash: the same for the same packages in any order, different when the suite or a package changes', () => {
  const r = { suite: 'bookworm', packages: ['redis-server', 'redis-tools'] };
  assert.equal(recipeHash(r), recipeHash({ suite: 'bookworm', packages: ['redis-tools', 'redis-server'] }));
  assert.equal(recipeHash(r), recipeHash(APPS.redis));
  assert.notEqual(recipeHash(r), recipeHash({ ...r, suite: 'trixie' }));
  assert.notEqual(recipeHash(r), recipeHash({ ...r, packages: ['redis-server'] }));
  assert.match(recipeHash(r), /^[0-9a-f]{16}$/);
});

test('hostSourcesFile: deb822 stanzas (comments inside, disabled ones skipped) and one-line lists', () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'apps-unit-'));
  try {
    const deb822 = path.join(d, 'debian.sources');
    fs.writeFileSync(
      deb822,
      [
        'Types: deb',
        '# a comment line inside the stanza',
        'URIs: http://example.invalid/debian',
        'Suites: bookworm bookworm-updates',
        'Components: main',
        '',
        'Types: deb',
        'URIs: http://example.invalid/debian',
        'Suites: trixie',
        'Enabled: no',
        '',
        'Types: deb-src',
        'URIs: http://example.invalid/debian',
        'Suites: sid',
        '',
      ].join('\n'),
    );
    const oneLine = path.join(d, 'sources.list');
    fs.writeFileSync(oneLine, '# deb http://example.invalid/debian forky main\ndeb [signed-by=/k.gpg] http://example.invalid/debian trixie main\n');
    const files = [deb822, oneLine, path.join(d, 'missing.list')];
    assert.equal(hostSourcesFile('bookworm', files), deb822);
    assert.equal(hostSourcesFile('bookworm-updates', files), deb822);
    assert.equal(hostSourcesFile('trixie', files), oneLine, 'the disabled stanza does not count');
    assert.throws(() => hostSourcesFile('sid', files), /no apt sources file of this machine offers Debian sid/, 'deb-src only');
    assert.throws(() => hostSourcesFile('forky', files), /offers Debian forky/, 'commented out');
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});
