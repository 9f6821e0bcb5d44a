/**
 * Issue 5: established TCP connections survive checkpoint/restore, in place and across two
 * Ferry roots (export/import); a copy restored under a new name gets a new address.
 * Traffic goes only to container IPs on Ferry's bridge (namespaces Ferry made) and loopback.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Host, isRoot } from '../helpers/ferry.js';
import { assertNoNetLeaks, EchoClient, freeIp, noEcho, snapshotNet, waitEcho } from '../helpers/net.js';

const SKIP = !isRoot() ? 'needs root' : false;
const ECHO = ['nc', '-ll', '-p', '7000', '-e', 'cat'];

describe('network: TCP across checkpoint/restore', { skip: SKIP }, () => {
  let a: Host;
  let b: Host;
  const clients: EchoClient[] = [];

  before(async () => {
    a = new Host('ntcpa');
    b = new Host('ntcpb');
    await a.importBusybox();
    await b.importBusybox();
  });
  after(async () => {
    for (const c of clients) c.close();
    await a?.destroy();
    await b?.destroy();
  });

  it('keeps one established connection across checkpoint/restore in place', async () => {
    const ip = freeIp();
    await a.ok(['run', '-d', '--name', 'echo', '--ip', ip, 'busybox', ...ECHO]);
    await waitEcho(ip, 7000);
    const c = await EchoClient.connect(ip, 7000);
    clients.push(c);
    await c.echo('before');
    const before = await a.inspect('echo');

    const r = await a.fails(['container', 'checkpoint', 'echo']);
    assert.match(r.stderr, /add --tcp-established/);
    assert.equal((await a.inspect('echo')).State.Status, 'running');
    await c.echo('after-refused-checkpoint');

    const snap = snapshotNet(a, 'echo');
    await a.ok(['container', 'checkpoint', '--tcp-established', 'echo']);
    assert.equal((await a.inspect('echo')).State.Status, 'exited');
    assertNoNetLeaks(a, [snap]);
    await a.ok(['container', 'restore', '--tcp-established', 'echo']);
    const now = await a.inspect('echo');
    assert.equal(now.NetworkSettings.IPAddress, ip);
    assert.equal(now.NetworkSettings.MacAddress, before.NetworkSettings.MacAddress);
    await c.echo('after-restore');
    await c.echo('again');
    assertNoNetLeaks(a);
  });

  it('keeps the same connection across two roots (export on A, import on B)', async () => {
    const ip = freeIp();
    const file = path.join(a.dir, 'echo2.tar.zst');
    await a.ok(['run', '-d', '--name', 'echo2', '--ip', ip, 'busybox', ...ECHO]);
    await waitEcho(ip, 7000);
    const c = await EchoClient.connect(ip, 7000);
    clients.push(c);
    await c.echo('on-a');
    const mac = (await a.inspect('echo2')).NetworkSettings.MacAddress;
    const snap = snapshotNet(a, 'echo2');

    await a.ok(['container', 'checkpoint', '--tcp-established', '--export', file, 'echo2']);
    assert.ok(fs.statSync(file).size > 0);
    assertNoNetLeaks(a, [snap]);
    await b.ok(['container', 'restore', '--import', file, '--tcp-established']);
    const ib = await b.inspect('echo2');
    assert.equal(ib.State.Status, 'running');
    assert.equal(ib.NetworkSettings.IPAddress, ip);
    assert.equal(ib.NetworkSettings.MacAddress, mac);
    await c.echo('on-b');
    await c.echo('on-b-again');
    // New connections reach B's copy too.
    await waitEcho(ip, 7000);
    assertNoNetLeaks(b);
    const onB = snapshotNet(b, 'echo2');
    await b.ok(['rm', '-f', 'echo2']);
    assertNoNetLeaks(b, [onB]);
  });

  it('restores a listening server under a new name with a new IP (-n), and refuses -n with established TCP', async () => {
    const ip = freeIp();
    const file = path.join(a.dir, 'srv.tar');
    await a.ok(['run', '-d', '--name', 'srv', '--ip', ip, 'busybox', ...ECHO]);
    await waitEcho(ip, 7000);
    await a.ok(['container', 'checkpoint', '--export', file, '--compress', 'none', 'srv']);

    // -n with --tcp-established: refused up front, nothing made.
    const names = await b.names();
    const r1 = await b.fails(['container', 'restore', '--import', file, '-n', 'srv-tcp', '--tcp-established']);
    assert.match(r1.stderr, /--tcp-established/);
    assert.match(r1.stderr, /-n\/--name|new IP|old IP/);
    assert.deepEqual(await b.names(), names);

    await b.ok(['container', 'restore', '--import', file, '-n', 'srv-copy']);
    const copy = await b.inspect('srv-copy');
    const newIp = copy.NetworkSettings.IPAddress as string;
    assert.match(newIp, /^10\.89\.\d+\.\d+$/);
    assert.notEqual(newIp, ip);
    await waitEcho(newIp, 7000);
    assert.ok(await noEcho(ip, 7000), 'the old address still answers');
    assertNoNetLeaks(b);
  });

  it('a checkpoint with established TCP imported under a new name needs --tcp-close', async () => {
    const ip = freeIp();
    const file = path.join(a.dir, 'srvt.tar');
    await a.ok(['run', '-d', '--name', 'srvt', '--ip', ip, 'busybox', ...ECHO]);
    await waitEcho(ip, 7000);
    const c = await EchoClient.connect(ip, 7000);
    clients.push(c);
    await c.echo('x');
    await a.ok(['container', 'checkpoint', '--tcp-established', '--export', file, '--compress', 'none', 'srvt']);

    const names = await b.names();
    const r = await b.fails(['container', 'restore', '--import', file, '-n', 'srvt-copy']);
    assert.match(r.stderr, /--tcp-close/);
    assert.deepEqual(await b.names(), names);
    assertNoNetLeaks(b);

    await b.ok(['container', 'restore', '--import', file, '-n', 'srvt-copy', '--tcp-close']);
    const copy = await b.inspect('srvt-copy');
    assert.equal(copy.State.Status, 'running');
    assert.notEqual(copy.NetworkSettings.IPAddress, ip);
    await waitEcho(copy.NetworkSettings.IPAddress, 7000);
    assertNoNetLeaks(b);
  });
});
