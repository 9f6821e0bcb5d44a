import { spawn } from 'node:child_process';
import { randomBytes } from './lazy.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from './errors.js';

/**
 * Writes a file so that readers see either the old or the new content, never a mix (a process
 * killed half-way leaves the old one). durable (the default) also makes it survive a crash of
 * the machine (fsync of the file and its directory, ~3-6 ms here); files made anew at every
 * start (a container's bundle) do without: nothing runs from them after a reboot until they are.
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644, durable = true): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (durable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  if (durable) fsyncDir(path.dirname(file));
}

export function writeJsonAtomic(file: string, value: unknown, mode = 0o644, durable = true): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n', mode, durable);
}

export function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

export function readJsonIfExists<T>(file: string): T | undefined {
  try {
    return readJson<T>(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Renames a fully written directory into place (the commit point of a multi-file write). */
export function commitDir(tmpDir: string, finalDir: string): void {
  fs.rmSync(finalDir, { recursive: true, force: true });
  fs.renameSync(tmpDir, finalDir);
  fsyncDir(path.dirname(finalDir));
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export function mkdirp(dir: string, mode = 0o755): string {
  fs.mkdirSync(dir, { recursive: true, mode });
  return dir;
}

/**
 * Sum of the apparent sizes of regular files below dir (no links followed). A tree that
 * changes meanwhile is fine: what is gone by the time it is looked at counts as nothing.
 */
export function duBytes(dir: string): number {
  let total = 0;
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        try {
          total += fs.lstatSync(p).size;
        } catch {
          /* gone meanwhile */
        }
      }
    }
  };
  walk(dir);
  return total;
}

/** What discardDir() leaves for a background `rm` in trashParent: `.trash-PID-RANDOM`. */
export const TRASH_PREFIX = '.trash-';

/**
 * Deletes a directory tree without waiting for it: renames it into trashParent (on the same
 * filesystem; from then on it is gone from where it was) and leaves the deleting to a detached
 * `rm`, so a command need not wait for a large checkpoint's pages to be freed. Whoever sweeps
 * trashParent removes what a killed `rm` left (sweepTrash). Where the rename or the spawn fails
 * the tree is deleted here, at once.
 */
export function discardDir(dir: string, trashParent: string): void {
  const trash = path.join(trashParent, `${TRASH_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    fs.renameSync(dir, trash);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fs.rmSync(dir, { recursive: true, force: true });
    return;
  }
  try {
    const child = spawn('rm', ['-rf', '--one-file-system', '--', trash], { detached: true, stdio: 'ignore' });
    child.on('error', () => fs.rmSync(trash, { recursive: true, force: true }));
    child.unref();
  } catch {
    fs.rmSync(trash, { recursive: true, force: true });
  }
}

/** Deletes trash that no `rm` can still be working on: moved there over a minute ago. */
export function sweepTrash(trashParent: string, names: string[], now = Date.now()): void {
  for (const n of names) {
    if (!n.startsWith(TRASH_PREFIX)) continue;
    const p = path.join(trashParent, n);
    try {
      if (now - fs.lstatSync(p).ctimeMs > 60_000) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      /* gone meanwhile */
    }
  }
}

const MAX_LINKS = 40;

/**
 * Resolves a path inside a root (a container's; absolute, or relative to /) to a symlink-free
 * absolute path in that root, never above it: host maps a path in the root to where the host
 * sees it. The last component is followed too unless `followLast` is false; a missing tail is
 * kept as it is (the caller creates it). Too many links: EINVAL.
 */
export function resolveIn(host: (p: string) => string, p: string, followLast = true): string {
  const todo = p.split('/').filter((s) => s && s !== '.');
  const done: string[] = [];
  let links = 0;
  while (todo.length) {
    const name = todo.shift()!;
    if (name === '..') {
      done.pop(); // never above the root
      continue;
    }
    const cur = `/${[...done, name].join('/')}`;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(host(cur));
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink() && (todo.length || followLast)) {
      if (++links > MAX_LINKS) throw new FerryError('EINVAL', `too many levels of symbolic links in ${p}`);
      const target = fs.readlinkSync(host(cur));
      if (target.startsWith('/')) done.length = 0;
      todo.unshift(...target.split('/').filter((s) => s && s !== '.'));
      continue;
    }
    done.push(name);
  }
  return `/${done.join('/')}`;
}
