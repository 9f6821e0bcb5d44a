/**
 * Images over the Docker API, driven by the real docker CLI against a local registry: tag,
 * push, rmi, pull (the progress stream docker reads), inspect, save | load; and the refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Host, skipWith } from '../helpers/ferry.js';
import { DOCKER, Service } from '../helpers/api.js';
import { Registry, hasRegistryTools } from '../helpers/registry.js';

const h = new Host('apiim');
let svc: Service | undefined;
let reg: Registry | undefined;
const missing = !DOCKER ? 'the docker CLI is not installed' : hasRegistryTools();

before(async () => {
  if (missing) return;
  await h.importBusybox();
  reg = new Registry();
  await reg.start();
  svc = await Service.start(h);
});

after(async () => {
  await h.run(['rm', '-a', '-f']);
  await svc?.stop(5000);
  await reg?.stop();
  await h.destroy();
  assert.ok(!svc || !fs.existsSync(svc.sock), 'the socket is gone with the service');
});

test('docker tag, push, rmi, pull from a local registry, inspect, run the pulled image', async (t) => {
  if (missing || !svc || !reg) return skipWith(t, missing ?? 'not set up');
  const img = `${reg.addr}/api/busybox:1`;
  await svc.dockerOk(['tag', 'busybox', img]);
  assert.ok(JSON.parse(await h.ok(['images', '--format', 'json']))[0].Names.includes(img), 'the tag is Ferry\'s');
  const pushed = await svc.dockerOk(['push', img]);
  assert.match(pushed, /digest: sha256:[0-9a-f]{64}/);
  const local = JSON.parse(await svc.dockerOk(['image', 'inspect', img]))[0];
  assert.match(local.Id, /^sha256:[0-9a-f]{64}$/);
  assert.ok(local.RepoTags.includes(img));
  assert.equal(local.RootFS.Type, 'layers');
  assert.equal(local.Os, 'linux');
  const rmi = await svc.dockerOk(['rmi', img]);
  assert.match(rmi, new RegExp(`Untagged: ${img.replace(/[.]/g, '\\.')}`));
  assert.equal((await svc.docker(['image', 'inspect', img])).code, 1, 'the name is gone');
  const pulled = await svc.dockerOk(['pull', img]);
  assert.match(pulled, /Digest: sha256:[0-9a-f]{64}/);
  assert.match(pulled, /Downloaded newer image/);
  const again = JSON.parse(await svc.dockerOk(['image', 'inspect', img]))[0];
  assert.equal(again.Id, local.Id, 'the same image came back');
  assert.equal(await svc.dockerOk(['run', '--rm', '--network', 'none', img, 'echo', 'from the pulled image']), 'from the pulled image');
  // A tag the registry does not have: docker fails with the registry's reason, nothing stored.
  const before = await h.ok(['images', '-q']);
  const nf = await svc.docker(['pull', `${reg.addr}/api/busybox:nosuch`]);
  assert.notEqual(nf.code, 0);
  assert.match(nf.stderr, /nosuch|not found|unknown/i);
  assert.equal(await h.ok(['images', '-q']), before);
  await svc.dockerOk(['rmi', img]);
});

test('docker save | docker load: the image comes back with its name and ID', async (t) => {
  if (missing || !svc) return skipWith(t, missing ?? 'not set up');
  const id = JSON.parse(await svc.dockerOk(['image', 'inspect', 'busybox']))[0].Id as string;
  await svc.dockerOk(['tag', 'busybox', 'saved/one:v1']);
  const tar = await svc.dockerBuffer(['save', 'saved/one:v1']);
  assert.ok(tar.length > 100_000, `an archive (${tar.length} bytes)`);
  await svc.dockerOk(['rmi', 'saved/one:v1']);
  assert.equal((await svc.docker(['image', 'inspect', 'saved/one:v1'])).code, 1);
  const loaded = await svc.dockerOk(['load'], { input: tar });
  assert.match(loaded, /^Loaded image: saved\/one:v1$/m);
  assert.equal(JSON.parse(await svc.dockerOk(['image', 'inspect', 'saved/one:v1']))[0].Id, id);
  // A body that is not an archive: an error, nothing stored.
  const before = await h.ok(['images', '-q']);
  const bad = await svc.docker(['load'], { input: 'not a tar archive at all' });
  assert.notEqual(bad.code, 0);
  assert.equal(await h.ok(['images', '-q']), before);
  await svc.dockerOk(['rmi', 'saved/one:v1']);
});

test('image endpoints refuse bad input with Docker-shaped errors', async (t) => {
  if (missing || !svc) return skipWith(t, missing ?? 'not set up');
  const bad = async (method: string, p: string, status: number, re: RegExp): Promise<void> => {
    const r = await svc!.request(method, p);
    assert.equal(r.status, status, `${method} ${p}: ${r.body}`);
    assert.match(JSON.parse(r.body).message, re);
  };
  await bad('POST', '/v1.41/images/create', 400, /fromImage/);
  await bad('POST', '/v1.41/images/create?fromSrc=-', 400, /not supported/);
  await bad('POST', '/v1.41/images/create?fromImage=busybox&tag=bad%20tag', 400, /invalid tag/);
  await bad('GET', '/v1.41/images/nosuch/json', 404, /nosuch/);
  await bad('DELETE', '/v1.41/images/nosuch', 404, /nosuch/);
  await bad('POST', '/v1.41/images/busybox/tag', 400, /repo/);
  await bad('POST', '/v1.41/images/busybox/tag?repo=x&tag=bad%20tag', 400, /invalid tag/);
  await bad('GET', '/v1.41/images/get?names=nosuch', 404, /nosuch/);
  await bad('GET', '/v1.41/images/get', 400, /at least one/);
  // busybox is in use by no container, but a second name keeps it: untag only.
  await svc.dockerOk(['tag', 'busybox', 'other:1']);
  const r = await svc.request('DELETE', '/v1.41/images/other:1');
  assert.equal(r.status, 200);
  const out = JSON.parse(r.body) as { Untagged?: string; Deleted?: string }[];
  assert.equal(out.length, 1);
  assert.match(out[0]!.Untagged!, /(^|\/)other:1$/);
  assert.ok(JSON.parse(await svc.dockerOk(['image', 'inspect', 'busybox']))[0].Id, 'the image stays under its other name');
});
