import { Command, CommanderError } from 'commander';
import { FerryError } from '../lib/errors.js';
import { registerContainerCommands } from './containers.js';
import { registerImageCommands, registerVolumeCommands } from './images.js';
import { registerSystemCommands } from './system.js';
import { registerNetworkCommands } from './networks.js';
import { registerMigrateCommands } from './migrate.js';
import { registerPodCommands } from './pods.js';
import { VERSION } from '../lib/version.js';
import { debug, setLogLevel } from '../lib/log.js';
import { commandWord, type Ctx } from './context.js';
import { DEFAULT_ROOT } from '../engine/paths.js';
import { writeErr, writeOut } from '../lib/stdio.js';

export async function main(argv: string[]): Promise<number> {
  // runc, iptables and ip live in sbin, which a login over ssh may leave out of PATH.
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) if (!dirs.includes(d)) dirs.push(d);
  process.env.PATH = dirs.join(':');
  const ctx: Ctx = {
    root: process.env.FERRY_ROOT ?? DEFAULT_ROOT,
    runroot: process.env.FERRY_RUNROOT ?? '/run/ferry',
    self: selfCommand(argv),
  };
  const args = argv.slice(2);
  // Only the commands this run can reach are defined: defining them all (the container commands
  // twice over, as `ferry ps` and `ferry container ps`) took most of a short command's start-up.
  // Help, a mistyped command and no command at all see every one.
  const word = commandWord(args);
  const sub = word === 'container' ? commandWord(args.slice(args.indexOf('container') + 1)) : undefined;
  let program = buildProgram(ctx, word, sub);
  const found = word !== undefined && hasCommand(program, word) && (sub === undefined || hasCommand(program.commands.find((c) => c.name() === 'container')!, sub));
  if (!found) program = buildProgram(ctx);

  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 125; // commander already printed the message
    }
    if (e instanceof FerryError) {
      writeErr(`Error: ${e.message}\n`);
      if (process.env.FERRY_DEBUG && e.detail) writeErr(`${e.detail}\n`);
      return e.exitCode;
    }
    writeErr(`Error: ${(e as Error).message}\n`);
    if (process.env.FERRY_DEBUG) writeErr(`${(e as Error).stack}\n`);
    return 125;
  }
}

/** Ferry's command tree; given `word` (and `sub`, under `container`), only what they name. */
function buildProgram(ctx: Ctx, word?: string, sub?: string): Command {
  const program = new Command('ferry')
    .description('A daemonless container engine built around checkpoint/restore and live migration')
    .version(VERSION, '-v, --version')
    .option('--root <dir>', 'persistent storage directory', ctx.root)
    .option('--runroot <dir>', 'runtime state directory', ctx.runroot)
    .option('--log-level <level>', 'error, warn, info or debug (debug: every step with its time)', process.env.FERRY_LOG_LEVEL ?? 'error')
    .option('--runtime <path>', 'the OCI runtime binary: runc or a runc-compatible one (default: runc from PATH)', process.env.FERRY_RUNTIME)
    .enablePositionalOptions()
    .exitOverride()
    // Usage errors look like every other error: one line, `Error: ...` (Podman's shape).
    .configureOutput({
      writeOut: (s) => writeOut(s),
      writeErr: (s) => writeErr(s),
      outputError: (s, write) => write(`Error: ${s.trim().replace(/^error:\s*/i, '')} (run with --help for usage)\n`),
    })
    .hook('preAction', (cmd) => {
      const g = cmd.optsWithGlobals() as { root: string; runroot: string; runtime?: string; logLevel: string };
      try {
        setLogLevel(g.logLevel);
      } catch (e) {
        throw new FerryError('EINVAL', (e as Error).message);
      }
      debug(() => `ferry ${process.argv.slice(2).join(' ')}`);
      ctx.root = g.root;
      ctx.runroot = g.runroot;
      ctx.runtime = g.runtime;
    });

  const top = only(program, word);
  if (word !== 'container') {
    registerImageCommands(top, ctx);
    registerVolumeCommands(top, ctx);
    registerNetworkCommands(top, ctx);
    registerSystemCommands(top, ctx);
    registerMigrateCommands(top, ctx);
    registerPodCommands(top, ctx);
    registerContainerCommands(top, ctx, true);
  }
  if (word === undefined || word === 'container') {
    const container = program.command('container').description('manage containers').enablePositionalOptions();
    registerContainerCommands(only(container, sub), ctx, false);
  }
  return program;
}

function hasCommand(program: Command, word: string): boolean {
  return program.commands.some((c) => c.name() === word || c.aliases().includes(word));
}

/**
 * parent as the register functions see it when only `wanted` will run: `command(name)` defines
 * that one for real and hands every other one a stand-in that takes any call and does nothing.
 */
function only(parent: Command, wanted: string | undefined): Command {
  if (wanted === undefined) return parent;
  const skip: Command = new Proxy(function () {}, { get: (_t, key) => (key === 'then' ? undefined : skip), apply: () => skip }) as unknown as Command;
  return new Proxy(parent, {
    get(target, key) {
      if (key === 'command') {
        return (nameAndArgs: string, ...rest: unknown[]) =>
          nameAndArgs.trim().split(/\s+/)[0] === wanted ? (target.command as (...a: unknown[]) => Command)(nameAndArgs, ...rest) : skip;
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

let finished = false;
// The event loop ran dry while the command still waited: nothing left could ever end that wait
// (a runtime that does not keep the process alive for what it waits on). Say so and fail,
// rather than exit 0 with the command half done.
process.once('beforeExit', () => {
  if (finished) return;
  writeErr('Error: internal error: ferry stopped while still waiting for an event that cannot come; the command did not finish\n');
  process.exitCode = 125;
});
main(process.argv).then(
  (code) => {
    finished = true;
    process.exitCode = code;
  },
  (e: unknown) => {
    finished = true;
    writeErr(`Error: ${String(e)}\n`);
    process.exitCode = 125;
  },
);

/**
 * How this ferry runs itself again (conmon's exit command): the compiled executable alone
 * (its script lives inside it, under /$bunfs/), or the runtime and the script.
 */
function selfCommand(argv: string[]): string[] {
  const script = argv[1];
  return !script || script.startsWith('/$bunfs/') ? [process.execPath] : [process.execPath, script];
}
