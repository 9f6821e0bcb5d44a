/**
 * Issue 5: --ip/--mac-address kept across checkpoint/restore, their refusals, --network none and
 * host, and user networks (network create/ls/inspect/rm).
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Host, isRoot, LOOPER } from '../helpers/ferry.js';
import { assertNoNetLeaks, execOut, freeIp, linkExists, snapshotNet } from '../helpers/net.js';

const SKIP = !isRoot() ? 'needs root' : false;

/** eth0's IPv4 address and MAC as `ip addr` inside the container shows them. */
async function inside(h: Host, ref: string): Promise<{ ip: string; mac: string }> {
  const out = await execOut(h, ref, ['ip', 'addr', 'show', 'eth0']);
  return { ip: out.match(/inet (\d+\.\d+\.\d+\.\d+)\//)?.[1] ?? '', mac: out.match(/link\/ether ([0-9a-f:]{17})/)?.[1] ?? '' };
}

describe('network: addresses, modes and user networks', { skip: SKIP }, () => {
  let h: Host;
  // A /24 well away from where automatic subnets start (10.90.0.0), random against other tests.
  const third = 100 + Math.floor(Math.random() * 150);
  const subnet = `10.91.${third}.0/24`;
  const netName = `nt-${process.pid}`;

  before(async () => {
    h = new Host('nconf');
    await h.importBusybox();
  });
  after(async () => {
    await h?.destroy();
  });

  it('honours --ip and --mac-address, and keeps them across checkpoint/restore', async () => {
    const ip = freeIp();
    const mac = '02:42:ac:11:2b:3c';
    await h.ok(['run', '-d', '--name', 'static', '--ip', ip, '--mac-address', mac.toUpperCase(), 'busybox', ...LOOPER]);
    let i = await h.inspect('static');
    assert.equal(i.NetworkSettings.IPAddress, ip);
    assert.equal(i.NetworkSettings.MacAddress, mac);
    assert.equal(i.NetworkSettings.Gateway, '10.89.0.1');
    assert.equal(i.NetworkSettings.IPPrefixLen, 16);
    assert.deepEqual(await inside(h, 'static'), { ip, mac });

    const snap = snapshotNet(h, 'static');
    await h.ok(['container', 'checkpoint', 'static']);
    assertNoNetLeaks(h, [snap]);
    await h.ok(['container', 'restore', 'static']);
    i = await h.inspect('static');
    assert.equal(i.NetworkSettings.IPAddress, ip);
    assert.equal(i.NetworkSettings.MacAddress, mac);
    assert.deepEqual(await inside(h, 'static'), { ip, mac });

    // A plain stop/start keeps the requested address too.
    await h.ok(['stop', '-t', '0', 'static']);
    await h.ok(['start', 'static']);
    assert.deepEqual(await inside(h, 'static'), { ip, mac });
    assertNoNetLeaks(h, [snap]);
  });

  it('refuses a bad --ip or --mac-address clearly, creating nothing', async () => {
    const names = await h.names();
    const cases: [string[], RegExp][] = [
      [['--ip', '10.99.0.5'], /10\.99\.0\.5 is not in network ferry's subnet 10\.89\.0\.0\/16/],
      [['--ip', '10.89.0.300'], /invalid --ip/],
      [['--ip', '10.89.0.1'], /gateway/],
      [['--mac-address', 'zz:42:ac:11:00:02'], /invalid --mac-address/],
      [['--mac-address', '01:00:5e:00:00:01'], /invalid --mac-address/],
      [['--network', 'none', '--ip', freeIp()], /need a bridge network/],
      [['--network', 'host', '--mac-address', '02:42:ac:11:00:09'], /need a bridge network/],
      [['--network', 'none', '-p', '45123:80'], /need a bridge network/],
      [['--network', 'nosuchnet'], /no network named "nosuchnet"/],
    ];
    for (const [flags, re] of cases) {
      const r = await h.fails(['run', '-d', ...flags, 'busybox', 'true']);
      assert.match(r.stderr, re, `ferry run ${flags.join(' ')}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    assert.deepEqual(await h.names(), names);
  });

  it('--network none gives only lo, and survives checkpoint/restore', async () => {
    await h.ok(['run', '-d', '--name', 'nonet', '--network', 'none', 'busybox', ...LOOPER]);
    const ifs = (await execOut(h, 'nonet', ['cat', '/proc/net/dev'])).split('\n').slice(2).map((l) => l.trim().split(':')[0]);
    assert.deepEqual(ifs, ['lo']);
    assert.doesNotMatch(await execOut(h, 'nonet', ['ip', 'addr']), /eth0/);
    const i = await h.inspect('nonet');
    assert.equal(i.NetworkSettings.IPAddress, '');
    await h.ok(['container', 'checkpoint', 'nonet']);
    await h.ok(['container', 'restore', 'nonet']);
    const after = (await execOut(h, 'nonet', ['cat', '/proc/net/dev'])).split('\n').slice(2).map((l) => l.trim().split(':')[0]);
    assert.deepEqual(after, ['lo']);
  });

  it('--network host shares the host\'s interfaces and cannot be checkpointed', async () => {
    await h.ok(['run', '-d', '--name', 'hostnet', '--network', 'host', 'busybox', ...LOOPER]);
    const dev = await execOut(h, 'hostnet', ['cat', '/proc/net/dev']);
    assert.match(dev, /ferry0:/);
    assert.equal(dev.split('\n').length, fs.readFileSync('/proc/net/dev', 'utf8').trim().split('\n').length);
    const r = await h.fails(['container', 'checkpoint', 'hostnet']);
    assert.match(r.stderr, /--network host.*cannot be checkpointed/);
    assert.equal((await h.inspect('hostnet')).State.Status, 'running');
    await h.ok(['rm', '-f', 'hostnet', 'nonet']);
  });

  it('creates, lists, inspects and removes user networks', async () => {
    assert.equal(await h.ok(['network', 'create', '--subnet', subnet, netName]), netName);
    assert.ok((await h.ok(['network', 'ls', '-q'])).split('\n').includes(netName));
    assert.match(await h.ok(['network', 'ls']), new RegExp(`${netName}\\s+bridge\\s+10\\.91\\.${third}\\.0/24`));
    const n = JSON.parse(await h.ok(['network', 'inspect', netName]))[0];
    assert.equal(n.name, netName);
    assert.deepEqual(n.subnets, [{ subnet, gateway: `10.91.${third}.1` }]);
    assert.match(n.network_interface, /^ferry\d+$/);

    // Refusals: same name, overlapping subnet, bad subnet, the default network.
    assert.match((await h.fails(['network', 'create', '--subnet', `10.91.${third}.0/24`, netName])).stderr, /already exists/);
    assert.match((await h.fails(['network', 'create', '--subnet', `10.91.${third}.128/25`, `${netName}-b`])).stderr, /overlaps network/);
    assert.match((await h.fails(['network', 'create', '--subnet', '10.89.5.0/24', `${netName}-c`])).stderr, /overlaps network "ferry"/);
    assert.match((await h.fails(['network', 'create', '--subnet', 'bogus', `${netName}-d`])).stderr, /invalid --subnet/);
    assert.match((await h.fails(['network', 'rm', 'ferry'])).stderr, /cannot be removed/);
    assert.match((await h.fails(['network', 'rm', '-f', 'ferry'])).stderr, /cannot be removed/);

    // A container on it gets an address in its subnet, kept across checkpoint/restore.
    await h.ok(['run', '-d', '--name', 'onnet', '--network', netName, 'busybox', ...LOOPER]);
    const i = await h.inspect('onnet');
    const ip = i.NetworkSettings.IPAddress as string;
    assert.match(ip, new RegExp(`^10\\.91\\.${third}\\.\\d+$`));
    assert.equal(i.NetworkSettings.Gateway, `10.91.${third}.1`);
    assert.deepEqual(Object.keys(i.NetworkSettings.Networks), [netName]);
    assert.equal((await inside(h, 'onnet')).ip, ip);
    await h.ok(['container', 'checkpoint', 'onnet']);
    await h.ok(['container', 'restore', 'onnet']);
    assert.equal((await inside(h, 'onnet')).ip, ip);
    assertNoNetLeaks(h, [], netName, n.network_interface);

    // rm is refused while in use; -f removes the users first.
    const r = await h.fails(['network', 'rm', netName]);
    assert.match(r.stderr, /used by container onnet/);
    const snap = snapshotNet(h, 'onnet');
    assert.equal(await h.ok(['network', 'rm', '-f', netName]), netName);
    assert.ok(!(await h.names()).includes('onnet'));
    assert.ok(!(await h.ok(['network', 'ls', '-q'])).split('\n').includes(netName));
    assertNoNetLeaks(h, [snap], netName, n.network_interface);
    assert.ok(!linkExists(n.network_interface), `bridge ${n.network_interface} is left behind`);
    assert.match((await h.fails(['run', '-d', '--network', netName, 'busybox', 'true'])).stderr, /no network named/);

    // The name can be used again, with another subnet (and a bridge that has no stale address).
    await h.ok(['network', 'create', '--subnet', `10.91.${third}.64/26`, netName]);
    await h.ok(['run', '-d', '--name', 'onnet2', '--network', netName, 'busybox', ...LOOPER]);
    assert.match((await h.inspect('onnet2')).NetworkSettings.IPAddress, new RegExp(`^10\\.91\\.${third}\\.(6[5-9]|[7-9]\\d|1[01]\\d|12[0-6])$`));
    const n2 = JSON.parse(await h.ok(['network', 'inspect', netName]))[0];
    await h.ok(['network', 'rm', '-f', netName]);
    assert.ok(!linkExists(n2.network_interface), `bridge ${n2.network_interface} is left behind`);
  });
});
