// Ferry through bin/ferry, with a --root/--runroot of its own in the temporary dir; and Ferry on
// a migration host (the test helpers' NetHost, which runs bin/ferry in the host's namespace).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { HostPair, NetHost } from '../../../test/helpers/hosts.js';
import { FERRY_BIN } from '../paths.js';
import { GNU_TIME, firstLine, readPeakMiB } from '../proc.js';
import type { BenchContext, OutputSource, Workload } from '../workloads.js';
import { CliEngine } from './cli.js';
import type { MigrationMode } from './engine.js';

export class FerryEngine extends CliEngine {
  constructor(readonly dir: string) {
    super('ferry', [FERRY_BIN, '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'run')], process.env, { busybox: 'busybox', redis: 'redis' });
  }

  async setup(ctx: BenchContext): Promise<void> {
    await this.importImages(ctx);
    this.version = firstLine([FERRY_BIN, '--version']);
  }

  // run -d gets --network none (CliEngine): Ferry's default bridge network adds CNI setup and
  // teardown to run, checkpoint and restore.

  protected override importArgs(file: string, newName: string, w: Workload): string[] {
    // The memhog's bind mount is a host path: Ferry asks for it to be allowed explicitly.
    return ['container', 'restore', '--import', file, '-n', newName, ...(w.opt ? ['--allow-host-mounts'] : [])];
  }

  cleanup(): void {
    if (fs.existsSync(path.join(this.dir, 'root'))) spawnSync(this.argv0[0]!, [...this.argv0.slice(1), 'rm', '-a', '-f'], { stdio: 'ignore', timeout: 120_000 });
    const runc = path.join(this.dir, 'run', 'runc');
    if (fs.existsSync(runc)) for (const id of fs.readdirSync(runc)) spawnSync('runc', ['--root', runc, 'delete', '--force', id], { stdio: 'ignore' });
  }
}

/** Reads a Ferry container's output (its logs travel with it) on a migration host. */
export const ferryOn = (h: NetHost): OutputSource => ({
  name: 'ferry',
  output: async (n: string) => {
    const r = await h.run(['logs', n]);
    return r.stdout + r.stderr;
  },
  exec: (n: string, argv: readonly string[]) => h.ok(['exec', n, ...argv]),
});

/** What `ferry migrate --print-stats` prints (the fields the bench reads). */
export interface FerryMigrationStats {
  downtime_ms: number;
  total_ms: number;
  bytes_sent: number;
}

/**
 * `ferry migrate NAME ssh://root@IP:2222 --remote-command ... --identity K --ssh-option ...
 * --print-stats [--lazy]` from host `from` to host `to`; wallMs is the whole command, Node's
 * start-up included. With GNU time present, the source ferry and the destination's
 * (`system migrate-receive`, through the remote command) run under it: rss is each one's peak.
 */
export async function ferryMigrate(
  pair: HostPair,
  from: NetHost,
  to: NetHost,
  name: string,
  mode: MigrationMode,
  timeoutMs: number,
): Promise<{ stats: FerryMigrationStats; wallMs: number; rss?: { source?: number; destination?: number } }> {
  const timed = fs.existsSync(GNU_TIME);
  const srcRss = path.join(from.dir, 'rss-source');
  const dstRss = path.join(to.dir, 'rss-destination');
  for (const f of [srcRss, dstRss]) fs.rmSync(f, { force: true });
  const remote = timed ? `${GNU_TIME} -a -o ${dstRss} -f %M ${to.remoteCommand()}` : to.remoteCommand();
  const args = ['migrate', name, to.url(), '--remote-command', remote, ...pair.sshArgs(), '--print-stats', ...(mode === 'lazy' ? ['--lazy'] : [])];
  const t0 = performance.now();
  const out = await from.ok(args, { timeoutMs, ...(timed ? { wrap: [GNU_TIME, '-a', '-o', srcRss, '-f', '%M'] } : {}) });
  const wallMs = performance.now() - t0;
  return { stats: JSON.parse(out) as FerryMigrationStats, wallMs, ...(timed ? { rss: { source: readPeakMiB(srcRss), destination: readPeakMiB(dstRss) } } : {}) };
}
