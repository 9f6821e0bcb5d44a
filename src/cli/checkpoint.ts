import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { checkpointContainers, listCheckpoints, removeCheckpoints, restoreContainers, type CheckpointOptions } from '../engine/checkpoint.js';
import { COMPRESSIONS, type Compression } from '../drivers/archive/compress.js';
import { parsePublish } from '../drivers/network/cni.js';
import { checkpointStats, humanDuration } from '../engine/shapes.js';
import { formatOutput, humanSize, table } from './format.js';
import { collect, getEngine, out, uninterruptible, type Ctx } from './context.js';
import { pullOptions, type RegistryFlags } from './images.js';
import { registerDiffCommand, registerInspectCommands } from './inspect.js';
import { writeErr } from '../lib/stdio.js';

const CGROUP_MODES = ['soft', 'full', 'strict', 'ignore'];

function cgroupMode(v: string | undefined): CheckpointOptions['manageCgroupsMode'] {
  if (v === undefined) return undefined;
  if (!CGROUP_MODES.includes(v)) throw new FerryError('EINVAL', `invalid --manage-cgroups-mode "${v}": use one of ${CGROUP_MODES.join(', ')}`);
  return v as CheckpointOptions['manageCgroupsMode'];
}

interface CheckpointFlags {
  all?: boolean;
  latest?: boolean;
  leaveRunning?: boolean;
  keep?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  printStats?: boolean;
  autoDedup?: boolean;
  manageCgroupsMode?: string;
  extUnixSk?: boolean;
  shellJob?: boolean;
  emptyNs: string[];
  preCheckpoint?: boolean;
  withPrevious?: boolean;
  export?: string;
  compress: string;
  ignoreRootfs?: boolean;
  ignoreVolumes?: boolean;
  format?: string;
  createImage?: string;
}

interface RestoreFlags {
  all?: boolean;
  latest?: boolean;
  keep?: boolean;
  tcpEstablished?: boolean;
  tcpClose?: boolean;
  fileLocks?: boolean;
  printStats?: boolean;
  autoDedup?: boolean;
  manageCgroupsMode?: string;
  extUnixSk?: boolean;
  shellJob?: boolean;
  import?: string;
  name?: string;
  ignoreRootfs?: boolean;
  ignoreVolumes?: boolean;
  allowHostMounts?: boolean;
  ignoreStaticIp?: boolean;
  ignoreStaticMac?: boolean;
  publish: string[];
  pod?: string;
}

export function registerCheckpointCommands(parent: Command, ctx: Ctx, top: boolean): void {
  const cp = parent
    .command('checkpoint')
    .description('checkpoint one or more running containers: freeze them to disk with their whole process state')
    .argument('[containers...]')
    .option('-a, --all', 'checkpoint all running containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-R, --leave-running', 'leave the container running after the checkpoint')
    .option('-k, --keep', 'keep CRIU\'s log files')
    .option('--tcp-established', 'checkpoint established TCP connections')
    .option('--file-locks', 'checkpoint file locks')
    .option('--print-stats', 'print checkpoint statistics as JSON')
    .option('--auto-dedup', 'deduplicate memory pages against the pre-checkpoint')
    .option('--manage-cgroups-mode <mode>', 'CRIU cgroup mode: soft, full, strict or ignore')
    .option('--ext-unix-sk', 'allow UNIX sockets connected outside the container')
    .option('--shell-job', 'the container has a terminal (shell job)')
    .option('--empty-ns <ns>', 'do not dump this namespace\'s contents (e.g. network; repeatable)', collect, [])
    .option('-P, --pre-checkpoint', 'dump memory only, leaving the container running (pre-copy; needs soft-dirty tracking)')
    .option('--with-previous', 'final checkpoint writing only the memory changed since the pre-checkpoint')
    .option('-e, --export <file>', 'also write the checkpoint as a portable archive (- for stdout)')
    .option('-c, --compress <method>', 'archive compression: zstd, gzip or none', 'zstd')
    .option('--ignore-rootfs', 'leave the container\'s filesystem changes out of the archive')
    .option('--ignore-volumes', 'leave named volumes\' contents out of the archive')
    .option('--format <layout>', 'with --export: archive layout, ferry or podman (for `podman container restore --import`)')
    .option('--create-image <image>', 'also store the checkpoint as a checkpoint image (Podman\'s layout), to push and restore anywhere')
    .action(async (refs: string[], f: CheckpointFlags) => {
      if (!COMPRESSIONS.includes(f.compress as Compression)) throw new FerryError('EINVAL', `invalid --compress "${f.compress}": use zstd, gzip or none`);
      const manageCgroupsMode = cgroupMode(f.manageCgroupsMode);
      const engine = getEngine(ctx);
      // With `-e -` stdout carries the archive: say nothing else there.
      const say = f.export === '-' ? (s: string) => writeErr(s) : out;
      const reports = await uninterruptible('checkpoint', () =>
        checkpointContainers(
          engine,
          {
            refs,
            all: f.all,
            latest: f.latest,
            leaveRunning: f.leaveRunning,
            keep: f.keep,
            tcpEstablished: f.tcpEstablished,
            fileLocks: f.fileLocks,
            autoDedup: f.autoDedup,
            manageCgroupsMode,
            extUnixSk: f.extUnixSk,
            shellJob: f.shellJob,
            emptyNs: f.emptyNs,
            preCheckpoint: f.preCheckpoint,
            withPrevious: f.withPrevious,
            export: f.export,
            compression: f.compress as Compression,
            ignoreRootfs: f.ignoreRootfs,
            ignoreVolumes: f.ignoreVolumes,
            format: f.format as 'ferry' | 'podman' | undefined,
            createImage: f.createImage,
          },
          (ref) => {
            if (!f.printStats) say(`${ref}\n`);
          },
        ),
      );
      if (f.printStats) say(JSON.stringify(checkpointStats('checkpoint', reports), null, 4) + '\n');
    });

  parent
    .command('restore')
    .description('restore one or more checkpointed containers where they left off, or new ones from checkpoint images')
    .argument('[containers...]', 'containers, or checkpoint images (pulled when missing)')
    .option('-a, --all', 'restore all checkpointed containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-k, --keep', 'keep the checkpoint after restoring')
    .option('--tcp-established', 'restore established TCP connections')
    .option('--tcp-close', 'restore with established TCP connections closed')
    .option('--file-locks', 'restore file locks')
    .option('--print-stats', 'print restore statistics as JSON')
    .option('--auto-dedup', 'free checkpoint memory pages as they are restored')
    .option('--manage-cgroups-mode <mode>', 'CRIU cgroup mode: soft, full, strict or ignore')
    .option('--ext-unix-sk', 'allow UNIX sockets connected outside the container')
    .option('--shell-job', 'the container has a terminal (shell job)')
    .option('-i, --import <file>', 'restore a new container from a checkpoint archive: Ferry\'s, Podman\'s, CRI-O\'s or containerd\'s (- for stdin)')
    .option('-n, --name <name>', 'with --import or an image: name of the new container (gets a new ID too)')
    .option('--ignore-rootfs', 'with --import or an image: do not restore the archive\'s filesystem changes')
    .option('--ignore-volumes', 'with --import or an image: do not restore volumes\' contents')
    .option('--allow-host-mounts', 'with --import or an image: allow the archive\'s bind mounts of host paths')
    .option('--pod <pod>', 'with --import or an image: restore into this pod (only a container checkpointed out of a pod)')
    .option('--ignore-static-ip', 'give the container a new IP address (established TCP connections are then closed)')
    .option('--ignore-static-mac', 'give the container a new MAC address')
    .option('-p, --publish <[[ip:]host:]ctr[/proto]>', 'replace the published ports; without a host port, on a free one (repeatable)', collect, [])
    .option('--tls-verify [bool]', 'pulling a missing image requires verified HTTPS', true)
    .option('--creds <user:pass>', 'credentials to pull a missing image')
    .option('--authfile <file>', 'the auth file to pull a missing image')
    .action(async (refs: string[], f: RestoreFlags & RegistryFlags) => {
      const manageCgroupsMode = cgroupMode(f.manageCgroupsMode);
      const publish = f.publish.length ? f.publish.map(parsePublish) : undefined;
      const engine = getEngine(ctx);
      const reports = await uninterruptible('restore', () =>
        restoreContainers(
          engine,
          {
            refs,
            all: f.all,
            latest: f.latest,
            keep: f.keep,
            tcpEstablished: f.tcpEstablished,
            tcpClose: f.tcpClose,
            fileLocks: f.fileLocks,
            autoDedup: f.autoDedup,
            manageCgroupsMode,
            extUnixSk: f.extUnixSk,
            shellJob: f.shellJob,
            ignoreStaticIp: f.ignoreStaticIp,
            ignoreStaticMac: f.ignoreStaticMac,
            publish,
            import: f.import,
            name: f.name,
            ignoreRootfs: f.ignoreRootfs,
            ignoreVolumes: f.ignoreVolumes,
            allowHostMounts: f.allowHostMounts,
            pod: f.pod,
            pullOptions: pullOptions(f, false),
          },
          (ref) => {
            if (!f.printStats) out(`${ref}\n`);
          },
        ),
      );
      if (f.printStats) out(JSON.stringify(checkpointStats('restore', reports), null, 4) + '\n');
    });

  if (top) {
    // `ferry checkpoint ls|rm`: the checkpoints this host holds. (`ferry checkpoint CTR` still
    // checkpoints CTR; a container named "ls" or "rm" needs `ferry container checkpoint`.)
    cp.command('ls')
      .alias('list')
      .description('list the checkpoints this host holds')
      .option('-q, --quiet', 'print only container IDs')
      .option('--format <format>', 'json or a Go template')
      .action(async (f: { quiet?: boolean; format?: string }) => {
        const list = await listCheckpoints(getEngine(ctx));
        if (f.quiet) return out(list.map((c) => `${c.id.slice(0, 12)}\n`).join(''));
        out(
          formatOutput(f.format, list, () =>
            table(
              ['CONTAINER ID', 'NAME', 'CHECKPOINTED', 'SIZE', 'CRIU', 'TCP', 'CONTAINER'],
              list.map((c) => [c.id.slice(0, 12), c.name, `${humanDuration(Date.now() - Date.parse(c.createdAt))} ago`, humanSize(c.size), c.criuVersion, c.tcpEstablished ? 'established' : '', c.containerStatus]),
            ),
          ),
        );
      });
    cp.command('rm')
      .alias('remove')
      .description('delete the checkpoints of containers (the containers stay)')
      .argument('[containers...]')
      .option('-a, --all', 'delete every checkpoint on this host')
      .action(async (names: string[], f: { all?: boolean }) => {
        await removeCheckpoints(getEngine(ctx), { refs: names, all: f.all }, (t) => out(`${t}\n`));
      });
    // `ferry checkpoint inspect|show|diff`: what checkpoints hold, without restoring them.
    registerInspectCommands(cp, ctx);
    registerDiffCommand(cp, ctx);
  }
}
