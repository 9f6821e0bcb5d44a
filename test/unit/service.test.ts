import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { PassThrough } from 'node:stream';
import { connectService, createServiceServer, keyMaterial, parseListenUrl, parseServiceUrl, readLine, readSecretFile, type ServiceIdentity } from '../../src/drivers/transport/service.js';
import { deriveServiceIdentity } from '../../src/drivers/transport/identity.js';
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

test('readSecretFile: owner-only, at least 32 bytes; same file, same identity', () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-secret-'));
  try {
    const f = path.join(d, 's');
    fs.writeFileSync(f, Buffer.alloc(32, 1).toString('base64'), { mode: 0o600 });
    const k = readSecretFile(f);
    assert.deepEqual(k.der, deriveServiceIdentity(Buffer.alloc(32, 1)).der);
    assert.deepEqual(readSecretFile(f), k);
    fs.writeFileSync(f, Buffer.alloc(32, 1)); // the same key material as raw bytes
    assert.deepEqual(readSecretFile(f).der, k.der);
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

test('deriveServiceIdentity: the same certificate for the same secret, another for another', () => {
  const a = deriveServiceIdentity(Buffer.alloc(32, 1));
  assert.deepEqual(deriveServiceIdentity(Buffer.alloc(32, 1)), a, 'byte for byte: key, certificate, fingerprint');
  const b = deriveServiceIdentity(Buffer.alloc(32, 2));
  assert.notDeepEqual(b.der, a.der);
  assert.notEqual(b.key, a.key);
  const x = new crypto.X509Certificate(a.cert);
  assert.deepEqual(x.raw, a.der);
  assert.equal(x.subject, 'CN=ferry-service');
  assert.equal(x.issuer, 'CN=ferry-service');
  assert.equal(x.subjectAltName, 'DNS:ferry-service');
  assert.equal(x.ca, true);
  assert.equal(x.serialNumber, '01');
  assert.equal(new Date(x.validFrom).toISOString(), '2000-01-01T00:00:00.000Z');
  assert.equal(new Date(x.validTo).getUTCFullYear(), 9999);
  assert.equal(x.publicKey.asymmetricKeyType, 'ed25519');
  assert.ok(x.verify(x.publicKey), 'self-signed');
  assert.ok(!x.verify(new crypto.X509Certificate(b.cert).publicKey));
  assert.ok(x.checkPrivateKey(crypto.createPrivateKey(a.key)));
  assert.equal(a.fingerprint, crypto.createHash('sha256').update(a.der).digest('hex'));
});

const idA = deriveServiceIdentity(Buffer.alloc(32, 0xa));
const idB = deriveServiceIdentity(Buffer.alloc(32, 0xb));

/** A service on loopback that answers each authenticated connection's first line with "OK line". */
async function loopbackService(id: ServiceIdentity): Promise<{ port: number; accepted: string[]; refused: string[]; close(): Promise<void> }> {
  const accepted: string[] = [];
  const refused: string[] = [];
  const server = createServiceServer(
    id,
    (s) => {
      s.on('error', () => undefined);
      void readLine(s).then((line) => {
        accepted.push(line ?? '');
        s.end(`OK ${line}\n`);
      });
    },
    (_s, why) => refused.push(why),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, accepted, refused, close: () => new Promise((r) => server.close(() => r())) };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); ) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('mutual TLS on loopback: the same secret gets in, another is refused at the handshake', async () => {
  const svc = await loopbackService(idA);
  try {
    const s = await connectService({ host: '127.0.0.1', port: svc.port }, idA, 'FERRY/1 migrate x');
    assert.equal(s.getProtocol(), 'TLSv1.3');
    assert.equal(await readLine(s), 'OK FERRY/1 migrate x');
    s.destroy();
    await assert.rejects(connectService({ host: '127.0.0.1', port: svc.port }, idB, 'FERRY/1 migrate y'), (e: unknown) => {
      assert.ok(e instanceof FerryError && e.code === 'EPERM');
      assert.equal(e.message, `authentication with the ferry service at 127.0.0.1:${svc.port} failed: check --secret-file`);
      return true;
    });
    await until(() => svc.refused.length === 1);
    assert.deepEqual(svc.refused, ['wrong secret']);
    // A client that does not check the service and sends at once: another certificate, or none.
    for (const [opts, why] of [[{ key: idB.key, cert: idB.cert }, 'wrong secret'], [{}, 'no client certificate']] as const) {
      const c = tls.connect({ host: '127.0.0.1', port: svc.port, rejectUnauthorized: false, ...opts });
      c.on('error', () => undefined);
      c.on('secureConnect', () => c.write('FERRY/1 migrate z\n'));
      await new Promise((r) => c.once('close', r));
      await until(() => svc.refused.at(-1) === why);
    }
    assert.deepEqual(svc.accepted, ['FERRY/1 migrate x'], 'nothing from a refused peer was read');
    await assert.rejects(connectService({ host: '127.0.0.1', port: 1 }, idA, 'x'), /cannot reach the ferry service at 127\.0\.0\.1:1: ECONNREFUSED/);
  } finally {
    await svc.close();
  }
});
