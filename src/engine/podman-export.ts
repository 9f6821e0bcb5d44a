/**
 * Podman's checkpoint archives, exported: a Ferry checkpoint in the layout `podman container
 * restore --import` (Podman 4.x) reads: config.dump in libpod's ContainerConfig shape (the
 * fields its restore reads, with their JSON names and types), spec.dump, network.status,
 * ctr.log, checkpoint/, rootfs-diff.tar and deleted.files, volumes/NAME.tar and
 * devshm-checkpoint.tar.
 *
 *   (container checkpointed, lock held) -> inner tars in a scratch dir -> archive (no checksums:
 *   Podman's layout has none)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../lib/errors.js';
import { mkdirp, readJson, readJsonIfExists } from '../lib/fsutil.js';
import type { ArchiveWriter, WriteStats } from '../drivers/archive/archive.js';
import { CRIU_RESTORE_CONF, treeTar, upperToDiff } from '../drivers/archive/podman.js';
import { META_FILE, type CheckpointMeta } from './checkpoint-dir.js';
import { DEFAULT_NETWORK, inSubnet } from '../drivers/network/cni.js';
import { PODMAN_DEFAULT_NETWORK } from './podman-import.js';
import type { Engine } from './engine.js';
import { exportedVolumes, writeArchive, type ExportOptions } from './portable.js';
import { engineMountFile, type ContainerRecord } from './types.js';

type Json = Record<string, unknown>;

/**
 * A CRIU configuration file for the restore, unpacked into Podman's bundle with the rest: in
 * artifacts/, which Podman also copies into the bundle from a checkpoint image.
 */
const CRIU_CONF = `artifacts/${CRIU_RESTORE_CONF}`;

/** The name (and ID) of a container's image as Podman's config.dump gives it. */
export function podmanImageRef(rec: ContainerRecord): { name: string; id: string } {
  // Podman resolves rootfsImageID in its own store; a name resolves there as an ID does.
  return { name: rec.config.imageName, id: rec.config.imageName };
}

/** What Podman's format cannot carry, refused before the container is checkpointed. */
export function checkPodmanExport(rec: ContainerRecord): void {
  const c = rec.config;
  if (c.pod) throw new FerryError('EINVAL', `container ${c.name} is in a pod: --format podman exports standalone containers; the container is still running`);
  if (/^(sha256:)?[0-9a-f]{64}$/.test(c.imageName)) {
    throw new FerryError('EINVAL', `container ${c.name}'s image has no name, which Podman needs to find its own copy: --format podman exports containers of named images; the container is still running`);
  }
}

/**
 * Writes the container's committed checkpoint in Podman's layout, for
 * `podman container restore --import`. Caller holds the container's lock.
 */
export async function exportPodman(engine: Engine, rec: ContainerRecord, o: ExportOptions): Promise<WriteStats> {
  const c = rec.config;
  const id = c.id;
  const images = o.imageDir ?? engine.paths.checkpointDir(id);
  const scratch = path.join(engine.paths.containerDir(id), `podman-export-${process.pid}`);
  fs.rmSync(scratch, { recursive: true, force: true });
  mkdirp(scratch, 0o700);
  try {
    const spec = readJson<Json>(path.join(images, 'spec.dump'));
    const volumes = exportedVolumes(rec, o);
    const files: [string, string][] = []; // archive name -> file
    if (!o.ignoreRootfs) {
      const diff = await rootfsDiff(engine, rec, scratch);
      files.push(['rootfs-diff.tar', diff.tar]);
      fs.writeFileSync(path.join(scratch, 'deleted.files'), JSON.stringify(diff.deleted));
      files.push(['deleted.files', path.join(scratch, 'deleted.files')]);
    }
    for (const v of volumes) {
      const f = path.join(scratch, `volume-${v}.tar`);
      await toFile(treeTar(engine.volumes.get(v).Mountpoint), f);
      files.push([`volumes/${v}.tar`, f]);
    }
    const shm = path.join(engine.paths.bundle(id), engineMountFile('/dev/shm'));
    if (c.engineMounts?.includes('/dev/shm') && fs.existsSync(shm)) {
      const f = path.join(scratch, 'devshm-checkpoint.tar');
      await toFile(treeTar(shm), f);
      files.push(['devshm-checkpoint.tar', f]);
    }
    return await writeArchive(
      o.target,
      o.compression,
      async (w) => {
        await w.addJson('config.dump', podmanConfig(rec, spec));
        await w.addJson('spec.dump', podmanSpec(rec, spec));
        await w.addJson('network.status', podmanNetworkStatus(engine, rec, images));
        await w.addDirEntry('artifacts/');
        await w.addBuffer(CRIU_CONF, 'skip-file-rwx-check\n');
        if (fs.existsSync(engine.paths.logPath(id))) await w.addFile('ctr.log', engine.paths.logPath(id));
        await addImages(w, images);
        for (const [name, file] of files) await w.addFile(name, file);
      },
      (why) => new FerryError('EARCHIVE', `exporting ${c.name} failed: ${why}; the checkpoint is kept on this host (\`ferry container restore ${c.name}\`)`),
      { checksums: false },
    );
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** CRIU's images, without Ferry's own metadata files. */
async function addImages(w: ArchiveWriter, dir: string): Promise<void> {
  await w.addDirEntry('checkpoint/');
  for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isFile() || e.name === META_FILE || e.name === 'spec.dump') continue;
    await w.addFile(`checkpoint/${e.name}`, path.join(dir, e.name));
  }
}

async function toFile(t: { stream: Readable; done: Promise<void> }, file: string): Promise<void> {
  await Promise.all([pipeline(t.stream, fs.createWriteStream(file, { mode: 0o600 })), t.done]);
}

/**
 * The container's file system changes as Podman carries them: the files added or changed as a
 * tar, and the deleted paths: each whiteout, and below a directory made opaque (deleted and
 * made again) every name the image has there that the upper dir does not.
 */
async function rootfsDiff(engine: Engine, rec: ContainerRecord, scratch: string): Promise<{ tar: string; deleted: string[] }> {
  const upper = engine.paths.layer(rec.config.id).upper;
  const img = engine.images.byId(rec.config.imageId);
  if (!img) throw new FerryError('ENOTFOUND', `the image of container ${rec.config.name} (${rec.config.imageName}) is gone: import it again`);
  const { cwd, lower } = engine.images.lowerDirs(img);
  const file = path.join(scratch, 'rootfs-diff.tar');
  const { deleted, opaque } = await upperToDiff(upper, file);
  for (const d of opaque) {
    // What the image's layers have there (a name one of them whites out is listed too: Podman
    // removes a path that is not there without complaint).
    const names = new Set<string>();
    for (const l of lower) {
      try {
        for (const n of fs.readdirSync(path.join(cwd, l, d))) names.add(n);
      } catch {
        /* not in this layer */
      }
    }
    const present = new Set(fs.readdirSync(path.join(upper, d)));
    for (const n of names) if (!present.has(n)) deleted.push(`/${d}/${n}`);
  }
  return { tar: file, deleted };
}

/** spec.dump: the spec the checkpoint was dumped with, marked as libpod's. */
function podmanSpec(rec: ContainerRecord, spec: Json): Json {
  const annotations = { ...((spec.annotations ?? {}) as Record<string, string>) };
  annotations['io.container.manager'] = 'libpod';
  annotations['io.podman.annotations.autoremove'] = rec.config.autoRemove ? 'TRUE' : 'FALSE';
  // Podman's container root has its image's mode (0555 for an imported rootfs), Ferry's had its
  // own when dumped, and CRIU checks it: runc hands CRIU this configuration file (relative to
  // the bundle, where Podman unpacks the archive), which skips that check.
  annotations['org.criu.config'] = CRIU_CONF;
  // Podman binds the spec's named volumes from their paths as given: relative to its bundle
  // dir (GRAPHROOT/<driver>-containers/ID/userdata), where it puts the restored volumes.
  const vols = new Map(rec.config.mounts.filter((m) => m.type === 'volume').map((m) => [m.destination, m.source]));
  const mounts = ((spec.mounts ?? []) as Json[]).map((m) => {
    const v = vols.get(String(m.destination));
    return v && m.type === 'bind' ? { ...m, source: `../../../volumes/${v}/_data` } : m;
  });
  // Ferry's only hook (lo up, a program of Ferry's) is not on a Podman host.
  const { hooks: _hooks, ...rest } = spec;
  void _hooks;
  return { ...rest, annotations, mounts };
}

/** The Podman network a Ferry network stands for: Ferry's default is Podman's default, others keep their names. */
function podmanNetworkName(name: string | undefined): string {
  return !name || name === DEFAULT_NETWORK ? PODMAN_DEFAULT_NETWORK : name;
}

/**
 * network.status: the address the container had when dumped (checkpoint metadata), in the
 * shape Podman writes (netavark's StatusBlock per network); Podman's restore asks its network
 * for it again unless --ignore-static-ip/-mac. null without a network.
 */
function podmanNetworkStatus(engine: Engine, rec: ContainerRecord, images: string): Json | null {
  const n = rec.config.network;
  if (n?.mode !== 'bridge') return null;
  const a = readJsonIfExists<CheckpointMeta>(path.join(images, META_FILE))?.network;
  if (!a?.ip) return null;
  const subnet = engine.networks.find(a.name)?.subnets.find((s) => inSubnet(a.ip, s.subnet));
  return {
    [podmanNetworkName(n.name)]: {
      interfaces: {
        eth0: { subnets: [{ ipnet: `${a.ip}/${subnet?.subnet.split('/')[1] ?? '32'}`, ...(subnet ? { gateway: subnet.gateway } : {}) }], ...(a.mac ? { mac_address: a.mac } : {}) },
      },
    },
  };
}

/** config.dump: the fields of libpod's ContainerConfig that Podman's restore reads, with their JSON names and types. */
function podmanConfig(rec: ContainerRecord, spec: Json): Json {
  const c = rec.config;
  const img = podmanImageRef(rec);
  const vols = c.mounts.filter((m) => m.type === 'volume');
  const shm = c.engineMounts?.includes('/dev/shm') ?? false;
  const sig = os.constants.signals[`SIG${c.stopSignal}` as keyof typeof os.constants.signals] ?? 15;
  const bridge = c.network?.mode === 'bridge';
  return {
    spec,
    id: c.id,
    name: c.name,
    lockID: 0,
    CreateCommand: c.createCommand ?? ['ferry', 'run', '--name', c.name, c.imageName, ...c.command],
    RawImageName: c.imageName,
    idMappingsOptions: { HostUIDMapping: true, HostGIDMapping: true, UIDMap: null, GIDMap: null },
    rootfsImageID: img.id,
    rootfsImageName: img.name,
    // A private /dev/shm only when the dump has one bound from outside (else CRIU restores its tmpfs).
    NoShm: !shm,
    shmSize: 65536000,
    staticDir: '',
    namedVolumes: vols.map((m) => ({ volumeName: m.source, dest: m.destination, options: m.options.includes('ro') ? ['ro'] : ['rw'] })),
    userVolumes: vols.map((m) => m.destination),
    createWorkingDir: true,
    secretsPath: '',
    storageOpts: null,
    passwd: false,
    privileged: false,
    // On a bridge network: the same network in Podman (Ferry's default: Podman's), a namespace
    // of its own made by Podman. Else none: not network-disabled to Podman, which then binds
    // /etc/resolv.conf as Ferry did at the dump.
    createNetNS: bridge,
    ...(bridge ? { newNetworks: { [podmanNetworkName(c.network!.name)]: { interface_name: 'eth0' } }, networkMode: 'bridge' } : {}),
    ...(bridge && c.network!.ports.length ? { newPortMappings: c.network!.ports.map((p) => ({ host_ip: p.hostIP ?? '', container_port: p.containerPort, host_port: p.hostPort, range: 1, protocol: p.protocol })) } : {}),
    postConfigureNetNS: c.network?.mode === 'none',
    UseImageResolvConf: false,
    UseImageHosts: false,
    command: c.command,
    labels: c.labels,
    stopSignal: sig,
    stopTimeout: c.stopTimeout,
    createdTime: c.created,
    cgroupParent: '',
    logPath: '',
    logTag: '',
    logSize: 0,
    logDriver: 'k8s-file',
    runtime: 'runc',
    pause: false,
    isService: false,
    healthcheck: null,
    healthcheck_on_failure_action: 0,
    umask: '0022',
    mountAllDevices: false,
  };
}
