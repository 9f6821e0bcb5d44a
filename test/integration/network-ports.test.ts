/**
 * Issue 5: published ports (-p HOST:CTR) answer on 127.0.0.1 before a checkpoint, after an
 * in-place restore and after an import on another root; restore --import -p replaces them;
 * `port`, `inspect` and `ps` show them.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Host, isRoot } from '../helpers/ferry.js';
import { assertNoNetLeaks, freeIp, freePort, noEcho, snapshotNet, waitEcho } from '../helpers/net.js';

const SKIP = !isRoot() ? 'needs root' : false;
const ECHO = ['nc', '-ll', '-p', '7000', '-e', 'cat'];
const LO = '127.0.0.1';

describe('network: published ports across checkpoint/restore', { skip: SKIP }, () => {
  let a: Host;
  let b: Host;
  let p1: number;
  let p2: number;
  let ip: string;

  before(async () => {
    a = new Host('nporta');
    b = new Host('nportb');
    await a.importBusybox();
    await b.importBusybox();
    p1 = await freePort();
    do p2 = await freePort();
    while (p2 === p1);
    ip = freeIp();
  });
  after(async () => {
    await a?.destroy();
    await b?.destroy();
  });

  it('publishes a port and shows it in port, inspect and ps', async () => {
    await a.ok(['run', '-d', '--name', 'web', '--ip', ip, '-p', `${p1}:7000`, 'busybox', ...ECHO]);
    await waitEcho(LO, p1);
    assert.equal(await a.ok(['port', 'web']), `7000/tcp -> 0.0.0.0:${p1}`);
    assert.equal(await a.ok(['port', 'web', '7000']), `0.0.0.0:${p1}`);
    assert.equal(await a.ok(['port', 'web', '7000/tcp']), `0.0.0.0:${p1}`);
    const i = await a.inspect('web');
    assert.equal(i.NetworkSettings.IPAddress, ip);
    assert.match(i.NetworkSettings.MacAddress, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.deepEqual(i.NetworkSettings.Ports, { '7000/tcp': [{ HostIp: '', HostPort: String(p1) }] });
    const table = await a.ok(['ps']);
    assert.match(table.split('\n')[0]!, /PORTS/);
    assert.match(table, new RegExp(`0\\.0\\.0\\.0:${p1}->7000/tcp`));
    assert.equal(await a.ok(['ps', '--format', '{{.Names}} {{.Ports}}']), `web 0.0.0.0:${p1}->7000/tcp`);
    const json = JSON.parse(await a.ok(['ps', '--format', 'json']));
    assert.deepEqual(json[0].Ports, [{ host_ip: '', container_port: 7000, host_port: p1, range: 1, protocol: 'tcp' }]);
  });

  it('keeps the port across checkpoint and restore in place', async () => {
    const snap = snapshotNet(a, 'web');
    await a.ok(['container', 'checkpoint', 'web']);
    assert.ok(await noEcho(LO, p1), 'the port still answers while the container is checkpointed');
    assertNoNetLeaks(a, [snap]);
    await a.ok(['container', 'restore', 'web']);
    await waitEcho(LO, p1);
    assert.equal(await a.ok(['port', 'web']), `7000/tcp -> 0.0.0.0:${p1}`);
    assert.equal((await a.inspect('web')).NetworkSettings.IPAddress, ip);
  });

  it('keeps the port after an import on another root, and -p replaces it', async () => {
    const file = path.join(a.dir, 'web.tar');
    await a.ok(['container', 'checkpoint', '--export', file, '--compress', 'none', 'web']);
    assert.ok(await noEcho(LO, p1));
    await b.ok(['container', 'restore', '--import', file]);
    await waitEcho(LO, p1);
    assert.equal((await b.inspect('web')).NetworkSettings.IPAddress, ip);
    assert.equal(await b.ok(['port', 'web']), `7000/tcp -> 0.0.0.0:${p1}`);

    const snap = snapshotNet(b, 'web');
    await b.ok(['rm', '-f', 'web']);
    assert.ok(await noEcho(LO, p1), 'the port still answers after rm');
    assertNoNetLeaks(b, [snap]);

    await b.ok(['container', 'restore', '--import', file, '-p', `${p2}:7000`]);
    await waitEcho(LO, p2);
    assert.ok(await noEcho(LO, p1), 'the replaced port still answers');
    assert.equal(await b.ok(['port', 'web']), `7000/tcp -> 0.0.0.0:${p2}`);
    const i = await b.inspect('web');
    assert.deepEqual(i.NetworkSettings.Ports, { '7000/tcp': [{ HostIp: '', HostPort: String(p2) }] });
    assert.match(await b.ok(['ps']), new RegExp(`0\\.0\\.0\\.0:${p2}->7000/tcp`));
    assertNoNetLeaks(b);
  });

  it('refuses a malformed -p clearly', async () => {
    for (const bad of ['abc', '70000:80', `${p1}:0`, `${p1}:80/sctp`]) {
      const r = await a.fails(['run', '-d', '-p', bad, 'busybox', 'true']);
      assert.match(r.stderr, /invalid port/);
    }
  });
});
