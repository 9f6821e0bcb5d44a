import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { createPod, inspectPods, killPod, listPodViews, removePod, startPod, stopPod } from '../engine/pods.js';
import { humanDuration, podInspectEntry, podPsEntry } from '../engine/shapes.js';
import { checkpointPodRequest, restorePodRequest } from '../engine/podcheckpoint.js';
import { COMPRESSIONS, type Compression } from '../drivers/archive/compress.js';
import { collect, commandLine, getEngine, out, uninterruptible, type Ctx } from './context.js';
import { formatOutput, table } from './format.js';
import { writeErr } from '../lib/stdio.js';

export function registerPodCommands(program: Command, ctx: Ctx): void {
  const pod = program.command('pod').description('manage pods: containers sharing namespaces');
  pod
    .command('create')
    .description('create a pod (its infra container holds the shared namespaces)')
    .option('--name <name>', 'pod name')
    .option('--share <ns>', 'namespaces to share: net, ipc, uts (default net,ipc,uts)', collect, [])
    .option('--hostname <name>', 'the pod\'s host name (default: its name)')
    .option('-p, --publish <[[ip:]host:]ctr[/proto]>', 'publish a port of the pod; without a host port, on a free one (repeatable)', collect, [])
    .option('--network <name>', 'bridge network of the pod')
    .action(async (f: { name?: string; share: string[]; hostname?: string; publish: string[]; network?: string }) => {
      const p = await createPod(getEngine(ctx), { name: f.name, share: f.share.length ? f.share : undefined, hostname: f.hostname, publish: f.publish, network: f.network, createCommand: commandLine() });
      out(`${p.id}\n`);
    });

  const ps = async (f: { quiet?: boolean; format?: string }): Promise<void> => {
    const views = await listPodViews(getEngine(ctx));
    if (f.quiet) return out(views.map((v) => `${v.pod.id.slice(0, 12)}\n`).join(''));
    out(
      formatOutput(f.format, views.map(podPsEntry), () =>
        table(['POD ID', 'NAME', 'STATUS', 'CREATED', 'INFRA ID', '# OF CONTAINERS'], views.map((v) => [v.pod.id.slice(0, 12), v.pod.name, v.status, `${humanDuration(Date.now() - Date.parse(v.pod.created))} ago`, v.pod.infraId.slice(0, 12), String(v.containers)])),
      ),
    );
  };
  pod.command('ps').alias('ls').alias('list').option('-q, --quiet', 'print only IDs').option('--format <format>', 'json or a Go template').action(ps);

  pod
    .command('inspect')
    .argument('<pods...>')
    .action(async (refs: string[]) => {
      // Podman prints one pod as an object, several as a list.
      const items = (await inspectPods(getEngine(ctx), refs)).map(podInspectEntry);
      out(JSON.stringify(items.length === 1 ? items[0] : items, null, 4) + '\n');
    });

  pod
    .command('checkpoint')
    .description('checkpoint a whole pod: every member frozen together (one consistent cut), then dumped')
    .argument('<pod>')
    .option('-R, --leave-running', 'leave the pod running after the checkpoint')
    .option('-k, --keep', 'keep CRIU\'s log files')
    .option('--tcp-established', 'checkpoint established TCP connections')
    .option('--file-locks', 'checkpoint file locks')
    .option('-e, --export <file>', 'also write the pod and all its members as one archive (- for stdout)')
    .option('-c, --compress <method>', 'archive compression: zstd, gzip or none', 'zstd')
    .option('--ignore-rootfs', 'leave the members\' filesystem changes out of the archive')
    .option('--ignore-volumes', 'leave named volumes\' contents out of the archive')
    .option('--print-stats', 'print the figures as JSON')
    .action(async (ref: string, f: { leaveRunning?: boolean; keep?: boolean; tcpEstablished?: boolean; fileLocks?: boolean; export?: string; compress: string; ignoreRootfs?: boolean; ignoreVolumes?: boolean; printStats?: boolean }) => {
      if (!COMPRESSIONS.includes(f.compress as Compression)) throw new FerryError('EINVAL', `invalid --compress "${f.compress}": use zstd, gzip or none`);
      const engine = getEngine(ctx);
      const say = f.export === '-' ? (s: string) => writeErr(s) : out;
      const r = await uninterruptible('pod checkpoint', () =>
        checkpointPodRequest(engine, ref, {
          leaveRunning: f.leaveRunning,
          keep: f.keep,
          tcpEstablished: f.tcpEstablished,
          fileLocks: f.fileLocks,
          export: f.export,
          compression: f.compress as Compression,
          ignoreRootfs: f.ignoreRootfs,
          ignoreVolumes: f.ignoreVolumes,
        }),
      );
      if (f.printStats) say(JSON.stringify({ Id: r.id, Name: r.name, FrozenMs: Math.round(r.frozenMs), TotalMs: Math.round(r.totalMs), Archive: r.archive, Containers: r.members.map((m) => ({ Id: m.id, Name: m.name, runtime_checkpoint_duration: Math.round(m.runtimeMs * 1000), criu_statistics: m.criu })) }, null, 4) + '\n');
      else say(`${r.id}\n`);
    });

  pod
    .command('restore')
    .description('restore a checkpointed pod, or a pod archive as a new pod (--import)')
    .argument('[pod]')
    .option('-i, --import <file>', 'restore a pod archive made by `pod checkpoint --export` (- for stdin)')
    .option('-n, --name <name>', 'with --import: a new name for the pod (its members get new addresses)')
    .option('-k, --keep', 'keep the checkpoint after restoring')
    .option('--tcp-established', 'restore established TCP connections')
    .option('--tcp-close', 'close the checkpoint\'s established TCP connections instead')
    .option('--file-locks', 'restore file locks')
    .option('--ignore-static-ip', 'give the pod a new IP address')
    .option('--ignore-static-mac', 'give the pod a new MAC address')
    .option('--ignore-rootfs', 'with --import: do not restore the members\' filesystem changes')
    .option('--ignore-volumes', 'with --import: do not restore named volumes\' contents')
    .option('--allow-host-mounts', 'with --import: accept host paths bind-mounted into members')
    .option('--print-stats', 'print the figures as JSON')
    .action(async (ref: string | undefined, f: { import?: string; name?: string; keep?: boolean; tcpEstablished?: boolean; tcpClose?: boolean; fileLocks?: boolean; ignoreStaticIp?: boolean; ignoreStaticMac?: boolean; ignoreRootfs?: boolean; ignoreVolumes?: boolean; allowHostMounts?: boolean; printStats?: boolean }) => {
      const engine = getEngine(ctx);
      const r = await uninterruptible('pod restore', () =>
        restorePodRequest(engine, {
          pod: ref,
          import: f.import,
          name: f.name,
          keep: f.keep,
          tcpEstablished: f.tcpEstablished,
          tcpClose: f.tcpClose,
          fileLocks: f.fileLocks,
          ignoreStaticIp: f.ignoreStaticIp,
          ignoreStaticMac: f.ignoreStaticMac,
          ignoreRootfs: f.ignoreRootfs,
          ignoreVolumes: f.ignoreVolumes,
          allowHostMounts: f.allowHostMounts,
        }),
      );
      if (f.printStats) out(JSON.stringify({ Id: r.id, Name: r.name, TotalMs: Math.round(r.totalMs), Containers: r.members.map((m) => ({ Id: m.id, Name: m.name, runtime_restore_duration: Math.round(m.runtimeMs * 1000), criu_statistics: m.criu })) }, null, 4) + '\n');
      else out(`${r.id}\n`);
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
