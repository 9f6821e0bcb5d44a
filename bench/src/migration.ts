// Live migration: two "hosts" on this machine exactly as the tests make them
// (test/helpers/hosts.ts: a network namespace each, joined by a veth pair, each with its own
// sshd on port 2222 and its own Ferry root), Ferry's stop-and-copy and --lazy against the bare
// runc + CRIU and Podman baselines, each with a state of its own on both hosts. Samples
// alternate A -> B, B -> A, ... on one container per engine, mode and size.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HostPair, hasSshd, type NetHost } from '../../test/helpers/hosts.js';
import { Aborted, checkAbort } from './abort.js';
import type { Cleanup } from './cleanup.js';
import { BareHost } from './engines/bare.js';
import { uniq, type HostEngine, type MigrationMode } from './engines/engine.js';
import { ferryMigrate, ferryOn } from './engines/ferry.js';
import { PodmanHost } from './engines/podman.js';
import { memoryOf, settle, type FigureKey, type Results } from './figures.js';
import type { EngineName, Options } from './options.js';
import { FERRY_BIN } from './paths.js';
import { errorMessage, log, mountsUnder } from './proc.js';
import { REDIS, TINY, memhogArgv, progress, sizeLabel, stateBefore, verifyContinues, verifyRestored, waitStarted, workload, type BenchContext, type Size, type Workload } from './workloads.js';

const MIG_TITLES: Record<MigrationMode, string> = {
  stop: 'migrate stop-and-copy',
  lazy: 'migrate --lazy',
};

/** How long a migrated workload may take to print again (untimed checks; 1 GiB is slow to verify). */
const checkTimeout = (size: Size): number => (typeof size === 'number' && size >= 1024 ? 90_000 : 30_000);

function migIds(mode: MigrationMode, size: Size): [FigureKey, FigureKey] {
  const t = `${MIG_TITLES[mode]} ${sizeLabel(size)}`;
  return [
    [`migrate.${mode}.${size}.downtime`, `${t} downtime`],
    [`migrate.${mode}.${size}.total`, `${t} total`],
  ];
}

/** What `ferry info --format json` says about lazy pages. */
interface FerryInfo {
  host?: { checkpointModes?: { lazyPages?: boolean }; notes?: string[] };
}

/**
 * The migration figures: sets up the two hosts (with a bare and a Podman baseline on each when
 * those engines run), measures every size and mode, and removes the hosts again, also after a
 * failure. What cannot be measured here goes into `skipped`.
 */
export async function benchMigration(R: Results, o: Options, ctx: BenchContext, engineNames: readonly EngineName[], skipped: Record<string, string>, cleanup: Cleanup): Promise<void> {
  if (!hasSshd()) {
    skipped.migration = 'openssh-server / ssh is not installed (npm run setup installs it)';
    log(`bench: skipping migration: ${skipped.migration}`);
    return;
  }
  const pair = new HostPair();
  cleanup.setMigrationHosts(() => destroyHostsSync(pair));
  const { a, b } = pair;
  const bare: [BareHost, BareHost] | undefined = engineNames.includes('bare') ? [new BareHost(a, path.join(ctx.dir, 'ma')), new BareHost(b, path.join(ctx.dir, 'mb'))] : undefined;
  let podman: [PodmanHost, PodmanHost] | undefined = engineNames.includes('podman') ? [new PodmanHost(a, path.join(ctx.dir, 'pa')), new PodmanHost(b, path.join(ctx.dir, 'pb'))] : undefined;
  try {
    log('bench: migration: setting up two hosts (network namespaces with sshd)');
    await pair.setup();
    // The Redis image goes to the hosts only when Redis is migrated.
    const redis = o.migSizes.includes('redis');
    const hostCtx: BenchContext = redis ? ctx : { ...ctx, redisTarball: undefined };
    for (const h of [a, b]) {
      await h.ok(['import', ctx.tarball, 'busybox']);
      if (o.migSizes.some((sz) => typeof sz === 'number')) await h.ok(['import', ctx.memhogTarball, 'memhog']);
      if (redis && ctx.redisTarball) await h.ok(['import', ctx.redisTarball, 'redis'], { timeoutMs: 300_000 });
    }
    if (bare) {
      for (const e of bare) {
        cleanup.track(`bare-${e.host.netns}`, e);
        await e.setup(hostCtx);
      }
    }
    if (podman) {
      try {
        for (const e of podman) {
          cleanup.track(`podman-${e.host.netns}`, e);
          await e.setup(hostCtx);
        }
      } catch (err) {
        skipped['migrate podman'] = `Podman could not be set up on the migration hosts: ${errorMessage(err)}`;
        log(`bench: migration: no Podman figures: ${skipped['migrate podman']}`);
        for (const e of podman) e.cleanup();
        podman = undefined;
      }
    }
    const info = JSON.parse(await a.ok(['info', '--format', 'json'])) as FerryInfo;
    const lazy = !!info.host?.checkpointModes?.lazyPages;
    if (!lazy) {
      skipped['migrate --lazy'] = `lazy pages unavailable here: ${(info.host?.notes ?? []).join('; ')}`;
      log(`bench: migration: no --lazy figures: ${skipped['migrate --lazy']}`);
    }
    const modes: MigrationMode[] = ['stop', ...(lazy ? (['lazy'] as const) : [])];
    for (const size of o.migSizes) {
      for (const mode of modes) {
        checkAbort();
        log(`bench: ${MIG_TITLES[mode]} ${sizeLabel(size)} [ferry]`);
        await migrateFerry(R, o, pair, size, mode);
      }
      if (bare) {
        for (const mode of modes) {
          checkAbort();
          log(`bench: ${MIG_TITLES[mode]} ${sizeLabel(size)} [bare]`);
          await migrateBaseline(R, o, ctx, pair, bare, size, mode);
        }
      }
      if (podman) {
        checkAbort();
        log(`bench: ${MIG_TITLES.stop} ${sizeLabel(size)} [podman]`);
        await migrateBaseline(R, o, ctx, pair, podman, size, 'stop');
      }
    }
  } finally {
    log('bench: migration: removing the two hosts');
    for (const e of bare ?? []) {
      await e.removeAll();
      e.cleanup();
    }
    for (const e of podman ?? []) e.cleanup();
    await pair.destroy().catch((err: unknown) => log(`bench: removing the migration hosts: ${errorMessage(err)}`));
    cleanup.setMigrationHosts(undefined);
  }
}

/**
 * Ferry's migrations of one container, A -> B, B -> A, ...: `ferry migrate --print-stats`
 * gives downtime and total; after each, the workload must go on where it stopped.
 */
async function migrateFerry(R: Results, o: Options, pair: HostPair, size: Size, mode: MigrationMode): Promise<void> {
  const mem = memoryOf(size); // MiB to warm before each step (0: tiny)
  const ids = migIds(mode, size);
  const name = uniq(`mg${mode}${size}`);
  let at: NetHost = pair.a;
  let started = false;
  const w: Workload = size === 'tiny' ? TINY : size === 'redis' ? REDIS : { kind: 'memhog', argv: memhogArgv(size) };
  try {
    await settle(mem);
    // --network none, as the bare and Podman baselines run it: the same workload everywhere.
    // memhog runs from the memhog image, which both hosts have (migration refuses host bind mounts).
    await at.ok(['run', '-d', '--network', 'none', '--name', name, w.kind === 'memhog' ? 'memhog' : (w.image ?? 'busybox'), ...w.argv]);
    started = true;
    await waitStarted(ferryOn(at), name, w);
    let pendingCheck: (() => Promise<void>) | undefined;
    for (let i = 0; i < o.iterations; i++) {
      const before = await settle(mem, async () => {
        await pendingCheck?.();
        return stateBefore(ferryOn(at), name, w);
      });
      const to = at === pair.a ? pair.b : pair.a;
      const from = progress(await ferryOn(at).output(name), w.kind).last;
      const { stats: st, wallMs, rss } = await ferryMigrate(pair, at, to, name, mode, size === 1024 ? 300_000 : 120_000);
      at = to;
      R.add(ids[0], 'ferry', st.downtime_ms);
      R.add(ids[1], 'ferry', st.total_ms, { bytes: st.bytes_sent, wallMs, rss });
      const here = at;
      pendingCheck = async () => {
        // After --lazy the first pass over 1 GiB faults every page in over the network.
        if (before !== undefined) await verifyRestored(ferryOn(here), name, w, before, checkTimeout(size));
        else await verifyContinues(ferryOn(here), name, w, from, checkTimeout(size));
      };
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, 'ferry', errorMessage(err));
    log(`  ferry: ${errorMessage(err)}`);
  } finally {
    for (const h of [pair.a, pair.b]) {
      if (started) await h.run(['rm', '-f', name]);
    }
  }
}

/**
 * A baseline's migrations of one container, A -> B, B -> A, ... (bare: runc checkpoint + copy +
 * runc restore; podman: checkpoint --export + scp + restore --import), each restore checked
 * like the next one (the number after the mark). The workload's memhog binary is bind-mounted
 * from the bench's directory, which both "hosts" see (a restore needs the same path).
 */
async function migrateBaseline<E extends HostEngine>(R: Results, o: Options, ctx: BenchContext, pair: HostPair, [ea, eb]: readonly [E, E], size: Size, mode: MigrationMode): Promise<void> {
  const mem = memoryOf(size); // MiB to warm before each step (0: tiny)
  const ids = migIds(mode, size);
  const engine = ea.name;
  const name = uniq(engine === 'bare' ? `mgbare${mode}${size}` : `mgpod${size}`);
  const w = workload(size, ctx);
  let at = ea;
  try {
    await settle(mem);
    await at.run(name, w);
    await waitStarted(at, name, w);
    let pendingCheck: (() => Promise<void>) | undefined;
    for (let i = 0; i < o.iterations; i++) {
      const from = at;
      const before = await settle(mem, async () => {
        await pendingCheck?.();
        return stateBefore(from, name, w);
      });
      const to = at === ea ? eb : ea;
      const st = await at.migrate(pair, to, name, w, mode);
      at = to;
      R.add(ids[0], engine, st.downtime);
      R.add(ids[1], engine, st.total, { bytes: st.bytes });
      const here = at;
      // Redis: the digest taken before the migration (mark() still does the untimed rest).
      pendingCheck = async () => {
        const mark = await st.mark();
        await verifyRestored(here, name, w, before ?? mark, checkTimeout(size));
      };
    }
    if (pendingCheck) await pendingCheck();
  } catch (err) {
    if (err instanceof Aborted) throw err;
    R.fail(ids, engine, errorMessage(err));
    log(`  ${engine}: ${errorMessage(err)}`);
  } finally {
    for (const e of [ea, eb]) await e.discard(name);
  }
}

/** The synchronous last resort for the migration hosts (a second Ctrl-C): what destroy() does. */
function destroyHostsSync(pair: HostPair): void {
  for (const h of [pair.a, pair.b]) {
    if (fs.existsSync(h.root)) spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, FERRY_BIN, ...h.args(), 'rm', '-a', '-f'], { stdio: 'ignore', timeout: 60_000 });
    const rr = path.join(h.runroot, 'runc');
    if (fs.existsSync(rr)) for (const id of fs.readdirSync(rr)) spawnSync('runc', ['--root', rr, 'delete', '--force', id], { stdio: 'ignore' });
    try {
      h.killSshd();
    } catch {
      /* gone */
    }
    spawnSync('ip', ['netns', 'delete', h.netns], { stdio: 'ignore' });
    for (const m of mountsUnder(h.dir).sort().reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    fs.rmSync(h.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}
