import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isShortName, parseReference, registryDomain } from '../../src/drivers/registry/reference.js';
import { lookupCredentials, parseCreds, removeCredentials, storeCredentials } from '../../src/drivers/registry/auth.js';
import { parsePlatform } from '../../src/drivers/registry/pull.js';
import { resolveUser } from '../../src/drivers/runtime/user.js';
import { parseEntrypoint } from '../../src/engine/engine.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-reg-unit-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('parseReference: registry, repository, tag, digest; Docker Hub names; short names refused', () => {
  assert.deepEqual(parseReference('127.0.0.1:5000/app/x:1'), { domain: '127.0.0.1:5000', path: 'app/x', tag: '1', digest: undefined });
  assert.deepEqual(parseReference('localhost:5000/x'), { domain: 'localhost:5000', path: 'x', tag: 'latest', digest: undefined });
  const d = `sha256:${'a'.repeat(64)}`;
  assert.deepEqual(parseReference(`quay.io/a/b@${d}`), { domain: 'quay.io', path: 'a/b', tag: undefined, digest: d });
  assert.deepEqual(parseReference(`quay.io/a/b:v2@${d}`), { domain: 'quay.io', path: 'a/b', tag: 'v2', digest: d });
  assert.deepEqual(parseReference('docker.io/busybox'), { domain: 'docker.io', path: 'library/busybox', tag: 'latest', digest: undefined });
  assert.deepEqual(parseReference('index.docker.io/me/app:1'), { domain: 'docker.io', path: 'me/app', tag: '1', digest: undefined });
  assert.throws(() => parseReference('busybox'), /short-name "busybox" names no registry/);
  assert.throws(() => parseReference('me/app:1'), /short-name/);
  assert.throws(() => parseReference('quay.io/A/b'), /invalid image reference.*lowercase/);
  assert.throws(() => parseReference('quay.io/a@sha256:xyz'), /the digest must be sha256/);
  assert.throws(() => parseReference('quay.io/a:bad tag'), /invalid image reference/);
  assert.ok(isShortName('busybox') && isShortName('me/app') && !isShortName('localhost/x') && !isShortName('a.b/x') && !isShortName('h:1/x'));
  assert.equal(registryDomain('https://Reg.Example:5000/v2/'), 'reg.example:5000');
  assert.throws(() => registryDomain('not a host'), /invalid registry/);
});

test('credentials: --creds; a missing --authfile', () => {
  assert.deepEqual(parseCreds('u:p:with:colons'), { username: 'u', password: 'p:with:colons' });
  assert.throws(() => parseCreds(':p'), /invalid --creds/);
  assert.throws(() => lookupCredentials('r.example', path.join(dir, 'missing.json')), /--authfile .*missing\.json: no such file/);
});

test('the auth file round trip', () => {
  const file = path.join(dir, 'sub', 'auth.json');
  storeCredentials(file, 'r.example:5000', { username: 'alice', password: 's:3' });
  storeCredentials(file, 'other.example', { username: 'bob', password: 'x' });
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(lookupCredentials('r.example:5000', file), { username: 'alice', password: 's:3' });
  assert.equal(lookupCredentials('nobody.example', file), undefined);
  assert.equal(removeCredentials(file, 'r.example:5000'), true);
  assert.equal(removeCredentials(file, 'r.example:5000'), false);
  assert.deepEqual(lookupCredentials('other.example', file), { username: 'bob', password: 'x' });
  assert.equal(removeCredentials(file, undefined), true);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')).auths, {});
  fs.writeFileSync(path.join(dir, 'bad.json'), '{');
  assert.throws(() => lookupCredentials('x', path.join(dir, 'bad.json')), /is not valid JSON/);
});

test('--platform', () => {
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.throws(() => parsePlatform('linux'), /invalid --platform/);
  assert.equal(parsePlatform(undefined).os, 'linux');
});

test('--user resolved in the container files as runc does', () => {
  const root = path.join(dir, 'rootfs');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\napp:x:1000:\nwheel:x:10:app,other\ndisk:x:6:app\n');
  assert.deepEqual(resolveUser(root, 'app'), { uid: 1000, gid: 1000, additionalGids: [10, 6], home: '/home/app' });
  assert.deepEqual(resolveUser(root, '1000:wheel'), { uid: 1000, gid: 10, additionalGids: [6], home: '/home/app' });
  assert.deepEqual(resolveUser(root, '4242'), { uid: 4242, gid: 0, additionalGids: [], home: '/' });
  assert.deepEqual(resolveUser(root, ''), { uid: 0, gid: 0, additionalGids: [], home: '/root' });
  assert.throws(() => resolveUser(root, 'ghost'), /unable to find user ghost/);
  assert.throws(() => resolveUser(root, 'app:nogroup'), /unable to find group nogroup/);
  // A passwd that is a link out of the rootfs is not read (as if absent).
  const evil = path.join(dir, 'evil');
  fs.mkdirSync(path.join(evil, 'etc'), { recursive: true });
  fs.symlinkSync('/etc/passwd', path.join(evil, 'etc/passwd'));
  assert.throws(() => resolveUser(evil, 'root'), /unable to find user root/);
});

test('--entrypoint: a command or a JSON array', () => {
  assert.deepEqual(parseEntrypoint('/bin/sh'), ['/bin/sh']);
  assert.deepEqual(parseEntrypoint('["/bin/sh","-c"]'), ['/bin/sh', '-c']);
  assert.deepEqual(parseEntrypoint(''), []);
  assert.throws(() => parseEntrypoint('[1]'), /invalid --entrypoint/);
});
