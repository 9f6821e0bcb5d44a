// The network driver's arithmetic and parsing, which decide before any CNI plugin runs what
// a container asks for: addresses and subnets, MACs, -p forms, the subnets and bridges new
// networks get, the next free address, and the conflist handed to the plugins. The network
// store works in a temporary directory; nothing here touches the host's network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  containerResolvConf,
  DEFAULT_NETWORK,
  DNS_DOMAIN,
  DEFAULT_SUBNET,
  formatIPv4,
  inSubnet,
  netnsName,
  NetworkStore,
  parseCidr,
  parseIPv4,
  parsePublish,
  validMac,
} from '../../src/drivers/network/cni.js';
import { FerryError } from '../../src/lib/errors.js';

function store(t: { after: (fn: () => void) => void }): { s: NetworkStore; dir: string } {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cni-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  const dir = path.join(d, 'networks');
  return { s: new NetworkStore(dir), dir };
}

const isErr = (code: string, message: string) => (e: unknown) => e instanceof FerryError && e.code === code && e.message === message;

// ------------------------------------------------------------------------- addresses

test('parseIPv4: dotted quads to unsigned 32-bit numbers', () => {
  const cases: [string, number][] = [
    ['0.0.0.0', 0],
    ['0.0.0.1', 1],
    ['10.89.0.0', 173_604_864],
    ['10.89.0.1', 173_604_865],
    ['192.168.1.1', 3_232_235_777],
    ['128.0.0.0', 2 ** 31],
    ['255.255.255.255', 2 ** 32 - 1],
  ];
  for (const [s, n] of cases) {
    assert.equal(parseIPv4(s), n, s);
    assert.equal(formatIPv4(n), s, `${n} back to ${s}`);
  }
});

test('parseIPv4 refuses what is not a plain dotted quad', () => {
  for (const bad of [
    '', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1.2.3.256', '1234.1.1.1', '-1.2.3.4', 'a.b.c.d', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.4/24',
    '1..2.3', '0x0a.0.0.1', '::1', 'fd00::2',
    // Leading zeros: the CNI plugins (Go's net.ParseIP) refuse them, and some tools read them as octal.
    '010.89.0.5', '10.89.0.05', '10.89.00.5',
  ]) {
    assert.equal(parseIPv4(bad), undefined, JSON.stringify(bad));
  }
});

test('parseCidr: the network address and prefix, host bits dropped; prefixes 8 to 30 only', () => {
  assert.deepEqual(parseCidr('10.89.0.0/16'), { base: 173_604_864, prefix: 16 });
  assert.deepEqual(parseCidr('10.89.3.7/24'), { base: 173_605_632, prefix: 24 });
  assert.deepEqual(parseCidr('10.255.255.255/8'), { base: 10 * 2 ** 24, prefix: 8 });
  assert.deepEqual(parseCidr('192.168.1.7/30'), { base: 3_232_235_780, prefix: 30 });
  for (const bad of [
    '10.0.0.0', '10.0.0.0/', '10.0.0.0/7', '10.0.0.0/31', '10.0.0.0/32', '10.0.0.0/0', '/24', '10.0.0/24', '300.0.0.0/24',
    // Prefixes that Number() would take but are not a prefix length
    '10.0.0.0/24/8', '10.0.0.0/0x18', '10.0.0.0/ 24', '10.0.0.0/24.0', '10.0.0.0/+24', '10.0.0.0/2.4e1',
  ]) {
    assert.equal(parseCidr(bad), undefined, bad);
  }
});

test('inSubnet: inside, on the edges, and outside', () => {
  assert.equal(inSubnet('10.89.0.5', '10.89.0.0/16'), true);
  assert.equal(inSubnet('10.89.0.0', '10.89.0.0/16'), true);
  assert.equal(inSubnet('10.89.255.255', '10.89.0.0/16'), true);
  assert.equal(inSubnet('10.88.255.255', '10.89.0.0/16'), false);
  assert.equal(inSubnet('10.90.0.0', '10.89.0.0/16'), false);
  assert.equal(inSubnet('10.89.0.5', '10.89.7.1/16'), true, 'host bits of the CIDR do not matter');
  assert.equal(inSubnet('192.168.1.4', '192.168.1.4/30'), true);
  assert.equal(inSubnet('192.168.1.7', '192.168.1.4/30'), true);
  assert.equal(inSubnet('192.168.1.8', '192.168.1.4/30'), false);
  assert.equal(inSubnet('192.168.1.3', '192.168.1.4/30'), false);
  assert.equal(inSubnet('10.255.1.1', '10.0.0.0/8'), true);
  assert.equal(inSubnet('11.0.0.0', '10.0.0.0/8'), false);
  assert.equal(inSubnet('10.89.0.256', '10.89.0.0/16'), false, 'not an address');
  assert.equal(inSubnet('10.89.0.05', '10.89.0.0/16'), false, 'not a plain address');
  assert.equal(inSubnet('10.89.0.5', '10.89.0.0/31'), false, 'not a usable subnet');
  assert.equal(inSubnet('10.89.0.5', 'garbage'), false);
});

test('validMac: six hex pairs, unicast only', () => {
  for (const ok of ['02:42:ac:11:00:02', '02:42:AC:11:00:02', '00:00:00:00:00:01', 'fe:ff:ff:ff:ff:ff', '0a:00:00:00:00:00']) assert.equal(validMac(ok), true, ok);
  for (const bad of [
    '01:00:5e:00:00:01', // multicast
    'ff:ff:ff:ff:ff:ff', // broadcast
    '03:42:ac:11:00:02', // multicast bit with the local bit
    '02:42:ac:11:00',
    '02:42:ac:11:00:02:03',
    '02-42-ac-11-00-02',
    '0242.ac11.0002',
    '2:42:ac:11:0:2',
    '02:42:ac:11:00:0g',
    ' 02:42:ac:11:00:02',
    '02:42:ac:11:00:02 ',
    '',
  ]) {
    assert.equal(validMac(bad), false, JSON.stringify(bad));
  }
});

// ------------------------------------------------------------------------- -p

test('parsePublish: CTR, HOST:CTR, IP:HOST:CTR, IP::CTR, with /tcp or /udp (no host port: 0, picked at create)', () => {
  const cases: [string, ReturnType<typeof parsePublish>][] = [
    ['80', { hostPort: 0, containerPort: 80, protocol: 'tcp' }],
    ['8080:80', { hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
    ['127.0.0.1:8080:80', { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' }],
    ['0.0.0.0:8080:80', { hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '0.0.0.0' }],
    ['10.0.0.2::80', { hostPort: 0, containerPort: 80, protocol: 'tcp', hostIP: '10.0.0.2' }],
    ['80/tcp', { hostPort: 0, containerPort: 80, protocol: 'tcp' }],
    ['53/udp', { hostPort: 0, containerPort: 53, protocol: 'udp' }],
    ['5353:53/UDP', { hostPort: 5353, containerPort: 53, protocol: 'udp' }],
    ['127.0.0.1:5353:53/udp', { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' }],
    ['65535:1', { hostPort: 65535, containerPort: 1, protocol: 'tcp' }],
    ['1:65535', { hostPort: 1, containerPort: 65535, protocol: 'tcp' }],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parsePublish(spec), want, spec);
});

test('parsePublish refuses other protocols, bad ports, ranges and bad addresses', () => {
  for (const spec of ['80/sctp', '80/', '8080:80/icmp', '80/tcp6']) {
    assert.throws(() => parsePublish(spec), isErr('EINVAL', `invalid port "${spec}": the protocol must be tcp or udp`), spec);
  }
  for (const spec of [
    '', ':', '0', '65536', '8080:0', '0:80', '8080:65536', '70000:80', 'x', 'http', '-1', '+80', ' 80', '80 ', '1e3', '0x50',
    '8000-8010:80', '8000-8010:80-90', '80-81', // ranges are not supported
    '1.2.3:80:80', '256.0.0.1:80:80', 'localhost:80:80', '010.0.0.1:80:80', '1.2.3.4:80:80:80', '[::1]:80:80', '::1:80:80',
    '80/tcp/udp', '8080:80/udp/tcp',
  ]) {
    assert.throws(() => parsePublish(spec), isErr('EINVAL', `invalid port "${spec}": use [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp]`), JSON.stringify(spec));
  }
});

// ------------------------------------------------------------------------- namespaces

test('netnsName: ferry-<12 hex> under /run/netns, a new one each time', () => {
  const a = netnsName();
  const b = netnsName();
  assert.match(a.name, /^ferry-[0-9a-f]{12}$/);
  assert.equal(a.path, `/run/netns/${a.name}`);
  assert.notEqual(a.name, b.name);
});

// ------------------------------------------------------------------------- networks

test('the default network: ferry on bridge ferry0, 10.89.0.0/16, gateway .1', (t) => {
  const { s, dir } = store(t);
  assert.equal(DEFAULT_NETWORK, 'ferry');
  assert.equal(DEFAULT_SUBNET, '10.89.0.0/16');
  const [n, ...rest] = s.list();
  assert.equal(rest.length, 0);
  assert.match(n!.id, /^[0-9a-f]{64}$/);
  assert.ok(!Number.isNaN(Date.parse(n!.created)));
  assert.deepEqual({ ...n, id: '', created: '' }, {
    name: 'ferry',
    id: '',
    driver: 'bridge',
    network_interface: 'ferry0',
    created: '',
    subnets: [{ subnet: '10.89.0.0/16', gateway: '10.89.0.1' }],
    ipv6_enabled: false,
    internal: false,
    dns_enabled: false,
    ipam_options: { driver: 'host-local' },
  });
  assert.deepEqual(fs.readdirSync(dir), ['ferry.json']);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  assert.deepEqual(s.get('ferry'), n, 'the same record, read back');
  assert.equal(s.ipamDir, path.join(dir, 'ipam'));
});

test('network create: the next free /24 from 10.90.0.0, skipping what overlaps, and a bridge of its own', (t) => {
  const { s } = store(t);
  const a = s.create('a');
  const b = s.create('b');
  assert.deepEqual(a.subnets, [{ subnet: '10.90.0.0/24', gateway: '10.90.0.1' }]);
  assert.deepEqual(b.subnets, [{ subnet: '10.90.1.0/24', gateway: '10.90.1.1' }]);
  // A wider subnet given by hand covers 10.90.2.0 and 10.90.3.0: the next one skips both.
  const wide = s.create('wide', { subnet: '10.90.2.0/23' });
  assert.deepEqual(wide.subnets, [{ subnet: '10.90.2.0/23', gateway: '10.90.2.1' }]);
  assert.deepEqual(s.create('c').subnets, [{ subnet: '10.90.4.0/24', gateway: '10.90.4.1' }]);
  // Given subnets are stored as their network address; a gateway is kept as given.
  assert.deepEqual(s.create('d', { subnet: '172.20.9.9/16' }).subnets, [{ subnet: '172.20.0.0/16', gateway: '172.20.0.1' }]);
  assert.deepEqual(s.create('e', { subnet: '192.168.7.0/24', gateway: '192.168.7.254' }).subnets, [{ subnet: '192.168.7.0/24', gateway: '192.168.7.254' }]);
  // Each network gets a bridge ferryN (N >= 1) that no other network has.
  const ifaces = s.list().map((n) => n.network_interface);
  assert.equal(ifaces.length, 7);
  assert.equal(new Set(ifaces).size, 7);
  for (const i of ifaces.filter((x) => x !== 'ferry0')) assert.match(i, /^ferry[1-9][0-9]*$/);
  assert.deepEqual(s.list().map((n) => n.name), ['a', 'b', 'c', 'd', 'e', 'ferry', 'wide'], 'listed by name');
});

test('network create refuses bad names, bad or overlapping subnets, a gateway outside', (t) => {
  const { s } = store(t);
  s.create('a');
  assert.throws(() => s.create('a'), isErr('EEXIST', 'network "a" already exists'));
  assert.throws(() => s.create('ferry'), isErr('EEXIST', 'network "ferry" already exists'));
  for (const bad of ['bad name', '-x', 'a/b', '']) {
    assert.throws(() => s.create(bad), isErr('EINVAL', `invalid network name "${bad}": use letters, digits, '_', '.', '-'`), JSON.stringify(bad));
  }
  for (const bad of ['10.91.0.0', '10.91.0.0/31', '10.91.0.0/7', 'fd00::/64', '10.91.0.0/24/8']) {
    assert.throws(() => s.create('x', { subnet: bad }), isErr('EINVAL', `invalid --subnet "${bad}": use an IPv4 CIDR such as 10.90.3.0/24 (prefix 8 to 30)`), bad);
  }
  assert.throws(() => s.create('x', { subnet: '10.89.1.0/24' }), isErr('EEXIST', 'subnet 10.89.1.0/24 overlaps network "ferry" (10.89.0.0/16): choose another'));
  assert.throws(() => s.create('x', { subnet: '10.90.0.128/25' }), isErr('EEXIST', 'subnet 10.90.0.128/25 overlaps network "a" (10.90.0.0/24): choose another'));
  assert.throws(() => s.create('x', { subnet: '10.88.0.0/15' }), isErr('EEXIST', 'subnet 10.88.0.0/15 overlaps network "ferry" (10.89.0.0/16): choose another'), 'a wider subnet around an existing one');
  assert.throws(() => s.create('x', { subnet: '10.92.0.0/24', gateway: '10.0.0.1' }), isErr('EINVAL', 'gateway 10.0.0.1 is not in subnet 10.92.0.0/24'));
  assert.throws(() => s.create('x', { gateway: '10.0.0.1' }), isErr('EINVAL', 'gateway 10.0.0.1 is not in subnet 10.90.1.0/24'), 'checked against the subnet chosen');
  assert.equal(s.find('x'), undefined, 'nothing was written');
});

test('network create: no /24 left between 10.90.0.0 and 10.97.255.0', (t) => {
  const { s } = store(t);
  s.create('p', { subnet: '10.90.0.0/15' });
  s.create('q', { subnet: '10.92.0.0/14' });
  s.create('r', { subnet: '10.96.0.0/15' });
  assert.throws(() => s.create('x'), isErr('EINVAL', 'no free subnet left: pass --subnet'));
  assert.deepEqual(s.create('x', { subnet: '10.98.0.0/24' }).subnets, [{ subnet: '10.98.0.0/24', gateway: '10.98.0.1' }], 'one given by hand still goes');
});

test('network get, find and remove: unknown names and the default network', (t) => {
  const { s } = store(t);
  assert.equal(s.find('nope'), undefined);
  assert.equal(s.find('../ferry'), undefined, 'a name that is not a name is never a path');
  assert.throws(() => s.get('nope'), isErr('ENOTFOUND', 'no network named "nope": create it with `ferry network create nope`'));
  assert.throws(() => s.remove('nope'), isErr('ENOTFOUND', 'no network named "nope": create it with `ferry network create nope`'));
  assert.throws(() => s.remove('ferry'), isErr('EINVAL', 'the default network "ferry" cannot be removed'));
  assert.equal(s.get('ferry').name, 'ferry');
});

test('nextFree: after host-local\'s last reservation, skipping the gateway and what is taken', (t) => {
  const { s } = store(t);
  const n = s.get('ferry');
  const ipam = path.join(s.ipamDir, 'ferry');
  assert.equal(s.nextFree(n, new Map()), '10.89.0.2', 'nothing reserved: the first after the gateway');
  fs.mkdirSync(ipam, { recursive: true });
  fs.writeFileSync(path.join(ipam, 'last_reserved_ip.0'), '10.89.0.9\n');
  assert.equal(s.nextFree(n, new Map()), '10.89.0.10', 'round robin after the last reservation');
  assert.equal(s.nextFree(n, new Map([['10.89.0.10', 'ferry-0123456789ab']])), '10.89.0.11', 'taken in another root');
  fs.writeFileSync(path.join(ipam, '10.89.0.10'), 'c1\neth0');
  fs.writeFileSync(path.join(ipam, '10.89.0.11'), 'c2\neth0');
  assert.equal(s.nextFree(n, new Map()), '10.89.0.12', 'reserved in this root');
  assert.equal(s.holderOf('ferry', '10.89.0.11'), 'c2');
  assert.equal(s.holderOf('ferry', '10.89.0.12'), undefined);
  fs.writeFileSync(path.join(ipam, 'last_reserved_ip.0'), '10.1.2.3');
  assert.equal(s.nextFree(n, new Map()), '10.89.0.2', 'a reservation outside the subnet: from the start');
  fs.writeFileSync(path.join(ipam, 'last_reserved_ip.0'), '10.89.255.254');
  assert.equal(s.nextFree(n, new Map()), '10.89.0.2', 'after the last address: round to the start');

  // A /30 has two addresses: the gateway and one more.
  const tiny = s.create('tiny', { subnet: '10.93.0.0/30' });
  assert.equal(s.nextFree(tiny, new Map()), '10.93.0.2');
  assert.equal(s.nextFree(tiny, new Map([['10.93.0.2', 'ferry-0123456789ab']])), undefined, 'full');
  assert.equal(s.nextFree({ ...tiny, subnets: [] }, new Map()), undefined, 'no subnet');
});

test('conflist: bridge with host-local, portmap, firewall (no DNS)', (t) => {
  const { s } = store(t);
  const n = s.create('web', { subnet: '10.95.3.0/24', dns: false });
  assert.equal(n.dns_enabled, false);
  assert.deepEqual(s.conflist(n), {
    cniVersion: '1.0.0',
    name: 'web',
    plugins: [
      {
        type: 'bridge',
        bridge: n.network_interface,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          dataDir: s.ipamDir,
          ranges: [[{ subnet: '10.95.3.0/24', gateway: '10.95.3.1' }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      { type: 'firewall', backend: 'iptables' },
    ],
  });
});

test('conflist: a network with DNS (the default for a new one) ends with dnsname, aliases as a capability', (t) => {
  const { s } = store(t);
  const n = s.create('web', { subnet: '10.95.4.0/24' });
  assert.equal(n.dns_enabled, true);
  assert.equal(s.get(DEFAULT_NETWORK).dns_enabled, false, 'the default network has no DNS, as Podman\'s');
  const plugins = s.conflist(n).plugins;
  assert.deepEqual(plugins.map((p) => p.type), ['bridge', 'portmap', 'firewall', 'dnsname']);
  assert.deepEqual(plugins[3], { type: 'dnsname', domainName: 'dns.podman', capabilities: { aliases: true } });
  assert.deepEqual(s.conflist(s.get(DEFAULT_NETWORK)).plugins.map((p) => p.type), ['bridge', 'portmap', 'firewall']);
  assert.deepEqual(s.dnsConfig(n), { nameservers: ['10.95.4.1'], search: [DNS_DOMAIN] });
  assert.equal(s.dnsConfig(s.get(DEFAULT_NETWORK)), undefined);
  // Its files live under the store's DNS dir (the plugin's XDG_RUNTIME_DIR), one dir per network.
  assert.equal(s.dnsFiles('web').hosts, path.join(s.dnsDir, 'containers/cni/dnsname/web/addnhosts'));
  assert.equal(s.dnsServerPid('web'), undefined, 'no server yet');
});

test('network labels: kept when given, absent when not (as Podman); an empty key is refused', (t) => {
  const { s } = store(t);
  assert.deepEqual(s.create('a', { labels: { 'com.example.project': 'p1', empty: '' } }).labels, { 'com.example.project': 'p1', empty: '' });
  assert.deepEqual(s.get('a').labels, { 'com.example.project': 'p1', empty: '' }, 'read back');
  assert.equal('labels' in s.create('b'), false);
  assert.throws(() => s.create('c', { labels: { '': 'x' } }), isErr('EINVAL', 'invalid network label: the key is empty'));
  assert.equal(s.find('c'), undefined);
});

test('containerResolvConf: the host\'s, or the network\'s server first with its search domain and the host\'s options', () => {
  const host = '# generated\ndomain example.net\nsearch a.example b.example\nnameserver 192.0.2.53\noptions edns0 trust-ad\n';
  assert.equal(containerResolvConf(host, undefined), host);
  assert.equal(
    containerResolvConf(host, { nameservers: ['10.90.0.1'], search: ['dns.podman'] }),
    'search dns.podman example.net a.example b.example\nnameserver 10.90.0.1\noptions edns0 trust-ad\n',
  );
  assert.equal(containerResolvConf('', { nameservers: ['10.90.0.1'], search: ['dns.podman'] }), 'search dns.podman\nnameserver 10.90.0.1\n');
});

test('DNS server files: removed with the network, and a stale set swept when a network of that name is made; a pid file naming another process is not obeyed', (t) => {
  const { s } = store(t);
  const stale = (name: string): string => {
    const f = s.dnsFiles(name);
    fs.mkdirSync(f.dir, { recursive: true });
    fs.writeFileSync(f.conf, 'interface=ferry99\n');
    fs.writeFileSync(f.hosts, '10.90.0.2\told\n');
    fs.writeFileSync(f.pidfile, `${process.pid}\n`); // this process: not a DNS server of that network
    return f.dir;
  };
  s.create('a');
  const a = stale('a');
  assert.equal(s.dnsServerPid('a'), undefined, 'a pid whose command line is not dnsmasq with that configuration is not a server');
  s.remove('a');
  assert.equal(fs.existsSync(a), false, 'removed with the network');
  const b = stale('b');
  s.create('b');
  assert.equal(fs.existsSync(b), false, 'a new network starts without the old configuration (it named another bridge)');
});
