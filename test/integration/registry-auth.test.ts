/**
 * Registries that want credentials and multi-platform images: a real registry over TLS with
 * htpasswd Basic auth, a Bearer-token front, and an OCI index resolved to the platform.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, assertCleanError, busyboxTarball } from '../helpers/ferry.js';
import { layerTar, writeLayout, writeMultiPlatform } from '../helpers/oci.js';
import { Registry, TokenProxy, hasRegistryTools } from '../helpers/registry.js';

const missing = hasRegistryTools();
const h = new Host('auth');
const secure = new Registry(); // TLS + htpasswd
const open = new Registry(); // plain, behind the token proxy
let tokens: TokenProxy;
const arch = process.arch === 'x64' ? 'amd64' : process.arch;
const other = arch === 'amd64' ? 'arm64' : 'amd64';

before(async () => {
  if (missing) return;
  const base = fs.readFileSync(busyboxTarball());
  await secure.start({ auth: { user: 'alice', password: 's3cret' }, tls: true });
  await open.start();
  tokens = new TokenProxy(open.port, 'bob', 'pa55');
  await tokens.start();
  const layout = path.join(secure.dir, 'layout');
  writeLayout(layout, 'one', { layers: [base], architecture: arch });
  writeMultiPlatform(layout, 'multi', [
    { layers: [base, layerTar([{ name: 'which', type: 'file', data: `${arch}\n` }], secure.dir)], architecture: arch },
    { layers: [base, layerTar([{ name: 'which', type: 'file', data: `${other}\n` }], secure.dir)], architecture: other },
  ]);
  secure.push(layout, 'one', 'private/one:1', undefined, ['--dest-creds', 'alice:s3cret']);
  open.push(layout, 'one', 'team/one:1');
  open.push(layout, 'multi', 'team/multi:1', undefined, ['--all']);
});

after(async () => {
  await h.destroy();
  await tokens?.stop();
  await secure.stop();
  await open.stop();
});

test('Basic auth over TLS: no credentials, wrong password, --creds, --authfile; certificate checks', { skip: missing }, async () => {
  const ref = `${secure.addr}/private/one:1`;
  assertCleanError(await h.fails(['pull', '--tls-verify=false', ref]), new RegExp(`^Error: ${secure.addr} needs credentials for private/one: log in with \`ferry login ${secure.addr}\`, or give --creds USER:PASS$`));
  assertCleanError(await h.fails(['pull', '--tls-verify=false', '--creds', 'alice:wrong', ref]), /refused the credentials for private\/one: check the user name and password/);
  assertCleanError(await h.fails(['pull', '--creds', 'alice:s3cret', ref]), /over verified HTTPS .*use --tls-verify=false/);
  assert.match(await h.ok(['pull', '--tls-verify=false', '--creds', 'alice:s3cret', ref]), /^[0-9a-f]{64}$/);
  await h.ok(['rmi', ref]);
  const authfile = path.join(h.dir, 'auth.json');
  fs.writeFileSync(authfile, JSON.stringify({ auths: { [secure.addr]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }));
  assert.match(await h.ok(['pull', '--tls-verify=false', '--authfile', authfile, ref]), /^[0-9a-f]{64}$/);
  assertCleanError(await h.fails(['pull', '--tls-verify=false', '--authfile', path.join(h.dir, 'none.json'), ref]), /--authfile .*none\.json: no such file/);
  // No Podman auth file: Docker's config.json is read, in $DOCKER_CONFIG or ~/.docker, its keys
  // as Docker writes them (a scheme and a path).
  await h.ok(['rmi', ref]);
  const docker = path.join(h.dir, 'docker-cfg');
  fs.mkdirSync(docker);
  fs.writeFileSync(path.join(docker, 'config.json'), JSON.stringify({ auths: { [`https://${secure.addr}/v1/`]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }));
  const noPodman = { REGISTRY_AUTH_FILE: path.join(h.dir, 'no-such-auth.json'), DOCKER_CONFIG: '' };
  assert.match(await h.ok(['pull', '--tls-verify=false', ref], { env: { ...noPodman, DOCKER_CONFIG: docker } }), /^[0-9a-f]{64}$/);
  await h.ok(['rmi', ref]);
  const home = path.join(h.dir, 'home');
  fs.mkdirSync(home);
  fs.cpSync(docker, path.join(home, '.docker'), { recursive: true });
  assert.match(await h.ok(['pull', '--tls-verify=false', ref], { env: { ...noPodman, HOME: home } }), /^[0-9a-f]{64}$/);
  assertCleanError(await h.fails(['pull', '--tls-verify=false', ref], { env: { ...noPodman, HOME: h.dir } }), /needs credentials for private\/one/);
  assert.deepEqual(
    fs.readdirSync(path.join(h.root, 'images', 'layers')).filter((d) => !d.startsWith('.')).length,
    1,
    'the failed pulls stored nothing',
  );
});

test('Bearer tokens: fetched from the realm with the credentials, then used', { skip: missing }, async () => {
  const ref = `${tokens.addr}/team/one:1`;
  assertCleanError(await h.fails(['pull', '--tls-verify=false', ref]), /needs credentials for team\/one/);
  assertCleanError(await h.fails(['pull', '--tls-verify=false', '--creds', 'bob:nope', ref]), /refused the credentials for team\/one/);
  const before = tokens.tokenRequests;
  assert.match(await h.ok(['pull', '--tls-verify=false', '--creds', 'bob:pa55', ref]), /^[0-9a-f]{64}$/);
  assert.ok(tokens.tokenRequests > before);
  assert.equal(await h.ok(['run', '--rm', ref, 'echo', 'ok']), 'ok');
});

test('an OCI index resolves to this host\'s platform, or the one --platform names', { skip: missing }, async () => {
  const ref = `${open.addr}/team/multi:1`;
  await h.ok(['pull', '--tls-verify=false', ref]);
  assert.equal(await h.ok(['run', '--rm', ref, 'cat', '/which']), arch);
  const ins = JSON.parse(await h.ok(['image', 'inspect', ref]))[0];
  assert.equal(ins.Architecture, arch);
  assert.equal(ins.RepoDigests.length, 2, 'the index and the image manifest');
  await h.ok(['pull', '--tls-verify=false', '--platform', `linux/${other}`, ref]);
  assert.equal(JSON.parse(await h.ok(['image', 'inspect', ref]))[0].Architecture, other, 'the name moves to the other platform\'s image');
  assertCleanError(await h.fails(['pull', '--tls-verify=false', '--platform', 'linux/s390x', ref]), new RegExp(`has no image for linux/s390x \\(it has linux/${arch}, linux/${other}\\): choose one with --platform`));
  assertCleanError(await h.fails(['pull', '--tls-verify=false', '--platform', 'linux', ref]), /invalid --platform "linux": use OS\/ARCH/);
});
