import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { keyMaterial, parseListenUrl, parseServiceUrl, readLine, readSecretFile } from '../../src/drivers/transport/service.js';
import { FerryError } from '../../src/lib/errors.js';

test('parseServiceUrl: ferry:// and its tcp:// alias, port required', () => {
  assert.deepEqual(parseServiceUrl('ferry://hostb:7797'), { host: 'hostb', port: 7797 });
  assert.deepEqual(parseServiceUrl('tcp://10.0.0.2:1'), { host: '10.0.0.2', port: 1 });
  assert.deepEqual(parseServiceUrl('ferry://[fd00::2]:7797/'), { host: 'fd00::2', port: 7797 });
  for (const bad of ['ferry://hostb', 'ferry://hostb:0', 'ferry://hostb:70000', 'ferry://u@hostb:1', 'ferry://h;x:1', 'ssh://hostb:22']) {
    assert.throws(() => parseServiceUrl(bad), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL', bad);
  }
});

test('parseListenUrl: tcp://ADDR:PORT only', () => {
  assert.deepEqual(parseListenUrl('tcp://0.0.0.0:7797'), { host: '0.0.0.0', port: 7797 });
  assert.throws(() => parseListenUrl('ferry://0.0.0.0:7797'), /use tcp:\/\/ADDR:PORT/);
  assert.throws(() => parseListenUrl('tcp://0.0.0.0'), /use tcp:\/\/ADDR:PORT/);
});

test('keyMaterial: base64 text is decoded, anything else is taken as bytes', () => {
  const k = Buffer.alloc(32, 7);
  assert.deepEqual(keyMaterial(Buffer.from(k.toString('base64') + '\n')), k);
  assert.equal(keyMaterial(Buffer.from('not base64!\n')).length, 12);
});

test('readSecretFile: owner-only, at least 32 bytes; same file, same key', () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-secret-'));
  try {
    const f = path.join(d, 's');
    fs.writeFileSync(f, Buffer.alloc(32, 1).toString('base64'), { mode: 0o600 });
    const k = readSecretFile(f);
    assert.equal(k.length, 32);
    assert.deepEqual(readSecretFile(f), k);
    fs.chmodSync(f, 0o640);
    assert.throws(() => readSecretFile(f), /accessible by group or others \(mode 640\): `chmod 600/);
    fs.writeFileSync(f, Buffer.alloc(24, 1).toString('base64'));
    fs.chmodSync(f, 0o600);
    assert.throws(() => readSecretFile(f), /holds 24 bytes of key material, fewer than 32; make one with `head -c 32 \/dev\/urandom/);
    assert.throws(() => readSecretFile(path.join(d, 'none')), /cannot read secret file .*ENOENT/);
    assert.throws(() => readSecretFile(d), /not a regular file/);
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('readLine: one line, the rest left for the next reader', async () => {
  const s = new PassThrough();
  s.write('FERRY/1 migrate abc\nJ\x00rest');
  assert.equal(await readLine(s), 'FERRY/1 migrate abc');
  const rest: Buffer[] = [];
  s.on('data', (b: Buffer) => rest.push(b));
  s.resume();
  s.end('!');
  await new Promise((r) => s.once('end', r));
  assert.equal(Buffer.concat(rest).toString('latin1'), 'J\x00rest!');
  const long = new PassThrough();
  long.write('x'.repeat(600));
  assert.equal(await readLine(long, 512), undefined);
});
