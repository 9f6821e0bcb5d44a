import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { createPod, getPod, killPod, listPods, podMembers, removePod, startPod, stopPod } from '../engine/pods.js';
import { humanDuration } from '../engine/shapes.js';
import { collect, getEngine, out, type Ctx } from './context.js';
import { formatOutput, table } from './format.js';

export function registerPodCommands(program: Command, ctx: Ctx): void {
  const pod = program.command('pod').description('manage pods: containers sharing namespaces');
  pod
    .command('create')
    .description('create a pod (its infra container holds the shared namespaces)')
    .option('--name <name>', 'pod name')
    .option('--share <ns>', 'namespaces to share: net, ipc, uts (default net,ipc,uts)', collect, [])
    .option('--hostname <name>', 'the pod\'s host name (default: its name)')
    .option('-p, --publish <[ip:]host:ctr[/proto]>', 'publish a port of the pod (repeatable)', collect, [])
    .option('--network <name>', 'bridge network of the pod')
    .action(async (f: { name?: string; share: string[]; hostname?: string; publish: string[]; network?: string }) => {
      const p = await createPod(getEngine(ctx), { name: f.name, share: f.share.length ? f.share : undefined, hostname: f.hostname, publish: f.publish, network: f.network });
      out(`${p.id}\n`);
    });

  const ps = async (f: { quiet?: boolean; format?: string }): Promise<void> => {
    const engine = getEngine(ctx);
    const recs = await engine.list({ all: true });
    const rows = listPods(engine).map((p) => {
      const infra = recs.find((r) => r.config.id === p.infraId);
      const members = podMembers(p, recs);
      const running = members.filter((m) => m.state.status === 'running').length;
      const status = !infra ? 'Dead' : infra.state.status !== 'running' ? (members.length ? 'Stopped' : 'Created') : running === members.length ? 'Running' : 'Degraded';
      return { Id: p.id, Name: p.name, Status: status, Created: p.created, InfraId: p.infraId, Share: p.share, Hostname: p.hostname, NumberOfContainers: members.length + (infra ? 1 : 0), Containers: members.map((m) => ({ Id: m.config.id, Names: m.config.name, Status: m.state.status })) };
    });
    if (f.quiet) return out(rows.map((r) => `${r.Id.slice(0, 12)}\n`).join(''));
    out(
      formatOutput(f.format, rows, () =>
        table(['POD ID', 'NAME', 'STATUS', 'CREATED', 'INFRA ID', '# OF CONTAINERS'], rows.map((r) => [r.Id.slice(0, 12), r.Name, r.Status, `${humanDuration(Date.now() - Date.parse(r.Created))} ago`, r.InfraId.slice(0, 12), String(r.NumberOfContainers)])),
      ),
    );
  };
  pod.command('ps').alias('ls').alias('list').option('-q, --quiet', 'print only IDs').option('--format <format>', 'json or a Go template').action(ps);

  pod
    .command('inspect')
    .argument('<pods...>')
    .action(async (refs: string[]) => {
      const engine = getEngine(ctx);
      const recs = await engine.list({ all: true });
      out(JSON.stringify(refs.map((r) => {
        const p = getPod(engine, r);
        return { Id: p.id, Name: p.name, Created: p.created, Hostname: p.hostname, SharedNamespaces: p.share, InfraContainerID: p.infraId, Containers: podMembers(p, recs).map((m) => ({ Id: m.config.id, Name: m.config.name, State: m.state.status })) };
      }), null, 4) + '\n');
    });

  const each = (name: string, desc: string, fn: (ref: string, f: Record<string, string | boolean | undefined>) => Promise<unknown>, extra?: (c: Command) => Command): void => {
    let c = pod.command(name).description(desc).argument('<pods...>');
    if (extra) c = extra(c);
    c.action(async (refs: string[], f: Record<string, string | boolean | undefined>) => {
      for (const r of refs) {
        await fn(r, f);
        out(`${r}\n`);
      }
    });
  };
  each('start', 'start pods', (r) => startPod(getEngine(ctx), r));
  each('stop', 'stop pods', (r, f) => {
    const t = f.time === undefined ? undefined : Number(f.time);
    if (t !== undefined && (!Number.isInteger(t) || t < 0)) throw new FerryError('EINVAL', `invalid --time "${String(f.time)}": give whole seconds`);
    return stopPod(getEngine(ctx), r, t);
  }, (c) => c.option('-t, --time <seconds>', 'seconds to wait before killing'));
  each('kill', 'send a signal to the containers of pods', (r, f) => killPod(getEngine(ctx), r, String(f.signal ?? 'KILL')), (c) => c.option('-s, --signal <signal>', 'signal', 'KILL'));
  each('rm', 'remove pods', (r, f) => removePod(getEngine(ctx), r, !!f.force), (c) => c.option('-f, --force', 'also remove the pod\'s containers'));
}
