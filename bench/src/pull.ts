// Pulling an image from a registry (issue 15): a real Distribution registry (Debian's
// docker-registry) on 127.0.0.1, plain HTTP, holding two multi-layer images built here from the
// Python application rootfs (test/helpers/apps.ts, a Debian rootfs of ~200 MB) and sharing its
// two base layers. Timed, engine after engine in each round, each from an empty store:
//   ferry:  ferry pull -q (a fresh --root/--runroot)
//   podman: podman pull -q (a fresh private --root/--runroot)
//   bare:   skopeo copy docker://... dir:D (the floor: fetch and verify, nothing unpacked)
// then the second image after the first: Ferry and Podman fetch only its new layer. The checks
// (untimed): both engines' image IDs are the config's digest, Ferry's layers are the config's
// diff_ids and Python runs in the image, and through a counting proxy Ferry's second pull
// fetches only the second image's own blobs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Aborted, checkAbort } from './abort.js';
import type { Cleanable } from './cleanup.js';
import { settle, type FigureKey, type Results } from './figures.js';
import type { EngineName, Options } from './options.js';
import { FERRY_BIN } from './paths.js';
import { cmdError, errorMessage, exec, log, mountsUnder, ok } from './proc.js';
import { appTarball } from '../../test/helpers/apps.js';
import { Registry, TamperProxy } from '../../test/helpers/registry.js';
import { writePodmanConfig } from '../../test/helpers/podman.js';

export const PULL = {
  first: ['pull.first', 'pull (~100 MB, 3 layers)'],
  shared: ['pull.shared', 'pull 2nd image (shared base)'],
} as const satisfies Record<string, FigureKey>;

interface BuiltImage {
  ref: string;
  configDigest: string;
  diffIds: string[];
  /** Layer blobs' digests, base first. */
  layers: string[];
  bytes: number;
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function fileDigest(f: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of fs.createReadStream(f)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/**
 * The two images as an OCI layout: base layers = the Python rootfs without /usr/share, and its
 * /usr/share; image a adds the rootfs's shared libraries under /opt/app-a, image b its Python
 * library under /opt/app-b. Layers are gzip'd by gzip(1) at its default level, as Podman pushes.
 */
export async function buildLayout(dir: string): Promise<{ layout: string; a: Omit<BuiltImage, 'ref'>; b: Omit<BuiltImage, 'ref'> }> {
  const rootfs = path.join(dir, 'rootfs');
  const work = path.join(dir, 'layers');
  const layout = path.join(dir, 'layout');
  const blobs = path.join(layout, 'blobs', 'sha256');
  fs.mkdirSync(rootfs, { recursive: true });
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(blobs, { recursive: true });
  await ok(['tar', '-x', '-f', appTarball('python'), '-C', rootfs, '--numeric-owner'], { timeoutMs: 300_000 });
  const py = fs.readdirSync(path.join(rootfs, 'usr/lib')).find((d) => /^python3\.\d+$/.test(d));
  if (!py) throw new Error('the Python rootfs has no usr/lib/python3.*');
  const tarOf: Record<string, string[]> = {
    base: ['--exclude=./usr/share', '.'],
    share: ['./usr/share'],
    'app-a': ['--transform', 's,^\\./usr/lib/x86_64-linux-gnu,./opt/app-a/lib,', './usr/lib/x86_64-linux-gnu'],
    'app-b': ['--transform', `s,^\\./usr/lib/${py},./opt/app-b/lib,`, `./usr/lib/${py}`],
  };
  const layer: Record<string, { digest: string; diffId: string; size: number }> = {};
  await Promise.all(
    Object.entries(tarOf).map(async ([name, args]) => {
      const tar = path.join(work, `${name}.tar`);
      await ok(['tar', '-c', '-f', tar, '-C', rootfs, '--numeric-owner', '--sort=name', ...args], { timeoutMs: 300_000 });
      await ok(['gzip', '-k', '-n', tar], { timeoutMs: 300_000 });
      const gz = `${tar}.gz`;
      const digest = await fileDigest(gz);
      layer[name] = { digest, diffId: await fileDigest(tar), size: fs.statSync(gz).size };
      fs.renameSync(gz, path.join(blobs, digest.slice(7)));
      fs.rmSync(tar);
    }),
  );
  fs.rmSync(rootfs, { recursive: true, force: true });
  const put = (b: Buffer): { digest: string; size: number } => {
    const d = sha(b);
    fs.writeFileSync(path.join(blobs, d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const index: unknown[] = [];
  const image = (tag: string, names: string[]): Omit<BuiltImage, 'ref'> => {
    const ls = names.map((n) => layer[n]!);
    const config = put(
      Buffer.from(
        JSON.stringify({
          created: '2026-01-01T00:00:00Z',
          architecture: 'amd64',
          os: 'linux',
          config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['python3'], WorkingDir: `/opt/${tag}` },
          rootfs: { type: 'layers', diff_ids: ls.map((l) => l.diffId) },
          history: names.map((n) => ({ created: '2026-01-01T00:00:00Z', created_by: `bench layer ${n}` })),
        }),
      ),
    );
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: ls.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
    };
    const m = put(Buffer.from(JSON.stringify(manifest)));
    index.push({ mediaType: manifest.mediaType, ...m, annotations: { 'org.opencontainers.image.ref.name': tag } });
    return { configDigest: config.digest, diffIds: ls.map((l) => l.diffId), layers: ls.map((l) => l.digest), bytes: ls.reduce((s, l) => s + l.size, config.size) };
  };
  const a = image('app-a', ['base', 'share', 'app-a']);
  const b = image('app-b', ['base', 'share', 'app-b']);
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: index }));
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return { layout, a, b };
}

/** One puller: how a fresh store is made, how an image is pulled into it, what it got. */
interface Puller {
  name: EngineName;
  /** A new empty store for one sample; returns its argv prefix. */
  fresh(dir: string): string[];
  pull(prefix: string[], ref: string, dest: string): Promise<{ ms: number; out: string }>;
}

const ferryPuller: Puller = {
  name: 'ferry',
  fresh: (d) => [FERRY_BIN, '--root', path.join(d, 'root'), '--runroot', path.join(d, 'run')],
  async pull(prefix, ref) {
    const r = await exec([...prefix, 'pull', '-q', '--tls-verify=false', ref], { timeoutMs: 300_000 });
    if (r.code !== 0) throw cmdError('ferry pull', r);
    return { ms: r.ms, out: r.stdout.trim() };
  },
};

function podmanPuller(dir: string): Puller {
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  writePodmanConfig(dir);
  const env = { ...process.env, CONTAINERS_CONF: path.join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf') };
  return {
    name: 'podman',
    fresh: (d) => ['podman', '--root', path.join(d, 'root'), '--runroot', path.join(d, 'run'), '--storage-driver', 'overlay'],
    async pull(prefix, ref) {
      const r = await exec([...prefix, 'pull', '-q', '--tls-verify=false', ref], { env, timeoutMs: 300_000 });
      if (r.code !== 0) throw cmdError('podman pull', r);
      return { ms: r.ms, out: r.stdout.trim() };
    },
  };
}

const skopeoPuller: Puller = {
  name: 'bare',
  fresh: () => [],
  async pull(_p, ref, dest) {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const r = await exec(['skopeo', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `dir:${dest}`], { timeoutMs: 300_000 });
    if (r.code !== 0) throw cmdError('skopeo copy', r);
    return { ms: r.ms, out: '' };
  },
};

/** Removes a sample's store (anything mounted below it first: a pull should mount nothing). */
function removeStore(d: string): void {
  for (const m of mountsUnder(d).sort().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  fs.rmSync(d, { recursive: true, force: true });
}

/** The registry while it runs, for a synchronous teardown on Ctrl-C. */
class RegistryCleanable implements Cleanable {
  readonly name = 'registry';
  constructor(private readonly reg: Registry, private readonly proxy: TamperProxy) {}
  cleanup(): void {
    void this.proxy.stop();
    this.reg.stopSync();
  }
}

export async function benchPull(R: Results, o: Options, dir: string, engines: readonly EngineName[], track: (c: Cleanable) => void): Promise<void> {
  const keys = [PULL.first, PULL.shared];
  const reg = new Registry();
  let proxy: TamperProxy | undefined;
  try {
    log('bench: pull: building the two images (Python rootfs, 3 gzip layers each, 2 shared)');
    const built = await buildLayout(path.join(dir, 'pull-src'));
    await reg.start();
    proxy = new TamperProxy(reg.port);
    await proxy.start();
    track(new RegistryCleanable(reg, proxy));
    reg.push(built.layout, 'app-a', 'bench/pyapp:a');
    reg.push(built.layout, 'app-b', 'bench/pyapp:b');
    fs.rmSync(path.join(dir, 'pull-src'), { recursive: true, force: true });
    const a: BuiltImage = { ...built.a, ref: `${reg.addr}/bench/pyapp:a` };
    const b: BuiltImage = { ...built.b, ref: `${reg.addr}/bench/pyapp:b` };
    log(`bench: pull: image a ${(a.bytes / 2 ** 20).toFixed(1)} MiB in ${a.layers.length} layers, b shares ${a.layers.filter((l) => b.layers.includes(l)).length}`);

    const pullers = [ferryPuller, ...(engines.includes('podman') ? [podmanPuller(path.join(dir, 'pull-podman'))] : []), ...(engines.includes('bare') ? [skopeoPuller] : [])];
    await verifyFerry(dir, a, b, proxy);
    const failedE = new Set<EngineName>();
    const stores: string[] = [];
    for (let i = -1; i < o.iterations; i++) {
      // Round -1: untimed (the first run of each tool pays for cold caches).
      for (const p of pullers) {
        if (failedE.has(p.name)) continue;
        checkAbort();
        const d = path.join(dir, `pull-${p.name}-${i + 1}`);
        const prefix = p.fresh(d);
        try {
          await settle(0);
          const first = await p.pull(prefix, a.ref, path.join(d, 'a'));
          if (p.name !== 'bare' && first.out !== a.configDigest.slice(7)) throw new Error(`${p.name} pull -q printed ${JSON.stringify(first.out)}, not the image ID ${a.configDigest.slice(7, 19)}…`);
          if (p.name === 'bare') await verifyDir(path.join(d, 'a'), a);
          if (i >= 0) R.add(PULL.first, p.name, first.ms, { bytes: a.bytes });
          if (p.name !== 'bare') {
            await settle(0);
            const second = await p.pull(prefix, b.ref, '');
            if (second.out !== b.configDigest.slice(7)) throw new Error(`${p.name} pull -q printed ${JSON.stringify(second.out)}, not the image ID ${b.configDigest.slice(7, 19)}…`);
            if (i >= 0) R.add(PULL.shared, p.name, second.ms);
          }
        } catch (err) {
          if (err instanceof Aborted) throw err;
          failedE.add(p.name);
          R.fail(p.name === 'bare' ? [PULL.first] : keys, p.name, errorMessage(err));
          log(`  ${p.name}: ${errorMessage(err)}`);
        } finally {
          // Kept until the figure is done: ext4 is slow to make files where many were just
          // deleted (its inode allocator skips recently freed inodes), which would burden
          // whichever engine comes next.
          stores.push(d);
        }
      }
    }
    for (const d of stores) removeStore(d);
  } catch (err) {
    if (err instanceof Aborted) throw err;
    for (const e of engines) R.fail(e === 'bare' ? [PULL.first] : keys, e, errorMessage(err));
    log(`  pull: ${errorMessage(err)}`);
  } finally {
    await proxy?.stop();
    await reg.stop();
  }
}

/** skopeo's dir: holds the manifest and every blob. */
async function verifyDir(d: string, img: BuiltImage): Promise<void> {
  for (const l of [...img.layers, img.configDigest]) {
    const f = path.join(d, l.slice(7));
    if (!fs.existsSync(f)) throw new Error(`skopeo copy left out blob ${l.slice(0, 19)}…`);
  }
  if (!fs.existsSync(path.join(d, 'manifest.json'))) throw new Error('skopeo copy wrote no manifest.json');
}

/**
 * Untimed, once: Ferry's image has the config's diff_ids and runs Python; through the counting
 * proxy, the second image's pull fetches only its config and its own layer.
 */
async function verifyFerry(dir: string, a: BuiltImage, b: BuiltImage, proxy: TamperProxy): Promise<void> {
  const d = path.join(dir, 'pull-verify');
  const f = ferryPuller.fresh(d);
  try {
    const via = (img: BuiltImage): string => img.ref.replace(/^[^/]+/, proxy.addr);
    await ok([...f, 'pull', '-q', '--tls-verify=false', via(a)], { timeoutMs: 300_000 });
    const inspect = JSON.parse((await ok([...f, 'image', 'inspect', via(a)])).stdout) as { Id: string; RootFS: { Layers: string[] } }[];
    if (inspect[0]?.Id !== a.configDigest.slice(7) || JSON.stringify(inspect[0].RootFS.Layers) !== JSON.stringify(a.diffIds)) throw new Error('ferry pull: the image inspected is not the one pushed (ID or RootFS.Layers differ)');
    const out = (await ok([...f, 'run', '--rm', '--network', 'none', via(a), 'python3', '-c', 'import os; print(len(os.listdir("/opt/app-a/lib")) > 10)'], { timeoutMs: 120_000 })).stdout.trim();
    if (out !== 'True') throw new Error(`python3 in the pulled image printed ${JSON.stringify(out)}`);
    proxy.fetched.length = 0;
    await ok([...f, 'pull', '-q', '--tls-verify=false', via(b)], { timeoutMs: 300_000 });
    const got = proxy.fetched.map((x) => x.digest).sort();
    const want = [b.configDigest, ...b.layers.filter((l) => !a.layers.includes(l))].sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`ferry pull of the second image fetched ${got.length} blob(s) (${got.map((g) => g.slice(7, 19)).join(', ')}), not only its own ${want.length}`);
    log(`bench: pull: verified (Ferry's second pull fetched ${got.length} blobs, ${(proxy.fetched.reduce((s, x) => s + x.bytes, 0) / 2 ** 20).toFixed(1)} MiB)`);
  } finally {
    await exec([...f, 'rm', '-a', '-f']);
    fs.rmSync(d, { recursive: true, force: true });
  }
}
