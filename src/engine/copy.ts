/**
 * `ferry cp`: files between a container (running or not) and the host, or a tar archive on
 * stdin/stdout (`-`). Paths in the container are resolved inside it: every symlink on the way is
 * followed as the container would (an absolute target starts at the container's root, `..`
 * stops there), so nothing is read or written outside its filesystem. A running container is
 * reached through /proc/PID/root (its volumes and tmpfs included); a stopped one through its
 * rootfs, mounted for the copy, and its volumes and bind mounts. An archive from stdin is checked
 * member by member (names, links, types) into a staging dir before anything reaches the
 * container.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable, Writable } from 'node:stream';
import { FerryError } from '../lib/errors.js';
import { mkdirp, resolveIn } from '../lib/fsutil.js';
import { mountLayer, unmountLayer, isMounted } from '../drivers/storage/overlay.js';
import { LayerSanitizer } from '../drivers/storage/tar.js';
import type { Engine } from './engine.js';
import type { ContainerRecord } from './types.js';
import { resolveUser } from '../drivers/runtime/user.js';

export interface CopyIO {
  /** The archive for `ferry cp - CTR:DIR`. */
  stdin?: Readable;
  /** Where `ferry cp CTR:PATH -` writes its archive. */
  stdout?: Writable;
}

/** How a container's paths map to the host's: a root, and (stopped) its mounts. */
interface View {
  /** The host path of an absolute, symlink-free container path. */
  host(p: string): string;
  release(): Promise<void>;
}


async function openView(engine: Engine, rec: ContainerRecord): Promise<View> {
  const s = rec.state;
  if ((s.status === 'running' || s.status === 'paused') && s.pid > 0) {
    const root = `/proc/${s.pid}/root`;
    return { host: (p) => root + p, release: async () => undefined };
  }
  const img = engine.images.list().find((i) => i.Id === rec.config.imageId);
  if (!img) throw new FerryError('ENOTFOUND', `the image of container ${rec.config.name} is gone: its filesystem cannot be mounted`);
  const layer = engine.paths.layer(rec.config.id);
  const wasMounted = isMounted(layer.merged);
  await mountLayer(layer, engine.images.lowerDirs(img));
  const mounts = rec.config.mounts
    .filter((m) => m.type !== 'tmpfs')
    .map((m) => ({ dest: m.destination, src: m.type === 'volume' ? engine.volumes.get(m.source).Mountpoint : m.source }))
    .sort((a, b) => b.dest.length - a.dest.length);
  return {
    host: (p) => {
      for (const m of mounts) if (p === m.dest || p.startsWith(`${m.dest}/`)) return m.src + p.slice(m.dest.length);
      return layer.merged + p;
    },
    release: async () => {
      if (!wasMounted) await unmountLayer(layer);
    },
  };
}

/** Copies a host tree (src, not following its symlinks) to dst, replacing what is there but never writing through a symlink. */
function copyTree(src: string, dst: string): void {
  const st = fs.lstatSync(src);
  let cur: fs.Stats | undefined;
  try {
    cur = fs.lstatSync(dst);
  } catch {
    cur = undefined;
  }
  if (st.isDirectory()) {
    if (cur && !cur.isDirectory()) fs.rmSync(dst, { force: true });
    if (!cur || !cur.isDirectory()) fs.mkdirSync(dst, st.mode & 0o7777);
    for (const name of fs.readdirSync(src)) copyTree(path.join(src, name), path.join(dst, name));
    fs.chmodSync(dst, st.mode & 0o7777);
    return;
  }
  if (cur?.isDirectory()) throw new FerryError('EINVAL', `cannot overwrite directory ${dst} with a non-directory`);
  if (cur) fs.rmSync(dst, { force: true }); // a symlink is replaced, not followed
  if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(src), dst);
  else if (st.isFile()) {
    const fd = fs.openSync(dst, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, st.mode & 0o7777);
    try {
      fs.writeFileSync(fd, fs.readFileSync(src));
      fs.fchmodSync(fd, st.mode & 0o7777);
    } finally {
      fs.closeSync(fd);
    }
  } else {
    throw new FerryError('EINVAL', `${src}: only files, directories and symlinks can be copied`);
  }
  fs.lutimesSync(dst, st.atime, st.mtime);
}

/** SRC/. (Podman's and Docker's): the directory's contents, into `to` (made if missing; its parent must exist). */
function copyContents(from: string, to: string): void {
  if (!fs.statSync(from).isDirectory()) throw new FerryError('EINVAL', `${from} is not a directory: /. copies a directory's contents`);
  const cur = lstatOrUndefined(to);
  if (cur && !cur.isDirectory()) throw new FerryError('EINVAL', `cannot copy a directory's contents onto the file ${to}`);
  if (!cur) fs.mkdirSync(to, fs.statSync(from).mode & 0o7777);
  for (const name of fs.readdirSync(from)) copyTree(path.join(from, name), path.join(to, name));
}

const contentsOf = (p: string): boolean => /\/\.$/.test(p) || p === '.';

/** CTR:PATH (when CTR names a container), else a host path or `-`. */
function parseArg(engine: Engine, arg: string): { rec?: ContainerRecord; path: string } {
  const i = arg.indexOf(':');
  if (i > 0 && !arg.startsWith('/') && !arg.startsWith('.')) {
    const rec = engine.lookup(arg.slice(0, i));
    const p = arg.slice(i + 1);
    if (!p) throw new FerryError('EINVAL', `"${arg}": give a path in the container after the colon`);
    return { rec, path: p };
  }
  return { path: arg };
}

/**
 * Copies between a container and the host, as Podman's cp: CTR:SRC DEST, SRC CTR:DEST, with
 * `-` for a tar archive on stdin or stdout. A directory destination that exists receives the
 * source under its own name; otherwise the destination is created (its parent must exist).
 * A running container is paused for the copy unless `pause` is false.
 */
export async function copy(engine: Engine, srcArg: string, dstArg: string, io: CopyIO = {}, o: { pause?: boolean } = {}): Promise<void> {
  const src = parseArg(engine, srcArg);
  const dst = parseArg(engine, dstArg);
  if (src.rec && dst.rec) throw new FerryError('EINVAL', 'copying from one container to another is not supported: copy to the host first');
  if (!src.rec && !dst.rec) throw new FerryError('EINVAL', 'one of the paths must be in a container: use CONTAINER:PATH');
  const rec = (src.rec ?? dst.rec)!;
  await withView(engine, rec.config.id, o.pause !== false, async (r, view) => {
    if (src.rec) await copyOut(engine, r, view, src.path, dst.path, io);
    else await copyIn(engine, r, view, src.path, dst.path, io);
  });
}

/**
 * Runs fn on a container's filesystem view, under its lock. As Podman's cp --pause (the
 * default): no process of the container runs while its paths are resolved and written, so none
 * can swap a directory for a symlink half-way.
 */
async function withView<T>(engine: Engine, ref: string, pause: boolean, fn: (rec: ContainerRecord, view: View) => Promise<T>): Promise<T> {
  return engine.withContainer(ref, async (r) => {
    const freeze = pause && r.state.status === 'running';
    if (freeze) await engine.runtime.pause(r.config.id);
    try {
      const view = await openView(engine, r);
      try {
        return await fn(r, view);
      } finally {
        await view.release();
      }
    } finally {
      if (freeze) await engine.runtime.resume(r.config.id);
    }
  });
}

// ------------------------------------------------------------ the archive endpoints (Docker's API)

/** Docker's stat of a container path (the X-Docker-Container-Path-Stat header). */
export interface PathStat {
  name: string;
  size: number;
  /** Go's os.FileMode: permission bits, and the type in the high bits. */
  mode: number;
  mtime: string;
  /** For a symlink: where it leads, resolved inside the container. */
  linkTarget: string;
}

/** Go's os.FileMode of an lstat. */
export function goFileMode(st: fs.Stats): number {
  let m = st.mode & 0o777;
  if (st.mode & 0o4000) m |= 1 << 23; // setuid
  if (st.mode & 0o2000) m |= 1 << 22; // setgid
  if (st.mode & 0o1000) m |= 1 << 20; // sticky
  if (st.isDirectory()) m |= 2 ** 31;
  else if (st.isSymbolicLink()) m |= 1 << 27;
  else if (st.isFIFO()) m |= 1 << 25;
  else if (st.isSocket()) m |= 1 << 24;
  else if (st.isCharacterDevice()) m |= (1 << 26) | (1 << 21);
  else if (st.isBlockDevice()) m |= 1 << 26;
  return m >>> 0;
}

/** A path as Docker's archive endpoints take it: absolute (relative means from /), at most 4 KiB, no NUL. */
function archivePath(p: string): string {
  if (!p || p.length > 4096 || p.includes('\0')) throw new FerryError('EINVAL', 'give path=PATH: an absolute path in the container (at most 4096 bytes)');
  return p.startsWith('/') ? p : `/${p}`;
}

/** Whether the path asks for what a directory holds (ends in / or /.): its last component is followed then. */
const asDirectory = (p: string): boolean => p.endsWith('/') || /(^|\/)\.$/.test(p);

/** The container path p resolved (its last symlink not followed unless p ends in / or /.), and its lstat; ENOTFOUND when missing. */
function statIn(view: View, rec: ContainerRecord, p: string): { resolved: string; st: fs.Stats; stat: PathStat } {
  const resolved = resolveIn(view.host, p, asDirectory(p));
  const st = lstatOrUndefined(view.host(resolved));
  if (!st) throw new FerryError('ENOTFOUND', `Could not find the file ${p} in container ${rec.config.name}`);
  if (asDirectory(p) && !st.isDirectory()) throw new FerryError('EINVAL', `${p} is not a directory in container ${rec.config.name}`);
  const linkTarget = st.isSymbolicLink() ? resolveIn(view.host, resolved, true) : '';
  const name = resolved === '/' ? '/' : path.posix.basename(resolved);
  return { resolved, st, stat: { name, size: st.size, mode: goFileMode(st), mtime: st.mtime.toISOString(), linkTarget } };
}

/** `HEAD /containers/{id}/archive`: Docker's stat of a container path. */
export async function statContainerPath(engine: Engine, ref: string, p: string): Promise<PathStat> {
  const cpath = archivePath(p);
  return withView(engine, ref, false, async (rec, view) => statIn(view, rec, cpath).stat);
}

/**
 * `GET /containers/{id}/archive` (docker cp CTR:PATH ...): a tar of the path (a directory with
 * everything below it; a symlink as a symlink), its members named from the path's last component
 * (`.` when the path ends in /. or is /). onStat gets the path's stat before the first byte.
 */
export async function archiveFromContainer(engine: Engine, ref: string, p: string, out: Writable, onStat: (s: PathStat) => void): Promise<void> {
  const cpath = archivePath(p);
  await withView(engine, ref, true, async (rec, view) => {
    const { resolved, stat } = statIn(view, rec, cpath);
    onStat(stat);
    const host = view.host(resolved);
    const contents = /(^|\/)\.$/.test(cpath) || resolved === '/';
    await tarTo(contents ? ['-c', '-f', '-', '-C', host, '--numeric-owner', '--', '.'] : ['-c', '-f', '-', '-C', path.dirname(host), '--numeric-owner', '--', path.basename(host)], out);
  });
}

export interface ArchiveInOptions {
  /** Refuse to replace a directory with a non-directory, or a non-directory with a directory. */
  noOverwriteDirNonDir?: boolean;
  /** Owned by the container's user (its USER, or root) rather than root. */
  copyUIDGID?: boolean;
}

/**
 * `PUT /containers/{id}/archive` (docker cp ... CTR:PATH): an untrusted tar, checked member by
 * member into a staging dir, then placed into the directory p (which must exist). Any refusal
 * (a bad member, a conflict with noOverwriteDirNonDir) comes before anything reaches the container.
 */
export async function archiveToContainer(engine: Engine, ref: string, p: string, input: Readable, o: ArchiveInOptions = {}): Promise<void> {
  const cpath = archivePath(p);
  await withView(engine, ref, true, async (rec, view) => {
    const resolved = resolveIn(view.host, cpath, true);
    const dir = view.host(resolved);
    const st = lstatOrUndefined(dir);
    if (!st) throw new FerryError('ENOTFOUND', `Could not find the file ${cpath} in container ${rec.config.name}`);
    if (!st.isDirectory()) throw new FerryError('EINVAL', `extraction point is not a directory: ${cpath} in container ${rec.config.name}`);
    const staging = fs.mkdtempSync(path.join(engine.paths.root, '.cp-'));
    try {
      await untarFrom(input, staging, 'in the request');
      const names = fs.readdirSync(staging);
      if (o.noOverwriteDirNonDir) for (const name of names) checkNoTypeChange(path.join(staging, name), path.join(dir, name), path.posix.join(resolved, name));
      const owner = o.copyUIDGID ? (rec.config.user ? resolveUser(view.host('/'), rec.config.user) : { uid: 0, gid: 0 }) : undefined;
      for (const name of names) {
        copyTree(path.join(staging, name), path.join(dir, name));
        if (owner && (owner.uid !== 0 || owner.gid !== 0)) chownTree(path.join(dir, name), owner.uid, owner.gid);
      }
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  });
}

/** Throws if placing the staged tree src at dst would replace a directory with a non-directory or the other way. */
function checkNoTypeChange(src: string, dst: string, shown: string): void {
  const cur = lstatOrUndefined(dst);
  if (!cur) return;
  const st = fs.lstatSync(src);
  if (st.isDirectory() !== cur.isDirectory()) {
    throw new FerryError('EINVAL', st.isDirectory() ? `cannot overwrite non-directory ${shown} with directory: nothing was copied` : `cannot overwrite directory ${shown} with non-directory: nothing was copied`);
  }
  if (st.isDirectory()) for (const name of fs.readdirSync(src)) checkNoTypeChange(path.join(src, name), path.join(dst, name), path.posix.join(shown, name));
}

/** chown -hR, never following a symlink. */
function chownTree(p: string, uid: number, gid: number): void {
  const st = fs.lstatSync(p);
  fs.lchownSync(p, uid, gid);
  if (st.isDirectory()) for (const name of fs.readdirSync(p)) chownTree(path.join(p, name), uid, gid);
}

function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch {
    return undefined;
  }
}

async function copyOut(engine: Engine, rec: ContainerRecord, view: View, cpath: string, dest: string, io: CopyIO): Promise<void> {
  const resolved = resolveIn(view.host, cpath);
  const from = view.host(resolved);
  if (!lstatOrUndefined(from)) throw new FerryError('ENOTFOUND', `"${cpath}" could not be found on container ${rec.config.name}: no such file or directory`);
  if (dest === '-') {
    if (!io.stdout) throw new FerryError('EINVAL', 'cp to - needs an output stream');
    const name = resolved === '/' ? '.' : path.posix.basename(resolved);
    const dir = resolved === '/' ? from : path.dirname(from);
    await tarTo(['-c', '-f', '-', '-C', dir, '--numeric-owner', '--', name], io.stdout);
    return;
  }
  const target = path.resolve(dest);
  const tst = lstatOrUndefined(target);
  if (contentsOf(cpath)) {
    if (!tst && !fs.existsSync(path.dirname(target))) throw new FerryError('ENOTFOUND', `"${path.dirname(target)}" could not be found on the host: create it first`);
    return copyContents(from, target);
  }
  let to = target;
  if (tst?.isDirectory() || (tst?.isSymbolicLink() && fs.statSync(target, { throwIfNoEntry: false })?.isDirectory())) {
    to = path.join(target, resolved === '/' ? path.basename(rec.config.name) : path.posix.basename(resolved));
  } else if (!fs.existsSync(path.dirname(target))) {
    throw new FerryError('ENOTFOUND', `"${path.dirname(target)}" could not be found on the host: create it first`);
  } else if (dest.endsWith('/')) {
    throw new FerryError('ENOTFOUND', `"${dest}" could not be found on the host: no such directory`);
  }
  copyTree(from, to);
  void engine;
}

async function copyIn(engine: Engine, rec: ContainerRecord, view: View, hostPath: string, cpath: string, io: CopyIO): Promise<void> {
  const resolvedDest = resolveIn(view.host, cpath);
  const destHost = view.host(resolvedDest);
  const dst = lstatOrUndefined(destHost);
  if (hostPath === '-') {
    if (!io.stdin) throw new FerryError('EINVAL', 'cp from - needs an input stream');
    if (!dst?.isDirectory()) throw new FerryError('ENOTFOUND', `"${cpath}" is not a directory in container ${rec.config.name}: an archive from stdin is extracted into an existing directory`);
    const staging = fs.mkdtempSync(path.join(engine.paths.root, '.cp-'));
    try {
      await untarFrom(io.stdin, staging, 'on stdin');
      for (const name of fs.readdirSync(staging)) copyTree(path.join(staging, name), path.join(destHost, name));
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
    return;
  }
  const from = path.resolve(hostPath);
  if (!lstatOrUndefined(from)) throw new FerryError('ENOTFOUND', `"${hostPath}" could not be found on the host: no such file or directory`);
  if (contentsOf(hostPath)) {
    if (!dst && !lstatOrUndefined(view.host(path.posix.dirname(resolvedDest)))?.isDirectory()) {
      throw new FerryError('ENOTFOUND', `"${path.posix.dirname(cpath)}" could not be found on container ${rec.config.name}: create the directory first`);
    }
    return copyContents(from, destHost);
  }
  if (dst?.isDirectory()) {
    copyTree(from, path.join(destHost, path.basename(from)));
    return;
  }
  const parent = lstatOrUndefined(view.host(path.posix.dirname(resolvedDest)));
  if (!parent?.isDirectory() || cpath.endsWith('/')) {
    throw new FerryError('ENOTFOUND', `"${cpath.endsWith('/') ? cpath : path.posix.dirname(cpath)}" could not be found on container ${rec.config.name}: create the directory first`);
  }
  copyTree(from, destHost);
}

function tarTo(args: string[], out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.stdout!.pipe(out, { end: false });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new FerryError('EINTERNAL', `tar failed: ${err.trim().split('\n').pop()}`))));
  });
}

/** Checks an untrusted archive member by member and unpacks it into dir (owned by root). */
async function untarFrom(input: Readable, dir: string, from: string): Promise<void> {
  mkdirp(dir, 0o700);
  const child = spawn('tar', ['-x', '-f', '-', '-C', dir, '--no-same-owner'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  try {
    await pipeline(input, new LayerSanitizer({ allowDevices: false, whiteouts: false }), child.stdin!);
  } catch (e) {
    child.kill();
    await exited;
    const m = e instanceof FerryError ? e.message : (e as Error).message;
    throw new FerryError('EARCHIVE', `bad archive ${from}: ${m}; nothing was copied`);
  }
  const code = await exited;
  if (code !== 0) throw new FerryError('EARCHIVE', `bad archive ${from}: ${err.trim().split('\n').pop()}; nothing was copied`);
}
