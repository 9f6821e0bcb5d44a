/**
 * Registry credentials as Podman keeps them: `auth.json` ({"auths": {"HOST": {"auth":
 * base64(user:pass)}}}) at --authfile, $REGISTRY_AUTH_FILE, or ${XDG_RUNTIME_DIR}/containers
 * (/run/containers/UID for root), with Docker's config.json ($DOCKER_CONFIG, or ~/.docker) read as a
 * fallback.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';
import { mkdirp, writeFileAtomic } from '../../lib/fsutil.js';

export interface Credentials {
  username: string;
  password: string;
}

export function defaultAuthFile(): string {
  if (process.env.REGISTRY_AUTH_FILE) return process.env.REGISTRY_AUTH_FILE;
  const uid = process.getuid?.() ?? 0;
  const runtime = process.env.XDG_RUNTIME_DIR || (uid === 0 ? `/run/containers/0` : `/run/user/${uid}`);
  return uid === 0 && !process.env.XDG_RUNTIME_DIR ? path.join(runtime, 'auth.json') : path.join(runtime, 'containers', 'auth.json');
}

/** --creds USER[:PASS] */
export function parseCreds(s: string): Credentials {
  const i = s.indexOf(':');
  const username = i < 0 ? s : s.slice(0, i);
  if (!username) throw new FerryError('EINVAL', 'invalid --creds: give USERNAME:PASSWORD');
  return { username, password: i < 0 ? '' : s.slice(i + 1) };
}

function fromFile(file: string, domain: string): Credentials | undefined {
  let j: { auths?: Record<string, { auth?: string }> };
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof j;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FerryError('EINVAL', `the auth file ${file} is not valid JSON: fix or remove it`);
  }
  const auths = j?.auths ?? {};
  // Keys as Docker writes them too: with a scheme and a path ("https://index.docker.io/v1/").
  const host = (k: string): string => k.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  const wanted = domain === 'docker.io' ? ['docker.io', 'index.docker.io', 'registry-1.docker.io'] : [domain];
  const keys = [domain, ...Object.keys(auths).filter((k) => k !== domain && wanted.includes(host(k)))];
  for (const k of keys) {
    const a = auths[k]?.auth;
    if (typeof a !== 'string' || !a) continue;
    const dec = Buffer.from(a, 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i <= 0) throw new FerryError('EINVAL', `the auth file ${file} holds a malformed entry for ${domain}: log in again`);
    return { username: dec.slice(0, i), password: dec.slice(i + 1) };
  }
  return undefined;
}

/** Credentials for a registry: --authfile if given (only it), else Podman's then Docker's file. */
export function lookupCredentials(domain: string, authfile?: string): Credentials | undefined {
  if (authfile !== undefined) {
    if (!fs.existsSync(authfile)) throw new FerryError('ENOTFOUND', `--authfile ${authfile}: no such file`);
    return fromFile(authfile, domain);
  }
  return fromFile(defaultAuthFile(), domain) ?? fromFile(path.join(process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker'), 'config.json'), domain);
}

function readAuthFile(file: string): { auths: Record<string, unknown>; [k: string]: unknown } {
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { auths?: Record<string, unknown> };
    if (typeof j !== 'object' || j === null) throw new Error('not an object');
    return { ...j, auths: typeof j.auths === 'object' && j.auths !== null ? j.auths : {} };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { auths: {} };
    throw new FerryError('EINVAL', `the auth file ${file} is not valid JSON: fix or remove it`);
  }
}

/** `ferry login`: records the credentials in the auth file (mode 0600, written atomically). */
export function storeCredentials(file: string, domain: string, c: Credentials): void {
  const j = readAuthFile(file);
  j.auths[domain] = { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') };
  mkdirp(path.dirname(file), 0o700);
  writeFileAtomic(file, JSON.stringify(j, null, '\t') + '\n', 0o600);
}

/** `ferry logout`: removes one registry's entry (or all); false when there was none. */
export function removeCredentials(file: string, domain: string | undefined): boolean {
  const j = readAuthFile(file);
  const keys = domain === undefined ? Object.keys(j.auths) : Object.keys(j.auths).filter((k) => k === domain || k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === domain);
  if (!keys.length) return false;
  for (const k of keys) delete j.auths[k];
  writeFileAtomic(file, JSON.stringify(j, null, '\t') + '\n', 0o600);
  return true;
}
