// CRIU's side of a failure and of a success, read without CRIU: the log diagnosis that names
// the cause of a failed dump or restore, and the decoder of the stats files CRIU leaves behind.
// The log lines are CRIU 4.2's own (level, source file and prefix as CRIU prints them); the
// fixtures under test/fixtures/criu are the stats a real CRIU 4.2.1 dump and restore of a
// `sleep` process wrote.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRIU_CONFIG_FILE, chrDumpable, diagnoseCriuLog, findUndumpable, networkLockLines, writeCriuConfig } from '../../src/drivers/criu/criu.js';
import { readDumpStats, readRestoreStats } from '../../src/drivers/criu/stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIXTURES = path.join(REPO, 'test/fixtures/criu');

function tmpdir(t: { after: (fn: () => void) => void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-criu-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// ------------------------------------------------------------------------- log diagnosis

/** CRIU could not raise its own open-files limit: logged as an error on runs that succeed too. */
const RLIMIT = "(00.066438) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted";

/** A CRIU log around the given error lines: ordinary lines before, the rlimit line, the final verdict after. */
function log(errors: string[], verdict = '(00.049775) Error (criu/cr-dump.c:1975): Dumping FAILED.'): string {
  return [
    '(00.000000) Version: 4.2.1 (gitid 0)',
    '(00.000034) Running on ferry-host Linux 6.1.0 #1 SMP x86_64',
    '(00.000051) Will dump/restore TCP connections',
    RLIMIT,
    '(00.031386) Dumping processes (pid: 4242 comm: app)',
    ...errors,
    verdict,
    '',
  ].join('\n');
}

test('diagnoseCriuLog names every cause it knows, from CRIU\'s own lines', () => {
  const cases: [string, string[], string][] = [
    [
      'established TCP',
      ['(00.049391) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.', '(00.049404) Error (criu/cr-dump.c:1545): Dump files (pid: 4242) failed with -1'],
      'the container holds an established TCP connection: add --tcp-established',
    ],
    [
      'file outside the mounts',
      ["(00.052011) Error (criu/files-reg.c:1790): Can't lookup mount=1243 for fd=3 path=/data/app.db"],
      "a regular file is open outside the container's filesystems",
    ],
    [
      'external UNIX socket',
      ['(00.048214) unix: \tRunaway socket: ino 161857 peer_ino 161856 family    1 type    1 state  1 name /run/app.sock', '(00.048215) Error (criu/sk-unix.c:874): unix: External socket is used. Consider using --ext-unix-sk option.'],
      'the container has a UNIX socket connected outside it: add --ext-unix-sk',
    ],
    [
      'half of a stream UNIX connection',
      ["(00.048302) Error (criu/sk-unix.c:881): unix: Can't dump half of stream unix connection. name: /run/app.sock; peer name: (null)"],
      'the container has a UNIX socket connected outside it: add --ext-unix-sk',
    ],
    [
      'network lock failed',
      ['(00.061234) Error (criu/net.c:3332): net: Locking network failed: iptables-restore returned 1. This may be connected to disabled CONFIG_NETFILTER_XT_MARK kernel build config option.'],
      "CRIU could not lock the container's network: iptables is missing or failed (run `npm run setup`)",
    ],
    [
      'iptables-restore missing',
      ['Error (criu/util.c:642): execvp("iptables-restore", ...) failed: No such file or directory'],
      "CRIU could not lock the container's network: iptables is missing or failed (run `npm run setup`)",
    ],
    [
      'file lock',
      ['(00.060793) Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! You can try --file-locks to dump them.'],
      'a process holds a file lock: add --file-locks',
    ],
    [
      'no soft-dirty tracking',
      ['(00.002345) Error (criu/config.c:1130): Tracking memory is not available. Consider omitting --track-mem option.'],
      'this kernel lacks soft-dirty memory tracking, which pre-copy needs',
    ],
    [
      'vDSO of another CRIU',
      ['(00.118811)      1: Error (criu/vdso.c:401): vdso: Unexpected rt vDSO area bounds'],
      'the checkpoint was made by a different CRIU version than the one restoring it',
    ],
    [
      'address in use',
      ["(00.201145)      1: Error (criu/sk-inet.c:1059): inet: Can't bind inet socket (id 7): Address already in use"],
      'an address the container listened on is already in use',
    ],
    [
      'PID taken',
      ["(00.025436) Error (criu/cr-restore.c:1237): Can't fork for 11353: File exists"],
      'a process ID the checkpoint needs is already taken on this host',
    ],
    [
      'terminal',
      ['(00.049720) Error (criu/tty.c:410): tty: Found slave peer index 0 without correspond master peer'],
      'the container has a terminal: add --shell-job',
    ],
    [
      'lazy pages pipe size',
      ['(00.310002) Error (criu/page-pipe.c:424): page-pipe: splice: -1: Bad file descriptor'],
      'lazy pages need fs.pipe-max-size >= 4194304: run `npm run setup`',
    ],
    [
      'lazy pages transfer',
      ['(00.410000) Error (criu/cr-dump.c:2036): Lazy pages transfer FAILED.'],
      'lazy pages need fs.pipe-max-size >= 4194304: run `npm run setup`',
    ],
  ];
  for (const [label, errors, cause] of cases) {
    const d = diagnoseCriuLog(log(errors));
    assert.equal(d.cause, cause, label);
    // With a cause, firstError is the first error line as logged (the rlimit line is never it).
    assert.equal(d.firstError, errors.find((l) => /Error|Can't|FAIL/.test(l)), label);
  }
});

test('diagnoseCriuLog: the first cause in its list wins, whatever the order of the lines', () => {
  const tty = '(00.049720) Error (criu/tty.c:410): tty: Found slave peer index 0 without correspond master peer';
  const tcp = '(00.049391) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.';
  const d = diagnoseCriuLog(log([tty, tcp]));
  assert.equal(d.cause, 'the container holds an established TCP connection: add --tcp-established');
  assert.equal(d.firstError, tty);
});

test('diagnoseCriuLog falls back to the first error line, without its timestamp', () => {
  assert.deepEqual(diagnoseCriuLog(log(['(00.031000) Error (criu/cr-dump.c:1681): A session leader of 7(7) is outside of its pid namespace'])), {
    firstError: 'Error (criu/cr-dump.c:1681): A session leader of 7(7) is outside of its pid namespace',
  });
  // A restore's task prefix stays: it says which process failed.
  assert.deepEqual(diagnoseCriuLog(log(["(00.113004)      1: Error (criu/cr-restore.c:1539): Pid 7 do not match expected 8"], '(00.113201) Error (criu/cr-restore.c:2331): Restoring FAILED.')), {
    firstError: '1: Error (criu/cr-restore.c:1539): Pid 7 do not match expected 8',
  });
  // Only the verdict: that is the first error.
  assert.deepEqual(diagnoseCriuLog(log([])), { firstError: 'Error (criu/cr-dump.c:1975): Dumping FAILED.' });
  // runc's own line, which the engine appends to the log, counts as well.
  assert.deepEqual(diagnoseCriuLog('time="2026-01-01T00:00:00Z" level=error msg="criu failed: type NOTIFY errno 0"\n'), {
    firstError: 'time="2026-01-01T00:00:00Z" level=error msg="criu failed: type NOTIFY errno 0"',
  });
});

test('diagnoseCriuLog never takes the harmless RLIMIT_NOFILE line for the cause', () => {
  assert.deepEqual(diagnoseCriuLog(RLIMIT), { firstError: undefined });
  assert.deepEqual(diagnoseCriuLog(`${RLIMIT}\n(00.060000) Dumping finished successfully\n`), { firstError: undefined });
  // Its words ("Can't", "self", "setup") match no cause either when a real error follows.
  const d = diagnoseCriuLog(`${RLIMIT}\n(00.070001) Error (criu/cr-dump.c:1975): Dumping FAILED.\n`);
  assert.deepEqual(d, { firstError: 'Error (criu/cr-dump.c:1975): Dumping FAILED.' });
  assert.deepEqual(diagnoseCriuLog(''), { firstError: undefined });
});

test('diagnoseCriuLog blames CRIU\'s error lines, never an informational line that mentions an error', () => {
  // nginx's workers (www-data) on a host where root lacks CAP_SYS_RESOURCE: the log names
  // nginx's error.log in an fd dump line long before the real error.
  const nginx = [
    '(00.041200) Dumping path for 2 fd via self 20 [/var/log/nginx/error.log]',
    '(00.041300) Dumping path for 5 fd via self 20 [/var/log/nginx/error.log]',
    "(00.051200) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted",
    '(00.051300) Error (criu/cr-dump.c:1557): Dump core (pid: 31) failed with -1',
    '(00.070001) Error (criu/cr-dump.c:1975): Dumping FAILED.',
  ].join('\n');
  const d = diagnoseCriuLog(nginx);
  assert.match(d.cause ?? '', /resource limits of a process of another user.*CAP_SYS_RESOURCE.*npm run setup/);
  assert.equal(d.firstError, "(00.051200) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted");
  // Without a known cause, the first of CRIU's error lines is the one shown.
  assert.deepEqual(diagnoseCriuLog(['(00.041200) Dumping path for 2 fd via self 20 [/var/log/nginx/error.log]', '(00.051300) Error (criu/cr-dump.c:1557): Dump core (pid: 31) failed with -1'].join('\n')), {
    firstError: 'Error (criu/cr-dump.c:1557): Dump core (pid: 31) failed with -1',
  });
});

test('diagnoseCriuLog: "tty" and "pty" inside other words are no terminal', () => {
  for (const line of [
    '(00.052100) Error (criu/mount-v2.c:1186): mnt-v2: Failed to create empty mntns',
    '(00.004000) Error (criu/net.c:2905): net: Unable to dump more than one netns if the --emptyns is set',
    '(00.000900) Error (criu/crtools.c:359): To view an image use the "crit decode -i $name --pretty" command.',
  ]) {
    assert.equal(diagnoseCriuLog(log([line])).cause, undefined, line);
  }
  // A terminal named by its device is still one.
  assert.equal(
    diagnoseCriuLog(log(["(00.041000) Error (criu/tty.c:725): tty: Can't open slave tty /dev/pts/3"])).cause,
    'the container has a terminal: add --shell-job',
  );
  assert.equal(diagnoseCriuLog(log(["(00.041000) Error (criu/tty.c:991): tty: Can't open master pty 0x11 (index 3)"])).cause, 'the container has a terminal: add --shell-job');
});

// ------------------------------------------------------------------------- stats

const IMG_SERVICE_MAGIC = 0x55105940;
const IMG_COMMON_MAGIC = 0x54564319;
const STATS_MAGIC = 0x57093306;

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A varint field (wire type 0). */
const vfield = (num: number, v: number): Buffer => Buffer.concat([varint(num * 8), varint(v)]);
/** A length-delimited field (wire type 2). */
const lfield = (num: number, b: Buffer): Buffer => Buffer.concat([varint(num * 8 + 2), varint(b.length), b]);

/** A stats image as CRIU writes it: magic pair, then one u32-length-prefixed StatsEntry. */
function statsImage(entry: Buffer, magic = IMG_SERVICE_MAGIC): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt32LE(magic, 0);
  h.writeUInt32LE(STATS_MAGIC, 4);
  h.writeUInt32LE(entry.length, 8);
  return Buffer.concat([h, entry]);
}

function write(dir: string, name: string, b: Buffer): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, b);
  return f;
}

// dump_stats_entry (images/stats.proto): freezing_time 1, frozen_time 2, memdump_time 3,
// memwrite_time 4 (uint32); pages_scanned 5, pages_skipped_parent 6, pages_written 7 (uint64);
// irmap_resolve 8; pages_lazy 9; page_pipes 10, page_pipe_bufs 11, shpages_* 12-14.
const DUMP = Buffer.concat([
  vfield(1, 2639),
  vfield(2, 10_255),
  vfield(3, 1066),
  vfield(4, 106),
  vfield(5, 5_000_000_000), // above 2^32: a uint64 needs more than 32 bits of varint
  vfield(6, 300),
  vfield(7, 31),
  vfield(8, 0),
  vfield(9, 17),
  vfield(10, 6),
  vfield(11, 6),
  vfield(12, 9),
  vfield(13, 0),
  vfield(14, 9),
]);
// restore_stats_entry: pages_compared 1, pages_skipped_cow 2 (uint64); forking_time 3,
// restore_time 4 (uint32); pages_restored 5.
const RESTORE = Buffer.concat([vfield(1, 12), vfield(2, 3), vfield(3, 2), vfield(4, 2433), vfield(5, 2 ** 40)]);

test('readDumpStats decodes dump_stats_entry (field 1 of stats_entry)', (t) => {
  const d = tmpdir(t);
  const f = write(d, 'stats-dump', statsImage(lfield(1, DUMP)));
  assert.deepEqual(readDumpStats(f), {
    freezingTimeUs: 2639,
    frozenTimeUs: 10_255,
    memdumpTimeUs: 1066,
    memwriteTimeUs: 106,
    pagesScanned: 5_000_000_000,
    pagesSkippedParent: 300,
    pagesWritten: 31,
    pagesLazy: 17,
  });
  assert.equal(readRestoreStats(f), undefined, 'a dump has no restore entry');
  // Fields in another order read the same; one CRIU requires missing: no numbers rather than a 0.
  const fields = [1, 2, 3, 4, 5, 6, 7, 9].map((f) => vfield(f, f * 10)).reverse();
  assert.deepEqual(readDumpStats(write(d, 'reordered', statsImage(lfield(1, Buffer.concat(fields))))), {
    freezingTimeUs: 10, frozenTimeUs: 20, memdumpTimeUs: 30, memwriteTimeUs: 40, pagesScanned: 50, pagesSkippedParent: 60, pagesWritten: 70, pagesLazy: 90,
  });
  assert.equal(readDumpStats(write(d, 'missing', statsImage(lfield(1, Buffer.concat([vfield(7, 5), vfield(1, 9)]))))), undefined);
});

test('readRestoreStats decodes restore_stats_entry (field 2 of stats_entry)', (t) => {
  const d = tmpdir(t);
  const f = write(d, 'stats-restore', statsImage(lfield(2, RESTORE)));
  assert.deepEqual(readRestoreStats(f), { pagesCompared: 12, pagesSkippedCow: 3, forkingTimeUs: 2, restoreTimeUs: 2433, pagesRestored: 2 ** 40 });
  assert.equal(readDumpStats(f), undefined, 'a restore has no dump entry');
  // The common magic in place of the service one is read the same way.
  assert.deepEqual(readRestoreStats(write(d, 'common', statsImage(lfield(2, RESTORE), IMG_COMMON_MAGIC)))?.restoreTimeUs, 2433);
  // An entry with both is read for both.
  const both = write(d, 'both', statsImage(Buffer.concat([lfield(1, DUMP), lfield(2, RESTORE)])));
  assert.equal(readDumpStats(both)?.pagesWritten, 31);
  assert.equal(readRestoreStats(both)?.pagesCompared, 12);
});

test('the stats of a real CRIU 4.2.1 dump and restore', () => {
  assert.deepEqual(readDumpStats(path.join(FIXTURES, 'stats-dump')), {
    freezingTimeUs: 2639,
    frozenTimeUs: 10_255,
    memdumpTimeUs: 1066,
    memwriteTimeUs: 106,
    pagesScanned: 58,
    pagesSkippedParent: 0,
    pagesWritten: 31,
    pagesLazy: 0,
  });
  assert.deepEqual(readRestoreStats(path.join(FIXTURES, 'stats-restore')), { pagesCompared: 0, pagesSkippedCow: 0, forkingTimeUs: 1, restoreTimeUs: 5381, pagesRestored: 31 });
});

test('stats: a missing, truncated or garbage file reads as undefined, never throws', (t) => {
  const d = tmpdir(t);
  assert.equal(readDumpStats(path.join(d, 'none')), undefined, 'missing');
  assert.equal(readDumpStats(d), undefined, 'a directory');
  for (const [name, read] of [
    ['stats-dump', readDumpStats],
    ['stats-restore', readRestoreStats],
  ] as const) {
    const real = fs.readFileSync(path.join(FIXTURES, name));
    for (let n = 0; n < real.length; n++) {
      assert.equal(read(write(d, 'cut', real.subarray(0, n))), undefined, `${name} cut to ${n} of ${real.length} bytes`);
    }
  }
  const garbage: [string, Buffer][] = [
    ['text', Buffer.from('not a stats file\n')],
    ['all ones', Buffer.alloc(64, 0xff)],
    ['all zeros', Buffer.alloc(64, 0)],
    ['header only', statsImage(Buffer.alloc(0)).subarray(0, 8)],
    ['length beyond the file', Buffer.concat([statsImage(lfield(1, DUMP)).subarray(0, 8), Buffer.from([0xff, 0xff, 0, 0]), lfield(1, DUMP)])],
    ['dump given as a number', statsImage(vfield(1, 7))],
    ['sub-message longer than the entry', statsImage(Buffer.concat([varint(10), varint(200), DUMP]))],
    ['unknown wire type 3', statsImage(lfield(1, Buffer.from([0x0b, 0x0c])))],
    ['wire type 7', statsImage(Buffer.from([0x0f]))],
    ['fixed32 cut short', statsImage(lfield(1, Buffer.from([0x0d, 1, 2])))],
    ['fixed64 cut short', statsImage(lfield(1, Buffer.from([0x09, 1, 2, 3, 4, 5])))],
    ['varint never ends', statsImage(lfield(1, Buffer.from([0x08, 0x80, 0x80, 0x80])))],
  ];
  for (const [label, b] of garbage) {
    const f = write(d, 'garbage', b);
    assert.equal(readDumpStats(f), undefined, label);
    assert.equal(readRestoreStats(f), undefined, label);
  }
});

test('chrDumpable: the character devices CRIU dumps itself, and no others', () => {
  for (const [ma, mi] of [[1, 3], [1, 9], [1, 11], [5, 0], [5, 2], [4, 64], [136, 0], [128, 1], [10, 200], [10, 235]]) assert.ok(chrDumpable(ma!, mi!), `${ma}:${mi}`);
  // kvm, fuse, userfaultfd, hwrng, an input device, a sound device, a DRM node
  for (const [ma, mi] of [[10, 232], [10, 229], [10, 257], [10, 183], [13, 64], [116, 1], [226, 0]]) assert.ok(!chrDumpable(ma!, mi!), `${ma}:${mi}`);
});

test('findUndumpable: nothing in an ordinary process (files, pipes, sockets, /dev/null); a pid that is gone is skipped', () => {
  const fd = fs.openSync('/dev/null', 'r');
  try {
    assert.deepEqual(findUndumpable([process.pid, 2 ** 22 + 1]), []);
  } finally {
    fs.closeSync(fd);
  }
});

test('networkLockLines: CRIU skips its network lock only for a container without a network and without established TCP', () => {
  assert.deepEqual(networkLockLines('none', false), ['network-lock skip']);
  assert.deepEqual(networkLockLines('none', undefined), ['network-lock skip']);
  assert.deepEqual(networkLockLines('none', true), [], '--tcp-established wants the lock');
  assert.deepEqual(networkLockLines('bridge', false), [], 'reachable from outside: locked');
  assert.deepEqual(networkLockLines('host', false), []);
  assert.deepEqual(networkLockLines(undefined, false), [], 'unknown (a pod member): locked');
});

test('writeCriuConfig writes one option a line, and removes the file when there is none', (t) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-criuconf-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  const f = path.join(d, CRIU_CONFIG_FILE);
  writeCriuConfig(d, ['tcp-close', 'network-lock skip']);
  assert.equal(fs.readFileSync(f, 'utf8'), 'tcp-close\nnetwork-lock skip\n');
  assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  writeCriuConfig(d, []);
  assert.equal(fs.existsSync(f), false);
  writeCriuConfig(d, []); // nothing to remove: no error
});
