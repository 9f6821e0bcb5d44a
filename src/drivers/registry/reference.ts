/**
 * Image references as distribution/reference and Podman read them:
 * [DOMAIN[:PORT]/]PATH[:TAG][@sha256:HEX]. A name whose first component has no '.' or ':'
 * and is not `localhost` is a short name: Podman resolves those through the search registries
 * of registries.conf, and to `localhost/NAME` for images stored locally.
 */
import { FerryError } from '../../lib/errors.js';

export interface ImageReference {
  /** Registry host[:port] as written (docker.io for Docker Hub). */
  domain: string;
  /** Repository path within the registry (library/busybox on Docker Hub). */
  path: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;
const PATH_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG_RE = /^\w[\w.-]{0,127}$/;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function isShortName(ref: string): boolean {
  const first = ref.split('/')[0]!;
  return !ref.includes('/') || !(first.includes('.') || first.includes(':') || first === 'localhost');
}

/** Parses a fully qualified reference; a short name is refused (see resolveShortName). */
export function parseReference(ref: string): ImageReference {
  const bad = (why: string): FerryError => new FerryError('EINVAL', `invalid image reference "${ref}": ${why}`);
  let rest = ref.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw bad('the digest must be sha256: and 64 lowercase hex digits');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw bad('a tag is letters, digits, _, . and - (at most 128)');
  }
  if (isShortName(rest)) throw shortNameError(ref);
  const slash = rest.indexOf('/');
  let domain = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  if (!DOMAIN_RE.test(domain)) throw bad(`"${domain}" is not a registry host[:port]`);
  if (!PATH_RE.test(path)) throw bad('a repository name is lowercase letters, digits and separators (. _ __ -) between /');
  domain = domain.toLowerCase();
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { domain, path, tag, digest };
}

/** A short name that is not stored here: for pull (no registry to ask), or for run/create (not found). */
export function shortNameError(ref: string, lookup = false): FerryError {
  const example = `registry.example.com:5000/${ref.replace(/^\/+/, '')}`;
  return new FerryError(
    lookup ? 'ENOTFOUND' : 'EINVAL',
    lookup
      ? `image "${ref}" not found: a short name names only images stored here (there are no search registries); pull it by its full name, such as ${example}, or import it`
      : `short-name "${ref}" names no registry (there are no search registries): give a full reference such as ${example}`,
  );
}

/** NAME[:TAG] as Ferry stores it (the tag, not the digest). */
export function repository(r: ImageReference): string {
  return `${r.domain}/${r.path}`;
}

export function referenceString(r: ImageReference): string {
  return `${repository(r)}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** Where the registry's API lives: Docker Hub's name differs from its host. */
export function registryHost(domain: string): string {
  return domain === 'docker.io' ? 'registry-1.docker.io' : domain;
}

/** `ferry login REGISTRY`: a host[:port], optionally written as a URL or with a path. */
export function registryDomain(s: string): string {
  const d = s.trim().replace(/^https?:\/\//, '').replace(/\/.*$/, '').toLowerCase();
  if (!DOMAIN_RE.test(d) || d === '') throw new FerryError('EINVAL', `invalid registry "${s}": give HOST[:PORT]`);
  return d === 'index.docker.io' ? 'docker.io' : d;
}
