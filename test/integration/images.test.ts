import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Host, assertCleanError, busyboxTarball } from '../helpers/ferry.js';

const h = new Host('img');
let tar = '';
before(() => {
  tar = busyboxTarball();
});
after(() => h.destroy());

const ls = (d: string): string[] => {
  try {
    return fs.readdirSync(path.join(h.root, 'images', d)).sort();
  } catch {
    return [];
  }
};
/** Image records; layers (and their staging dirs), links, blobs. */
const imageDirs = (): string[] => ls('').filter((d) => /^[0-9a-f]{64}$/.test(d));
const storeContents = (): string[] => [...ls('layers').map((l) => `layers/${l}`), ...ls('l').map((l) => `l/${l}`), ...ls('blobs/sha256').map((b) => `blob/${b}`)];

test('import, images, image inspect; a second name for the same tarball is the same image', async () => {
  const id = await h.ok(['import', tar, 'busybox']);
  assert.match(id, /^[0-9a-f]{64}$/);
  const lines = (await h.ok(['images'])).split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  assert.match(lines[1]!, new RegExp(`^localhost/busybox\\s+latest\\s+${id.slice(0, 12)}\\s+.* ago\\s+[0-9.]+ [kM]B$`));
  assert.equal(await h.ok(['images', '-q']), id.slice(0, 12));
  assert.equal(await h.ok(['images', '-q', '--no-trunc']), `sha256:${id}`);
  assert.equal(await h.ok(['import', tar, 'other:v1']), id, 'same content, same ID');
  const js = JSON.parse(await h.ok(['images', '--format', 'json'])) as { Id: string; Names: string[]; Size: number; Created: number }[];
  assert.equal(js.length, 1);
  assert.deepEqual(js[0]!.Names.sort(), ['localhost/busybox:latest', 'localhost/other:v1']);
  assert.ok(js[0]!.Size > 100_000);
  assert.equal(typeof js[0]!.Created, 'number');
  const ins = JSON.parse(await h.ok(['image', 'inspect', 'other:v1'])) as { Id: string; Config: { Cmd: string[] } }[];
  assert.equal(ins[0]!.Id, id);
  assert.deepEqual(ins[0]!.Config.Cmd, ['/bin/sh']);
  // Found by full name, short name and ID prefix.
  for (const ref of ['localhost/busybox:latest', 'busybox:latest', 'busybox', id.slice(0, 6), `sha256:${id}`]) {
    assert.equal((await h.run(['run', '--rm', ref, 'true'])).code, 0, ref);
  }
  assertCleanError(await h.fails(['image', 'inspect', 'busybox:nope']), /image "busybox:nope" not found/);
});

test('a compressed tarball imports too', async () => {
  const gz = path.join(h.dir, 'bb.tar.gz');
  assert.equal(spawnSync('sh', ['-c', `gzip -1 -c '${tar}' > '${gz}'`]).status, 0);
  const id = await h.ok(['import', gz, 'gzbox']);
  assert.equal(id, JSON.parse(await h.ok(['image', 'inspect', 'busybox']))[0].Id, 'the same layer whatever the compression: the same image');
  assert.equal(await h.ok(['run', '--rm', 'gzbox', 'echo', 'ok']), 'ok');
  assert.equal(await h.ok(['rmi', 'gzbox']), 'Untagged: localhost/gzbox:latest', 'one of several names: only untagged');
  assertCleanError(await h.fails(['run', '--rm', 'gzbox', 'true']), /image "gzbox" not found: a short name names only images stored here/);
});

test('a bad tarball fails cleanly and leaves no image behind', async () => {
  const junk = path.join(h.dir, 'junk.tar');
  fs.writeFileSync(junk, 'this is not a tar archive'.repeat(100));
  const before = [...imageDirs(), ...storeContents()];
  const r = await h.fails(['import', junk, 'junk']);
  assertCleanError(r, /^Error: unpacking the image tarball failed: it is not a tar archive; nothing was stored/);
  assert.deepEqual([...imageDirs(), ...storeContents()], before);
});

test('rmi is refused while a container uses the image; -f removes the containers too', async () => {
  await h.ok(['run', '-d', '--name', 'user1', 'busybox', 'sleep', '1000']);
  await h.ok(['create', '--name', 'user2', 'other:v1', 'true']);
  // One of several names: only that name goes, in use or not (as Podman does).
  assert.equal(await h.ok(['rmi', 'other:v1']), 'Untagged: localhost/other:v1');
  assert.equal((await h.inspect('user2')).State.Status, 'created');
  const r = await h.fails(['rmi', 'busybox']);
  assertCleanError(r, /image busybox is in use by container (user1, user2|user2, user1): remove them first or use --force/);
  assert.equal((await h.inspect('user1')).State.Status, 'running', 'untouched');
  assert.equal(imageDirs().length, 1);
  const out = await h.ok(['rmi', '-f', 'busybox']);
  assert.match(out, /^Untagged: .*localhost\/busybox:latest/m);
  assert.match(out, /^Deleted: [0-9a-f]{64}$/m);
  assert.deepEqual(await h.names(), []);
  assert.deepEqual(h.mounts(), []);
  assert.deepEqual(imageDirs(), []);
  assert.deepEqual(storeContents(), [], 'its layer, link and blobs are freed');
  assert.equal(await h.ok(['images', '-q']), '');
  assertCleanError(await h.fails(['rmi', 'busybox']), /image "busybox" not found/);
});

test('image rm and image ls are aliases', async () => {
  const id = await h.ok(['image', 'import', tar, 'again']);
  assert.match(await h.ok(['image', 'ls']), /localhost\/again\s+latest/);
  await h.ok(['image', 'rm', 'again']);
  assert.ok(!(await h.ok(['image', 'list', '-q', '--no-trunc'])).includes(id));
});

test('tag, images REFERENCE, image history, image prune', async () => {
  const id = await h.ok(['import', tar, 'base']);
  await h.ok(['tag', 'base', 'mine:v2', 'example.com/team/app:1']);
  const names = (JSON.parse(await h.ok(['image', 'inspect', 'base']))[0] as { RepoTags: string[] }).RepoTags;
  assert.deepEqual(names.sort(), ['example.com/team/app:1', 'localhost/base:latest', 'localhost/mine:v2']);
  // A reference selects the image; all its names are listed (as Podman does).
  assert.equal((await h.ok(['images', 'mine'])).split('\n').length, 4);
  assert.equal((await h.ok(['images', 'team/app:1'])).split('\n').length, 4);
  assert.equal(await h.ok(['images', 'nothing']), 'REPOSITORY  TAG  IMAGE ID  CREATED  SIZE'.replace(/  /g, '   '));
  assertCleanError(await h.fails(['tag', 'base', 'x@sha256:' + '0'.repeat(64)]), /cannot tag with a digest/);
  assertCleanError(await h.fails(['tag', 'nope', 'x']), /image "nope" not found/);
  const hist = await h.ok(['image', 'history', 'base']);
  assert.match(hist, new RegExp(`^ID\\s+CREATED\\s+CREATED BY\\s+SIZE\\s+COMMENT\n${id.slice(0, 12)}\\s+.* ago\\s+ferry import\\s+[0-9.]+ [kM]B\\s+imported from a rootfs tarball$`));
  // prune: a nameless image goes; -a: every unused one; an image in use stays.
  await h.ok(['rmi', 'mine:v2', 'example.com/team/app:1']);
  const gz = path.join(h.dir, 'other.tar');
  assert.equal(spawnSync('sh', ['-c', `cat '${tar}' > '${gz}' && printf 'x' > '${h.dir}/extra' && tar -rf '${gz}' -C '${h.dir}' extra`]).status, 0);
  const nameless = await h.ok(['import', gz]);
  assert.notEqual(nameless, id);
  assert.match(await h.ok(['images']), /<none>\s+<none>/);
  await h.ok(['create', '--name', 'keeper', 'base', 'true']);
  assert.equal(await h.ok(['image', 'prune']), nameless);
  assert.equal(await h.ok(['image', 'prune', '-a']), '', 'base is in use');
  await h.ok(['rm', 'keeper']);
  assert.equal(await h.ok(['image', 'prune', '-a', '-f']), id);
  assert.deepEqual(imageDirs(), []);
  assert.deepEqual(storeContents(), []);
});

test('a root whose image store an older Ferry made: a clear error, no crash', async () => {
  const old = new Host('imgold');
  try {
    const id = 'a'.repeat(64);
    fs.mkdirSync(path.join(old.root, 'images', id, 'rootfs'), { recursive: true });
    fs.writeFileSync(path.join(old.root, 'images', id, 'image.json'), JSON.stringify({ Id: id, Names: ['localhost/old:latest'], Created: '2024-01-01T00:00:00Z', Size: 1, Config: { Env: [], Cmd: ['sh'], WorkingDir: '/' } }));
    assertCleanError(await old.fails(['images']), /the image store .* was made by an older Ferry \(one rootfs per image\): remove its containers and that directory, then import or pull the images again/);
    assertCleanError(await old.fails(['run', '--rm', 'old', 'true']), /made by an older Ferry/);
    assert.equal((await old.run(['ps', '-a'])).code, 0, 'the rest works');
  } finally {
    await old.destroy();
  }
});
