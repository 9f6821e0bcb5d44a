import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk, run } from '../../lib/exec.js';
import { mkdirp } from '../../lib/fsutil.js';
import { mountFs } from '../../lib/libc.js';
import { FerryError } from '../../lib/errors.js';

/** A container's writable layer: an overlay of its image's rootfs with an upper dir of its own. */
export interface ContainerLayer {
  dir: string; // holds upper/, work/, merged/
  upper: string;
  work: string;
  merged: string;
}

export function layerPaths(dir: string): ContainerLayer {
  return { dir, upper: path.join(dir, 'upper'), work: path.join(dir, 'work'), merged: path.join(dir, 'merged') };
}

export function createLayer(dir: string): ContainerLayer {
  const l = layerPaths(dir);
  for (const d of [l.upper, l.work, l.merged]) mkdirp(d);
  return l;
}

export function isMounted(target: string): boolean {
  const real = safeRealpath(target);
  if (!real) return false;
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[4] && unescapeMount(f[4]) === real) return true;
  }
  return false;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function safeRealpath(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

/** The kernel takes one page of mount options. */
const MOUNT_DATA_MAX = 4096;

/**
 * Mounts the container's overlay: `lower` are the image's layers, top first, relative to
 * `cwd` (short link names, as containers/storage does, so deep images fit in the options).
 */
export async function mountLayer(l: ContainerLayer, lower: { cwd: string; lower: string[] }): Promise<void> {
  if (isMounted(l.merged)) return;
  for (const d of [l.upper, l.work, l.merged]) mkdirp(d);
  // mount(8) with -o: the paths are ours (no commas or colons: IDs and link names are [A-Z0-9]).
  const data = `lowerdir=${lower.lower.join(':')},upperdir=${path.resolve(l.upper)},workdir=${path.resolve(l.work)}`;
  if (data.length >= MOUNT_DATA_MAX) throw new FerryError('EUNSUPPORTED', `the image has too many layers (${lower.lower.length}) for one overlay mount: flatten it (e.g. podman build --squash)`);
  // mount(2) in this process (a mount(8) child cost 3-6 ms of every start and restore); mount(8)
  // when that fails, to say why.
  if (mountFs('overlay', 'overlay', path.resolve(l.merged), data, lower.cwd)) return;
  await runOk(['mount', '-t', 'overlay', 'overlay', '-o', data, path.resolve(l.merged)], { cwd: lower.cwd, what: 'mounting the container rootfs (overlay)' });
}

export async function unmountLayer(l: ContainerLayer): Promise<void> {
  if (!isMounted(l.merged)) return;
  const r = await run(['umount', l.merged]);
  if (r.code !== 0 && isMounted(l.merged)) await runOk(['umount', '-l', l.merged], { what: 'unmounting the container rootfs' });
}

export async function removeLayer(l: ContainerLayer): Promise<void> {
  await unmountLayer(l);
  fs.rmSync(l.dir, { recursive: true, force: true });
}
