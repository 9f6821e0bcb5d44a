// CRIU's tar (scripts/criu-tar.c, built by setup): a tmpfs of directories, links, device nodes and
// small files saved and put back with GNU tar's result, without GNU tar; anything else handed to
// GNU tar. Compared with GNU tar itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { CRIU_TOOLS } from '../../src/drivers/criu/criu.js';

const SHIM = path.join(CRIU_TOOLS, 'tar');
const GNU_TAR = '/usr/bin/tar';
// The two commands CRIU 4.2 runs (criu/filesystems.c: tmpfs_dump, tmpfs_restore).
const CREATE = ['--create', '--gzip', '--no-unquote', '--no-wildcards', '--one-file-system', '--check-links', '--preserve-permissions', '--sparse', '--numeric-owner', '--directory', '/proc/self/fd/0', '.'];
const extractArgs = (dir: string) => ['--extract', '--gzip', '--no-unquote', '--no-wildcards', '--directory', dir];
const PATH = `${CRIU_TOOLS}:/usr/bin:/bin`;

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-criu-tar-'));
}

/**
 * `tar ARGS` with stdin from a file or directory (CRIU gives the mount's directory, or the
 * image). `alone`: with no GNU tar on PATH, so that only this program can have done it.
 */
function tar(bin: string, args: string[], stdinPath: string, alone = false) {
  const fd = fs.openSync(stdinPath, 'r');
  try {
    const r = spawnSync(bin, args, { stdio: [fd, 'pipe', 'pipe'], env: { PATH: alone ? CRIU_TOOLS : PATH } });
    return { code: r.status, out: r.stdout, err: r.stderr.toString() };
  } finally {
    fs.closeSync(fd);
  }
}

function emptyDir(root: string, name: string): string {
  const d = path.join(root, name);
  fs.mkdirSync(d);
  fs.chmodSync(d, 0o1777);
  fs.chownSync(d, 12, 34);
  fs.utimesSync(d, new Date('2021-02-03T04:05:06Z'), new Date('2020-01-02T03:04:05Z'));
  return d;
}

const tree = (d: string): string[] =>
  spawnSync('find', ['.', '-printf', '%p %M %U:%G %T@ %l\\n'], { cwd: d, encoding: 'utf8' }).stdout.split('\n').sort();

function dirs(root: string, ...names: string[]): string[] {
  return names.map((n) => {
    const d = path.join(root, n);
    fs.mkdirSync(d);
    return d;
  });
}

const status = (d: string) => {
  const s = fs.statSync(d);
  return { mode: (s.mode & 0o7777).toString(8), uid: s.uid, gid: s.gid, mtime: s.mtimeMs };
};

test('criu-tar: an empty directory is archived as GNU tar archives it, byte for byte', () => {
  const root = tmp();
  try {
    const d = emptyDir(root, 'empty');
    const mine = tar(SHIM, CREATE, d, true);
    const gnu = tar(GNU_TAR, CREATE, d);
    assert.equal(mine.code, 0, mine.err);
    assert.equal(gnu.code, 0, gnu.err);
    assert.deepEqual(gunzipSync(mine.out), gunzipSync(gnu.out));
    fs.writeFileSync(path.join(root, 'mine.tgz'), mine.out);
    const list = spawnSync(GNU_TAR, ['-tvzf', path.join(root, 'mine.tgz')], { encoding: 'utf8' });
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /^drwxrwxrwt 12\/34 +0 2020-01-02 03:04 \.\/\n$/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('criu-tar: extracting it sets the directory as GNU tar does (mtime, owner, mode)', () => {
  const root = tmp();
  try {
    const archive = path.join(root, 'gnu.tgz');
    fs.writeFileSync(archive, tar(GNU_TAR, CREATE, emptyDir(root, 'empty')).out);
    const [a, b] = dirs(root, 'by-gnu', 'by-shim') as [string, string];
    const gnu = tar(GNU_TAR, extractArgs(a), archive);
    const mine = tar(SHIM, extractArgs(b), archive, true);
    assert.equal(gnu.code, 0, gnu.err);
    assert.equal(mine.code, 0, mine.err);
    assert.deepEqual(status(b), status(a));
    assert.deepEqual(status(b), { mode: '1777', uid: 12, gid: 34, mtime: Date.parse('2020-01-02T03:04:05Z') });
    assert.deepEqual(fs.readdirSync(b), []);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('criu-tar: a tree like /dev\'s is archived as GNU tar archives it, and extracted as GNU tar extracts it', () => {
  const root = tmp();
  try {
    const src = path.join(root, 'src');
    fs.mkdirSync(path.join(src, 'pts', 'deep'), { recursive: true });
    fs.mkdirSync(path.join(src, 'shm'), { mode: 0o1777 });
    fs.writeFileSync(path.join(src, 'f'), 'hello');
    fs.symlinkSync('/proc/self/fd', path.join(src, 'fd'));
    fs.symlinkSync('pts/ptmx', path.join(src, 'ptmx'));
    fs.lchownSync(path.join(src, 'ptmx'), 7, 8);
    for (const [name, mode, min] of [['null', '666', '3'], ['tty', '620', '0']] as const) {
      assert.equal(spawnSync('mknod', ['-m', mode, path.join(src, name), 'c', min === '0' ? '5' : '1', min]).status, 0);
    }
    fs.chownSync(path.join(src, 'tty'), 0, 5);
    assert.equal(spawnSync('mkfifo', [path.join(src, 'fifo')]).status, 0);
    fs.utimesSync(path.join(src, 'pts'), new Date('2020-05-05T05:05:05Z'), new Date('2020-05-05T05:05:05Z'));
    const mine = tar(SHIM, CREATE, src, true);
    const gnu = tar(GNU_TAR, CREATE, src);
    assert.equal(mine.code, 0, mine.err);
    assert.deepEqual(gunzipSync(mine.out), gunzipSync(gnu.out));
    const archive = path.join(root, 'a.tgz');
    fs.writeFileSync(archive, gnu.out);
    const [byGnu, byShim, fromPipe] = dirs(root, 'by-gnu', 'by-shim', 'from-pipe') as [string, string, string];
    assert.equal(tar(GNU_TAR, extractArgs(byGnu), archive).code, 0);
    const x = tar(SHIM, extractArgs(byShim), archive, true);
    assert.equal(x.code, 0, x.err);
    // From a pipe, which it leaves to GNU tar.
    const p = spawnSync(SHIM, extractArgs(fromPipe), { input: gnu.out, env: { PATH } });
    assert.equal(p.status, 0, p.stderr.toString());
    assert.equal(fs.readFileSync(path.join(byShim, 'f'), 'utf8'), 'hello');
    assert.equal(fs.readlinkSync(path.join(byShim, 'fd')), '/proc/self/fd');
    assert.equal(fs.lstatSync(path.join(byShim, 'ptmx')).uid, 7);
    assert.ok(fs.statSync(path.join(byShim, 'null')).isCharacterDevice());
    assert.equal(tree(byGnu).length, 11);
    assert.deepEqual(tree(byShim), tree(byGnu));
    assert.deepEqual(tree(fromPipe), tree(byGnu));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('criu-tar: hard links, long names, other commands and archives reaching through a link are GNU tar\'s', () => {
  const root = tmp();
  try {
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a'), 'x');
    fs.linkSync(path.join(src, 'a'), path.join(src, 'b'));
    fs.writeFileSync(path.join(src, 'n'.repeat(120)), 'long');
    const mine = tar(SHIM, CREATE, src);
    assert.equal(mine.code, 0, mine.err);
    assert.deepEqual(gunzipSync(mine.out), gunzipSync(tar(GNU_TAR, CREATE, src).out));
    const archive = path.join(root, 'a.tgz');
    fs.writeFileSync(archive, mine.out);
    const [dst] = dirs(root, 'dst') as [string];
    assert.equal(tar(SHIM, extractArgs(dst), archive).code, 0);
    assert.equal(fs.statSync(path.join(dst, 'b')).ino, fs.statSync(path.join(dst, 'a')).ino);
    assert.equal(fs.readFileSync(path.join(dst, 'n'.repeat(120)), 'utf8'), 'long');
    // "./l" a link out, then "./l/x" (made by GNU tar from two trees): nothing lands outside.
    const [t1, t2, outside, dst2] = dirs(root, 't1', 't2', 'outside', 'dst2') as [string, string, string, string];
    fs.symlinkSync(outside, path.join(t1, 'l'));
    fs.mkdirSync(path.join(t2, 'l'));
    fs.writeFileSync(path.join(t2, 'l', 'x'), 'escaped');
    const hostile = spawnSync(GNU_TAR, ['--create', '--gzip', '--numeric-owner', '--no-recursion', '-C', t1, './', './l', '-C', t2, './l/x']);
    assert.equal(hostile.status, 0, hostile.stderr.toString());
    fs.writeFileSync(path.join(root, 'hostile.tgz'), hostile.stdout);
    const r = tar(SHIM, extractArgs(dst2), path.join(root, 'hostile.tgz'));
    assert.notEqual(r.code, 0);
    assert.deepEqual(fs.readdirSync(outside), []);
    // Other commands, as given.
    const v = spawnSync(SHIM, ['--version'], { encoding: 'utf8', env: { PATH } });
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^tar \(GNU tar\)/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('criu-tar: a damaged or cut archive fails, the directory untouched; it never runs itself', () => {
  const root = tmp();
  try {
    const raw = gunzipSync(tar(GNU_TAR, CREATE, emptyDir(root, 'empty')).out);
    raw[100] = '7'.charCodeAt(0); // the mode, without fixing the checksum
    const archive = path.join(root, 'bad.tgz');
    const gz = spawnSync('gzip', ['-c'], { input: raw });
    fs.writeFileSync(archive, gz.stdout);
    const d = path.join(root, 'dst');
    fs.mkdirSync(d, { mode: 0o700 });
    const before = status(d);
    const r = tar(SHIM, extractArgs(d), archive);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /does not look like a tar archive/);
    assert.deepEqual(status(d), before);
    // Cut short: gzip's complaint, a failure.
    const cut = path.join(root, 'cut.tgz');
    fs.writeFileSync(cut, fs.readFileSync(archive).subarray(0, 20));
    const c = tar(SHIM, extractArgs(d), cut);
    assert.notEqual(c.code, 0);
    assert.match(c.err, /gzip: stdin: unexpected end of file/);
    assert.deepEqual(status(d), before);
    // With no other tar on PATH: one line, exit 127, no loop.
    const alone = spawnSync(SHIM, ['--version'], { encoding: 'utf8', env: { PATH: CRIU_TOOLS } });
    assert.equal(alone.status, 127);
    assert.match(alone.stderr, /^tar: no GNU tar on PATH besides .*\(install the tar package\)\n$/);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
