import type { Engine } from '../engine/engine.js';
import { openEngine } from '../engine/index.js';
import { FerryError } from '../lib/errors.js';
import { writeErr, writeOut } from '../lib/stdio.js';

export interface Ctx {
  root: string;
  runroot: string;
  /** --runtime: the OCI runtime binary (runc or a compatible one). */
  runtime?: string;
  engine?: Engine;
  /** argv that runs this ferry again (conmon's exit command). */
  self: string[];
}

export function getEngine(ctx: Ctx): Engine {
  if (!ctx.engine) {
    if (process.getuid?.() !== 0) throw new FerryError('EPERM', 'ferry needs root privileges: run it as root (e.g. with sudo)');
    ctx.engine = openEngine({ root: ctx.root, runroot: ctx.runroot, self: ctx.self, runtime: ctx.runtime });
  }
  return ctx.engine;
}

/** The command word of args (argv after the program): the first word that is no global option. */
export function commandWord(args: readonly string[]): string | undefined {
  // The global options that take a value (they come before the command word).
  const withValue = ['--root', '--runroot', '--log-level', '--runtime'];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (withValue.includes(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

export function out(s: string): void {
  writeOut(s);
}

/** A boolean flag that may be given a value: --tls-verify, --tls-verify=false. */
export function boolValue(v: string | boolean): boolean {
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw new FerryError('EINVAL', `invalid boolean "${v}": use true or false`);
}

export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/**
 * Runs fn with SIGINT/SIGTERM deferred: a checkpoint or restore cut half-way is how users lose
 * work, so an interrupt lets the current operation finish (or fail cleanly) and then exits 130.
 */
export async function uninterruptible<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let interrupted = false;
  const onSignal = (): void => {
    if (!interrupted) writeErr(`ferry: interrupted; finishing the ${what} in progress so that nothing is lost\n`);
    interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (interrupted) process.exitCode = 130;
  }
}

/**
 * The command line as the user typed it (Podman's CreateCommand): the executable's own path
 * rather than the name the compiled program gives itself inside its bundle.
 */
export function commandLine(): string[] {
  const [self, ...args] = process.argv.slice(1);
  return [self?.startsWith('/$bunfs/') ? process.execPath : self ?? 'ferry', ...args];
}
