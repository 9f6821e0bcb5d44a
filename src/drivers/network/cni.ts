/**
 * Container networking through the standard CNI plugins (bridge + host-local IPAM, portmap,
 * firewall; loopback for lo), invoked directly per the CNI spec: one process per plugin, the
 * network config on stdin, CNI_* in the environment, the previous plugin's result chained in.
 * Each container gets a named network namespace of its own that runc joins by path, so the
 * namespace (and its IP) outlives a checkpoint only as long as Ferry wants it to.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from '../../lib/lazy.js';
import { FerryError } from '../../lib/errors.js';
import { run, runOk } from '../../lib/exec.js';
import { mkdirp, readJsonIfExists, writeJsonAtomic } from '../../lib/fsutil.js';
import { validName } from '../../lib/ids.js';

export const CNI_PATH = ['/usr/lib/cni', '/opt/cni/bin'];
export const DEFAULT_NETWORK = 'ferry';
export const DEFAULT_SUBNET = '10.89.0.0/16';

export interface NetworkRecord {
  name: string;
  id: string;
  driver: 'bridge';
  network_interface: string;
  created: string;
  subnets: { subnet: string; gateway: string }[];
  ipv6_enabled: boolean;
  internal: boolean;
  dns_enabled: boolean;
  /** As Podman: present only when the network has labels. */
  labels?: Record<string, string>;
  ipam_options: { driver: 'host-local' };
}

/** The search domain of the names a network's DNS server answers for (Podman's). */
export const DNS_DOMAIN = 'dns.podman';

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
  hostIP?: string;
}

/** What a container's network attachment is, saved with the container. */
export interface Attachment {
  network: string;
  netnsName: string;
  netnsPath: string;
  ip: string;
  prefixLength: number;
  gateway: string;
  mac: string;
  ports: PortMapping[];
  /** The chained ADD result, handed back to DEL as the spec asks. */
  result: unknown;
  /** The name the network's DNS server was given for it (absent: no DNS on that network). */
  dnsName?: string;
}

// ------------------------------------------------------------------------- addresses

/** A dotted quad without leading zeros (which the CNI plugins refuse, and some tools read as octal). */
export function parseIPv4(s: string): number | undefined {
  const m = s.match(/^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function parseCidr(s: string): { base: number; prefix: number } | undefined {
  const m = s.match(/^([^/]*)\/(\d{1,2})$/);
  const base = parseIPv4(m?.[1] ?? '');
  const prefix = Number(m?.[2]);
  if (base === undefined || prefix < 8 || prefix > 30) return undefined;
  const mask = (~0 << (32 - prefix)) >>> 0;
  return { base: (base & mask) >>> 0, prefix };
}

export function inSubnet(ip: string, cidr: string): boolean {
  const n = parseIPv4(ip);
  const c = parseCidr(cidr);
  if (n === undefined || !c) return false;
  const mask = (~0 << (32 - c.prefix)) >>> 0;
  return ((n & mask) >>> 0) === c.base;
}

function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (!x || !y) return false;
  const p = Math.min(x.prefix, y.prefix);
  const mask = (~0 << (32 - p)) >>> 0;
  return ((x.base & mask) >>> 0) === ((y.base & mask) >>> 0);
}

export function validMac(mac: string): boolean {
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

/** -p [[IP:]HOSTPORT:]CTRPORT[/tcp|udp] */
export function parsePublish(spec: string): PortMapping {
  const [addr, protoRaw, ...rest] = spec.split('/');
  const protocol = (protoRaw ?? 'tcp').toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp') throw new FerryError('EINVAL', `invalid port "${spec}": the protocol must be tcp or udp`);
  const parts = (addr ?? '').split(':');
  let hostIP: string | undefined;
  let host: string | undefined;
  let ctr: string | undefined;
  if (parts.length === 1) [ctr] = parts;
  else if (parts.length === 2) [host, ctr] = parts;
  else if (parts.length === 3) [hostIP, host, ctr] = parts;
  const port = (v: string | undefined): number | undefined => (v && /^\d+$/.test(v) && Number(v) > 0 && Number(v) < 65536 ? Number(v) : undefined);
  const containerPort = port(ctr);
  // No host port (80, IP::80): one is picked when the container is created, as Podman does (0 until then).
  const hostPort = host === undefined || host === '' ? 0 : port(host);
  if (!containerPort || hostPort === undefined || (hostIP && parseIPv4(hostIP) === undefined) || rest.length) {
    throw new FerryError('EINVAL', `invalid port "${spec}": use [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp]`);
  }
  return { hostPort, containerPort, protocol, ...(hostIP ? { hostIP } : {}) };
}

/**
 * A container's resolv.conf: the host's, or on a network with DNS (as Podman's) the network's
 * server first with its search domain, and the host's options; the network's server forwards
 * every other name to the host's servers.
 */
export function containerResolvConf(host: string, dns: { nameservers: string[]; search: string[] } | undefined): string {
  if (!dns) return host;
  const lines = host.split('\n').map((l) => l.trim());
  const hostSearch = lines.filter((l) => /^(search|domain)\s/.test(l)).flatMap((l) => l.split(/\s+/).slice(1));
  const options = lines.filter((l) => /^options\s/.test(l));
  const search = [...new Set([...dns.search, ...hostSearch])];
  return [`search ${search.join(' ')}`, ...dns.nameservers.map((n) => `nameserver ${n}`), ...options, ''].join('\n');
}

// ------------------------------------------------------------------------- networks

/** Networks: one JSON record each under ROOT/networks; the default one is made on first use. */
export class NetworkStore {
  /**
   * dir holds the records and host-local's reservations; dnsDir the DNS servers' runtime files
   * (the dnsname plugin's configuration, hosts and pid files, one directory per network).
   */
  constructor(
    private readonly dir: string,
    readonly dnsDir: string = path.join(dir, 'dns'),
  ) {}

  get ipamDir(): string {
    return path.join(this.dir, 'ipam');
  }

  private file(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  list(): NetworkRecord[] {
    this.ensureDefault();
    return fs
      .readdirSync(this.dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => readJsonIfExists<NetworkRecord>(path.join(this.dir, f)))
      .filter((n): n is NetworkRecord => !!n)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  find(name: string): NetworkRecord | undefined {
    if (!validName(name)) return undefined;
    if (name === DEFAULT_NETWORK) this.ensureDefault();
    return readJsonIfExists<NetworkRecord>(this.file(name));
  }

  get(name: string): NetworkRecord {
    const n = this.find(name);
    if (!n) throw new FerryError('ENOTFOUND', `no network named "${name}": create it with \`ferry network create ${name}\``);
    return n;
  }

  private ensureDefault(): void {
    mkdirp(this.dir, 0o700);
    if (!fs.existsSync(this.file(DEFAULT_NETWORK))) this.write(DEFAULT_NETWORK, 'ferry0', DEFAULT_SUBNET, undefined);
  }

  private write(name: string, iface: string, subnet: string, gateway: string | undefined, o: { dns?: boolean; labels?: Record<string, string> } = {}): NetworkRecord {
    const c = parseCidr(subnet)!;
    const rec: NetworkRecord = {
      name,
      id: randomBytes(32).toString('hex'),
      driver: 'bridge',
      network_interface: iface,
      created: new Date().toISOString(),
      subnets: [{ subnet: `${formatIPv4(c.base)}/${c.prefix}`, gateway: gateway ?? formatIPv4(c.base + 1) }],
      ipv6_enabled: false,
      internal: false,
      dns_enabled: !!o.dns,
      ...(o.labels && Object.keys(o.labels).length ? { labels: o.labels } : {}),
      ipam_options: { driver: 'host-local' },
    };
    writeJsonAtomic(this.file(name), rec);
    return rec;
  }

  /**
   * A new bridge network. Like Podman's, it has a DNS server (on its gateway address) that
   * answers for its containers' names and aliases, unless dns is false; the default network has none.
   */
  create(name: string, o: { subnet?: string; gateway?: string; dns?: boolean; labels?: Record<string, string> } = {}): NetworkRecord {
    this.ensureDefault();
    if (!validName(name)) throw new FerryError('EINVAL', `invalid network name "${name}": use letters, digits, '_', '.', '-'`);
    if (this.find(name)) throw new FerryError('EEXIST', `network "${name}" already exists`);
    const existing = this.list();
    let subnet = o.subnet;
    if (subnet) {
      if (!parseCidr(subnet)) throw new FerryError('EINVAL', `invalid --subnet "${subnet}": use an IPv4 CIDR such as 10.90.3.0/24 (prefix 8 to 30)`);
      const clash = existing.find((n) => n.subnets.some((s) => overlaps(s.subnet, subnet!)));
      if (clash) throw new FerryError('EEXIST', `subnet ${subnet} overlaps network "${clash.name}" (${clash.subnets[0]!.subnet}): choose another`);
    } else {
      // Like Podman: the next free /24, here from 10.90.0.0 (10.88/16 is Podman's, 10.89/16 ours).
      for (let i = 0; i < 256 * 8 && !subnet; i++) {
        const cand = `${formatIPv4(((10 << 24) | ((90 + (i >> 8)) << 16) | ((i & 255) << 8)) >>> 0)}/24`;
        if (!existing.some((n) => n.subnets.some((s) => overlaps(s.subnet, cand)))) subnet = cand;
      }
      if (!subnet) throw new FerryError('EINVAL', 'no free subnet left: pass --subnet');
    }
    if (o.gateway && !inSubnet(o.gateway, subnet)) throw new FerryError('EINVAL', `gateway ${o.gateway} is not in subnet ${subnet}`);
    const used = new Set(existing.map((n) => n.network_interface));
    let idx = 1;
    // Like Podman, also skip bridges that exist on the host (another root's, or a removed
    // network's still in use): the bridge plugin refuses one whose address differs.
    while (used.has(`ferry${idx}`) || fs.existsSync(`/sys/class/net/ferry${idx}`)) idx++;
    for (const k of Object.keys(o.labels ?? {})) if (!k) throw new FerryError('EINVAL', 'invalid network label: the key is empty');
    // A DNS server left by a removed network of that name (a `network rm` killed half-way) would
    // keep serving the old bridge: the plugin reuses a configuration it finds.
    this.stopDns(name);
    return this.write(name, `ferry${idx}`, subnet, o.gateway, { dns: o.dns ?? true, labels: o.labels });
  }

  remove(name: string): void {
    if (name === DEFAULT_NETWORK) throw new FerryError('EINVAL', `the default network "${DEFAULT_NETWORK}" cannot be removed`);
    const n = this.get(name);
    this.stopDns(name);
    fs.rmSync(this.file(name), { force: true });
    fs.rmSync(path.join(this.ipamDir, name), { recursive: true, force: true });
    // Its bridge goes too once nothing is attached to it (another root may still use it), with
    // the rule the DNS plugin added to let the containers' queries in.
    const brif = `/sys/class/net/${n.network_interface}/brif`;
    if (/^ferry\d+$/.test(n.network_interface) && fs.existsSync(brif) && fs.readdirSync(brif).length === 0) {
      spawnSync('ip', ['link', 'del', n.network_interface], { stdio: 'ignore' });
      if (n.dns_enabled) {
        const rule = ['INPUT', '-i', n.network_interface, '-p', 'udp', '-m', 'udp', '--dport', '53', '-j', 'ACCEPT'];
        while (spawnSync('iptables', ['-w', '-C', ...rule], { stdio: 'ignore' }).status === 0) {
          if (spawnSync('iptables', ['-w', '-D', ...rule], { stdio: 'ignore' }).status !== 0) break;
        }
      }
    }
  }

  /** Where the dnsname plugin keeps a network's DNS server files (it adds containers/cni/dnsname/NAME). */
  dnsFiles(name: string): { dir: string; hosts: string; pidfile: string; conf: string } {
    const dir = path.join(this.dnsDir, 'containers', 'cni', 'dnsname', name);
    return { dir, hosts: path.join(dir, 'addnhosts'), pidfile: path.join(dir, 'pidfile'), conf: path.join(dir, 'dnsmasq.conf') };
  }

  /** The running DNS server (dnsmasq) of a network, by its pid file, checked against its command line. */
  dnsServerPid(name: string): number | undefined {
    const f = this.dnsFiles(name);
    let pid: number;
    try {
      pid = Number(fs.readFileSync(f.pidfile, 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1) return undefined;
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return cmdline.includes(`--conf-file=${f.conf}`) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stops a network's DNS server and deletes its files (the plugin does it as the last container leaves). */
  stopDns(name: string): void {
    const pid = this.dnsServerPid(name);
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    fs.rmSync(this.dnsFiles(name).dir, { recursive: true, force: true });
  }

  /** The nameservers and search domain a container on this network is given (none: the host's). */
  dnsConfig(n: NetworkRecord): { nameservers: string[]; search: string[] } | undefined {
    return n.dns_enabled ? { nameservers: n.subnets.map((s) => s.gateway), search: [DNS_DOMAIN] } : undefined;
  }

  /** The container that holds ip on this network, per host-local's records. */
  holderOf(network: string, ip: string): string | undefined {
    try {
      return fs.readFileSync(path.join(this.ipamDir, network, ip), 'utf8').split('\n')[0]?.trim();
    } catch {
      return undefined;
    }
  }

  /**
   * The address host-local would hand out next (round robin after its last reservation), but
   * skipping those taken in this root's records or in `taken` (other roots' namespaces).
   */
  nextFree(n: NetworkRecord, taken: Map<string, string>): string | undefined {
    const s = n.subnets[0];
    const c = s && parseCidr(s.subnet);
    if (!s || !c) return undefined;
    const dir = path.join(this.ipamDir, n.name);
    const first = c.base + 1;
    const count = 2 ** (32 - c.prefix) - 2; // network and broadcast addresses excluded
    let last: number | undefined;
    try {
      last = parseIPv4(fs.readFileSync(path.join(dir, 'last_reserved_ip.0'), 'utf8').trim());
    } catch {
      /* nothing reserved yet */
    }
    const from = last !== undefined && last >= first && last < first + count ? last - first + 1 : 0;
    for (let i = 0; i < count; i++) {
      const ip = formatIPv4(first + ((from + i) % count));
      if (ip === s.gateway || taken.has(ip) || fs.existsSync(path.join(dir, ip))) continue;
      return ip;
    }
    return undefined;
  }

  /** The CNI conflist for a network (not written anywhere: handed to the plugins directly). */
  conflist(n: NetworkRecord): { cniVersion: string; name: string; plugins: Record<string, unknown>[] } {
    return {
      cniVersion: '1.0.0',
      name: n.name,
      plugins: [
        {
          type: 'bridge',
          bridge: n.network_interface,
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: this.ipamDir,
            ranges: n.subnets.map((s) => [{ subnet: s.subnet, gateway: s.gateway }]),
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true }, snat: true },
        { type: 'firewall', backend: 'iptables' },
        // Podman's CNI networks: a dnsmasq per network on its bridge, fed names and aliases.
        ...(n.dns_enabled ? [{ type: 'dnsname', domainName: DNS_DOMAIN, capabilities: { aliases: true } }] : []),
      ],
    };
  }
}

// ------------------------------------------------------------------------- plugins

interface PluginCall {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  netns: string;
  ifname: string;
  args?: string;
  config: Record<string, unknown>;
  /** Extra environment (the dnsname plugin's XDG_RUNTIME_DIR: where it keeps its files). */
  env?: Record<string, string>;
}

async function callPlugin(c: PluginCall): Promise<unknown> {
  const type = String(c.config.type);
  const bin = CNI_PATH.map((d) => path.join(d, type)).find((p) => fs.existsSync(p));
  if (!bin) throw new FerryError('EDEPEND', `CNI plugin "${type}" is not installed: run \`npm run setup\` (as root)`);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: c.command,
    CNI_CONTAINERID: c.containerId,
    CNI_NETNS: c.netns,
    CNI_IFNAME: c.ifname,
    CNI_PATH: CNI_PATH.join(':'),
    ...(c.args ? { CNI_ARGS: c.args } : {}),
    ...c.env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) return resolve(out.trim() ? JSON.parse(out) : undefined);
      let msg = err.trim() || `exit ${code}`;
      try {
        const e = JSON.parse(out) as { msg?: string; details?: string };
        msg = [e.msg, e.details].filter(Boolean).join(': ');
      } catch {
        /* not JSON */
      }
      reject(new FerryError('ERUNTIME', `network setup failed (${type} ${c.command}): ${msg}`));
    });
    child.stdin.end(JSON.stringify(c.config));
  });
}

/** Runs a conflist's plugins in order (ADD) with results chained, or in reverse (DEL). */
async function callList(
  command: 'ADD' | 'DEL',
  list: ReturnType<NetworkStore['conflist']>,
  base: Omit<PluginCall, 'command' | 'config'>,
  runtimeConfig: Record<string, unknown>,
  prevResult?: unknown,
): Promise<unknown> {
  let prev = prevResult;
  const plugins = command === 'ADD' ? list.plugins : [...list.plugins].reverse();
  let lastErr: unknown;
  for (const p of plugins) {
    const caps = (p.capabilities ?? {}) as Record<string, boolean>;
    const rc = Object.fromEntries(Object.entries(runtimeConfig).filter(([k]) => caps[k]));
    const config: Record<string, unknown> = { ...p, cniVersion: list.cniVersion, name: list.name, ...(Object.keys(rc).length ? { runtimeConfig: rc } : {}) };
    delete config.capabilities;
    if (prev !== undefined) config.prevResult = prev;
    // DEL without the ADD's result (a setup that failed or was killed half-way): the dnsname
    // plugin needs only the bridge's name to drop the container's entry, so it gets that.
    else if (command === 'DEL' && p.type === 'dnsname') config.prevResult = { cniVersion: list.cniVersion, interfaces: [{ name: String(list.plugins[0]?.bridge ?? '') }], ips: [] };
    try {
      const r = await callPlugin({ ...base, command, config });
      if (command === 'ADD') prev = r;
    } catch (e) {
      if (command === 'ADD') throw e;
      lastErr = e; // DEL goes on through every plugin, as the spec asks
    }
  }
  if (lastErr) throw lastErr;
  return prev;
}

// ------------------------------------------------------------------------- namespaces

export function netnsName(): { name: string; path: string } {
  const name = `ferry-${randomBytes(6).toString('hex')}`;
  return { name, path: `/run/netns/${name}` };
}

export async function createNetns(name: string): Promise<{ name: string; path: string }> {
  const r = await run(['ip', 'netns', 'add', name]);
  if (r.code !== 0) throw new FerryError('ERUNTIME', `creating a network namespace failed: ${r.stderr.trim()}`);
  return { name, path: `/run/netns/${name}` };
}

/** IPv4 addresses (but loopback) in every ferry network namespace on this machine, with the namespace's name. */
export async function addressesInUse(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  // Only namespaces attached here: their veth peer is in this network namespace (another
  // "host" on the same machine has bridges of its own, with addresses of its own).
  const links = await run(['ip', '-o', 'link', 'show', 'type', 'veth']).catch(() => undefined);
  const names = [...new Set([...(links?.stdout.matchAll(/link-netns (ferry-[0-9a-f]+)/g) ?? [])].map((m) => m[1]!))];
  await Promise.all(
    names.map(async (n) => {
      const r = await run(['ip', '-n', n, '-4', '-o', 'addr', 'show']).catch(() => undefined);
      for (const m of r?.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g) ?? []) if (!m[1]!.startsWith('127.')) out.set(m[1]!, n);
    }),
  );
  return out;
}

export async function deleteNetns(name: string): Promise<void> {
  if (!name || !fs.existsSync(`/run/netns/${name}`)) return;
  await run(['ip', 'netns', 'delete', name]);
}

export interface AttachOptions {
  containerId: string;
  network: NetworkRecord;
  ip?: string;
  mac?: string;
  ports: PortMapping[];
  /**
   * On a network with DNS: the name its DNS server answers with this container's address, and
   * the other names it answers to (aliases).
   */
  dnsName?: string;
  aliases?: string[];
  /** Called once the namespace exists, before any plugin runs, so it can be recorded first. */
  onNetns?: (partial: Attachment) => void;
  /**
   * Hold the namespace's traffic (holdTraffic) from before its address is up: a restore of
   * established TCP connections, whose peers retransmit into the address meanwhile; a packet
   * reaching it before CRIU has put the socket back would be answered with a reset.
   */
  hold?: boolean;
}

/**
 * Makes a network namespace and attaches it: lo up, eth0 on the network's bridge with the
 * requested (or next free) IP and MAC, ports published. On failure everything it made is
 * undone (veth, IPAM entry, iptables rules, namespace).
 */
export async function attach(store: NetworkStore, o: AttachOptions): Promise<Attachment> {
  // Every ferry root on this machine shares the bridges but keeps its own IPAM records, so an
  // address is also checked against the other roots' namespaces (callers hold the machine-wide
  // network lock, so none can take one meanwhile).
  const inUse = await addressesInUse();
  if (o.ip && inUse.has(o.ip)) {
    throw new FerryError('EEXIST', `IP address ${o.ip} is already in use on this machine by network namespace ${inUse.get(o.ip)} (a container of another ferry root): free it, or use --ignore-static-ip for a new address`);
  }
  const want = o.ip ?? store.nextFree(o.network, inUse);
  // The name is recorded before the namespace exists: a ferry killed at any point leaves
  // nothing that the record does not name.
  const ns = netnsName();
  const dnsName = o.network.dns_enabled ? o.dnsName : undefined;
  if (dnsName !== undefined && !validName(dnsName)) throw new FerryError('EINVAL', `invalid DNS name "${dnsName}": use letters, digits, '_', '.', '-'`);
  o.onNetns?.({ network: o.network.name, netnsName: ns.name, netnsPath: ns.path, ip: '', prefixLength: 0, gateway: '', mac: '', ports: o.ports, result: undefined, ...(dnsName ? { dnsName } : {}) });
  await createNetns(ns.name);
  if (o.hold) {
    try {
      await holdTraffic(ns.path);
    } catch (e) {
      await deleteNetns(ns.name);
      throw e;
    }
  }
  const list = store.conflist(o.network);
  const base = { containerId: o.containerId, netns: ns.path, ifname: 'eth0', env: dnsEnv(store) };
  const args = ['IgnoreUnknown=1', ...(want ? [`IP=${want}`] : []), ...(o.mac ? [`MAC=${o.mac}`] : []), ...(dnsName ? [`K8S_POD_NAME=${dnsName}`] : [])].join(';');
  const runtimeConfig = {
    portMappings: o.ports.map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, hostIP: p.hostIP ?? '' })),
    ...(dnsName ? { aliases: { [o.network.name]: [...new Set(o.aliases ?? [])].filter((a) => a !== dnsName) } } : {}),
  };
  let result: { ips?: { address: string; gateway?: string }[]; interfaces?: { name: string; mac: string; sandbox?: string }[] } | undefined;
  try {
    await callPlugin({ ...base, ifname: 'lo', command: 'ADD', config: { cniVersion: '1.0.0', name: 'lo', type: 'loopback' } });
    result = (await callList('ADD', list, { ...base, args }, runtimeConfig)) as typeof result;
  } catch (e) {
    await callList('DEL', list, { ...base, args }, runtimeConfig).catch(() => undefined);
    await deleteNetns(ns.name);
    throw e;
  }
  const ipc = result?.ips?.[0];
  const iface = result?.interfaces?.find((i) => i.name === 'eth0' && i.sandbox) ?? result?.interfaces?.find((i) => i.name === 'eth0');
  const [ip, prefix] = (ipc?.address ?? '').split('/');
  if (ip) await forgetNeighbour(ip, o.network.network_interface);
  return {
    network: o.network.name,
    netnsName: ns.name,
    netnsPath: ns.path,
    ip: ip ?? '',
    prefixLength: Number(prefix ?? 0),
    gateway: ipc?.gateway ?? '',
    mac: iface?.mac ?? '',
    ports: o.ports,
    result,
    ...(dnsName ? { dnsName } : {}),
  };
}

/** The dnsname plugin keeps its files under $XDG_RUNTIME_DIR when set: here, the store's own. */
function dnsEnv(store: NetworkStore): Record<string, string> {
  return { XDG_RUNTIME_DIR: store.dnsDir };
}

/** Undoes attach(): DEL through every plugin (releases the IP, the rules, the veth), then the namespace. */
export async function detach(store: NetworkStore, a: Attachment, containerId: string): Promise<void> {
  const network = store.find(a.network);
  if (network) {
    const list = store.conflist(network);
    const runtimeConfig = { portMappings: a.ports.map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, hostIP: p.hostIP ?? '' })) };
    const args = a.dnsName ? `IgnoreUnknown=1;K8S_POD_NAME=${a.dnsName}` : undefined;
    await callList('DEL', list, { containerId, netns: a.netnsPath, ifname: 'eth0', args, env: dnsEnv(store) }, runtimeConfig, a.result).catch(() => undefined);
  }
  await deleteNetns(a.netnsName);
}

const HOLD_CHAIN = 'FERRY-HOLD';

/**
 * Addresses are handed out again and again: the host may still hold a neighbour (ARP) entry for
 * the address with an earlier container's MAC, and would use it until its re-probe, 5-11 s
 * during which the new container is unreachable from the host. Forgets such an entry.
 */
async function forgetNeighbour(ip: string, dev: string): Promise<void> {
  let arp = '';
  try {
    arp = fs.readFileSync('/proc/net/arp', 'utf8');
  } catch {
    return;
  }
  if (!arp.split('\n').some((l) => l.split(/\s+/)[0] === ip)) return;
  await run(['ip', 'neigh', 'del', ip, 'dev', dev]).catch(() => undefined);
}

/**
 * Drops every packet in and out of a network namespace until the returned release is called.
 * TCP retransmits what was dropped once the traffic flows again; a socket that is closed while
 * it holds sends its peer nothing (no FIN, no reset). The chain is Ferry's own, so CRIU's own
 * network lock and unlock (chain CRIU) leave it alone.
 */
export async function holdTraffic(netnsPath: string): Promise<() => Promise<void>> {
  await ipt(netnsPath, `*filter\n:${HOLD_CHAIN} - [0:0]\n-A ${HOLD_CHAIN} -j DROP\n-I INPUT -j ${HOLD_CHAIN}\n-I OUTPUT -j ${HOLD_CHAIN}\nCOMMIT\n`);
  return () => releaseTraffic(netnsPath);
}

/** Lets the traffic holdTraffic() held flow again (nothing to do when its chain is gone). */
export async function releaseTraffic(netnsPath: string): Promise<void> {
  const rules = await runOk(['nsenter', `--net=${netnsPath}`, '--', 'iptables', '-w', '-S'], { what: 'reading the namespace\'s rules' });
  const has = (rule: string): boolean => rules.stdout.split('\n').some((l) => l.trim() === rule);
  const del = [...(has(`-A INPUT -j ${HOLD_CHAIN}`) ? [`-D INPUT -j ${HOLD_CHAIN}`] : []), ...(has(`-A OUTPUT -j ${HOLD_CHAIN}`) ? [`-D OUTPUT -j ${HOLD_CHAIN}`] : []), ...(has(`-N ${HOLD_CHAIN}`) ? [`-F ${HOLD_CHAIN}`, `-X ${HOLD_CHAIN}`] : [])];
  if (del.length) await ipt(netnsPath, `*filter\n${del.join('\n')}\nCOMMIT\n`);
}

function ipt(netnsPath: string, rules: string): Promise<unknown> {
  return runOk(['nsenter', `--net=${netnsPath}`, '--', 'iptables-restore', '-w', '--noflush'], { input: rules, what: 'holding the network traffic' });
}

const GUARD_PREFIX = 'FERRY-LO-';

/**
 * Lets only root and the given users connect to a TCP port on this namespace's loopback,
 * until the returned release is called. CRIU's
 * page servers and the tunnels that reach them listen on 127.0.0.1 with no authentication of
 * their own, and take the first connection that comes: without this, any local user could
 * feed a migration memory, or read it, by connecting first. The chain is named after this
 * process, so that a later migration removes what a killed one left (sweepLoopbackGuards).
 */
export async function guardLoopbackPort(port: number, uids: number[]): Promise<() => Promise<void>> {
  const chain = `${GUARD_PREFIX}${process.pid}-${port}`;
  const allow = [...new Set([0, ...uids])].map((u) => `-A ${chain} -m owner --uid-owner ${u} -j RETURN`).join('\n');
  await iptables(`*filter\n:${chain} - [0:0]\n${allow}\n-A ${chain} -p tcp -j REJECT --reject-with tcp-reset\n-I OUTPUT -o lo -p tcp --dport ${port} -j ${chain}\nCOMMIT\n`);
  return () => dropGuard(chain, port);
}

async function dropGuard(chain: string, port: number): Promise<void> {
  await iptables(`*filter\n-D OUTPUT -o lo -p tcp --dport ${port} -j ${chain}\n-F ${chain}\n-X ${chain}\nCOMMIT\n`);
}

/** Removes the loopback guards of ferry processes that are gone (killed mid-migration). */
export async function sweepLoopbackGuards(alive: (pid: number) => boolean): Promise<void> {
  const r = await run(['iptables', '-w', '-S', 'OUTPUT']);
  for (const m of r.stdout.matchAll(/--dport (\d+) -j (FERRY-LO-(\d+)-\d+)/g)) {
    if (!alive(Number(m[3]))) await dropGuard(m[2]!, Number(m[1])).catch(() => undefined);
  }
}

function iptables(rules: string): Promise<unknown> {
  return runOk(['iptables-restore', '-w', '--noflush'], { input: rules, what: 'guarding a loopback port' });
}
