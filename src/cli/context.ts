import { Engine } from '../engine/engine.js';
import { FerryError } from '../lib/errors.js';

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
    ctx.engine = new Engine({ root: ctx.root, runroot: ctx.runroot, self: ctx.self, runtime: ctx.runtime });
  }
  return ctx.engine;
}

export function out(s: string): void {
  process.stdout.write(s);
}

export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
