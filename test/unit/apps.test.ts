// The test helper that builds real applications' images: its cache key changes with the recipe
// and only with it, and it finds the machine's apt sources file for a suite in either format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { APPS, hostMirror, hostSourcesFile, recipeHash, sourcesFileFor } from '../helpers/apps.js';

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

test("sourcesFileFor: the machine's file when it offers the suite, else one naming the suite on the same mirror and keyring", () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'apps-unit-'));
  try {
    const deb822 = path.join(d, 'debian.sources');
    fs.writeFileSync(
      deb822,
      [
        'Types: deb',
        'URIs: http://example.invalid/debian-security',
        'Suites: bookworm-security',
        'Signed-By: /sec.gpg',
        '',
        'Types: deb',
        'URIs: http://example.invalid/debian',
        'Suites: bookworm bookworm-updates',
        'Components: main',
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
        '',
      ].join('\n'),
    );
    const out = path.join(d, 'cache');
    assert.equal(sourcesFileFor('bookworm', out, [deb822]), deb822);
    const f = sourcesFileFor('trixie', out, [deb822]);
    assert.equal(f, path.join(out, 'sources-trixie.sources'));
    assert.equal(
      fs.readFileSync(f, 'utf8'),
      'Types: deb\nURIs: http://example.invalid/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
      'the main archive, not the security one',
    );
    assert.equal(hostSourcesFile('trixie', [f]), f);
    const oneLine = path.join(d, 'sources.list');
    fs.writeFileSync(oneLine, 'deb http://example.invalid/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://example.invalid/debian bookworm main\n');
    assert.deepEqual(hostMirror([oneLine]), { uri: 'http://example.invalid/debian', signedBy: '/k.gpg' });
    assert.throws(() => hostMirror([path.join(d, 'missing.list')]), /no Debian mirror/);
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});
