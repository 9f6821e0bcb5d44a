/** stats, top, diff, cp, rename, restart, port: each one engine call, printed as Podman does. */
import type { Command } from 'commander';
import { containerDiff, containerStats, containerTop, type StatsSample } from '../engine/everyday.js';
import { copy } from '../engine/copy.js';
import { podmanStats } from '../engine/shapes.js';
import { FerryError } from '../lib/errors.js';
import { diskUsage, pruneContainers, systemPrune } from '../engine/housekeeping.js';
import { eventText, readEvents } from '../engine/events.js';
import { formatOutput, table } from './format.js';
import { statsSize } from '../engine/shapes.js';
import { boolValue, getEngine, out, type Ctx } from './context.js';
import { isTerminal, stdoutStream } from '../lib/stdio.js';

const STATS_HEADER = ['ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'NET IO', 'BLOCK IO', 'PIDS', 'CPU TIME', 'AVG CPU %'];

function statsText(samples: StatsSample[], format: string | undefined): string {
  const items = samples.map(podmanStats);
  return formatOutput(format, items, () =>
    table(
      STATS_HEADER,
      items.map((s) => [s.id!, s.name!, s.cpu_percent!, s.mem_usage!, s.mem_percent!, s.net_io!, s.block_io!, s.pids!, s.cpu_time!, s.avg_cpu!]),
    ),
  );
}

/** Podman's prune question; true when the user answers y. */
async function confirm(question: string): Promise<boolean> {
  // Loaded only when a question is asked: node:readline costs every command its start-up time.
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.question(`${question} [y/N] `, resolve);
      rl.once('close', () => resolve(''));
    });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

export function registerEverydayCommands(parent: Command, ctx: Ctx, top: boolean): void {
  if (!top) {
    parent
      .command('prune')
      .description('remove every container that is not running')
      .option('-f, --force', 'do not ask for confirmation')
      .action(async (f: { force?: boolean }) => {
        if (!f.force && !(await confirm('WARNING! This will remove all non running containers.\nAre you sure you want to continue?'))) return;
        const { ids } = await pruneContainers(getEngine(ctx));
        out(ids.map((id) => `${id}\n`).join(''));
      });
  } else {
    parent
      .command('events')
      .description("show the journal of Ferry's container operations (create, start, died, checkpoint, restore, migrate, ...)")
      .option('--filter <key=value>', 'container=, event=, image=, type= (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
      .option('--since <time>', 'only events since this time or duration (10m)')
      .option('--until <time>', 'only events until this time or duration')
      .option('--stream [bool]', 'keep following new events (default true; --stream=false prints what there is)')
      .option('--format <format>', 'json or a Go template such as {{.Status}}')
      .action(async (f: { filter?: string[]; since?: string; until?: string; stream?: string | boolean; format?: string }) => {
        const follow = f.stream === undefined || f.stream === true || f.stream === 'true' ? f.until === undefined : f.stream === 'false' ? false : (() => { throw new FerryError('EINVAL', `invalid --stream "${String(f.stream)}": use true or false`); })();
        const abort = new AbortController();
        const stop = (): void => abort.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          for await (const e of readEvents(getEngine(ctx).paths.root, { filters: f.filter, since: f.since, until: f.until, follow, abort: abort.signal })) {
            if (f.format === 'json') out(`${JSON.stringify(e)}\n`);
            else if (f.format) out(formatOutput(f.format, [e], () => ''));
            else out(`${eventText(e)}\n`);
          }
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      });
  }

  parent
    .command('stats')
    .description("show containers' resource use (CPU, memory, network, block I/O, PIDs)")
    .argument('[containers...]')
    .option('--no-stream', 'print one sample and exit')
    .option('--format <format>', 'json or a Go template such as {{.cpu_percent}}')
    .option('-i, --interval <seconds>', 'seconds between samples when streaming', '5')
    .action(async (refs: string[], f: { stream: boolean; format?: string; interval: string }) => {
      const engine = getEngine(ctx);
      const interval = Number(f.interval);
      if (!(interval > 0)) throw new FerryError('EINVAL', `invalid --interval "${f.interval}": give seconds above 0`);
      let prev: Map<string, StatsSample> | undefined;
      for (;;) {
        const samples = await containerStats(engine, refs, prev);
        if (!f.stream) return out(statsText(samples, f.format));
        if (isTerminal(1)) out('\x1b[2J\x1b[H');
        out(statsText(samples, f.format));
        if (refs.length && !samples.length) return;
        prev = new Map(samples.map((s) => [s.id, s]));
        await new Promise((r) => setTimeout(r, interval * 1000));
      }
    });

  parent
    .command('top')
    .description("show a container's processes (Podman's descriptors such as pid,args, or ps options)")
    .argument('<container>')
    .argument('[descriptors...]')
    .allowUnknownOption()
    .passThroughOptions()
    .action(async (ref: string, descriptors: string[]) => {
      const [header, ...rows] = await containerTop(getEngine(ctx), ref, descriptors);
      out(table(header!, rows));
    });

  parent
    .command('diff')
    .description("list the changes in a container's filesystem (A added, C changed, D deleted)")
    .argument('<container>')
    .option('--format <format>', 'json')
    .action(async (ref: string, f: { format?: string }) => {
      const changes = await containerDiff(getEngine(ctx), ref);
      if (f.format === 'json') {
        const pick = (k: string): string[] | undefined => (changes.some((c) => c.kind === k) ? changes.filter((c) => c.kind === k).map((c) => c.path) : undefined);
        return out(JSON.stringify({ changed: pick('C'), added: pick('A'), deleted: pick('D') }, null, 4) + '\n');
      }
      if (f.format) throw new FerryError('EINVAL', `invalid --format "${f.format}": use json`);
      out(changes.map((c) => `${c.kind} ${c.path}\n`).join(''));
    });

  parent
    .command('cp')
    .description('copy files between a container and the host (CONTAINER:PATH, `-` for a tar archive on stdin/stdout)')
    .argument('<src>')
    .argument('<dest>')
    .option('--pause [bool]', 'pause a running container while copying (default true)')
    .action(async (src: string, dest: string, f: { pause?: string | boolean }) => {
      await copy(getEngine(ctx), src, dest, { stdin: process.stdin, stdout: stdoutStream() }, { pause: f.pause === undefined ? true : boolValue(f.pause) });
    });

  parent
    .command('rename')
    .description('rename a container')
    .argument('<container>')
    .argument('<name>')
    .action(async (ref: string, name: string) => {
      await getEngine(ctx).rename(ref, name);
    });

  parent
    .command('restart')
    .description('stop (if running) and start containers again')
    .argument('[containers...]')
    .option('-a, --all', 'restart all containers')
    .option('-l, --latest', 'act on the latest container')
    .option('--running', 'with --all: only the running ones')
    .option('-t, --time <seconds>', 'seconds to wait before killing the container')
    .action(async (refs: string[], f: { all?: boolean; latest?: boolean; running?: boolean; time?: string }) => {
      const engine = getEngine(ctx);
      const t = f.time !== undefined ? Number(f.time) : undefined;
      if (t !== undefined && (!Number.isInteger(t) || t < 0)) throw new FerryError('EINVAL', `invalid --time "${f.time}": give whole seconds`);
      for (const id of await engine.select({ refs, all: f.all, latest: f.latest }, f.running ? 'stop' : 'start')) {
        await engine.restart(id, t);
        out(`${id}\n`);
      }
    });
}

/** `port`: one container's mappings, or every running container's (each under its short ID). */
export function registerPortCommand(parent: Command, ctx: Ctx): void {
  parent
    .command('port')
    .description("list a container's published ports (no container: every running one's)")
    .argument('[container]')
    .argument('[port]', 'only this container port, e.g. 80 or 80/tcp')
    .option('-a, --all', 'every running container')
    .option('-l, --latest', 'act on the latest container')
    .action(async (ref: string | undefined, port: string | undefined, f: { all?: boolean; latest?: boolean }) => {
      if (f.all && ref) throw new FerryError('EINVAL', '--all and a container name cannot be used together: pick one');
      const all = !ref && !f.latest;
      const [num, proto] = (port ?? '').split('/');
      for (const c of await getEngine(ctx).ports({ refs: ref ? [ref] : [], latest: f.latest })) {
        const lines = c.ports
          .filter((p) => !port || (String(p.containerPort) === num && (!proto || proto === p.protocol)))
          .map((p) => (port ? `${p.hostIP || '0.0.0.0'}:${p.hostPort}\n` : `${p.containerPort}/${p.protocol} -> ${p.hostIP || '0.0.0.0'}:${p.hostPort}\n`));
        if (all && lines.length) out(`${c.id.slice(0, 12)}\n`);
        out(lines.join(''));
      }
    });
}

/** system df and system prune (under `ferry system`). */
export function registerSystemHousekeeping(system: Command, ctx: Ctx): void {
  system
    .command('df')
    .description("show how much disk Ferry's images, containers and volumes use")
    .option('--format <format>', 'json or a Go template such as {{.Type}}')
    .action(async (f: { format?: string }) => {
      const rows = await diskUsage(getEngine(ctx));
      const pct = (r: { Size: number; Reclaimable: number }): string => `${statsSize(r.Reclaimable)} (${r.Size ? Math.round((r.Reclaimable / r.Size) * 100) : 0}%)`;
      out(
        formatOutput(f.format, rows, () =>
          table(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], rows.map((r) => [r.Type, String(r.Total), String(r.Active), statsSize(r.Size), pct(r)])),
        ),
      );
    });
  system
    .command('prune')
    .description('remove stopped containers and dangling images (-a: every unused image; --volumes: unused volumes)')
    .option('-a, --all', 'remove every image no container uses, not only dangling ones')
    .option('--volumes', 'remove volumes no container uses too')
    .option('-f, --force', 'do not ask for confirmation')
    .action(async (f: { all?: boolean; volumes?: boolean; force?: boolean }) => {
      const what = `WARNING! This command removes:\n\t- all stopped containers\n${f.volumes ? '\t- all volumes not used by at least one container\n' : ''}\t- all ${f.all ? 'images without at least one container associated with them' : 'dangling images'}\n\nAre you sure you want to continue?`;
      if (!f.force && !(await confirm(what))) return;
      const r = await systemPrune(getEngine(ctx), { all: f.all, volumes: f.volumes });
      if (r.containers.length) out(`Deleted Containers\n${r.containers.join('\n')}\n`);
      if (r.volumes.length) out(`Deleted Volumes\n${r.volumes.join('\n')}\n`);
      if (r.images.length) out(`Deleted Images\n${r.images.join('\n')}\n`);
      out(`Total reclaimed space: ${statsSize(r.reclaimed)}\n`);
    });
}
