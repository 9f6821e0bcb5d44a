import { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { runImage } from '../engine/checkpoint-image.js';
import { inspectEntry, psEntry, statusText, humanDuration } from '../engine/shapes.js';
import type { ContainerRecord } from '../engine/types.js';
import type { AttachOptions, ConsoleSize, CreateOptions } from '../engine/engine.js';
import { DEFAULT_DETACH_KEYS, parseDetachKeys, type AttachSession } from '../drivers/runtime/attach.js';
import type { LogEntry } from '../engine/logs.js';
import { formatOutput, table } from './format.js';
import { collect, commandLine, getEngine, out, type Ctx } from './context.js';
import { containerFacts, psExtras } from '../engine/facts.js';
import type { Engine } from '../engine/engine.js';
import { registerCheckpointCommands } from './checkpoint.js';
import { registerEverydayCommands, registerPortCommand } from './everyday.js';
import { pullOptions, registryFlags, type RegistryFlags } from './images.js';
import { isTerminal, writeErr, writeOut } from '../lib/stdio.js';

interface CreateFlags extends RegistryFlags {
  name?: string;
  env: string[];
  volume: string[];
  tmpfs: string[];
  workdir?: string;
  hostname?: string;
  rm?: boolean;
  label: string[];
  stopSignal?: string;
  stopTimeout?: string;
  network?: string;
  ip?: string;
  macAddress?: string;
  networkAlias: string[];
  publish: string[];
  pod?: string;
  tty?: boolean;
  interactive?: boolean;
  entrypoint?: string;
  user?: string;
  pull: string;
  publishAll?: boolean;
  memory?: string;
  memorySwap?: string;
  cpus?: string;
  cpuShares?: string;
  pidsLimit?: string;
  ulimit: string[];
  shmSize?: string;
  restart?: string;
  securityOpt: string[];
}

function addCreateFlags(cmd: Command): Command {
  return registryFlags(cmd)
    .option('--name <name>', 'assign a name to the container')
    .option('--entrypoint <cmd>', "replace the image's Entrypoint (a command or a JSON array); clears its Cmd")
    .option('-u, --user <user[:group]>', 'run as this user (name or UID, from the image\'s /etc/passwd)')
    .option('--pull <policy>', 'pull the image: always, missing or never', 'missing')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('-v, --volume <VOL:/path[:ro]>', 'mount a named volume or host path (repeatable)', collect, [])
    .option('--tmpfs <path[:opts]>', 'mount a tmpfs (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-h, --hostname <name>', 'container host name')
    .option('--rm', 'remove the container when it exits')
    .option('-l, --label <k=v>', 'set a label (repeatable)', collect, [])
    .option('--stop-signal <sig>', 'signal to stop the container (default TERM)')
    .option('--stop-timeout <sec>', 'seconds to wait before killing on stop (default 10)')
    .option('--network <mode>', 'bridge (default), none, host, or a network name', undefined)
    .option('--net <mode>', 'alias of --network')
    .option('--ip <address>', 'static IPv4 address on the network')
    .option('--mac-address <mac>', 'static MAC address')
    .option('--network-alias <alias>', "another name for the container on its network's DNS (repeatable)", collect, [])
    .option('-p, --publish <[[ip:]host:]ctr[/proto]>', 'publish a container port on the host; without a host port, on a free one (repeatable)', collect, [])
    .option('-P, --publish-all', "publish every port the image exposes on a free host port")
    .option('--pod <pod>', 'run in this pod (sharing its namespaces)')
    .option('-t, --tty', 'allocate a terminal for the container')
    .option('-i, --interactive', 'keep stdin open, even when not attached')
    .option('-m, --memory <bytes>', 'memory limit, e.g. 64m or 1g')
    .option('--memory-swap <bytes>', 'memory plus swap limit (-1: unlimited swap; default twice --memory)')
    .option('--cpus <number>', 'number of CPUs the container may use, e.g. 0.5')
    .option('-c, --cpu-shares <shares>', 'CPU shares (relative weight, default 1024)')
    .option('--pids-limit <n>', 'maximum number of processes (-1: unlimited)')
    .option('--ulimit <type=soft[:hard]>', 'resource limit of the process, e.g. nofile=1024:2048 (repeatable)', collect, [])
    .option('--shm-size <bytes>', 'size of /dev/shm (default 64m)')
    .option('--restart <policy>', 'restart policy: no, on-failure[:max-retries], always or unless-stopped')
    .option('--security-opt <opt>', 'seccomp=unconfined: let it use io_uring (blocked by default: CRIU cannot checkpoint it)', collect, [])
    .argument('<image>', 'image to run')
    .argument('[command...]', 'command and arguments')
    .passThroughOptions();
}

function createOptions(image: string, command: string[], f: CreateFlags): CreateOptions {
  const labels: Record<string, string> = {};
  for (const l of f.label) {
    const i = l.indexOf('=');
    labels[i < 0 ? l : l.slice(0, i)] = i < 0 ? '' : l.slice(i + 1);
  }
  let stopTimeout: number | undefined;
  if (f.stopTimeout !== undefined) {
    stopTimeout = Number(f.stopTimeout);
    if (!Number.isInteger(stopTimeout) || stopTimeout < 0) throw new FerryError('EINVAL', `invalid --stop-timeout "${f.stopTimeout}": give whole seconds`);
  }
  if (!['always', 'missing', 'never'].includes(f.pull)) throw new FerryError('EINVAL', `invalid --pull "${f.pull}": use always, missing or never`);
  return {
    image,
    command,
    entrypoint: f.entrypoint,
    user: f.user,
    publishAll: !!f.publishAll,
    pull: f.pull as CreateOptions['pull'],
    pullOptions: pullOptions(f, false),
    name: f.name,
    env: f.env,
    volumes: f.volume,
    tmpfs: f.tmpfs,
    workdir: f.workdir,
    hostname: f.hostname,
    autoRemove: !!f.rm,
    labels,
    stopSignal: f.stopSignal,
    stopTimeout,
    createCommand: commandLine(),
    network: f.network ?? (f as { net?: string }).net,
    ip: f.ip,
    mac: f.macAddress,
    networkAliases: f.networkAlias,
    publish: f.publish,
    pod: f.pod,
    tty: !!f.tty,
    interactive: !!f.interactive,
    resources: { memory: f.memory, memorySwap: f.memorySwap, cpus: f.cpus, cpuShares: f.cpuShares, pidsLimit: f.pidsLimit, ulimit: f.ulimit, shmSize: f.shmSize },
    restart: f.restart,
    securityOpt: f.securityOpt,
  };
}

/** Docker's rule: attaching stdin to a container's terminal needs a terminal on our stdin. */
function requireTerminal(tty: boolean, stdin: boolean): void {
  if (tty && stdin && !isTerminal(0)) throw new FerryError('EINVAL', 'the input device is not a TTY: run it from a terminal, or without -t');
}

/** Our terminal's size (rows, columns), when stdout or stdin is one. */
function consoleSize(): ConsoleSize | undefined {
  for (const s of [process.stdout, process.stderr]) {
    if (s.isTTY && s.columns > 0 && s.rows > 0) return { height: s.rows, width: s.columns };
  }
  return undefined;
}

function attachOptions(f: { detachKeys?: string }, noStdin = false): AttachOptions {
  return { detachKeys: parseDetachKeys(f.detachKeys ?? DEFAULT_DETACH_KEYS), noStdin, consoleSize: consoleSize() };
}

/**
 * Follows an attach session to its end: on detach the container keeps running (exit 0); when
 * its output ends, waits for its exit code and exits with it. Ctrl-C and TERM (without a raw
 * terminal; with one, Ctrl-C is a key for the container) are forwarded to the container.
 */
async function followSession(session: AttachSession, signal: (sig: string) => void, exitCode: () => Promise<number>): Promise<void> {
  const forward = (sig: NodeJS.Signals): void => signal(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    if ((await session.done) === 'detached') return;
    process.exitCode = await exitCode();
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    session.close();
  }
}

/** Prints a container's log entries as they come: stdout's to stdout, stderr's to stderr. */
async function printLog(entries: AsyncIterable<LogEntry>, timestamps: boolean): Promise<void> {
  for await (const e of entries) {
    const text = (timestamps ? `${e.time} ` : '') + e.content + (e.partial ? '' : '\n');
    if (e.stream === 'stderr') writeErr(text);
    else writeOut(text);
  }
}

/** Podman's PORTS column: 0.0.0.0:8080->80/tcp */
export function portsText(r: ContainerRecord): string {
  return (r.config.network?.ports ?? []).map((p) => `${p.hostIP || '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`).join(', ');
}

/** `ps`'s entries in Podman's JSON shape: pod names from the pod records, sizes when asked. */
function psEntries(engine: Engine, recs: ContainerRecord[], size: boolean): Record<string, unknown>[] {
  const extras = psExtras(engine, recs, { size });
  return recs.map((r, i) => psEntry(r, extras[i]));
}

function psTemplateView(r: ContainerRecord, entry: Record<string, unknown>): Record<string, unknown> {
  return {
    ...entry,
    ID: r.config.id.slice(0, 12),
    Names: r.config.name,
    Command: r.config.command.join(' '),
    CreatedHuman: `${humanDuration(Date.now() - Date.parse(r.config.created))} ago`,
    // A template's .CreatedAt is Go's time.String() of the creation second, as Podman's.
    CreatedAt: `${new Date(Math.floor(Date.parse(r.config.created) / 1000) * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} +0000 UTC`,
    Status: statusText(r),
    Ports: portsText(r),
  };
}

export function registerContainerCommands(parent: Command, ctx: Ctx, top: boolean): void {
  addCreateFlags(parent.command('create').description('create a container without starting it')).action(
    async (image: string, command: string[], f: CreateFlags) => {
      const rec = await getEngine(ctx).create(createOptions(image, command, f));
      out(`${rec.config.id}\n`);
    },
  );

  addCreateFlags(parent.command('run').description('run a command in a new container'))
    .option('-d, --detach', 'run in the background and print the container ID')
    .option('--detach-keys <keys>', `key sequence that detaches from the container (default ${DEFAULT_DETACH_KEYS})`)
    .action(async (image: string, command: string[], f: CreateFlags & { detach?: boolean; detachKeys?: string }) => {
      const attach = attachOptions(f);
      if (!f.detach) requireTerminal(!!f.tty, !!f.interactive);
      // A checkpoint image restores a new container from it (as Podman's run does).
      const { record, attached } = await runImage(getEngine(ctx), createOptions(image, command, f), { detach: f.detach, attach });
      if (!attached) return out(`${record.config.id}\n`);
      // Foreground: stream the output, forward Ctrl-C/TERM, exit with the container's code.
      const forward = (sig: NodeJS.Signals): void => attached.signal(sig);
      process.on('SIGINT', forward);
      process.on('SIGTERM', forward);
      try {
        if (attached.session) {
          if ((await attached.session.done) === 'detached') return;
        } else {
          await printLog(attached.output(), false);
        }
        process.exitCode = await attached.exitCode();
      } finally {
        attached.session?.close();
        attached.release();
      }
    });

  parent
    .command('attach')
    .description('attach to a running container\'s terminal or output')
    .argument('[container]')
    .option('--detach-keys <keys>', `key sequence that detaches from the container (default ${DEFAULT_DETACH_KEYS})`)
    .option('--no-stdin', 'do not attach stdin')
    .option('-l, --latest', 'act on the latest container')
    .action(async (ref: string | undefined, f: { detachKeys?: string; stdin: boolean; latest?: boolean }) => {
      const engine = getEngine(ctx);
      const [id] = await engine.select({ refs: ref ? [ref] : [], latest: f.latest }, 'logs');
      const rec = await engine.inspect(id!);
      const o = attachOptions(f, !f.stdin);
      requireTerminal(!!rec.config.tty, f.stdin && !!rec.config.stdin);
      const session = await engine.attach(id!, o);
      await followSession(session, (sig) => void engine.kill(id!, sig).catch(() => undefined), () => engine.wait(id!));
    });

  parent
    .command('start')
    .description('start one or more containers')
    .argument('[containers...]')
    .option('--all', 'start all containers')
    .option('-a, --attach', 'attach to the container\'s output (and terminal)')
    .option('-i, --interactive', 'attach stdin too')
    .option('--detach-keys <keys>', `key sequence that detaches from the container (default ${DEFAULT_DETACH_KEYS})`)
    .option('-l, --latest', 'act on the latest container')
    .action(async (refs: string[], f: { all?: boolean; attach?: boolean; interactive?: boolean; detachKeys?: string; latest?: boolean }) => {
      const engine = getEngine(ctx);
      if (f.attach || f.interactive) {
        // Podman's start -a/-i: one container, attached before its process starts.
        if (f.all || refs.length !== 1) throw new FerryError('EINVAL', 'start --attach/--interactive takes exactly one container');
        const [id] = await engine.select({ refs }, 'start');
        const rec = engine.lookup(id!);
        const o = attachOptions(f, !f.interactive);
        requireTerminal(!!rec.config.tty, !!f.interactive && !!rec.config.stdin);
        let session: AttachSession | undefined;
        await engine.start(id!, { attach: { ...o, onAttach: (s) => (session = s) } });
        await followSession(session!, (sig) => void engine.kill(id!, sig).catch(() => undefined), () => engine.wait(id!));
        return;
      }
      for (const ref of await engine.select({ refs, all: f.all, latest: f.latest }, 'start')) {
        await engine.start(ref);
        out(`${ref}\n`);
      }
    });

  parent
    .command('stop')
    .description('stop one or more containers')
    .argument('[containers...]')
    .option('-a, --all', 'stop all running containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-t, --time <seconds>', 'seconds to wait before killing the container')
    .action(async (refs: string[], f: { all?: boolean; latest?: boolean; time?: string }) => {
      const t = f.time === undefined ? undefined : Number(f.time);
      if (t !== undefined && (!Number.isInteger(t) || t < 0)) throw new FerryError('EINVAL', `invalid --time "${f.time}": give whole seconds`);
      const engine = getEngine(ctx);
      for (const ref of await engine.select({ refs, all: f.all, latest: f.latest }, 'stop')) {
        await engine.stop(ref, t);
        out(`${ref}\n`);
      }
    });

  parent
    .command('kill')
    .description('send a signal to one or more containers')
    .argument('[containers...]')
    .option('-a, --all', 'signal all running containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-s, --signal <signal>', 'signal to send', 'KILL')
    .action(async (refs: string[], f: { all?: boolean; latest?: boolean; signal: string }) => {
      const engine = getEngine(ctx);
      for (const ref of await engine.select({ refs, all: f.all, latest: f.latest }, 'kill')) {
        await engine.kill(ref, f.signal);
        out(`${ref}\n`);
      }
    });

  for (const [cmd, what, act] of [
    ['pause', 'freeze every process of one or more running containers', (e: ReturnType<typeof getEngine>, r: string) => e.pause(r)],
    ['unpause', 'thaw one or more paused containers', (e: ReturnType<typeof getEngine>, r: string) => e.unpause(r)],
  ] as const) {
    parent
      .command(cmd)
      .description(what)
      .argument('[containers...]')
      .option('-a, --all', `${cmd} all ${cmd === 'pause' ? 'running' : 'paused'} containers`)
      .option('-l, --latest', 'act on the latest container')
      .action(async (refs: string[], f: { all?: boolean; latest?: boolean }) => {
        const engine = getEngine(ctx);
        for (const ref of await engine.select({ refs, all: f.all, latest: f.latest }, cmd)) {
          await act(engine, ref);
          out(`${ref}\n`);
        }
      });
  }

  parent
    .command('rm')
    .description('remove one or more containers')
    .argument('[containers...]')
    .option('-a, --all', 'remove all containers')
    .option('-l, --latest', 'act on the latest container')
    .option('-f, --force', 'stop a running container first')
    .option('-i, --ignore', 'ignore errors when a container does not exist')
    .option('-v, --volumes', 'also remove its anonymous volumes (made for the image\'s VOLUMEs)')
    .action(async (refs: string[], f: { all?: boolean; latest?: boolean; force?: boolean; ignore?: boolean; volumes?: boolean }) => {
      const engine = getEngine(ctx);
      for (const ref of await engine.select({ refs, all: f.all, latest: f.latest, ignoreMissing: f.ignore }, 'rm')) {
        if (await engine.removeSelected(ref, { force: f.force, ignoreMissing: f.ignore, volumes: f.volumes })) out(`${ref}\n`);
      }
    });

  const ps = (name: string): Command =>
    parent
      .command(name)
      .description('list containers')
      .option('-a, --all', 'show all containers, not only running ones')
      .option('-l, --latest', 'show the latest container')
      .option('-q, --quiet', 'print only IDs')
      .option('--no-trunc', 'do not truncate output')
      .option('--format <format>', 'json or a Go template such as {{.Names}}')
      .option('-s, --size', 'show each container\'s size (its writable layer; the rootfs with the image)')
      .action(async (f: { all?: boolean; latest?: boolean; quiet?: boolean; trunc: boolean; format?: string; size?: boolean }) => {
        const engine = getEngine(ctx);
        const recs = await engine.listContainers({ all: f.all, latest: f.latest });
        if (f.quiet) return out(recs.map((r) => (f.trunc ? r.config.id.slice(0, 12) : r.config.id) + '\n').join(''));
        // JSON has Podman's JSON shape; a Go template sees Podman's ps view (.Names a string ...).
        const entries = psEntries(engine, recs, !!f.size);
        const items = f.format === 'json' ? entries : recs.map((r, i) => psTemplateView(r, entries[i]!));
        out(
          formatOutput(f.format, items, () =>
            table(
              ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'],
              recs.map((r) => {
                const cmd = r.config.command.join(' ');
                return [
                  f.trunc ? r.config.id.slice(0, 12) : r.config.id,
                  r.config.imageName,
                  f.trunc && cmd.length > 20 ? `${cmd.slice(0, 17)}...` : cmd,
                  `${humanDuration(Date.now() - Date.parse(r.config.created))} ago`,
                  statusText(r),
                  portsText(r),
                  r.config.name,
                ];
              }),
            ),
          ),
        );
      });
  ps('ps');
  if (!top) ps('ls').alias('list');

  parent
    .command('logs')
    .description('show a container\'s output')
    .argument('[container]')
    .option('-f, --follow', 'keep printing output until the container stops')
    .option('-l, --latest', 'act on the latest container')
    .option('-t, --timestamps', 'show timestamps')
    .option('-n, --tail <lines>', 'show only the last N lines')
    .action(async (ref: string | undefined, f: { follow?: boolean; latest?: boolean; timestamps?: boolean; tail?: string }) => {
      const engine = getEngine(ctx);
      const [id] = await engine.select({ refs: ref ? [ref] : [], latest: f.latest }, 'logs');
      const tail = f.tail === undefined ? undefined : Number(f.tail);
      if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new FerryError('EINVAL', `invalid --tail "${f.tail}": give a number of lines`);
      await printLog(engine.logs(id!, { follow: f.follow, tail }), !!f.timestamps);
    });

  parent
    .command('inspect')
    .description('show a container\'s configuration and state as JSON')
    .argument('[containers...]')
    .option('-l, --latest', 'act on the latest container')
    .option('-f, --format <format>', 'Go template such as {{.State.Status}}')
    .option('-s, --size', 'also show the container\'s sizes (SizeRw, SizeRootFs)')
    .action(async (refs: string[], f: { latest?: boolean; format?: string; size?: boolean }) => {
      const engine = getEngine(ctx);
      const items: unknown[] = [];
      for (const ref of await engine.select({ refs, latest: f.latest }, 'inspect')) {
        const r = await engine.inspect(ref);
        items.push(inspectEntry(r, engine.paths, containerFacts(engine, r, { size: f.size })));
      }
      out(f.format ? formatOutput(f.format, items, () => '') : JSON.stringify(items, null, 4) + '\n');
    });

  parent
    .command('exec')
    .description('run a command in a running container')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a terminal')
    .option('--detach-keys <keys>', `key sequence that detaches from the session (default ${DEFAULT_DETACH_KEYS})`)
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory')
    .option('-l, --latest', 'act on the latest container')
    .argument('[container]')
    .argument('[command...]')
    .passThroughOptions()
    .action(async (ref: string | undefined, command: string[], f: { interactive?: boolean; tty?: boolean; detachKeys?: string; env: string[]; workdir?: string; latest?: boolean }) => {
      const engine = getEngine(ctx);
      let target = ref;
      let argv = command;
      if (f.latest) {
        target = engine.latest().config.id;
        argv = ref ? [ref, ...command] : command;
      }
      if (!target) throw new FerryError('EINVAL', 'exec needs a container and a command: ferry exec CONTAINER CMD...');
      const detachKeys = parseDetachKeys(f.detachKeys ?? DEFAULT_DETACH_KEYS);
      requireTerminal(!!f.tty, !!f.interactive);
      process.exitCode = await engine.exec(target, argv, { stdin: !!f.interactive, tty: !!f.tty, env: f.env, workdir: f.workdir, detachKeys });
    });

  parent
    .command('wait')
    .description('wait for containers to stop and print their exit codes')
    .argument('[containers...]')
    .option('-l, --latest', 'act on the latest container')
    .action(async (refs: string[], f: { latest?: boolean }) => {
      const engine = getEngine(ctx);
      for (const ref of await engine.select({ refs, latest: f.latest }, 'wait')) out(`${await engine.wait(ref)}\n`);
    });

  registerPortCommand(parent, ctx);
  registerEverydayCommands(parent, ctx, top);

  if (!top) {
    parent
      .command('cleanup', { hidden: true })
      .description('record a container\'s exit (run by conmon)')
      .argument('<container>')
      .action(async (ref: string) => getEngine(ctx).cleanup(ref));
  }

  registerCheckpointCommands(parent, ctx, top);
}
