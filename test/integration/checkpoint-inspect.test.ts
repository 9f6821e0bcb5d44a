/**
 * `ferry checkpoint inspect|show` on real checkpoints, read offline: a container's committed
 * checkpoint (the container is not running), Ferry's archive, a Podman-layout archive and a
 * checkpoint image of the same container. The container holds an open file, a TCP listener on its loopback (busybox
 * httpd) and a string in its memory; --network none. And the refusals: a corrupt image file is
 * named and nothing is changed; the permissions that keep a checkpoint (which holds the
 * process's memory) private.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, LOOPER, assertCleanError, eventually } from '../helpers/ferry.js';
import { Podman, hasPodman } from '../helpers/podman.js';
import { ImageDir } from '../../src/drivers/criu/explore.js';

const H = new Host('insp');
const FERRY_ARCHIVE = () => path.join(H.dir, 'srv.tar.zst');
const PODMAN_ARCHIVE = () => path.join(H.dir, 'srv-podman.tar');
const IMAGE = 'localhost/srv-checkpoint:1';
const SECRET = 'needle-4711-xyz';
const SERVER = [
  'sh',
  '-c',
  `exec 3>/tmp/inspect-open-file; echo changed > /etc/motd; SECRET=${SECRET}; httpd -f -p 127.0.0.1:8080 & echo ready; while true; do sleep 1; done`,
];
let id = '';

before(async () => {
  await H.importBusybox();
  id = await H.ok(['run', '-d', '--name', 'srv', '--network', 'none', '-e', 'MYENV=envvalue-93', 'busybox', ...SERVER]);
  await H.ok(['run', '-d', '--name', 'loop', '--network', 'none', 'busybox', ...LOOPER]);
  await eventually(async () => (await H.logs('srv')).includes('ready'));
  // httpd is listening once netstat inside shows it.
  await eventually(async () => (await H.ok(['exec', 'srv', 'netstat', '-ltn'])).includes('127.0.0.1:8080'));
  await H.ok(['container', 'checkpoint', '-R', '--export', FERRY_ARCHIVE(), 'srv']);
  await H.ok(['container', 'checkpoint', '-R', '--export', PODMAN_ARCHIVE(), '--format', 'podman', '--compress', 'none', 'srv']);
  await H.ok(['container', 'checkpoint', '-R', '--create-image', IMAGE, 'srv']);
  await H.ok(['container', 'checkpoint', 'srv']);
});
after(async () => {
  await H.destroy();
});

async function inspectJson(target: string, ...flags: string[]): Promise<any> {
  const out = JSON.parse(await H.ok(['checkpoint', 'inspect', '--format', 'json', ...flags, target]));
  assert.equal(out.length, 1);
  return out[0];
}

function find(node: any, pred: (n: any) => boolean): any {
  if (pred(node)) return node;
  for (const c of node.children ?? []) {
    const f = find(c, pred);
    if (f) return f;
  }
  return undefined;
}

/** What every one of the three views of srv's checkpoint must show. */
function checkAll(info: any, engine: string): void {
  assert.equal(info.container_name, 'srv');
  assert.equal(info.id, id);
  assert.equal(info.image, 'localhost/busybox:latest');
  assert.equal(info.engine, engine);
  assert.equal(info.runtime, 'runc');
  assert.ok(Date.parse(info.created) > 0, `created: ${info.created}`);
  assert.ok(info.checkpoint_size.memory_pages_size > 0 && info.checkpoint_size.total_size > info.checkpoint_size.memory_pages_size, JSON.stringify(info.checkpoint_size));
  assert.ok(info.checkpoint_size.root_fs_diff_size > 0, 'the changed /etc/motd makes a rootfs diff');
  // The process tree: sh (PID 1) and its httpd, with their command lines read from the memory.
  const tree = info.process_tree;
  assert.equal(tree.pid, 1);
  assert.equal(tree.command, 'sh');
  assert.equal(tree.cmdline, SERVER.join(' '));
  assert.equal(tree.environment_variables.MYENV, 'envvalue-93');
  const httpd = find(tree, (n) => n.command === 'httpd');
  assert.ok(httpd && httpd.pid > 1, JSON.stringify(tree));
  assert.equal(httpd.cmdline, 'httpd -f -p 127.0.0.1:8080');
  // Open files: the shell's fd 3, inherited by httpd.
  const shFiles = info.file_descriptors.find((f: any) => f.pid === 1).open_files;
  assert.deepEqual(shFiles.find((f: any) => f.fd === '3'), { type: 'REG', fd: '3', path: '/tmp/inspect-open-file' });
  assert.ok(shFiles.some((f: any) => f.fd === 'cwd' && f.path === '/'));
  // Sockets: httpd's listener, with its address and port.
  const sk = info.sockets.find((s: any) => s.pid === httpd.pid);
  assert.deepEqual(sk.open_sockets, [{ protocol: 'TCP', data: { type: 'TCP', state: 'LISTEN', src: '127.0.0.1', src_port: 8080, dst: '0.0.0.0', dst_port: 0 } }]);
  assert.ok(!info.sockets.some((s: any) => s.pid === 1), 'sh has no socket');
  // Mounts, from the spec.
  assert.ok(info.mounts.some((m: any) => m.destination === '/proc' && m.type === 'proc'), JSON.stringify(info.mounts));
}

test('inspect --all of a container\'s checkpoint: the tree, command lines, files, sockets, mounts, statistics; the container stays as it was', async () => {
  const before = await H.inspect('srv');
  const info = await inspectJson('srv', '--all');
  checkAll(info, 'Ferry');
  assert.ok(info.checkpointed >= info.created);
  assert.ok(info.statistics.pages_written > 0 && info.statistics.frozen_time > 0, JSON.stringify(info.statistics));
  const after = await H.inspect('srv');
  assert.equal(after.State.Status, before.State.Status);
  assert.equal(after.State.Running, false, 'inspection never starts the container');
});

test('inspect of Ferry\'s and Podman\'s archives shows the same, and leaves no staging behind', async () => {
  checkAll(await inspectJson(FERRY_ARCHIVE(), '--all'), 'Ferry');
  checkAll(await inspectJson(PODMAN_ARCHIVE(), '--all'), 'Podman');
  assert.deepEqual(fs.readdirSync(H.root).filter((n) => n.startsWith('.import-')), []);
  assert.deepEqual(await H.names(), ['loop', 'srv'], 'no container was created');
});

test('inspect and show of a checkpoint image (its layer, read offline); an image that is not one is refused', async () => {
  // Its layer is in Podman's layout, as checkpointctl would name it.
  checkAll(await inspectJson(IMAGE, '--all'), 'Podman');
  const out = (await H.ok(['checkpoint', 'show', IMAGE])).split('\n');
  assert.match(out[1]!, new RegExp(`^srv\\s+localhost/busybox:latest\\s+${id.slice(0, 12)}\\s+runc\\s.*Podman`));
  assertCleanError(await H.fails(['checkpoint', 'inspect', 'busybox']), /image busybox is not a checkpoint image/);
  assert.deepEqual(fs.readdirSync(H.root).filter((n) => n.startsWith('.import-')), []);
  assert.deepEqual(await H.names(), ['loop', 'srv'], 'no container was created');
});

test('an archive written by Podman itself: engine, times, statistics, the process tree', { skip: hasPodman() ? false : 'podman is not installed' }, async () => {
  const P = new Podman('inspP');
  try {
    await P.importBusybox();
    await P.ok(['run', '-d', '--name', 'pl', '--network', 'none', 'localhost/busybox:latest', ...LOOPER]);
    await eventually(async () => (await P.counts('pl')).length >= 2);
    const file = path.join(H.dir, 'podman-made.tar.gz');
    await P.ok(['container', 'checkpoint', '--export', file, '--compress', 'gzip', 'pl']);
    const info = await inspectJson(file, '--ps-tree-cmd', '--stats', '--files');
    assert.equal(info.engine, 'Podman');
    assert.equal(info.container_name, 'pl');
    assert.equal(info.image, 'localhost/busybox:latest');
    assert.ok(Date.parse(info.created) > 0, info.created);
    // Podman 4.3.1's config.dump has no checkpoint time (later ones: checkpointedTime).
    assert.ok(info.checkpointed === undefined || Date.parse(info.checkpointed) >= Date.parse(info.created));
    assert.ok(info.statistics.pages_written > 0, 'Podman\'s stats-dump');
    assert.equal(info.process_tree.pid, 1);
    assert.equal(info.process_tree.cmdline, LOOPER.join(' '));
    assert.ok(info.file_descriptors.find((f: any) => f.pid === 1).open_files.some((f: any) => f.fd === '1'));
    assert.match(await H.ok(['checkpoint', 'show', file]), /\bpl\s+localhost\/busybox:latest\s.*\bPodman\b/);
  } finally {
    await P.destroy();
  }
});

test('the tree view: [PID] command, command lines, open files and the listener\'s port', async () => {
  const out = await H.ok(['checkpoint', 'inspect', '--ps-tree-cmd', '--files', '--sockets', 'srv']);
  assert.match(out, /^srv\n/);
  assert.match(out, /Engine: Ferry/);
  assert.match(out, /Memory pages size: /);
  assert.match(out, /\[1\]  sh\n/);
  assert.match(out, /\[\d+\]  httpd\n/);
  assert.match(out, /Command line: httpd -f -p 127\.0\.0\.1:8080/);
  assert.match(out, /\[REG 3\]  \/tmp\/inspect-open-file/);
  assert.match(out, /\[TCP \(LISTEN\)\]  127\.0\.0\.1:8080 -> /);
  // Without flags: no process tree.
  const plain = await H.ok(['checkpoint', 'inspect', 'srv']);
  assert.doesNotMatch(plain, /Process tree/);
  assert.match(plain, /CRIU dump statistics/);
  // --pid: only that process.
  const json = await inspectJson('srv', '--ps-tree');
  const httpd = find(json.process_tree, (n) => n.command === 'httpd');
  const one = await inspectJson('srv', '--ps-tree', '--pid', String(httpd.pid));
  assert.equal(one.process_tree.pid, httpd.pid);
  assert.equal(one.process_tree.children, undefined);
  assertCleanError(await H.fails(['checkpoint', 'inspect', '--ps-tree', '--pid', '4242', 'srv']), /no process with PID 4242/);
});

test('--search finds a string the process holds in memory; --search-regex, --pid; no match says so', async () => {
  const hits = JSON.parse(await H.ok(['checkpoint', 'inspect', '--search', SECRET, '--format', 'json', 'srv']));
  assert.ok(hits.length > 0);
  assert.ok(hits.every((h: any) => h.match === SECRET && h.pid === 1 && h.command === 'sh'), JSON.stringify(hits));
  const table = await H.ok(['checkpoint', 'inspect', '--search', SECRET, '-c', '7', PODMAN_ARCHIVE()]);
  assert.match(table, /^PID\s+COMMAND\s+ADDRESS\s+MATCH\s+INSTANCE/);
  assert.match(table, /SECRET=needle-4711-xyz/);
  const env = JSON.parse(await H.ok(['checkpoint', 'inspect', '--search-regex', 'envvalue-[0-9]+', '--pid', '1', '--format', 'json', 'srv']));
  assert.ok(env.length > 0 && env.every((h: any) => h.match === 'envvalue-93' && h.pid === 1));
  assert.match(await H.ok(['checkpoint', 'inspect', '--search', 'not-in-any-memory-3141', 'srv']), /no match/);
  assertCleanError(await H.fails(['checkpoint', 'inspect', '--search-regex', '(', 'srv']), /invalid --search-regex/);
});

test('show: one line per checkpoint, containers and archives alike', async () => {
  const out = (await H.ok(['checkpoint', 'show', 'srv', FERRY_ARCHIVE(), PODMAN_ARCHIVE()])).split('\n');
  assert.match(out[0]!, /^CONTAINER\s+IMAGE\s+ID\s+RUNTIME\s+CREATED\s+CHECKPOINTED\s+ENGINE\s+IP\s+CHKPT SIZE\s+ROOT FS DIFF SIZE$/);
  assert.equal(out.length, 4);
  for (const l of out.slice(1)) assert.match(l, new RegExp(`^srv\\s+localhost/busybox:latest\\s+${id.slice(0, 12)}\\s+runc\\s`));
  assert.match(out[3]!, /Podman/);
});

test('bad targets: no such container or file, a container without a checkpoint, a bad flag, a file that is no archive', async () => {
  assertCleanError(await H.fails(['checkpoint', 'inspect', 'nosuch']), /no container, checkpoint image or archive file "nosuch"/);
  assertCleanError(await H.fails(['checkpoint', 'inspect', path.join(H.dir, 'nosuch.tar')]), /no such file/);
  assertCleanError(await H.fails(['checkpoint', 'inspect', 'loop']), /loop has no checkpoint/);
  assertCleanError(await H.fails(['checkpoint', 'inspect', '--format', 'yaml', 'srv']), /invalid --format/);
  const junk = path.join(H.dir, 'junk.tar');
  fs.writeFileSync(junk, 'not an archive at all');
  assertCleanError(await H.fails(['checkpoint', 'inspect', junk]), /bad checkpoint archive/);
  assert.deepEqual(fs.readdirSync(H.root).filter((n) => n.startsWith('.import-')), []);
});

/**
 * CRIU's own decoder: the crit that `npm run setup` installs beside Ferry's CRIU (sid's
 * python3-pycriu, behind Ferry's wrapper), else a crit on PATH. Without one the test skips.
 */
const CRIT_WRAPPER = '/usr/local/lib/ferry/bin/crit';
const crit = fs.existsSync(CRIT_WRAPPER) ? CRIT_WRAPPER : spawnSync('sh', ['-c', 'command -v crit'], { encoding: 'utf8' }).stdout.trim();

test("the decoding agrees with CRIU's own crit on the same images: process tree, commands, every fd, sockets, memory", { skip: crit ? false : 'crit is not installed' }, async () => {
  const dir = path.join(H.root, 'containers', id, 'checkpoint');
  const critRun = (...args: string[]): string => {
    const r = spawnSync(crit, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(r.status, 0, `crit ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const show = (img: string): any[] => JSON.parse(critRun('show', path.join(dir, img))).entries;
  const info = await inspectJson('srv', '--ps-tree', '--files', '--sockets');
  const flat = (n: any, ppid = 0): [number, number, string][] => [[n.pid, ppid, n.command], ...(n.children ?? []).flatMap((c: any) => flat(c, n.pid))];
  const ours = flat(info.process_tree).sort((x, y) => x[0] - y[0]);

  // The process tree: every PID with its parent, and its command name (core-PID.img).
  const pstree = show('pstree.img');
  const theirs = pstree.map((e: any): [number, number, string] => [e.pid, e.ppid, show(`core-${e.pid}.img`)[0].tc.comm]).sort((x: any, y: any) => x[0] - y[0]);
  assert.deepEqual(ours, theirs);
  assert.ok(ours.some((p) => p[2] === 'httpd'), 'the tree holds the listener');

  // Every fd of every process with what it refers to: crit names sockets TYPE.id, Ferry
  // socket[inode]: files.img (as crit decodes it) links the two.
  const files = new Map<number, any>(show('files.img').map((e: any) => [e.id, e]));
  const critFds = new Map<number, Map<string, string>>();
  let cur: Map<string, string> | undefined;
  for (const l of critRun('x', dir, 'fds').split('\n')) {
    if (/^\d+$/.test(l.trim()) && !l.startsWith('\t')) critFds.set(Number(l), (cur = new Map()));
    else if (l.includes(':') && cur) cur.set(l.slice(0, l.indexOf(':')).trim(), l.slice(l.indexOf(':') + 1).trim());
  }
  assert.deepEqual([...critFds.keys()].sort((x, y) => x - y), ours.map((p) => p[0]));
  let sockets = 0;
  for (const f of info.file_descriptors) {
    const c = critFds.get(f.pid)!;
    assert.deepEqual(f.open_files.map((x: any) => x.fd).sort(), [...c.keys()].sort(), `fds of ${f.pid}`);
    for (const x of f.open_files) {
      const theirsPath = c.get(x.fd)!;
      const sk = /^(INETSK|UNIXSK)\.(\d+)$/.exec(theirsPath);
      if (sk) {
        const e = files.get(Number(sk[2]));
        assert.equal(x.path, `socket[${(e.isk ?? e.usk).ino}]`, `fd ${x.fd} of ${f.pid}`);
        sockets++;
      } else assert.equal(x.path, theirsPath, `fd ${x.fd} of ${f.pid}`);
    }
  }
  assert.ok(sockets >= 1, 'the listener is among the fds');

  // Sockets: protocol, state, addresses and ports of each process's INET sockets.
  const fdinfo = (pid: number): any[] => {
    const filesId = fs.existsSync(path.join(dir, `ids-${pid}.img`)) ? show(`ids-${pid}.img`)[0].files_id : show(`core-${pid}.img`)[0].ids.files_id;
    return show(`fdinfo-${filesId}.img`);
  };
  for (const [pid] of ours) {
    const theirsSk = fdinfo(pid)
      .map((d: any) => files.get(d.id))
      .filter((e: any) => e?.type === 'INETSK')
      .map((e: any) => [e.isk.proto, e.isk.state, e.isk.src_addr[0], e.isk.src_port, e.isk.dst_addr?.[0] ?? '0.0.0.0', e.isk.dst_port].join(' '))
      .sort();
    const oursSk = (info.sockets.find((s: any) => s.pid === pid)?.open_sockets ?? [])
      .filter((s: any) => s.protocol !== 'UNIX')
      .map((s: any) => [s.protocol, s.data.state, s.data.src, s.data.src_port, s.data.dst, s.data.dst_port].join(' '))
      .sort();
    assert.deepEqual(oursSk, theirsSk, `sockets of ${pid}`);
  }
  assert.ok(info.sockets.some((s: any) => s.open_sockets.some((o: any) => o.data.state === 'LISTEN' && o.data.src_port === 8080)));

  // Memory: the pages each process has in this dump (pagemap entries marked PE_PRESENT, as crit
  // decodes them) against Ferry's reading of the same pagemap, and their sum against the pages images.
  const images = new ImageDir(dir);
  let total = 0;
  for (const [pid] of ours) {
    const [, ...entries] = show(`pagemap-${pid}.img`);
    const pages = entries.filter((e: any) => /PE_PRESENT/.test(e.flags ?? 'PE_PRESENT')).reduce((n: number, e: any) => n + (e.nr_pages ?? e.compat_nr_pages), 0);
    assert.equal(images.memorySize(pid), pages * 4096, `memory of ${pid}`);
    total += pages * 4096;
  }
  assert.ok(total > 0);
  assert.equal(total, info.checkpoint_size.memory_pages_size, 'the present pages fill the pages images');
});

test('diff: processes, files and sockets added between two checkpoints of one container; other containers refused', async () => {
  const A = path.join(H.dir, 'dif-a.tar.zst');
  const B = path.join(H.dir, 'dif-b.tar');
  // Once /tmp/go exists the shell opens a second file and starts a listener on 9090.
  const cmd = 'while true; do if [ -e /tmp/go ] && [ ! -e /tmp/opened ]; then exec 4>/tmp/second; touch /tmp/opened; httpd -f -p 127.0.0.1:9090 & fi; sleep 1; done';
  await H.ok(['run', '-d', '--name', 'dif', '--network', 'none', 'busybox', 'sh', '-c', cmd]);
  await H.ok(['container', 'checkpoint', '-R', '--export', A, 'dif']);
  await H.ok(['exec', 'dif', 'touch', '/tmp/go']);
  await eventually(async () => (await H.ok(['exec', 'dif', 'netstat', '-ltn'])).includes('127.0.0.1:9090'));
  await H.ok(['container', 'checkpoint', '-R', '--export', B, '--compress', 'none', 'dif']);
  const d = JSON.parse(await H.ok(['checkpoint', 'diff', '--ps-tree-cmd', '--files', '--sockets', '--format', 'json', A, B]));
  assert.equal(d.container_name, 'dif');
  assert.ok(d.process_changes.added.some((p: any) => p.command === 'httpd' && p.cmdline === 'httpd -f -p 127.0.0.1:9090'), JSON.stringify(d.process_changes));
  assert.ok(!(d.process_changes.removed ?? []).some((p: any) => p.pid === 1));
  assert.ok(d.file_changes.added.some((f: any) => f.pid === 1 && f.fd === '4' && f.path === '/tmp/second'), JSON.stringify(d.file_changes));
  assert.ok(d.socket_changes.added.some((s: any) => s.type === 'TCP' && s.state === 'LISTEN' && s.src_port === 9090), JSON.stringify(d.socket_changes));
  assert.equal(d.socket_changes.removed, undefined);
  assert.equal(typeof d.memory_changes.size_change_bytes, 'number');
  assert.match(d.summary, /Sockets: \+1 -0/);
  const tree = await H.ok(['checkpoint', 'diff', '--files', '--sockets', A, B]);
  assert.match(tree, /\+ \[1\] REG 4  \/tmp\/second/);
  assert.match(tree, /\+ \[\d+\] TCP \(LISTEN\)  127\.0\.0\.1:9090 -> /);
  // The same checkpoint twice: nothing changed.
  const same = JSON.parse(await H.ok(['checkpoint', 'diff', '--files', '--sockets', '--format', 'json', B, B]));
  assert.deepEqual([same.process_changes, same.file_changes, same.socket_changes, same.memory_changes.size_change_bytes], [{}, {}, {}, 0]);
  assertCleanError(await H.fails(['checkpoint', 'diff', A, 'srv']), /checkpoints of different containers/);
});

test('a checkpoint holds memory: its directory and archives are private (0700/0600)', async () => {
  const cdir = path.join(H.root, 'containers', id);
  assert.equal(fs.statSync(path.join(cdir, 'checkpoint')).mode & 0o777, 0o700);
  assert.equal(fs.statSync(cdir).mode & 0o077, 0, 'the container dir is closed to others');
  for (const a of [FERRY_ARCHIVE(), PODMAN_ARCHIVE()]) assert.equal(fs.statSync(a).mode & 0o777, 0o600, a);
});

test('a corrupt image file: the error names it and stops; the checkpoint still restores once repaired', async () => {
  const dir = path.join(H.root, 'containers', id, 'checkpoint');
  const core = path.join(dir, 'core-1.img');
  const pstree = path.join(dir, 'pstree.img');
  const saved = { core: fs.readFileSync(core), pstree: fs.readFileSync(pstree) };
  try {
    fs.writeFileSync(core, saved.core.subarray(0, saved.core.length - 10));
    assertCleanError(await H.fails(['checkpoint', 'inspect', '--ps-tree', 'srv']), /corrupt CRIU image core-1\.img: entry 1 is cut short/);
    fs.writeFileSync(core, saved.core);
    fs.writeFileSync(pstree, Buffer.from('this is no CRIU image'));
    assertCleanError(await H.fails(['checkpoint', 'inspect', '--all', 'srv']), /corrupt CRIU image pstree\.img: it does not start with CRIU's magic/);
    const garbled = Buffer.from(saved.pstree);
    garbled[12] = 0xff; // the first entry's first key: wire type 7
    fs.writeFileSync(pstree, garbled);
    assertCleanError(await H.fails(['checkpoint', 'inspect', '--format', 'json', '--ps-tree', 'srv']), /corrupt CRIU image pstree\.img/);
    // Without the process tree nothing reads the images: the metadata still shows.
    assert.match(await H.ok(['checkpoint', 'inspect', 'srv']), /Engine: Ferry/);
  } finally {
    fs.writeFileSync(core, saved.core);
    fs.writeFileSync(pstree, saved.pstree);
  }
  // Inspection changed nothing: the checkpoint restores, and the server is back.
  await H.ok(['container', 'restore', 'srv']);
  await eventually(async () => (await H.ok(['exec', 'srv', 'netstat', '-ltn'])).includes('127.0.0.1:8080'));
});
