/**
 * Portable checkpoint archives (issue 4), the refusals: every archive or situation an import
 * must refuse, each with one `Error:` line, a non-zero exit and nothing left behind on the
 * importing host (no container, no dirs under containers/overlay/volumes, no staging dir, no
 * mount, no runc container), and nothing written outside the staging area.
 *
 * Crafted archives are made from a real export (uncompressed) with tar-stream: members are
 * edited, added or removed, and the checksums member is recomputed when the test wants the
 * archive coherent (so that only the crafted problem can be the reason for the refusal).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pack, readEntries, type Entry, type Hdr } from '../helpers/tarcraft.js';
import { FAST_LOOPER, FERRY_BIN, Host, assertCleanError, eventually, lastCount, type Result, importFootprint } from '../helpers/ferry.js';
import { memberHash } from '../../src/drivers/archive/archive.js';

const A = new Host('refA'); // exports
const B = new Host('refB'); // imports
const C = new Host('refC'); // imports, but has no image
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-ref-'));
/** A directory outside every host that crafted archives aim at; it must stay empty. */
const outside = path.join(tmp, 'outside');
const hostDir = path.join(tmp, 'hostdir');
const BASE = path.join(tmp, 'base.tar');
const BASE_ZST = path.join(tmp, 'base.tar.zst');
const BIND = path.join(tmp, 'bind.tar');

before(async () => {
  fs.mkdirSync(outside);
  fs.mkdirSync(hostDir);
  fs.writeFileSync(path.join(hostDir, 'on-host'), 'host file\n');
  await Promise.all([A.importBusybox(), B.importBusybox(), C.run(['images'])]);
  await A.ok(['run', '-d', '--name', 'src', '--network', 'none', '-v', 'data:/data', 'busybox', 'sh', '-c', `echo v > /data/f; echo w > /written; ${FAST_LOOPER[2]}`]);
  await A.ok(['run', '-d', '--name', 'bnd', '--network', 'none', '-v', `${hostDir}:/mnt`, 'busybox', ...FAST_LOOPER]);
  await eventually(async () => (await lastCount(A, 'src')) >= 2 && (await lastCount(A, 'bnd')) >= 2);
  await A.ok(['container', 'checkpoint', 'src', '-R', '-e', BASE, '-c', 'none']);
  await A.ok(['container', 'checkpoint', 'src', '-R', '-e', BASE_ZST]);
  await A.ok(['container', 'checkpoint', 'bnd', '-e', BIND, '-c', 'none']);
});
after(async () => {
  await A.destroy();
  await B.destroy();
  await C.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// Containers run with --network none: the "hosts" share this machine, where a same-name import
// keeps the container's IP address, which another ferry root may hold; networking has its own
// tests.

// ------------------------------------------------------------------------- crafting archives


/** The sha256 Ferry's archive format keeps per member (the format's own definition). */
function memberSum(h: Hdr, data: Buffer): string {
  return memberHash(h as Parameters<typeof memberHash>[0]).update(data).digest('hex');
}

const CHECKSUMS = 'checksums.json';

/**
 * Writes entries as an uncompressed archive. With fixSums the checksums member is recomputed
 * from the members as a reader sees them (packed, then parsed again); without, the original
 * checksums member is kept as it was.
 */
async function writeArchive(file: string, entries: Entry[], fixSums = true): Promise<string> {
  if (!fixSums) {
    fs.writeFileSync(file, await pack(entries));
    return file;
  }
  const members = entries.filter((e) => e.header.name !== CHECKSUMS);
  const reparsed = path.join(tmp, 'reparse.tar');
  fs.writeFileSync(reparsed, await pack(members));
  const sums: Record<string, string> = {};
  for (const e of await readEntries(reparsed)) {
    const key = e.header.name.split('/').filter((p: string) => p && p !== '.').join('/');
    sums[key] = memberSum(e.header, e.data);
  }
  fs.rmSync(reparsed);
  const body = Buffer.from(JSON.stringify({ algorithm: 'sha256', members: sums }, null, 2) + '\n');
  const sumEntry: Entry = { header: { name: CHECKSUMS, type: 'file', mode: 0o600, mtime: new Date(), size: body.length }, data: body };
  fs.writeFileSync(file, await pack([...members, sumEntry]));
  return file;
}

let seq = 0;
/** The base archive with `edit` applied to its members; checksums fixed unless told not to. */
async function craft(edit: (entries: Entry[]) => Entry[] | void, opts: { fixSums?: boolean; from?: string } = {}): Promise<string> {
  const entries = await readEntries(opts.from ?? BASE);
  const edited = edit(entries) ?? entries;
  return writeArchive(path.join(tmp, `crafted-${++seq}.tar`), edited, opts.fixSums ?? true);
}

/** Inserts new members just before the checksums member (where a writer would put them). */
function insert(entries: Entry[], ...add: Entry[]): Entry[] {
  const i = entries.findIndex((e) => e.header.name === CHECKSUMS);
  return [...entries.slice(0, i), ...add, ...entries.slice(i)];
}

const file = (name: string, content = 'evil\n', mode = 0o644): Entry => ({
  header: { name, type: 'file', mode, uid: 0, gid: 0, mtime: new Date(), size: Buffer.byteLength(content) },
  data: Buffer.from(content),
});
const special = (name: string, h: Partial<Hdr>): Entry => ({
  header: { name, mode: 0o777, uid: 0, gid: 0, mtime: new Date(), size: 0, ...h },
  data: Buffer.alloc(0),
});
const editJson = (entries: Entry[], name: string, fn: (doc: any) => void): void => {
  const e = entries.find((x) => x.header.name === name)!;
  const doc = JSON.parse(e.data.toString());
  fn(doc);
  e.data = Buffer.from(JSON.stringify(doc, null, 2) + '\n');
  e.header.size = e.data.length;
};

// ------------------------------------------------------------------------- what must not change

const footprint = importFootprint;

/** Imports `archive` on h expecting a clean refusal matching re, and checks nothing changed. */
async function refused(h: Host, archive: string, re: RegExp, extra: string[] = []): Promise<Result> {
  const before = await footprint(h);
  const r = await h.fails(['container', 'restore', '--import', archive, ...extra], { timeoutMs: 30_000 });
  if (process.env.ARCHIVE_TEST_VERBOSE) process.stderr.write(`refused: ${r.stderr}`);
  assertCleanError(r, re);
  assert.deepEqual(await footprint(h), before, `nothing left behind after: ${r.stderr.trim()}`);
  assert.deepEqual(fs.readdirSync(outside), [], 'nothing written outside the staging area');
  return r;
}

// ------------------------------------------------------------------------- tests

test('the crafting itself is sound: the base archive, rewritten with fresh checksums, imports', async () => {
  const same = await craft(() => undefined);
  await B.ok(['container', 'restore', '--import', same, '-n', 'sanity']);
  await eventually(async () => (await lastCount(B, 'sanity')) >= 3);
  assert.equal(fs.readFileSync(path.join(B.root, 'volumes', 'data', '_data', 'f'), 'utf8'), 'v\n');
  await B.ok(['rm', '-f', 'sanity']);
  await B.ok(['volume', 'rm', 'data']);
});

test('an archive in format 1 (sha256 of every member\'s bytes) compressed with zstd, as earlier Ferry versions wrote them, still imports', async () => {
  const entries = await readEntries(BASE);
  assert.equal(JSON.parse(entries[0]!.data.toString()).format, 1, '-c none writes format 1');
  const old = path.join(tmp, 'format1.tar.zst');
  fs.writeFileSync(old, spawnSync('zstd', ['-q', '-c'], { input: fs.readFileSync(BASE), maxBuffer: 1 << 28 }).stdout);
  await B.ok(['container', 'restore', '--import', old, '-n', 'old']);
  await eventually(async () => (await lastCount(B, 'old')) >= 3);
  await B.ok(['rm', '-f', 'old']);
  await B.ok(['volume', 'rm', 'data']);
});

test('refused: the base image is missing on the importing host (the error names the image)', async () => {
  await refused(C, BASE, /needs image localhost\/busybox:latest.*import it first/);
  await refused(C, BASE_ZST, /needs image localhost\/busybox/);
});

test('refused: the name is already in use', async () => {
  await B.ok(['run', '-d', '--name', 'src', '--network', 'none', 'busybox', 'sleep', '1000']);
  await B.ok(['run', '-d', '--name', 'other', '--network', 'none', 'busybox', 'sleep', '1000']);
  await refused(B, BASE, /name "src" is already in use.*-n/);
  await refused(B, BASE_ZST, /name "other" is already in use/, ['-n', 'other']);
  await refused(B, BASE, /invalid container name/, ['-n', '../x']);
  await B.ok(['rm', '-f', 'src', 'other']);
});

test('refused from the header: other CRIU version, other CPU, newer format (coherent checksums or not)', async () => {
  const hdr = 'ferry-archive.json';
  await refused(B, await craft((es) => editJson(es, hdr, (d) => (d.criuVersion = '3.17'))), /CRIU 3\.17.*same CRIU version/);
  await refused(B, await craft((es) => editJson(es, hdr, (d) => (d.arch = 'arm64'))), /made on arm64.*this host is/);
  await refused(B, await craft((es) => editJson(es, hdr, (d) => (d.format = 99))), /format version 99.*upgrade ferry/);
  await refused(B, await craft((es) => editJson(es, hdr, (d) => (d.kind = 'something-else'))), /not a ferry checkpoint archive/);
  // The header is judged as soon as it is read, before the checksums at the end.
  await refused(B, await craft((es) => editJson(es, hdr, (d) => (d.criuVersion = '3.17')), { fixSums: false }), /CRIU 3\.17/);
  // The checkpoint's own metadata is checked too (an edited header cannot smuggle it in).
  await refused(B, await craft((es) => editJson(es, 'checkpoint/ferry-checkpoint.json', (d) => (d.criuVersion = '3.17'))), /CRIU 3\.17/);
});

test('refused as tampered: a member edited, added or removed without fixing the checksums', async () => {
  const cmd = await craft((es) => editJson(es, 'container.json', (d) => (d.config.command = ['sh', '-c', 'echo pwned'])), { fixSums: false });
  await refused(B, cmd, /member "container\.json" does not match its checksum/);
  const log = await craft(
    (es) => {
      const e = es.find((x) => x.header.name === 'ctr.log')!;
      e.data = Buffer.concat([e.data, Buffer.from('2024-01-01T00:00:00Z stdout F forged\n')]);
    },
    { fixSums: false },
  );
  await refused(B, log, /"ctr\.log" does not match its checksum/);
  await refused(B, await craft((es) => insert(es, file('rootfs/extra')), { fixSums: false }), /"rootfs\/extra" is not in the checksum list/);
  await refused(B, await craft((es) => es.filter((e) => e.header.name !== 'checkpoint/inventory.img'), { fixSums: false }), /"checkpoint\/inventory\.img" is missing/);
  await refused(B, await craft((es) => es.filter((e) => e.header.name !== CHECKSUMS), { fixSums: false }), /truncated|no checksums/);
});

test('refused: truncated archives (compressed and not)', async () => {
  const zst = fs.readFileSync(BASE_ZST);
  const raw = fs.readFileSync(BASE);
  const cut = (buf: Buffer, frac: number, name: string): string => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, buf.subarray(0, Math.floor(buf.length * frac)));
    return f;
  };
  await refused(B, cut(zst, 0.6, 'cut.tar.zst'), /bad checkpoint archive: .*(corrupt|truncated)/);
  await refused(B, cut(raw, 0.5, 'cut.tar'), /bad checkpoint archive: .*(corrupt|truncated)/);
  // Cut on a block boundary just before the checksums member: a well-formed but short tar.
  const at = raw.indexOf(Buffer.from(`${CHECKSUMS}\0`));
  assert.ok(at > 0 && at % 512 === 0);
  fs.writeFileSync(path.join(tmp, 'nosums.tar'), raw.subarray(0, at));
  await refused(B, path.join(tmp, 'nosums.tar'), /bad checkpoint archive: .*truncated/);
  fs.writeFileSync(path.join(tmp, 'empty.tar'), '');
  await refused(B, path.join(tmp, 'empty.tar'), /bad checkpoint archive/);
  fs.writeFileSync(path.join(tmp, 'junk.tar.zst'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5, 6, 7, 8]));
  await refused(B, path.join(tmp, 'junk.tar.zst'), /bad checkpoint archive/);
});

test('refused: a flipped byte inside a checkpoint image (checksum mismatch)', async () => {
  const raw = Buffer.from(fs.readFileSync(BASE));
  const at = raw.indexOf(Buffer.from('checkpoint/pages-1.img\0'));
  assert.ok(at >= 0 && at % 512 === 0, 'found the member header');
  const size = parseInt(raw.subarray(at + 124, at + 136).toString().replace(/\0.*$/, '').trim(), 8);
  assert.ok(size > 200);
  raw[at + 512 + 100] = raw[at + 512 + 100]! ^ 0xff;
  const f = path.join(tmp, 'flipped.tar');
  fs.writeFileSync(f, raw);
  await refused(B, f, /member "checkpoint\/pages-1\.img" does not match its checksum/);
});

test('refused: a flipped byte in the middle of a zstd archive (format 2: zstd\'s checksum), or one recompressed without that checksum', async () => {
  const zst = fs.readFileSync(BASE_ZST);
  assert.ok(zst[4]! & 0x04, 'the export\'s zstd frame carries a checksum');
  const flipped = Buffer.from(zst);
  const mid = Math.floor(zst.length / 2);
  flipped[mid] = flipped[mid]! ^ 0x04;
  fs.writeFileSync(path.join(tmp, 'flipped.tar.zst'), flipped);
  await refused(B, path.join(tmp, 'flipped.tar.zst'), /bad checkpoint archive: .*(corrupt|truncated|checksum)/);
  // Its content intact, but without zstd's checksum nothing vouches for its bytes.
  const plain = spawnSync('zstd', ['-q', '-d', '-c', BASE_ZST], { maxBuffer: 1 << 28 }).stdout;
  fs.writeFileSync(path.join(tmp, 'nocheck.tar.zst'), spawnSync('zstd', ['-q', '-c', '--no-check'], { input: plain, maxBuffer: 1 << 28 }).stdout);
  await refused(B, path.join(tmp, 'nocheck.tar.zst'), /not a zstd stream with a checksum/);
});

test('refused: absolute paths and ".." in member names (nothing written outside)', async () => {
  await refused(B, await craft((es) => insert(es, file(path.join(outside, 'abs')))), /absolute path/);
  await refused(B, await craft((es) => insert(es, file('rootfs/../../../../../../../..' + path.join(outside, 'dotdot')))), /"\.\."/);
  await refused(B, await craft((es) => insert(es, file('checkpoint/../../escaped-cp'))), /"\.\."/);
  await refused(B, await craft((es) => insert(es, file('volumes/data/../../../escaped-vol'))), /"\.\."/);
  for (const p of [path.join(B.root, 'escaped-cp'), path.join(B.dir, 'escaped-cp'), path.join(B.root, 'escaped-vol'), path.join(B.dir, 'escaped-vol')]) {
    assert.ok(!fs.existsSync(p), `${p} not written`);
  }
});

test('refused: symlink escapes (a member below a symlink, directly or through a hard link)', async () => {
  // rootfs/evil -> <outside>, then rootfs/evil/passwd
  await refused(B, await craft((es) => insert(es, special('rootfs/evil', { type: 'symlink', linkname: outside }), file('rootfs/evil/passwd'))), /below the symbolic link "rootfs\/evil"/);
  // the same with a relative target climbing out of the tree
  const rel = path.relative(path.join(B.root, '.import-x', 'rootfs'), outside);
  await refused(B, await craft((es) => insert(es, special('rootfs/rel', { type: 'symlink', linkname: rel }), file('rootfs/rel/passwd'))), /below the symbolic link/);
  // a directory member below the symlink, in a volume
  await refused(B, await craft((es) => insert(es, special('volumes/data/ln', { type: 'symlink', linkname: outside }), special('volumes/data/ln/sub/', { type: 'directory', mode: 0o755 }))), /below the symbolic link/);
  // a hard link to the symlink is a second name for it: a member below that must not escape either
  await refused(
    B,
    await craft((es) => insert(es, special('rootfs/evil2', { type: 'symlink', linkname: outside }), special('rootfs/hl', { type: 'link', linkname: 'rootfs/evil2' }), file('rootfs/hl/passwd'))),
    /below the symbolic link "rootfs\/hl"/,
  );
  assert.deepEqual(fs.readdirSync(outside), []);
});

test('refused: hard links pointing outside their tree', async () => {
  const target = path.join(tmp, 'hostfile');
  fs.writeFileSync(target, 'secret\n');
  await refused(B, await craft((es) => insert(es, special('rootfs/hl', { type: 'link', linkname: 'checkpoint/inventory.img' }))), /hard link "rootfs\/hl" points outside its tree/);
  await refused(B, await craft((es) => insert(es, special('rootfs/hl', { type: 'link', linkname: 'volumes/data/f' }))), /points outside its tree/);
  await refused(B, await craft((es) => insert(es, special('rootfs/hl', { type: 'link', linkname: target }))), /absolute path|outside its tree/);
  await refused(B, await craft((es) => insert(es, special('rootfs/hl', { type: 'link', linkname: 'rootfs/../../../hostfile' }))), /"\.\."|outside its tree/);
  // to a member that does not come earlier in the archive (GNU tar would resolve it on the host)
  await refused(B, await craft((es) => insert(es, special('rootfs/hl', { type: 'link', linkname: 'rootfs/not-there' }))), /points outside its tree/);
  assert.equal(fs.readFileSync(target, 'utf8'), 'secret\n');
  assert.equal(fs.statSync(target).nlink, 1, 'no hard link made to the file outside');
});

test('refused: device nodes other than a 0/0 whiteout, and other special files', async () => {
  await refused(B, await craft((es) => insert(es, special('rootfs/dev/sda', { type: 'character-device', devmajor: 8, devminor: 0, mode: 0o660 }))), /device node/);
  await refused(B, await craft((es) => insert(es, special('rootfs/mem', { type: 'character-device', devmajor: 1, devminor: 1, mode: 0o666 }))), /device node/);
  await refused(B, await craft((es) => insert(es, special('rootfs/blk', { type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660 }))), /block-device/);
  await refused(B, await craft((es) => insert(es, special('rootfs/fifo', { type: 'fifo', mode: 0o644 }))), /fifo/);
  // a whiteout is only meaningful in the rootfs diff
  await refused(B, await craft((es) => insert(es, special('volumes/data/wh', { type: 'character-device', devmajor: 0, devminor: 0, mode: 0 }))), /device node/);
  // CRIU images are regular files only
  await refused(B, await craft((es) => insert(es, special('checkpoint/ln', { type: 'symlink', linkname: '/etc/passwd' }))), /CRIU images are regular files/);
});

test('refused: unexpected members (top level, unknown section, bad volume name, header not first)', async () => {
  await refused(B, await craft((es) => insert(es, file('evil.sh', '#!/bin/sh\n', 0o755))), /unexpected member "evil\.sh"/);
  await refused(B, await craft((es) => insert(es, file('etc/passwd'))), /unexpected member "etc\/passwd"/);
  await refused(B, await craft((es) => insert(es, file('volumes/-bad/f'))), /unexpected member/);
  await refused(B, await craft((es) => [es[1]!, es[0]!, ...es.slice(2)]), /does not start with ferry-archive\.json/);
  await refused(B, await craft((es) => [...es, file('rootfs/after-sums')], { fixSums: false }), /follows the checksums/);
});

test('refused: host bind mounts unless --allow-host-mounts; unknown mount types always', async () => {
  await refused(B, BIND, new RegExp(`bind-mounts host path ${hostDir}.*--allow-host-mounts`));
  // A mount of a made-up type must not slip through as a bind mount of its source.
  const weird = await craft((es) =>
    editJson(es, 'container.json', (d) => d.config.mounts.push({ type: 'weird', source: outside, destination: '/mnt', options: [] })),
  );
  await refused(B, weird, /unknown type "weird"/);
  await refused(B, weird, /unknown type "weird"/, ['--allow-host-mounts']);
  // Trusted: it restores, with the host dir mounted.
  await B.ok(['container', 'restore', '--import', BIND, '--allow-host-mounts']);
  await eventually(async () => (await lastCount(B, 'bnd')) >= 3);
  assert.equal(await B.ok(['exec', 'bnd', 'cat', '/mnt/on-host']), 'host file');
  await B.ok(['rm', '-f', 'bnd']);
  assert.deepEqual(fs.readdirSync(outside), []);
});

test('refused through a pipe: the importer says why and exits; the exporter fails and keeps its checkpoint', async () => {
  await A.ok(['run', '-d', '--name', 'p', '--network', 'none', 'busybox', ...FAST_LOOPER]);
  await eventually(async () => (await lastCount(A, 'p')) >= 2);
  const before = await footprint(C);
  const exp = spawn(FERRY_BIN, [...A.args(), 'container', 'checkpoint', 'p', '-e', '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const imp = spawn(FERRY_BIN, [...C.args(), 'container', 'restore', '-i', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  exp.stdout!.pipe(imp.stdin!);
  imp.stdin!.on('error', () => undefined);
  const result = (c: ReturnType<typeof spawn>): Promise<Result> =>
    new Promise((resolve) => {
      let stdout = '';
      let stderr = '';
      c.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
      c.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
      const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
      c.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
    });
  const [e, i] = await Promise.all([result(exp), result(imp)]);
  assertCleanError(i, /needs image localhost\/busybox/);
  assert.deepEqual(await footprint(C), before);
  // The archive is small enough to fit in the pipe, so the export may succeed or fail;
  // either way the container is checkpointed on A and restores in place.
  if (e.code !== 0) assertCleanError(e, /exporting p failed.*checkpoint is kept/);
  assert.equal((await A.inspect('p')).State.Checkpointed, true);
  const n = await lastCount(A, 'p');
  await A.ok(['container', 'restore', 'p']);
  await eventually(async () => (await lastCount(A, 'p')) >= n + 2);
});

test('an archive that passes every check but does not restore (a CRIU image missing): nothing is left', async () => {
  // Coherent checksums, so only CRIU can find the problem, after the container was placed.
  const broken = await craft((es) => es.filter((e) => !/^checkpoint\/pages-\d+\.img$/.test(e.header.name)));
  const r = await refused(B, broken, /restore of broken failed.*nothing was created/, ['-n', 'broken']);
  const log = r.stderr.match(/details: ([^)\s]+)/)?.[1];
  if (log) {
    assert.ok(fs.existsSync(log), `the log the error points at exists: ${log}`);
    assert.ok(!log.startsWith(B.root), 'and is not inside the removed container');
    fs.rmSync(log, { force: true });
  }
  assert.equal(fs.existsSync(path.join(B.root, 'volumes', 'data')), false, 'the volume the import created is gone again');
});
