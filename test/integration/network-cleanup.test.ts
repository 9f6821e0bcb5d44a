/**
 * Issue 5: no network resource outlives its use. stop/rm/checkpoint and a container killed
 * while no ferry runs release the netns, veth and IPAM entry; a restore that fails because its
 * address is taken (or because CRIU fails after the network is up) leaves nothing behind and
 * keeps the checkpoint restorable. Only this test's containers are counted.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { eventually, Host, isRoot, LOOPER } from '../helpers/ferry.js';
import { assertNoNetLeaks, criuChains, freeIp, ipamEntries, linkExists, netnsExists, snapshotNet } from '../helpers/net.js';

const SKIP = !isRoot() ? 'needs root' : false;

describe('network: cleanup and failed restores', { skip: SKIP }, () => {
  let h: Host;
  let other: Host;

  before(async () => {
    h = new Host('nclean');
    other = new Host('nclnb');
    await h.importBusybox();
    await other.importBusybox();
  });
  after(async () => {
    await h?.destroy();
    await other?.destroy();
  });

  it('releases netns, veth and IPAM entry on stop, rm and checkpoint', async () => {
    for (const n of ['c1', 'c2', 'c3']) await h.ok(['run', '-d', '--name', n, 'busybox', ...LOOPER]);
    const snaps = ['c1', 'c2', 'c3'].map((n) => snapshotNet(h, n));
    for (const s of snaps) {
      assert.ok(netnsExists(s.netns!) && s.veth && linkExists(s.veth), `${s.name} has no netns/veth`);
      assert.equal(ipamEntries(h).get(s.ip!), s.id);
    }
    assertNoNetLeaks(h);
    await h.ok(['stop', '-t', '0', 'c1']);
    await h.ok(['rm', '-f', 'c2']);
    await h.ok(['container', 'checkpoint', 'c3']);
    assertNoNetLeaks(h, snaps);
    assert.equal(ipamEntries(h).size, 0);
    await h.ok(['rm', '-f', 'c1', 'c3']);
    assertNoNetLeaks(h, snaps);
  });

  it('releases them when the container is killed while no ferry runs', async () => {
    await h.ok(['run', '-d', '--name', 'victim', 'busybox', ...LOOPER]);
    const s = snapshotNet(h, 'victim');
    const pid = (await h.inspect('victim')).State.Pid as number;
    assert.ok(pid > 0);
    process.kill(pid, 'SIGKILL');
    // conmon's exit command (`ferry container cleanup`) releases the network without our help.
    await eventually(() => !netnsExists(s.netns!) && !linkExists(s.veth!) && !ipamEntries(h).has(s.ip!), 15_000);
    assert.match(await h.ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /victim Exited/);
    assertNoNetLeaks(h, [s]);
    await h.ok(['rm', 'victim']);
  });

  it('a restore whose address is taken fails, names the holder, leaves nothing, and works later', async () => {
    await h.ok(['run', '-d', '--name', 'x', 'busybox', ...LOOPER]);
    const sx = snapshotNet(h, 'x');
    const ip = sx.ip!;
    await h.ok(['container', 'checkpoint', 'x']);
    const cpDir = path.join(h.root, 'containers', sx.id, 'checkpoint');
    const files = fs.readdirSync(cpDir).sort();
    await h.ok(['run', '-d', '--name', 'holder', '--ip', ip, 'busybox', ...LOOPER]);
    const sh = snapshotNet(h, 'holder');

    const r = await h.fails(['container', 'restore', 'x']);
    assert.match(r.stderr, new RegExp(`${ip.replace(/\./g, '\\.')}.*holder`));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    const ix = await h.inspect('x');
    assert.equal(ix.State.Status, 'exited');
    assert.deepEqual(fs.readdirSync(cpDir).sort(), files, 'the checkpoint changed');
    assert.deepEqual(h.mounts().filter((m) => m.includes(sx.id)), []);
    assertNoNetLeaks(h, [sx]);
    assert.deepEqual([...ipamEntries(h).keys()], [ip]); // the holder's only

    await h.ok(['rm', '-f', 'holder']);
    assertNoNetLeaks(h, [sh]);
    await h.ok(['container', 'restore', 'x']);
    assert.equal((await h.inspect('x')).NetworkSettings.IPAddress, ip);
    assertNoNetLeaks(h);
    await h.ok(['rm', '-f', 'x']);
  });

  it('an address taken by another root\'s container is refused the same way', async () => {
    const ip = freeIp();
    await h.ok(['run', '-d', '--name', 'y', '--ip', ip, 'busybox', ...LOOPER]);
    const sy = snapshotNet(h, 'y');
    await h.ok(['container', 'checkpoint', 'y']);
    await other.ok(['run', '-d', '--name', 'squatter', '--ip', ip, 'busybox', ...LOOPER]);
    const r = await h.fails(['container', 'restore', 'y']);
    assert.match(r.stderr, new RegExp(`${ip.replace(/\./g, '\\.')} is already in use`));
    assertNoNetLeaks(h, [sy]);
    // Automatic addresses avoid it too.
    await h.ok(['run', '-d', '--name', 'auto', 'busybox', ...LOOPER]);
    assert.notEqual((await h.inspect('auto')).NetworkSettings.IPAddress, ip);
    await other.ok(['rm', '-f', 'squatter']);
    await h.ok(['container', 'restore', 'y']);
    assert.equal((await h.inspect('y')).NetworkSettings.IPAddress, ip);
    await h.ok(['rm', '-f', 'y', 'auto']);
    assertNoNetLeaks(h, [sy]);
    assertNoNetLeaks(other);
  });

  it('a restore that CRIU fails after the network is up leaves no netns, veth, IPAM entry or CRIU chain', async () => {
    // The process holds /held open; deleting it from the rootfs makes CRIU's restore fail.
    await h.ok(['run', '-d', '--name', 'z', 'busybox', 'sh', '-c', 'echo data > /held; exec sleep 1000 3</held']);
    const sz = snapshotNet(h, 'z');
    await h.ok(['container', 'checkpoint', 'z']);
    // Through the rootfs mount, which a checkpointed container keeps (never behind overlayfs' back).
    const held = path.join(h.root, 'overlay', sz.id, 'merged', 'held');
    assert.ok(fs.existsSync(held));
    fs.renameSync(held, `${held}.away`);
    const r = await h.fails(['container', 'restore', 'z']);
    assert.match(r.stderr, /restore of z failed/);
    assert.equal((await h.inspect('z')).State.Status, 'exited');
    assertNoNetLeaks(h, [sz]);
    assert.deepEqual(criuChains(), []);
    assert.equal(ipamEntries(h).size, 0);
    // The failed restore unmounted the rootfs: put the file back in the upper dir (over the
    // whiteout the rename left there).
    const upper = path.join(h.root, 'overlay', sz.id, 'upper');
    assert.equal(fs.existsSync(held), false, 'rootfs unmounted after the failed restore');
    fs.renameSync(path.join(upper, 'held.away'), path.join(upper, 'held'));
    await h.ok(['container', 'restore', 'z']);
    assert.equal((await h.inspect('z')).NetworkSettings.IPAddress, sz.ip);
    await h.ok(['rm', '-f', 'z']);
    assertNoNetLeaks(h, [sz]);
  });
});
