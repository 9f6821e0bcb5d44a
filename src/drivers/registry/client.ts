/**
 * A small Distribution (v2) registry client: manifests and blobs, Bearer-token and Basic
 * auth. Everything it returns is checked by the caller against digests; it only refuses what
 * is malformed or too large. node:http/https only (runs on Node and Bun alike).
 */
import type * as http from 'node:http';
import type { Readable } from 'node:stream';
import { createHash } from '../../lib/lazy.js';
import { FerryError } from '../../lib/errors.js';
import * as lazy from '../../lib/lazy.js';
import type { Credentials } from './auth.js';
import { registryHost, type ImageReference } from './reference.js';

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
];

const MANIFEST_MAX = 4 << 20;
const TIMEOUT_MS = 60_000;

export interface ClientOptions {
  tlsVerify: boolean;
  creds?: Credentials;
  /** Ask tokens for push too (repository:NAME:pull,push). */
  push?: boolean;
}

/** A request body: bytes, or a file-backed stream made afresh for each attempt. */
type Body = Buffer | { length: number; open: () => Readable };

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

export class RegistryClient {
  private readonly host: string;
  private scheme: 'https' | 'http' = 'https';
  private schemeKnown = false;
  private token: string | undefined;
  private basic = false;

  constructor(readonly ref: ImageReference, private readonly o: ClientOptions) {
    this.host = registryHost(ref.domain);
  }

  private get where(): string {
    return this.ref.domain;
  }

  private raw(method: string, url: URL, headers: Record<string, string>, body?: Body): Promise<Response> {
    const mod = url.protocol === 'https:' ? lazy.https() : lazy.http();
    return new Promise((resolve, reject) => {
      const h: Record<string, string> = { 'User-Agent': 'ferry', ...headers };
      if (body !== undefined) h['Content-Length'] = String(body.length);
      const req = mod.request(
        url,
        { method, headers: h, timeout: TIMEOUT_MS, ...(url.protocol === 'https:' ? { rejectUnauthorized: this.o.tlsVerify } : {}) },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }),
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const src = body.open();
        src.on('error', (e) => req.destroy(e));
        src.pipe(req);
      }
    });
  }

  /** One request to the registry with auth and redirects handled; the caller consumes the body. */
  private async request(method: string, pathAndQuery: string, headers: Record<string, string> = {}, body?: Body): Promise<Response> {
    let url = pathAndQuery.startsWith('http://') || pathAndQuery.startsWith('https://') ? new URL(pathAndQuery) : await this.base(pathAndQuery);
    for (let attempt = 0, redirects = 0; ; ) {
      const sameHost = url.host === new URL(`${this.scheme}://${this.host}`).host;
      const auth = sameHost ? this.authHeader() : {};
      let res: Response;
      try {
        res = await this.raw(method, url, { ...headers, ...auth }, body);
      } catch (e) {
        throw this.netError(e);
      }
      if ([301, 302, 303, 307, 308].includes(res.status) && res.headers.location && redirects++ < 5) {
        res.body.resume();
        url = new URL(res.headers.location, url);
        if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new FerryError('EARCHIVE', `${this.where} redirected to a non-HTTP URL`);
        continue;
      }
      if (res.status === 401 && sameHost && attempt++ === 0) {
        const challenge = String(res.headers['www-authenticate'] ?? '');
        res.body.resume();
        await this.authenticate(challenge);
        continue;
      }
      return res;
    }
  }

  private authHeader(): Record<string, string> {
    if (this.token) return { Authorization: `Bearer ${this.token}` };
    if (this.basic && this.o.creds) return { Authorization: `Basic ${Buffer.from(`${this.o.creds.username}:${this.o.creds.password}`).toString('base64')}` };
    return {};
  }

  /** Answers a 401: Basic with the credentials, or a Bearer token from the realm. */
  private async authenticate(challenge: string): Promise<void> {
    const m = /^(\w+)\s*(.*)$/.exec(challenge.trim());
    const scheme = m?.[1]?.toLowerCase();
    if (scheme === 'basic') {
      if (!this.o.creds) throw this.authError();
      this.basic = true;
      return;
    }
    if (scheme !== 'bearer') throw this.authError();
    const params: Record<string, string> = {};
    for (const p of (m![2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
    if (!params.realm) throw new FerryError('EARCHIVE', `${this.where} asked for a token without saying where to get it`);
    const realm = new URL(params.realm);
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new FerryError('EARCHIVE', `${this.where} gave a token realm that is not HTTP`);
    if (params.service) realm.searchParams.set('service', params.service);
    const scope = params.scope ?? (this.ref.path ? `repository:${this.ref.path}:${this.o.push ? 'pull,push' : 'pull'}` : undefined);
    if (scope) realm.searchParams.set('scope', this.o.push && params.scope ? params.scope.replace(/:pull$/, ':pull,push') : scope);
    const headers: Record<string, string> = {};
    if (this.o.creds) headers.Authorization = `Basic ${Buffer.from(`${this.o.creds.username}:${this.o.creds.password}`).toString('base64')}`;
    let res: Response;
    try {
      res = await this.raw('GET', realm, headers);
    } catch (e) {
      throw this.netError(e);
    }
    const body = await readBody(res.body, 1 << 20, `${this.where}'s token`);
    if (res.status === 401 || res.status === 403) throw this.authError();
    if (res.status !== 200) throw new FerryError('EARCHIVE', `${this.where}'s token service answered ${res.status}: try again later`);
    let tok: { token?: string; access_token?: string };
    try {
      tok = JSON.parse(body.toString('utf8')) as typeof tok;
    } catch {
      throw new FerryError('EARCHIVE', `${this.where}'s token service did not answer JSON`);
    }
    const t = tok.token ?? tok.access_token;
    if (typeof t !== 'string' || !t || /[\r\n]/.test(t)) throw new FerryError('EARCHIVE', `${this.where}'s token service gave no token`);
    this.token = t;
  }

  private authError(): FerryError {
    return new FerryError(
      'EPERM',
      this.o.creds
        ? `${this.where} refused the credentials for ${this.ref.path}: check the user name and password (--creds or \`ferry login\`)`
        : `${this.where} needs credentials for ${this.ref.path}: log in with \`ferry login ${this.where}\`, or give --creds USER:PASS`,
    );
  }

  private netError(e: unknown): FerryError {
    if (e instanceof FerryError) return e;
    const err = e as NodeJS.ErrnoException;
    const tls = /certificate|self.signed|SSL|TLS|wrong version/i.test(`${err.code ?? ''} ${err.message}`);
    return new FerryError(
      'ERUNTIME',
      tls
        ? `cannot reach ${this.where} over verified HTTPS (${err.code ?? err.message}): for a registry without a trusted certificate, use --tls-verify=false`
        : `cannot reach registry ${this.where} (${err.code ?? err.message}): check the name and that it is running`,
    );
  }

  /**
   * The base URL. With --tls-verify=false, HTTPS without verification is tried first and plain
   * HTTP when the registry does not speak TLS (as Podman and skopeo do).
   */
  private async base(p: string): Promise<URL> {
    if (!this.schemeKnown) {
      this.schemeKnown = true;
      if (!this.o.tlsVerify) {
        try {
          const r = await this.raw('GET', new URL(`https://${this.host}/v2/`), {});
          r.body.resume();
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          if (!/ECONNREFUSED|ENOTFOUND|EAI_AGAIN/.test(String(err.code))) this.scheme = 'http';
        }
      }
    }
    return new URL(`${this.scheme}://${this.host}${p}`);
  }

  /** `GET /v2/`: checks the registry answers and takes the credentials (`ferry login`). */
  async check(): Promise<void> {
    const res = await this.request('GET', '/v2/');
    res.body.resume();
    if (res.status === 401 || res.status === 403) throw this.authError();
    if (res.status !== 200) throw new FerryError('EARCHIVE', `${this.where} answered ${res.status} to /v2/: is it a container registry?`);
  }

  /** Whether the repository has this blob already. */
  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.request('HEAD', `/v2/${this.ref.path}/blobs/${digest}`);
    res.body.resume();
    if (res.status === 401 || res.status === 403) throw this.authError();
    return res.status === 200;
  }

  /** Uploads a blob in one request (POST for a session, then PUT with its digest). */
  async putBlob(digest: string, body: Body): Promise<void> {
    const start = await this.request('POST', `/v2/${this.ref.path}/blobs/uploads/`, {}, Buffer.alloc(0));
    start.body.resume();
    if (start.status === 401 || start.status === 403) throw this.authError();
    if (start.status !== 202 || !start.headers.location) throw new FerryError('EARCHIVE', `${this.where} refused to start an upload to ${this.ref.path} (${start.status})`);
    const url = new URL(start.headers.location, await this.base('/'));
    url.searchParams.set('digest', digest);
    const res = await this.request('PUT', url.toString(), { 'Content-Type': 'application/octet-stream' }, body);
    const text = await readBody(res.body, 64 << 10, 'the answer').catch(() => Buffer.alloc(0));
    if (res.status !== 201) throw new FerryError('EARCHIVE', `${this.where} refused blob ${digest.slice(0, 19)} for ${this.ref.path} (${res.status})${errorText(text)}`);
  }

  /** Puts a manifest under a tag (or digest). */
  async putManifest(reference: string, mediaType: string, body: Buffer): Promise<void> {
    const res = await this.request('PUT', `/v2/${this.ref.path}/manifests/${reference}`, { 'Content-Type': mediaType }, body);
    const text = await readBody(res.body, 64 << 10, 'the answer').catch(() => Buffer.alloc(0));
    if (res.status === 401 || res.status === 403) throw this.authError();
    if (res.status !== 201) throw new FerryError('EARCHIVE', `${this.where} refused the manifest of ${this.ref.path}:${reference} (${res.status})${errorText(text)}`);
  }

  /** A manifest (or index) by tag or digest, its digest checked when asked by digest. */
  async manifest(reference: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const res = await this.request('GET', `/v2/${this.ref.path}/manifests/${reference}`, { Accept: MANIFEST_TYPES.join(', ') });
    if (res.status === 404) {
      res.body.resume();
      const shown = reference.startsWith('sha256:') ? `${this.where}/${this.ref.path}@${reference}` : `${this.where}/${this.ref.path}:${reference}`;
      throw new FerryError('ENOTFOUND', `${shown} not found in the registry: check the repository name and tag`);
    }
    if (res.status === 401 || res.status === 403) {
      res.body.resume();
      throw this.authError();
    }
    if (res.status !== 200) {
      const b = await readBody(res.body, 64 << 10, 'the error').catch(() => Buffer.alloc(0));
      throw new FerryError('EARCHIVE', `${this.where} answered ${res.status} for ${this.ref.path}:${reference}${errorText(b)}`);
    }
    const body = await readBody(res.body, MANIFEST_MAX, `the manifest of ${this.ref.path}`);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new FerryError('EARCHIVE', `the manifest ${this.ref.path}@${reference} from ${this.where} does not match its digest (got ${digest}): the registry is corrupt or tampered with; nothing was stored`);
    }
    let mediaType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
    try {
      const j = JSON.parse(body.toString('utf8')) as { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown };
      if (typeof j.mediaType === 'string') mediaType = j.mediaType;
      else if (j.schemaVersion === 2 && !MANIFEST_TYPES.includes(mediaType)) mediaType = Array.isArray(j.manifests) ? MANIFEST_TYPES[1]! : MANIFEST_TYPES[0]!;
      if (j.schemaVersion === 1) throw new FerryError('EUNSUPPORTED', `${this.ref.path}:${reference} is a Docker schema 1 image, which Ferry does not pull: push it again with a current tool`);
    } catch (e) {
      if (e instanceof FerryError) throw e;
      throw new FerryError('EARCHIVE', `the manifest of ${this.ref.path}:${reference} is not JSON`);
    }
    return { body, mediaType, digest };
  }

  /** A blob's bytes as a stream (the caller verifies the digest). */
  async blob(digest: string): Promise<Readable> {
    const res = await this.request('GET', `/v2/${this.ref.path}/blobs/${digest}`);
    if (res.status !== 200) {
      res.body.resume();
      if (res.status === 404) throw new FerryError('ENOTFOUND', `blob ${digest.slice(0, 19)} of ${this.ref.path} is missing from ${this.where}: the image there is incomplete`);
      if (res.status === 401 || res.status === 403) throw this.authError();
      throw new FerryError('EARCHIVE', `${this.where} answered ${res.status} for blob ${digest.slice(0, 19)}`);
    }
    return res.body;
  }

  /** A small blob (a config) read whole and checked against its digest. */
  async blobBuffer(digest: string, max: number): Promise<Buffer> {
    const b = await readBody(await this.blob(digest), max, `blob ${digest.slice(0, 19)}`);
    const got = `sha256:${createHash('sha256').update(b).digest('hex')}`;
    if (got !== digest) throw new FerryError('EARCHIVE', `blob ${digest.slice(0, 19)}… from ${this.where} does not match its digest (got ${got}): the registry is corrupt or tampered with; nothing was stored`);
    return b;
  }
}

function errorText(b: Buffer): string {
  try {
    const j = JSON.parse(b.toString('utf8')) as { errors?: { message?: string }[] };
    const m = j.errors?.[0]?.message;
    return typeof m === 'string' ? `: ${m.replace(/[\r\n]+/g, ' ').slice(0, 200)}` : '';
  } catch {
    return '';
  }
}

export async function readBody(s: Readable, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    n += (c as Buffer).length;
    if (n > max) {
      s.destroy();
      throw new FerryError('EARCHIVE', `${what} is larger than ${max} bytes: refused`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
