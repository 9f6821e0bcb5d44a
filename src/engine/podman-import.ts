/**
 * Podman's checkpoint archives, imported: a container checkpointed by
 * `podman container checkpoint --export` becomes a Ferry container. What Ferry's record needs
 * and Podman's archive lacks is derived from spec.dump and config.dump, or defaulted as Podman
 * would.
 *
 * Kubernetes' checkpoint archives (CRI-O's and containerd's, the same layout with checkpointctl's
 * reduced config.dump) are imported the same way; what differs: the base image is looked up by
 * rootfsImageName, then by rootfsImageRef (an ID or NAME@DIGEST); the name is the Kubernetes
 * container's (checkpointctl's); the pod's namespaces (network, IPC, UTS: joined by path) become
 * the container's own, with no network (--network none: the pod's is not here); bind mounts
 * beyond the ones every container has are refused (CRI-O refuses them unless the new container
 * declares them; ferry has no way to).
 *
 *   PodmanReader (drivers/archive/podman.ts) stages and checks the members -> checkPodmanArchive()
 *   refuses early (from config.dump and spec.dump) -> stagePodman() writes container.json and
 *   the checkpoint metadata -> placeStaged() and restore() as for Ferry's archives (portable.ts)
 */
import { resourcesFromSpec } from './resources.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { readJsonIfExists, writeJsonAtomic } from '../lib/fsutil.js';
import { newId, validName } from '../lib/ids.js';
import { VERSION } from '../lib/version.js';
import type { PodmanHeader } from '../drivers/archive/podman.js';
import { readDumpStats } from '../drivers/criu/stats.js';
import { dumpedArch, dumpedRootMode } from '../drivers/criu/images.js';
import type { ImageRecord } from '../drivers/storage/images.js';
import { DEFAULT_NETWORK, inSubnet, parseIPv4, validMac, type NetworkRecord, type PortMapping } from '../drivers/network/cni.js';
import type { PullOptions } from '../drivers/registry/pull.js';
import { isShortName } from '../drivers/registry/reference.js';
import { CHECKPOINT_FORMAT, META_FILE, checkpointMetaOptions, type CheckpointMeta } from './checkpoint-dir.js';
import type { Engine } from './engine.js';
import { ENGINE_MOUNTS, type ContainerConfig, type EngineMount, type MountSpec } from './types.js';

/**
 * The base image an archive names, in this host's store, or pulled (with pull's options) when
 * a registry names it, as Podman's restore pulls it. Ferry's image IDs and Podman's differ for
 * the same rootfs imported into each, so images are matched by name. (The one place a foreign
 * archive's image is looked up.)
 */
export async function findBaseImage(engine: Engine, name: string, pull?: PullOptions & { authfile?: string }): Promise<ImageRecord | undefined> {
  let img: ImageRecord | undefined;
  try {
    img = engine.images.find(name);
  } catch {
    return undefined;
  }
  if (img || !pull) return img;
  const plain = name.split('@')[0]!.replace(/:[\w][\w.-]*$/, '');
  if (isShortName(plain) || /^localhost(\/|$)/.test(plain)) return undefined;
  try {
    return await engine.pullImage(name, pull);
  } catch (e) {
    throw new FerryError('ENOTFOUND', `the archive needs image ${name}, which this host does not have, and pulling it failed (${(e as Error).message.replace(/[.;:]?\s*$/, '')}): pull, load or import it first; nothing was created`);
  }
}

// ------------------------------------------------------------------------------- import

type Json = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined);

/** Mounts every container has (Ferry makes its own): not carried over from Podman's spec. */
const STANDARD_MOUNTS = ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf'];
/** And in a Kubernetes container's spec (CRI-O's list of mounts a restore sets up anew). */
const K8S_STANDARD_MOUNTS = [...STANDARD_MOUNTS, '/etc/passwd', '/etc/group'];

const isK8s = (h: PodmanHeader): boolean => h.engine !== 'Podman';

/** Podman's default network: Ferry's default network stands for it, both ways. */
export const PODMAN_DEFAULT_NETWORK = 'podman';

/**
 * The container's name in an archive: Podman's, or for Kubernetes' archives the container's
 * name in its pod (as checkpointctl shows it: CRI-O's io.kubernetes.cri-o.Metadata,
 * containerd's io.kubernetes.cri.container-name), else config.dump's.
 */
export function archiveContainerName(h: PodmanHeader): string {
  const a = (h.spec.annotations && typeof h.spec.annotations === 'object' ? h.spec.annotations : {}) as Json;
  let n: string | undefined;
  if (h.engine === 'CRI-O') {
    try {
      n = str((JSON.parse(str(a['io.kubernetes.cri-o.Metadata']) ?? '{}') as Json).name);
    } catch {
      n = undefined;
    }
  } else if (h.engine === 'containerd') n = str(a['io.kubernetes.cri.container-name']);
  return n || (str(h.config.name) ?? '');
}

/**
 * The base image an archive names: by rootfsImageName; for Kubernetes' archives also by
 * rootfsImageRef (an image ID or NAME@DIGEST) before anything is pulled.
 */
async function archiveImage(engine: Engine, h: PodmanHeader, pull?: PullOptions & { authfile?: string }): Promise<ImageRecord | undefined> {
  const name = str(h.config.rootfsImageName);
  if (!isK8s(h)) return name ? findBaseImage(engine, name, pull) : undefined;
  const local = (ref: string | undefined): ImageRecord | undefined => {
    try {
      return ref ? engine.images.find(ref) : undefined;
    } catch {
      return undefined;
    }
  };
  return local(name) ?? local(str(h.config.rootfsImageRef)) ?? (name ? findBaseImage(engine, name, pull) : undefined);
}

function refuse(msg: string): FerryError {
  return new FerryError('EARCHIVE', `${msg}; nothing was created`);
}

/**
 * What a Podman archive asks of this host, refused before its large members are read: a
 * container this ferry can represent (no pod, one network that this host has, no joined namespaces),
 * the base image by name, a free name.
 */
export async function checkPodmanArchive(engine: Engine, h: PodmanHeader, o: { name?: string; pullOptions?: PullOptions & { authfile?: string } }): Promise<void> {
  const c = h.config;
  const criu = await engine.criu();
  if (!criu.version) throw new FerryError('EDEPEND', 'CRIU is not installed: run `npm run setup` (as root)');
  if (isK8s(h)) return checkK8sArchive(engine, h, o);
  if (str(c.pod)) throw refuse(`the Podman container was in pod ${String(c.pod)}: ferry imports Podman containers that were not in a pod`);
  if (Array.isArray(c.Dependencies) && c.Dependencies.length) throw refuse('the Podman container depends on other containers: ferry imports only standalone containers');
  for (const k of ['ipcNsCtr', 'netNsCtr', 'pidNsCtr', 'utsNsCtr', 'cgroupNsCtr', 'mountNsCtr', 'userNsCtr']) {
    if (str(c[k])) throw refuse(`the Podman container shares namespaces with another container (${k}): ferry imports only standalone containers`);
  }
  const ns = specNamespaces(h.spec);
  if (ns.some((n) => n.type === 'user')) throw refuse('the Podman container ran in a user namespace (--userns), which ferry does not set up');
  for (const t of ['pid', 'ipc', 'uts', 'mount']) {
    const n = ns.find((x) => x.type === t);
    if (!n || n.path) throw refuse(`the Podman container shares ${n?.path ? `the ${t} namespace ${n.path}` : `the host's ${t} namespace`}: ferry imports containers with namespaces of their own`);
  }
  ferryNetwork(engine, h);
  if (!str(c.rootfsImageName)) throw refuse('the Podman container was made from a root file system directory (--rootfs), not an image: ferry cannot import it');
  const image = str(c.rootfsImageName)!;
  if (!(await findBaseImage(engine, image, o.pullOptions ?? { tlsVerify: true }))) {
    throw new FerryError('ENOTFOUND', `the archive needs image ${image}, which this host does not have: import it first (\`ferry import TARBALL ${image}\`); nothing was created`);
  }
  const name = o.name ?? str(c.name) ?? '';
  if (!validName(name)) throw refuse(`bad checkpoint archive: invalid container name "${name}"`);
  if (engine.find(name)) throw new FerryError('EEXIST', `the container name "${name}" is already in use: pass -n/--name with another name; nothing was created`);
}

/** checkPodmanArchive() for CRI-O's and containerd's archives. */
async function checkK8sArchive(engine: Engine, h: PodmanHeader, o: { name?: string; pullOptions?: PullOptions & { authfile?: string } }): Promise<void> {
  const who = `the ${h.engine} container`;
  const ns = specNamespaces(h.spec);
  if (ns.some((n) => n.type === 'user')) throw refuse(`${who} ran in a user namespace, which ferry does not set up`);
  for (const t of ['pid', 'mount']) {
    const n = ns.find((x) => x.type === t);
    if (!n || n.path) throw refuse(`${who} shares ${n?.path ? `the ${t} namespace ${n.path}` : `the host's ${t} namespace`}: ferry imports containers with pid and mount namespaces of their own`);
  }
  for (const t of ['network', 'ipc', 'uts']) {
    if (!ns.some((x) => x.type === t)) throw refuse(`${who} shares the host's ${t} namespace: ferry imports containers with namespaces of their own`);
  }
  const binds = (Array.isArray(h.spec.mounts) ? (h.spec.mounts as Json[]) : [])
    .filter((m) => str(m?.type) === 'bind' || strings(m?.options)?.some((x) => x === 'bind' || x === 'rbind'))
    .map((m) => path.posix.normalize(str(m.destination) ?? '/'))
    .filter((d) => !K8S_STANDARD_MOUNTS.includes(d) && !Object.hasOwn(ENGINE_MOUNTS, d));
  if (binds.length) throw refuse(`${who} has bind mounts (${binds.join(', ')}), which ferry cannot recreate from an archive: checkpoint a container without them`);
  if (!(await archiveImage(engine, h, o.pullOptions ?? { tlsVerify: true }))) {
    const want = [str(h.config.rootfsImageName), str(h.config.rootfsImageRef)].filter(Boolean).join(' (') + (str(h.config.rootfsImageName) && str(h.config.rootfsImageRef) ? ')' : '');
    if (!want) throw refuse(`bad checkpoint archive: its config.dump names no image (rootfsImageName, rootfsImageRef)`);
    throw new FerryError('ENOTFOUND', `the archive needs image ${want}, which this host does not have: pull, load or import it first; nothing was created`);
  }
  const name = o.name ?? archiveContainerName(h);
  if (!validName(name)) throw refuse(`bad checkpoint archive: invalid container name "${name}" (pass -n/--name)`);
  if (engine.find(name)) throw new FerryError('EEXIST', `the container name "${name}" is already in use: pass -n/--name with another name; nothing was created`);
}

/**
 * The Ferry network a Podman container's network maps to (undefined: it had none, or the
 * host's): Podman's default network ("podman") is Ferry's default one; another network is the
 * Ferry network of the same name, which must exist here. One network only.
 */
function ferryNetwork(engine: Engine, h: PodmanHeader): NetworkRecord | undefined {
  const nets = podmanNetworks(h);
  if (!nets.length) return undefined;
  if (nets.some((n) => !n.startsWith('(') && !validName(n))) throw refuse('bad checkpoint archive: config.dump names an invalid network');
  if (nets.length > 1) throw refuse(`the Podman container is on networks ${nets.join(', ')}: ferry imports Podman containers on one network`);
  const n = nets[0]!;
  if (n.startsWith('(')) throw refuse(`the Podman container ran in ${n.slice(1, -1)}: ferry imports Podman containers on a network, with --network none or --network host`);
  const name = n === PODMAN_DEFAULT_NETWORK ? DEFAULT_NETWORK : n;
  const net = engine.networks.find(name);
  if (!net) throw refuse(`the Podman container is on network ${n}, which this host does not have: create it first (\`ferry network create ${name}\`)`);
  return net;
}

/** The address a Podman container had on its network (network.status: netavark's StatusBlock, per interface). */
function podmanAddress(status: unknown, network: string): { ip?: string; mac?: string } {
  const ifaces = ((status as Json | null)?.[network] as Json | undefined)?.interfaces;
  if (!ifaces || typeof ifaces !== 'object') return {};
  const first = Object.values(ifaces as Json)[0] as Json | undefined;
  const subnets = Array.isArray(first?.subnets) ? (first!.subnets as Json[]) : [];
  const ip = subnets.map((x) => str(x?.ipnet)?.split('/')[0]).find((a): a is string => !!a && parseIPv4(a) !== undefined);
  const mac = str(first?.mac_address);
  return { ip, mac: mac && validMac(mac) ? mac.toLowerCase() : undefined };
}

/** The networks a Podman container was on (none with --network none or host). */
function podmanNetworks(h: PodmanHeader): string[] {
  const c = h.config;
  const nets = c.newNetworks && typeof c.newNetworks === 'object' ? Object.keys(c.newNetworks as Json) : [];
  if (Array.isArray(c.networks)) nets.push(...(c.networks as unknown[]).map(String));
  if (c.createNetNS === true && !nets.length) nets.push('(a network namespace of its own)');
  const ns = specNamespaces(h.spec).find((n) => n.type === 'network');
  if (ns?.path && !nets.length) nets.push(`(namespace ${ns.path})`);
  return [...new Set(nets)];
}

/** Podman's port mappings (newPortMappings: a range of ports per entry) as Ferry's. */
function podmanPorts(v: unknown): PortMapping[] {
  const out: PortMapping[] = [];
  for (const m of Array.isArray(v) ? (v as Json[]) : []) {
    const host = m?.host_port as number;
    const ctr = m?.container_port as number;
    const range = typeof m?.range === 'number' && m.range > 0 ? m.range : 1;
    const hostIP = str(m?.host_ip);
    if (!Number.isInteger(host) || !Number.isInteger(ctr) || !Number.isInteger(range) || range > 65535 || (hostIP && parseIPv4(hostIP) === undefined)) {
      throw refuse('bad checkpoint archive: a port mapping in config.dump is not one');
    }
    for (const proto of (str(m.protocol) ?? 'tcp').split(',')) {
      if (proto !== 'tcp' && proto !== 'udp') throw refuse(`the Podman container publishes ${proto} ports, which ferry does not`);
      for (let i = 0; i < range; i++) {
        if (host + i < 1 || host + i > 65535 || ctr + i < 1 || ctr + i > 65535) throw refuse('bad checkpoint archive: a port mapping in config.dump is out of range');
        out.push({ hostPort: host + i, containerPort: ctr + i, protocol: proto, ...(hostIP ? { hostIP } : {}) });
      }
    }
  }
  return out;
}

function specNamespaces(spec: Json): { type: string; path?: string }[] {
  const linux = spec.linux as Json | undefined;
  const ns = linux?.namespaces;
  return Array.isArray(ns) ? (ns as { type: string; path?: string }[]).filter((n) => n && typeof n.type === 'string') : [];
}

/**
 * Turns a staged Podman archive into what placeStaged() takes: container.json (derived from
 * spec.dump and config.dump) and checkpoint/ferry-checkpoint.json. The checkpoint's CPU is read
 * from CRIU's images; its CRIU version is not recorded in Podman's archives, so this host's is
 * assumed (a different CRIU fails the restore, which then leaves nothing behind).
 */
export async function stagePodman(engine: Engine, dir: string, h: PodmanHeader, o: { ignoreStaticIp?: boolean } = {}): Promise<void> {
  const c = h.config;
  const spec = h.spec;
  const proc = (spec.process ?? {}) as Json;
  const command = strings(proc.args);
  if (!command?.length) throw refuse('bad checkpoint archive: spec.dump has no process arguments');
  const image = (await archiveImage(engine, h))!;
  const k8s = isK8s(h);
  const id = /^[0-9a-f]{64}$/.test(str(c.id) ?? '') ? str(c.id)! : newId();
  const volumes = new Map<string, string>(); // destination -> volume name
  for (const v of Array.isArray(c.namedVolumes) ? (c.namedVolumes as Json[]) : []) {
    const name = str(v?.volumeName);
    const dest = str(v?.dest);
    if (!name || !dest || !validName(name)) throw refuse(`bad checkpoint archive: invalid named volume in config.dump`);
    volumes.set(path.posix.normalize(dest), name);
  }
  const mounts: MountSpec[] = [];
  const engineMounts: EngineMount[] = [];
  for (const m of Array.isArray(spec.mounts) ? (spec.mounts as Json[]) : []) {
    const dest = str(m?.destination);
    const type = str(m?.type);
    if (!dest || !dest.startsWith('/') || !type) throw refuse('bad checkpoint archive: a mount in spec.dump without a destination or type');
    const d = path.posix.normalize(dest);
    const opts = strings(m.options) ?? [];
    const ro = opts.includes('ro') ? ['ro'] : [];
    if (Object.hasOwn(ENGINE_MOUNTS, d) && type === 'bind') engineMounts.push(d as EngineMount);
    else if ((k8s ? K8S_STANDARD_MOUNTS : STANDARD_MOUNTS).includes(d)) continue;
    else if (volumes.has(d)) mounts.push({ type: 'volume', source: volumes.get(d)!, destination: d, options: ro });
    else if (type === 'tmpfs') mounts.push({ type: 'tmpfs', source: '', destination: d, options: opts.filter((x) => /^(size|mode|nr_inodes)=[0-9a-zA-Z]+$/.test(x) || x === 'ro') });
    else if (type === 'bind') mounts.push({ type: 'bind', source: str(m.source) ?? '', destination: d, options: ro });
    else throw refuse(`the ${h.engine} container has a ${type} mount at ${d}, which ferry cannot restore`);
  }
  const annotations = (spec.annotations ?? {}) as Json;
  const hasNetns = specNamespaces(spec).some((n) => n.type === 'network');
  // On a network: Ferry's network of that name (Podman's default: Ferry's), at the address
  // network.status gives when it is one of that network's here (Podman's restore keeps it too).
  const net = k8s ? undefined : ferryNetwork(engine, h);
  let address: { ip?: string; mac?: string } = {};
  if (net) {
    const status = readJsonIfExists<unknown>(path.join(dir, 'network.status'));
    address = podmanAddress(status, podmanNetworks(h)[0]!);
    const subnet = net.subnets[0]?.subnet ?? '';
    if (address.ip && !o.ignoreStaticIp && !inSubnet(address.ip, subnet)) {
      throw refuse(`the Podman container's address ${address.ip} is not on network ${net.name} here (${subnet}): restore with --ignore-static-ip for a new one (and --ignore-static-mac for a new MAC address)`);
    }
  }
  const signal = typeof c.stopSignal === 'number' ? Object.entries(os.constants.signals).find(([, n]) => n === c.stopSignal)?.[0] : undefined;
  const config: ContainerConfig = {
    id,
    name: archiveContainerName(h),
    created: str(c.createdTime) ?? new Date().toISOString(),
    imageId: image.Id,
    imageName: image.Names[0] ?? str(c.rootfsImageName) ?? image.Id,
    command,
    env: strings(proc.env) ?? [],
    workdir: str(proc.cwd) ?? '/',
    hostname: str(spec.hostname) ?? id.slice(0, 12),
    mounts,
    autoRemove: annotations['io.podman.annotations.autoremove'] === 'TRUE',
    labels: c.labels && typeof c.labels === 'object' ? Object.fromEntries(Object.entries(c.labels as Json).map(([k, v]) => [k, String(v)])) : {},
    stopSignal: signal?.replace(/^SIG/, '') ?? 'TERM',
    stopTimeout: typeof c.stopTimeout === 'number' ? c.stopTimeout : 10,
    createCommand: strings(c.CreateCommand),
    // A Kubernetes container joined its pod's network namespace: it gets one of its own, unconnected.
    network: net ? { mode: 'bridge', name: net.name, ports: podmanPorts(c.newPortMappings) } : { mode: hasNetns || k8s ? 'none' : 'host', ports: [] },
    ...(engineMounts.length ? { engineMounts } : {}),
  };
  const resources = resourcesFromSpec(spec);
  if (resources) config.resources = resources;
  const rootMode = dumpedRootMode(path.join(dir, 'checkpoint'));
  if (rootMode !== undefined) config.rootMode = rootMode;

  const images = path.join(dir, 'checkpoint');
  const arch = dumpedArch(images);
  if (!arch) throw refuse('bad checkpoint archive: its CRIU images hold no process (no core-N.img)');
  if (arch !== process.arch) throw new FerryError('EINVAL', `the checkpoint was made on ${arch}, this host is ${process.arch}: restore it on a ${arch} host; nothing was created`);
  const meta: CheckpointMeta = {
    formatVersion: CHECKPOINT_FORMAT,
    createdAt: new Date().toISOString(),
    container: config,
    ferryVersion: VERSION,
    criuVersion: (await engine.criu()).version ?? 'unknown',
    runcVersion: await engine.runtimeVersion(),
    kernel: '',
    arch,
    options: checkpointMetaOptions({}),
    stats: fs.existsSync(path.join(dir, 'stats-dump')) ? readDumpStats(path.join(dir, 'stats-dump')) : undefined,
    // What the restore asks the network for (unless --ignore-static-ip/-mac or -n): the old address.
    network: net && address.ip ? { name: net.name, ip: address.ip, mac: address.mac ?? '', ports: config.network!.ports } : undefined,
  };
  writeJsonAtomic(path.join(images, META_FILE), meta, 0o600);
  fs.rmSync(path.join(images, 'spec.dump'), { force: true });
  fs.renameSync(path.join(dir, 'spec.dump'), path.join(images, 'spec.dump'));
  writeJsonAtomic(path.join(dir, 'container.json'), { config }, 0o600);
}

