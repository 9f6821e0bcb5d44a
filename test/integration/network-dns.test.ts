/**
 * Issue 17: names on user networks, as Podman's networks have them. A network made with
 * `network create` runs a DNS server (dnsmasq, through the CNI dnsname plugin) on its gateway
 * that answers for each container's name, its --network-alias names and its short ID, following
 * containers as they come and go (checkpoint, restore, rm); the default network has none. When
 * the network is removed nothing of its server is left: no process, no files, no firewall rule.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { assertCleanError, eventually, Host, isRoot } from '../helpers/ferry.js';

const SKIP = !isRoot() ? 'needs root' : !fs.existsSync('/usr/lib/cni/dnsname') ? 'the CNI dnsname plugin is missing: run `npm run setup`' : false;

/** A web server (busybox httpd) serving one page that names it. */
const server = (page: string): string[] => ['sh', '-c', `mkdir -p /www && echo ${page} > /www/index.html && exec httpd -f -p 80 -h /www`];

/** PIDs of DNS servers (dnsmasq) whose command line names this host's dir. */
function dnsServers(h: Host): number[] {
  return h.processes().filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.endsWith('dnsmasq');
    } catch {
      return false;
    }
  });
}

describe('network DNS: container names and aliases on user networks', { skip: SKIP }, () => {
  let h: Host;
  // A /24 away from the automatic ones (10.90.x), random against other tests' networks.
  const subnet = `10.92.${100 + Math.floor(Math.random() * 150)}.0/24`;
  const net = `dns-${process.pid}`;
  let bridge = '';

  before(async () => {
    h = new Host('netdns');
    await h.importBusybox();
  });
  after(async () => {
    await h?.run(['network', 'rm', '-f', net]).catch(() => undefined);
    if (bridge && fs.existsSync(`/sys/class/net/${bridge}`)) spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    await h?.destroy(); // also kills any dnsmasq left (its command line names h's dir)
  });

  /** Runs a throwaway client on the network; its output and exit code. */
  const client = (script: string) => h.run(['run', '--rm', '--network', net, 'busybox', 'sh', '-c', script]);

  it('a new network has DNS and the default one has none; aliases need a network with DNS', async () => {
    await h.ok(['network', 'create', '--subnet', subnet, net]);
    const n = JSON.parse(await h.ok(['network', 'inspect', net]))[0];
    bridge = n.network_interface;
    assert.equal(n.dns_enabled, true);
    assert.equal(JSON.parse(await h.ok(['network', 'inspect', 'ferry']))[0].dns_enabled, false);

    // On the default network the host's resolver is used, and an alias is refused up front.
    const plain = await h.ok(['run', '--rm', '--network', 'none', 'busybox', 'cat', '/etc/resolv.conf']);
    assert.doesNotMatch(plain, /dns\.podman/);
    const before = h.containerDirs();
    assertCleanError(await h.fails(['run', '-d', '--network-alias', 'x', 'busybox', 'true']), /--network-alias needs a network with DNS, and network ferry has none/);
    assertCleanError(await h.fails(['run', '-d', '--network', net, '--network-alias', 'bad/alias', 'busybox', 'true']), /invalid --network-alias "bad\/alias"/);
    assertCleanError(await h.fails(['run', '-d', '--network', 'none', '--network-alias', 'x', 'busybox', 'true']), /need a bridge network, not --network none/);
    assert.deepEqual(h.containerDirs(), before, 'nothing created by a refused run');
  });

  it('containers reach each other by name, alias and short ID through the gateway\'s DNS server', async () => {
    await h.ok(['run', '-d', '--name', 'srv', '--network', net, '--network-alias', 'web', '--network-alias', 'www.example', 'busybox', ...server('page-of-srv')]);
    const i = await h.inspect('srv');
    const ip = i.NetworkSettings.IPAddress as string;
    const gw = i.NetworkSettings.Gateway as string;
    const shortId = (i.Id as string).slice(0, 12);
    assert.ok(ip && gw, 'srv has an address');
    const r = await client(
      `cat /etc/resolv.conf; for n in srv web www.example ${shortId} srv.dns.podman; do nslookup $n | sed -n 's/^Address: *//p' | sed "s/^/$n=/"; done; wget -qO- http://srv/; wget -qO- http://web/`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^nameserver ${gw.replace(/\./g, '\\.')}$`, 'm'), 'the network\'s server is the resolver');
    assert.match(r.stdout, /^search dns\.podman/m);
    for (const n of ['srv', 'web', 'www.example', shortId, 'srv.dns.podman']) assert.match(r.stdout, new RegExp(`^${n.replace(/\./g, '\\.')}=${ip.replace(/\./g, '\\.')}$`, 'm'), `${n} resolves to srv's address`);
    assert.equal(r.stdout.match(/page-of-srv/g)?.length, 2, 'the page, by name and by alias');
    assert.equal(dnsServers(h).length, 1, 'one DNS server for the network');
  });

  it('a pod on the network is found by the pod\'s name (as Podman\'s: its infra registers it)', async () => {
    await h.ok(['pod', 'create', '--name', 'pd', '--network', net]);
    await h.ok(['run', '-d', '--pod', 'pd', '--name', 'pd-web', 'busybox', ...server('page-of-pod')]);
    const r = await client('wget -qO- http://pd/');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /page-of-pod/);
    await h.ok(['pod', 'rm', '-f', 'pd']);
    assert.notEqual((await client('nslookup pd')).code, 0, 'gone with the pod');
  });

  it('the name follows the container through checkpoint and restore', async () => {
    await h.ok(['container', 'checkpoint', 'srv']);
    const gone = await client('nslookup srv');
    assert.notEqual(gone.code, 0, 'a checkpointed container has no address to give');
    await h.ok(['container', 'restore', 'srv']);
    const ip = (await h.inspect('srv')).NetworkSettings.IPAddress as string;
    const r = await client('nslookup web | sed -n "s/^Address: *//p"; wget -qO- http://srv/');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${ip.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(r.stdout, /page-of-srv/);
  });

  it('an exported checkpoint imported with a new address (as a container moved in) is found at the new address', async () => {
    const old = (await h.inspect('srv')).NetworkSettings.IPAddress as string;
    const archive = path.join(h.dir, 'srv.tar.gz');
    await h.ok(['container', 'checkpoint', '--export', archive, 'srv']);
    await h.ok(['rm', '-f', 'srv']);
    await h.ok(['container', 'restore', '--import', archive, '--ignore-static-ip']);
    const ip = (await h.inspect('srv')).NetworkSettings.IPAddress as string;
    assert.ok(ip && ip !== old, `a new address (${old} before, ${ip} now)`);
    const r = await client('for n in srv web; do nslookup $n | sed -n "s/^Address: *//p" | sed "s/^/$n=/"; done; wget -qO- http://web/');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^srv=${ip.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^web=${ip.replace(/\./g, '\\.')}$`, 'm'), 'its alias came with it');
    assert.doesNotMatch(r.stdout, new RegExp(`=${old.replace(/\./g, '\\.')}$`, 'm'), 'the old address is no longer given');
    assert.match(r.stdout, /page-of-srv/);
  });

  it('a removed container stops resolving; removing the network leaves no DNS server, files or rule', async () => {
    await h.ok(['rm', '-f', 'srv']);
    const r = await client('nslookup srv; echo srv=$?; nslookup web; echo web=$?');
    assert.match(r.stdout, /^srv=1$/m, r.stdout);
    assert.match(r.stdout, /^web=1$/m, r.stdout);
    // Nothing on the network: the last container's leaving stopped its server.
    await eventually(() => dnsServers(h).length === 0, 5_000);

    // A server running at removal (a container still on it) is stopped too.
    await h.ok(['run', '-d', '--name', 'last', '--network', net, 'busybox', 'sleep', '600']);
    assert.equal(dnsServers(h).length, 1);
    await h.ok(['network', 'rm', '-f', net]);
    await eventually(() => dnsServers(h).length === 0, 5_000);
    assert.equal(fs.existsSync(path.join(h.runroot, 'dns', 'containers', 'cni', 'dnsname', net)), false, 'its files are gone');
    assert.equal(fs.existsSync(`/sys/class/net/${bridge}`), false, 'its bridge is gone');
    const rules = spawnSync('iptables', ['-w', '-S', 'INPUT'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(rules, new RegExp(`-i ${bridge} .*--dport 53`), 'the rule that let DNS queries in is gone');
    assert.deepEqual(await h.names(), []);
  });
});
