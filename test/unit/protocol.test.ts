// The migration protocol's parsers: every message either direction may carry is read back
// typed, with only the fields it knows; anything else is refused where it arrives, as one
// EINVAL line that names the message and the field. The readers of the channel apply them:
// a refused message takes its place in the order as a rejection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { FrameReader, FrameWriter, LineReader } from '../../src/drivers/transport/channel.js';
import { parseReply, parseSourceMessage, type Hello, type SourceMessage } from '../../src/engine/migrate/protocol.js';
import { FerryError } from '../../src/lib/errors.js';

const IMAGE_ID = 'a'.repeat(64);
const CTR_ID = 'b'.repeat(64);

function hello(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'hello',
    name: 'web-1',
    imageId: IMAGE_ID,
    imageName: 'localhost/busybox:latest',
    network: 'ferry',
    ip: '10.88.0.5',
    criuVersion: '4.2',
    arch: 'x64',
    lazy: false,
    pageServer: true,
    pageServerPort: 23456,
    withImage: false,
    volumes: ['data'],
    ...over,
  };
}

/** Asserts that parse refuses json with an EINVAL whose one-line message matches re. */
function refused(parse: (j: unknown) => unknown, json: unknown, re: RegExp): void {
  assert.throws(
    () => parse(json),
    (e: unknown) => {
      assert.ok(e instanceof FerryError, `a FerryError, not ${String(e)}`);
      assert.equal(e.code, 'EINVAL');
      assert.doesNotMatch(e.message, /\n/, 'one line');
      assert.match(e.message, re);
      return true;
    },
    JSON.stringify(json),
  );
}

test('parseSourceMessage: each message the source sends, typed, unknown fields dropped', () => {
  assert.deepEqual(parseSourceMessage({ ...hello(), extra: 'dropped' }), { ...hello(), lazyPort: undefined, imageLayers: undefined });
  const layers = ['a'.repeat(64), 'b'.repeat(64)];
  assert.deepEqual(parseSourceMessage(hello({ withImage: true, imageLayers: layers })), { ...hello({ withImage: true, imageLayers: layers }), lazyPort: undefined });
  refused(parseSourceMessage, hello({ imageLayers: ['../x'] }), /imageLayers: "\.\.\/x" is not a layer ID/);
  refused(parseSourceMessage, hello({ imageLayers: Array(1001).fill('a'.repeat(64)) }), /imageLayers/);
  // Optional fields may be absent; a lazy hello over the service has no port (0 from older sources).
  const lazy = parseSourceMessage(hello({ network: undefined, ip: undefined, criuVersion: undefined, lazy: true, pageServer: false, pageServerPort: undefined, lazyPort: 0 })) as Hello;
  assert.equal(lazy.lazy, true);
  assert.equal(lazy.lazyPort, undefined);
  assert.equal(lazy.network, undefined);
  assert.equal((parseSourceMessage(hello({ lazy: true, pageServer: false, pageServerPort: undefined, lazyPort: 1024 })) as Hello).lazyPort, 1024);
  const image = {
    Id: IMAGE_ID,
    Digest: `sha256:${IMAGE_ID}`,
    Names: ['localhost/busybox:latest'],
    RepoDigests: [],
    Created: '2024-01-01T00:00:00Z',
    Size: 1000,
    Layers: [IMAGE_ID],
    Config: { Env: ['PATH=/bin'], Cmd: ['sh'], WorkingDir: '/' },
    Architecture: 'amd64',
    Os: 'linux',
    ManifestType: 'application/vnd.oci.image.manifest.v1+json',
  };
  assert.deepEqual(parseSourceMessage({ type: 'image', image: { ...image, Extra: 1 } }), { type: 'image', image });
  assert.deepEqual(parseSourceMessage({ type: 'pre-dump', round: 3 }), { type: 'pre-dump', round: 3 });
  for (const type of ['archive', 'commit', 'abort', 'bye'] as const) assert.deepEqual(parseSourceMessage({ type, x: 1 }), { type });
});

test('parseSourceMessage refuses what is not a message of its type', () => {
  const p = parseSourceMessage;
  refused(p, 'hello', /bad message from the source: "hello" is not a JSON object/);
  refused(p, [1], /is not a JSON object/);
  refused(p, null, /is not a JSON object/);
  refused(p, { name: 'x' }, /bad message from the source: it has no type/);
  refused(p, { type: 'restored' }, /unknown message type "restored" from the source/);
  refused(p, hello({ name: undefined }), /bad "hello" message from the source: name is missing/);
  refused(p, hello({ name: '../etc' }), /name "\.\.\/etc" is not a valid container name/);
  refused(p, hello({ name: 42 }), /name 42 is not a valid container name/);
  refused(p, hello({ imageId: 'busybox' }), /imageId "busybox" is not an image ID/);
  refused(p, hello({ imageName: undefined }), /imageName is missing/);
  refused(p, hello({ network: 'a b' }), /network "a b" is not a valid network name/);
  refused(p, hello({ ip: '10.88.0.999' }), /ip "10\.88\.0\.999" is not an IP address/);
  refused(p, hello({ criuVersion: 4.2 }), /criuVersion 4\.2 is not a string/);
  refused(p, hello({ arch: undefined }), /arch is missing/);
  refused(p, hello({ lazy: 'yes' }), /lazy "yes" is not true or false/);
  refused(p, hello({ withImage: undefined }), /withImage is missing/);
  refused(p, hello({ pageServerPort: 22 }), /invalid page server port 22 \(use 1024-65535\)/);
  refused(p, hello({ pageServerPort: 65536 }), /invalid page server port 65536/);
  refused(p, hello({ pageServerPort: '2000' }), /invalid page server port "2000"/);
  refused(p, hello({ lazy: true, pageServer: false, lazyPort: 1023 }), /invalid lazy pages port 1023/);
  refused(p, hello({ lazy: true, pageServer: false, lazyPort: 2000.5 }), /invalid lazy pages port 2000\.5/);
  refused(p, hello({ lazy: true }), /it asks for both lazy pages and a page server/);
  refused(p, hello({ volumes: 'data' }), /volumes "data" is not a list/);
  refused(p, hello({ volumes: ['ok', '/etc'] }), /volumes: "\/etc" is not a valid volume name/);
  refused(p, { type: 'pre-dump', round: 0 }, /bad "pre-dump" message from the source: round 0 is not a round number/);
  refused(p, { type: 'pre-dump', round: '1' }, /round "1" is not a round number/);
  refused(p, { type: 'pre-dump' }, /round is missing/);
  refused(p, { type: 'image' }, /bad "image" message from the source: image is missing/);
  refused(p, { type: 'image', image: { Id: 'x' } }, /image\.Id is missing or malformed/);
  refused(p, { type: 'image', image: { Id: IMAGE_ID, Digest: `sha256:${IMAGE_ID}`, Names: [], RepoDigests: [], Created: 'now', Size: 1, Layers: ['../x'], Config: {} } }, /image\.Layers is missing or malformed/);
  refused(p, { type: 'image', image: { Id: IMAGE_ID, Digest: `sha256:${IMAGE_ID}`, Names: [], RepoDigests: [], Created: 'now', Size: 1, Layers: [], Config: 'sh' } }, /image\.Config is missing or malformed/);
  // A long value is cut short: the message stays one short line.
  refused(p, hello({ name: 'x'.repeat(5000) + ' ' }), /name "x{30,40}\.\.\. is not a valid container name$/);
});

test('parseReply: each reply the destination sends, typed', () => {
  assert.deepEqual(parseReply({ type: 'ready', needImage: true }), { type: 'ready', needImage: true, haveLayers: undefined });
  assert.deepEqual(parseReply({ type: 'ready', needImage: true, haveLayers: ['c'.repeat(64)] }), { type: 'ready', needImage: true, haveLayers: ['c'.repeat(64)] });
  refused(parseReply, { type: 'ready', needImage: true, haveLayers: 'all' }, /haveLayers/);
  assert.deepEqual(parseReply({ type: 'error', message: 'no room' }), { type: 'error', message: 'no room' });
  assert.deepEqual(parseReply({ type: 'pre-dump-stored', round: 2 }), { type: 'pre-dump-stored', round: 2 });
  assert.deepEqual(parseReply({ type: 'progress', pageBytes: 0 }), { type: 'progress', pageBytes: 0 });
  assert.deepEqual(parseReply({ type: 'restored', id: CTR_ID, pageBytes: 4096, more: true }), { type: 'restored', id: CTR_ID, pageBytes: 4096 });
  for (const type of ['image-stored', 'committed', 'pages-done'] as const) assert.deepEqual(parseReply({ type }), { type });
});

test('parseReply refuses what is not a reply of its type', () => {
  const p = parseReply;
  refused(p, 7, /bad message from the destination: 7 is not a JSON object/);
  refused(p, { type: 'hello' }, /unknown message type "hello" from the destination/);
  refused(p, { type: '' }, /it has no type/);
  refused(p, { type: 'ready' }, /bad "ready" message from the destination: needImage is missing/);
  refused(p, { type: 'ready', needImage: 1 }, /needImage 1 is not true or false/);
  refused(p, { type: 'error' }, /bad "error" message from the destination: message is missing/);
  refused(p, { type: 'error', message: { a: 1 } }, /message \{"a":1\} is not a string/);
  refused(p, { type: 'pre-dump-stored', round: -1 }, /round -1 is not a round number/);
  refused(p, { type: 'progress', pageBytes: -5 }, /pageBytes -5 is not a count/);
  refused(p, { type: 'progress', pageBytes: '5' }, /pageBytes "5" is not a count/);
  refused(p, { type: 'restored', pageBytes: 0 }, /bad "restored" message from the destination: id is missing/);
  refused(p, { type: 'restored', id: 'x', pageBytes: 0 }, /id "x" is not a container ID/);
  refused(p, { type: 'restored', id: CTR_ID }, /pageBytes is missing/);
});

test('FrameReader hands out a refused message as a rejection, in its place', async () => {
  const wire = new PassThrough();
  const r = new FrameReader(wire, parseSourceMessage);
  const w = new FrameWriter<SourceMessage | Record<string, unknown> & { type: string }>(wire);
  await w.send({ type: 'pre-dump', round: 1 });
  await w.send({ type: 'pre-dump', round: 'two' });
  await w.send({ type: 'archive' });
  wire.end();
  assert.deepEqual(await r.next(), { type: 'pre-dump', round: 1 });
  await assert.rejects(r.next(), /bad "pre-dump" message from the source: round "two" is not a round number/);
  assert.deepEqual(await r.next(), { type: 'archive' });
  assert.equal(await r.next(), undefined);
});

test('LineReader: a refused reply rejects next(), a refused notice too; a line that is not JSON is skipped', async () => {
  const input = new PassThrough();
  const r = new LineReader(input, parseReply);
  const seen: number[] = [];
  r.onProgress = (m) => seen.push(m.pageBytes);
  // A reply waited for before it arrives is refused as well.
  const first = r.next(1000);
  input.write('Welcome to hostB\n{"type":"ready","needImage":"no"}\n');
  await assert.rejects(first, /bad "ready" message from the destination: needImage "no" is not true or false/);
  input.write('{"type":"progress","pageBytes":4096}\n{"type":"progress"}\n{"type":"committed"}\n');
  await assert.rejects(r.next(1000), /bad "progress" message from the destination: pageBytes is missing/);
  assert.deepEqual(await r.next(1000), { type: 'committed' });
  assert.deepEqual(seen, [4096]);
  input.end();
  assert.equal(await r.next(1000), undefined);
});
