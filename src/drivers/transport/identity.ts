/**
 * The ferry service's TLS identity, derived from its shared secret: an Ed25519 key and a
 * self-signed certificate that every holder of the secret builds byte for byte the same.
 *
 * Both ends of a ferry:// connection present this certificate and trust it, and nothing else,
 * as their only CA (service.ts): mutual TLS, where holding the secret is what it takes to prove
 * the identity. A peer with another secret derives another key, so its certificate is not the
 * one we trust and the handshake fails, either way round.
 *
 * Deterministic on purpose: the key comes from HMAC-SHA256(secret, label) as an Ed25519 seed,
 * Ed25519 signatures are deterministic (RFC 8032), and everything else in the certificate is
 * fixed (serial 1, 2000-01-01..9999-12-31, CN and DNS name "ferry-service"). So nothing is kept
 * on disk, and two hosts, or two JavaScript runtimes, agree without exchanging anything but the
 * secret file. Deriving one takes about a millisecond.
 *
 * The certificate is built here in DER, the few ASN.1 shapes X.509 needs (RFC 5280, RFC 8410).
 */
import { crypto as loadCrypto } from '../../lib/lazy.js';

/** The name in the certificate's subject, issuer and subjectAltName; the client's servername. */
export const SERVICE_NAME = 'ferry-service';
const LABEL = 'ferry service identity v1';
/** A PKCS #8 Ed25519 private key is this fixed prefix and the 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface ServiceIdentity {
  /** PKCS #8 PEM of the derived Ed25519 private key. */
  key: string;
  /** PEM of the derived certificate: our identity and the only CA we trust. */
  cert: string;
  /** The certificate's DER, to compare a peer's with. */
  der: Buffer;
  /** SHA-256 of the DER, hex (logs, tests). */
  fingerprint: string;
}

/** Derives the service identity from a secret's key material. */
export function deriveServiceIdentity(material: Buffer): ServiceIdentity {
  const crypto = loadCrypto();
  const seed = crypto.createHmac('sha256', material).update(LABEL).digest();
  const key = crypto.createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' });
  const name = seq(set(seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(SERVICE_NAME))))); // CN=ferry-service
  const tbs = seq(
    tlv(0xa0, int(2)), // [0] version: v3
    int(1), // serialNumber
    ED25519,
    name, // issuer
    seq(tlv(0x17, Buffer.from('000101000000Z')), tlv(0x18, Buffer.from('99991231235959Z'))), // validity: UTCTime, GeneralizedTime
    name, // subject
    spki,
    tlv(
      0xa3, // [3] extensions
      seq(
        extension('2.5.29.19', true, seq(tlv(0x01, Buffer.from([0xff])))), // basicConstraints: CA:TRUE
        extension('2.5.29.15', true, tlv(0x03, Buffer.from([0x02, 0x84]))), // keyUsage: digitalSignature, keyCertSign
        extension('2.5.29.17', false, seq(tlv(0x82, Buffer.from(SERVICE_NAME)))), // subjectAltName: DNS:ferry-service
      ),
    ),
  );
  const der = seq(tbs, ED25519, tlv(0x03, Buffer.concat([Buffer.from([0]), crypto.sign(null, tbs, key)])));
  return {
    key: key.export({ format: 'pem', type: 'pkcs8' }) as string,
    cert: `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`,
    der,
    fingerprint: crypto.createHash('sha256').update(der).digest('hex'),
  };
}

// DER: tag, definite length, contents.
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}
const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
/** A small non-negative INTEGER. */
const int = (n: number): Buffer => tlv(0x02, Buffer.from([n]));
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a! + b!];
  for (const v of rest) {
    const bytes = [v & 0x7f];
    for (let x = v >> 7; x; x >>= 7) bytes.unshift((x & 0x7f) | 0x80);
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}
function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));
}
/** AlgorithmIdentifier id-Ed25519 (1.3.101.112), no parameters. */
const ED25519 = seq(oid('1.3.101.112'));
