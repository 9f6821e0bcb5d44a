/**
 * Podman's checkpoint archives, both ways, with Debian's real Podman (a private root of its own,
 * test/helpers/podman.ts) and a Ferry root: `podman container checkpoint --export` restored by
 * `ferry container restore --import`, and `ferry container checkpoint --export --format podman`
 * restored by `podman container restore --import`; the looper's counter continues, a changed
 * file, a deleted file and a named volume are there. And the refusals: a Podman-layout archive
 * that is truncated, corrupt, tampered, has escaping paths or names a missing base image is
 * refused with one line and nothing is created.
 *
 * Both engines run their containers with --network none (Podman's default bridge is never set
 * up next to Ferry's), except in the bridge test: there both run inside a network namespace the
 * test makes, each with its own bridge (Podman's 10.88.0.0/16, Ferry's 10.89.0.0/16).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { pack, readEntries, type Entry } from '../helpers/tarcraft.js';
import { Host, LOOPER, assertCleanError, eventually, counts, continuous, importFootprint, type Result, type RunOpts } from '../helpers/ferry.js';
import { Podman, hasPodman } from '../helpers/podman.js';

const skip = !hasPodman() ? 'podman is not installed' : false;

const F = new Host('pfA'); // Ferry, with the busybox image
const C = new Host('pfC'); // Ferry, without any image
const G = new Host('pfG'); // Ferry, a second root with the busybox image
const P = new Podman('pdP');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-pda-'));
const outside = path.join(tmp, 'outside');
/** Podman's archive of a looper with a changed file, a deleted file and a volume (zstd, and plain tar). */
const POD_ZST = path.join(tmp, 'pod.tar.zst');
const POD_TAR = path.join(tmp, 'pod.tar');

/** The looper, after changing /etc/motd, deleting /etc/group, writing into the volume at /data and into /dev/shm. */
const CHANGER = ['sh', '-c', `echo vol > /data/f; echo changed > /etc/motd; rm /etc/group; echo shm > /dev/shm/s; ${LOOPER[2]}`];
/** What CHANGER's changes look like from inside. */
const CHECK = ['sh', '-c', 'cat /data/f /etc/motd /dev/shm/s; test -e /etc/group && echo group-present || echo group-gone'];
const CHANGED = 'vol\nchanged\nshm\ngroup-gone\n';

before(async () => {
  if (skip) return;
  fs.mkdirSync(outside);
  await Promise.all([F.importBusybox(), G.importBusybox(), P.importBusybox(), C.run(['images'])]);
  await P.ok(['run', '-d', '--name', 'pl', '--network', 'none', '-v', 'pdata:/data', 'localhost/busybox:latest', ...CHANGER]);
  await eventually(async () => (await P.counts('pl')).length >= 3);
  await P.ok(['container', 'checkpoint', '--export', POD_ZST, 'pl']);
  const z = spawnSync('zstd', ['-d', '-q', '-f', '-o', POD_TAR, POD_ZST]);
  assert.equal(z.status, 0, 'zstd -d of Podman\'s archive');
});
after(async () => {
  await F.destroy();
  await C.destroy();
  await G.destroy();
  await P.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});



test('Podman\'s archive: its members are the ones Podman 4.3.1 writes', { skip }, async () => {
  const names = (await readEntries(POD_TAR)).map((e) => e.header.name.replace(/\/$/, ''));
  for (const n of ['config.dump', 'spec.dump', 'network.status', 'checkpoint/inventory.img', 'rootfs-diff.tar', 'deleted.files', 'volumes/pdata.tar', 'devshm-checkpoint.tar', 'ctr.log']) {
    assert.ok(names.includes(n), `${n} in ${names.join(' ')}`);
  }
});

test('Podman to Ferry: the looper continues, with its changed file, deleted file and volume', { skip }, async () => {
  const before = (await P.counts('pl')).length;
  const out = await F.ok(['container', 'restore', '--import', POD_ZST]);
  const id = (await P.inspect('pl')).Id;
  assert.equal(out, id, 'restored with the Podman container\'s ID');
  await eventually(async () => continuous(await counts(F, 'pl'), before + 2), 15_000);
  const r = await F.run(['exec', 'pl', ...CHECK]);
  assert.equal(r.stdout, CHANGED, r.stderr);
  assert.equal((await F.inspect('pl')).State.Status, 'running');
});

test('Ferry to Podman: --format podman restores in Podman; the looper continues, with its file changes and volume', { skip }, async () => {
  await F.ok(['run', '-d', '--name', 'fl', '--network', 'none', '-v', 'fdata:/data', 'busybox', ...CHANGER]);
  await eventually(async () => (await counts(F, 'fl')).length >= 3);
  const archive = path.join(tmp, 'fl.tar.zst');
  await F.ok(['container', 'checkpoint', '--export', archive, '--format', 'podman', 'fl']);
  const before = (await counts(F, 'fl')).length;
  await P.ok(['container', 'restore', '--import', archive]);
  await eventually(async () => continuous(await P.counts('fl'), before + 2), 15_000);
  const r = await P.run(['exec', 'fl', ...CHECK]);
  assert.equal(r.stdout, CHANGED, r.stderr);
  // The volume is Podman's own, with the archive's contents.
  const vol = JSON.parse(await P.ok(['volume', 'inspect', 'fdata']))[0];
  assert.equal(fs.readFileSync(path.join(vol.Mountpoint, 'f'), 'utf8'), 'vol\n');
  await P.ok(['rm', '-f', '-t', '0', 'fl']);
});

test('and back: the container Ferry imported from Podman goes back to Podman, counting on', { skip }, async () => {
  // Podman still has the original (checkpointed) container and its volume: make room.
  await P.ok(['rm', '-f', '-t', '0', 'pl']);
  await P.ok(['volume', 'rm', 'pdata']);
  const archive = path.join(tmp, 'back.tar');
  await F.ok(['container', 'checkpoint', '--export', archive, '-c', 'none', '--format', 'podman', 'pl']);
  const before = (await counts(F, 'pl')).length;
  await P.ok(['container', 'restore', '--import', archive]);
  await eventually(async () => continuous(await P.counts('pl'), before + 2), 15_000);
  const r = await P.run(['exec', 'pl', ...CHECK]);
  assert.equal(r.stdout, CHANGED, r.stderr);
  await P.ok(['rm', '-f', '-t', '0', 'pl']);
  await P.ok(['volume', 'rm', 'pdata']);
});

test('Podman\'s archive imports again under another name (-n), and without its file changes (--ignore-rootfs)', { skip }, async () => {
  await F.ok(['container', 'restore', '--import', POD_ZST, '-n', 'copy', '--ignore-rootfs', '--ignore-volumes']);
  const seq = await counts(F, 'copy');
  await eventually(async () => (await counts(F, 'copy')).length > seq.length + 1, 15_000);
  assert.notEqual((await F.inspect('copy')).Id, (await F.inspect('pl')).Id);
  const r = await F.run(['exec', 'copy', 'sh', '-c', 'cat /etc/motd; test -e /etc/group && echo group-present']);
  assert.ok(!r.stdout.includes('changed') && r.stdout.includes('group-present'), r.stdout);
  // The same archive, same name: refused, nothing made.
  await refused(F, POD_ZST, /name "pl" is already in use/);
});

test('a container from Podman moves on between Ferry roots in Ferry\'s format, its /dev/shm contents included', { skip }, async () => {
  await F.ok(['container', 'restore', '--import', POD_ZST, '-n', 'mover', '--ignore-volumes']);
  const archive = path.join(tmp, 'mover.tar.zst');
  await F.ok(['container', 'checkpoint', '--export', archive, 'mover']);
  const before = (await counts(F, 'mover')).length;
  await G.ok(['container', 'restore', '--import', archive]);
  await eventually(async () => continuous(await counts(G, 'mover'), before + 1), 15_000);
  const r = await G.run(['exec', 'mover', ...CHECK]);
  assert.equal(r.stdout, CHANGED, r.stderr);
  await F.ok(['rm', '-f', 'mover']);
});

test('--format podman is refused without --export', { skip }, async () => {
  await F.ok(['run', '-d', '--name', 'br', '--network', 'none', 'busybox', ...LOOPER]);
  assertCleanError(await F.fails(['container', 'checkpoint', '--format', 'podman', 'br']), /--format podman only applies with --export/);
  assert.equal((await F.inspect('br')).State.Status, 'running');
  await F.ok(['rm', '-f', 'br']);
});

/** Ferry run inside a network namespace (its bridge, veths and rules are made there). */
class NsHost extends Host {
  constructor(name: string, readonly netns: string) {
    super(name);
  }
  override run(args: string[], opts: RunOpts = {}): Promise<Result> {
    return super.run(args, { ...opts, wrap: ['nsenter', `--net=/run/netns/${this.netns}`, ...(opts.wrap ?? [])] });
  }
}

test('on the bridge: Podman\'s default network becomes Ferry\'s (a new address: --ignore-static-ip), and back to Podman\'s', { skip }, async () => {
  const ns = `fypbr${process.pid % 100000}`;
  spawnSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, 'ip netns add');
  const FB = new NsHost('pfB', ns);
  const PB = new Podman('pdB', ns);
  try {
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await Promise.all([FB.importBusybox(), PB.importBusybox()]);
    await PB.ok(['run', '-d', '--name', 'bl', '--network', 'bridge', 'localhost/busybox:latest', ...LOOPER]);
    const podmanIp = (await PB.inspect('bl')).NetworkSettings.Networks.podman.IPAddress;
    assert.match(podmanIp, /^10\.88\./);
    await eventually(async () => (await PB.counts('bl')).length >= 3);
    const archive = path.join(tmp, 'bridge.tar.zst');
    await PB.ok(['container', 'checkpoint', '--export', archive, 'bl']);
    const before = (await PB.counts('bl')).length;

    // Its address is not one of Ferry's network: refused, naming the way out; nothing made.
    await refused(FB, archive, new RegExp(`address ${podmanIp.replace(/\./g, '\\.')} is not on network ferry here \\(10\\.89\\.0\\.0/16\\): restore with --ignore-static-ip .*--ignore-static-mac`));
    await FB.ok(['container', 'restore', '--import', archive, '--ignore-static-ip']);
    await eventually(async () => continuous(await counts(FB, 'bl'), before + 2), 15_000);
    const ins = await FB.inspect('bl');
    assert.deepEqual(Object.keys(ins.NetworkSettings.Networks), ['ferry']);
    assert.match(ins.NetworkSettings.Networks.ferry.IPAddress, /^10\.89\./);
    // Inside, eth0 has that address and routes through Ferry's gateway.
    const ip = ins.NetworkSettings.Networks.ferry.IPAddress;
    assert.match(await FB.ok(['exec', 'bl', 'ip', '-4', 'addr', 'show', 'dev', 'eth0']), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/16`));
    assert.match(await FB.ok(['exec', 'bl', 'ip', 'route']), /default via 10\.89\.0\.1/);

    // Back: Podman's restore asks its own network for the address in network.status (Ferry's
    // 10.89.x.y), which it refuses as Podman does for an archive from another host; with
    // --ignore-static-ip it restores at a new address of its own.
    const back = path.join(tmp, 'bridge-back.tar');
    await FB.ok(['container', 'checkpoint', '--export', back, '-c', 'none', '--format', 'podman', 'bl']);
    const status = JSON.parse(spawnSync('tar', ['-xOf', back, 'network.status'], { encoding: 'utf8' }).stdout);
    assert.equal(status.podman.interfaces.eth0.subnets[0].ipnet, `${ins.NetworkSettings.Networks.ferry.IPAddress}/16`);
    assert.equal(status.podman.interfaces.eth0.mac_address, ins.NetworkSettings.Networks.ferry.MacAddress);
    const id = ins.Id;
    await PB.ok(['rm', '-f', '-t', '0', 'bl']);
    const r = await PB.run(['container', 'restore', '--import', back]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /static ip 10\.89\.\d+\.\d+ not in any subnet on network podman/);
    await PB.run(['rm', '--storage', id]); // what Podman 4.3.1's failed import leaves behind
    const from = (await counts(FB, 'bl')).length;
    await PB.ok(['container', 'restore', '--import', back, '--ignore-static-ip']);
    await eventually(async () => continuous(await PB.counts('bl'), from + 2), 15_000);
    assert.match((await PB.inspect('bl')).NetworkSettings.Networks.podman.IPAddress, /^10\.88\./);
  } finally {
    await FB.destroy();
    await PB.destroy();
    spawnSync('ip', ['netns', 'delete', ns]);
  }
});

// ------------------------------------------------------------------------- refusals


const file = (name: string, content: string | Buffer = 'evil\n'): Entry => ({
  header: { name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: new Date() },
  data: Buffer.from(content),
});
const link = (name: string, type: 'symlink' | 'link', linkname: string): Entry => ({
  header: { name, type, linkname, mode: 0o777, uid: 0, gid: 0, mtime: new Date() },
  data: Buffer.alloc(0),
});

let seq = 0;
/** Podman's archive with `edit` applied to its members, as an uncompressed tar. */
async function craft(edit: (list: Entry[]) => Entry[] | void): Promise<string> {
  const list = await readEntries(POD_TAR);
  const out = path.join(tmp, `crafted-${++seq}.tar`);
  fs.writeFileSync(out, await pack(edit(list) ?? list));
  return out;
}
/** Replaces the member `name` (an inner tar when given entries). */
async function replace(list: Entry[], name: string, data: Buffer | Entry[]): Promise<void> {
  const e = list.find((x) => x.header.name === name)!;
  e.data = Buffer.isBuffer(data) ? data : await pack(data);
}

const footprint = importFootprint;

async function refused(h: Host, archive: string, re: RegExp, extra: string[] = []): Promise<void> {
  const before = await footprint(h);
  const r = await h.fails(['container', 'restore', '--import', archive, ...extra], { timeoutMs: 60_000 });
  // A failed restore keeps a copy of CRIU's log for the user, named in the error: ours to remove.
  const kept = /details: (\S+ferry-import-[0-9a-f]+-restore\.log)/.exec(r.stderr)?.[1];
  if (kept) fs.rmSync(kept, { force: true });
  assertCleanError(r, re);
  // A container removed after a failed restore goes through the root's trash, deleted in the
  // background: give that a moment.
  await eventually(async () => isDeepStrictEqual(await footprint(h), before), 10_000).catch(() => undefined);
  assert.deepEqual(await footprint(h), before, `nothing left behind after: ${r.stderr.trim()}`);
  assert.deepEqual(fs.readdirSync(outside), [], 'nothing written outside');
}

test('refused: Podman\'s archive when its base image is missing, naming the image', { skip }, async () => {
  await refused(C, POD_ZST, /needs image localhost\/busybox:latest, which this host does not have: import it first/);
});

test('refused: a truncated Podman archive (compressed, and plain tar cut in its CRIU images)', { skip }, async () => {
  const z = fs.readFileSync(POD_ZST);
  const cutZ = path.join(tmp, 'cut.tar.zst');
  fs.writeFileSync(cutZ, z.subarray(0, Math.floor(z.length / 2)));
  await refused(F, cutZ, /corrupt or truncated/, ['-n', 'cut1']);
  // Cut just after the first CRIU image: the archive ends before the checkpoint is complete.
  const list = await readEntries(POD_TAR);
  const i = list.findIndex((e) => e.header.name.startsWith('checkpoint/') && e.header.type === 'file');
  const cutT = path.join(tmp, 'cut.tar');
  fs.writeFileSync(cutT, await pack(list.slice(0, i + 1)));
  await refused(F, cutT, /no complete CRIU checkpoint|truncated/, ['-n', 'cut2']);
});

test('refused: a corrupt or tampered Podman archive', { skip }, async () => {
  // A byte changed in the compressed stream: the compression's checksum catches it.
  const z = Buffer.from(fs.readFileSync(POD_ZST));
  z[Math.floor(z.length * 0.6)]! ^= 0xff;
  const bad = path.join(tmp, 'flipped.tar.zst');
  fs.writeFileSync(bad, z);
  await refused(F, bad, /corrupt or truncated|bad checkpoint archive/, ['-n', 'tam1']);
  // spec.dump changed to bind-mount the host's /etc: refused unless asked for.
  const hostMount = await craft((list) => {
    const e = list.find((x) => x.header.name === 'spec.dump')!;
    const spec = JSON.parse(e.data.toString());
    spec.mounts.push({ destination: '/host-etc', type: 'bind', source: '/etc', options: ['rbind'] });
    e.data = Buffer.from(JSON.stringify(spec));
  });
  await refused(F, hostMount, /bind-mounts host path \/etc/, ['-n', 'tam2']);
  // spec.dump changed to a container in the host's PID namespace, or in a user namespace.
  for (const [edit, re] of [
    [(ns: { type: string }[]) => ns.filter((n) => n.type !== 'pid'), /shares the host's pid namespace/],
    [(ns: { type: string }[]) => [...ns, { type: 'user' }], /user namespace/],
  ] as const) {
    const a = await craft((list) => {
      const e = list.find((x) => x.header.name === 'spec.dump')!;
      const spec = JSON.parse(e.data.toString());
      spec.linux.namespaces = edit(spec.linux.namespaces);
      e.data = Buffer.from(JSON.stringify(spec));
    });
    await refused(F, a, re, ['-n', 'tam-ns']);
  }
  // rootfs-diff.tar holding a device node.
  const dev = await craft(() => undefined);
  const list = await readEntries(dev);
  await replace(list, 'rootfs-diff.tar', [{ header: { name: 'dev/evil', type: 'character-device', devmajor: 1, devminor: 1, mode: 0o666, mtime: new Date() }, data: Buffer.alloc(0) }]);
  fs.writeFileSync(dev, await pack(list));
  await refused(F, dev, /is a device node/, ['-n', 'tam3']);
  // A CRIU image taken out: everything checks out, CRIU's restore fails, nothing is left.
  const noCore = await craft((list) => list.filter((e) => !/^checkpoint\/core-[0-9]+\.img$/.test(e.header.name) || e.header.name === 'checkpoint/core-1.img'));
  await refused(F, noCore, /restore of tam4 failed: .*nothing was created/, ['-n', 'tam4', '--ignore-volumes']);
  // Not a checkpoint at all: a tar with neither Ferry's header nor Podman's dump files.
  const junk = path.join(tmp, 'junk.tar');
  fs.writeFileSync(junk, await pack([file('hello.txt')]));
  await refused(F, junk, /does not start with ferry-archive\.json and is not a Podman checkpoint either/);
});

test('refused: Podman archives with paths that escape', { skip }, async () => {
  const rel = path.relative(tmp, outside);
  // A member of the archive itself.
  const outer = await craft((list) => [...list.slice(0, 3), file(`../${rel}/x`), ...list.slice(3)]);
  await refused(F, outer, /leaves the archive's directory/, ['-n', 'esc1']);
  const abs = await craft((list) => [...list.slice(0, 3), file(`${outside}/x`), ...list.slice(3)]);
  await refused(F, abs, /absolute path|leaves the archive's directory|unexpected member/, ['-n', 'esc2']);
  // Inside rootfs-diff.tar: "..", a symlink out of the tree and a file below it, a hard link out.
  for (const [i, inner] of [
    [file(`../../../${rel}/x`)],
    [link('etc/out', 'symlink', outside), file('etc/out/x')],
    [link('etc/pw', 'link', '../../etc/passwd')],
  ].entries()) {
    const a = await craft(() => undefined);
    const list = await readEntries(a);
    await replace(list, 'rootfs-diff.tar', inner as Entry[]);
    fs.writeFileSync(a, await pack(list));
    await refused(F, a, /leaves the archive's directory|below the symbolic link|points outside its tree/, ['-n', `esc-r${i}`]);
  }
  // In a volume's tar, and in deleted.files.
  const vol = await craft(() => undefined);
  const vlist = await readEntries(vol);
  await replace(vlist, 'volumes/pdata.tar', [file(`../${rel}/x`)]);
  fs.writeFileSync(vol, await pack(vlist));
  await refused(F, vol, /leaves the archive's directory/, ['-n', 'esc-v']);
  const del = await craft((list) => {
    const e = list.find((x) => x.header.name === 'deleted.files')!;
    e.data = Buffer.from(JSON.stringify([`/../../${rel}`]));
  });
  await refused(F, del, /leaves the archive's directory/, ['-n', 'esc-d']);
});

test('refused: a Podman archive on a network this host does not have, on two networks, or with a bad port mapping', { skip }, async () => {
  const onNets = (nets: Record<string, unknown>, more: Record<string, unknown> = {}) =>
    craft((list) => {
      const e = list.find((x) => x.header.name === 'config.dump')!;
      const c = JSON.parse(e.data.toString());
      Object.assign(c, { createNetNS: true, networkMode: 'bridge', newNetworks: nets }, more);
      e.data = Buffer.from(JSON.stringify(c));
    });
  await refused(F, await onNets({ backend: { interface_name: 'eth0' } }), /on network backend, which this host does not have: create it first \(`ferry network create backend`\)/, ['-n', 'net1']);
  await refused(F, await onNets({ podman: { interface_name: 'eth0' }, backend: { interface_name: 'eth1' } }), /on networks podman, backend: ferry imports Podman containers on one network/, ['-n', 'net2']);
  await refused(F, await onNets({ 'bad\nname': { interface_name: 'eth0' } }), /config\.dump names an invalid network/, ['-n', 'net3']);
  const bad = [
    [{ host_ip: '', container_port: 80, host_port: 70000, range: 1, protocol: 'tcp' }],
    [{ host_ip: '127.0.0.1; rm -rf /', container_port: 80, host_port: 8080, range: 1, protocol: 'tcp' }],
    [{ host_ip: '', container_port: 80, host_port: 8080, range: 1, protocol: 'sctp' }],
  ];
  for (const [i, ports] of bad.entries()) {
    await refused(F, await onNets({ podman: { interface_name: 'eth0' } }, { newPortMappings: ports }), /port mapping in config\.dump|publishes sctp ports/, ['-n', `net-p${i}`, '--ignore-static-ip']);
  }
});
