import type { Engine } from '../engine/engine.js';
import { openEngine } from '../engine/index.js';
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
    ctx.engine = openEngine({ root: ctx.root, runroot: ctx.runroot, self: ctx.self, runtime: ctx.runtime });
  }
  return ctx.engine;
}

export function out(s: string): void {
  process.stdout.write(s);
}

export function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** Resolves CONTAINER... / --all / --latest to container IDs, as Podman does. */
export async function resolveRefs(ctx: Ctx, refs: string[], f: { all?: boolean; latest?: boolean }, runningOnly = false): Promise<string[]> {
  const engine = getEngine(ctx);
  const n = (refs.length ? 1 : 0) + (f.all ? 1 : 0) + (f.latest ? 1 : 0);
  if (n > 1) throw new FerryError('EINVAL', '--all, --latest and container names cannot be used together: pick one');
  if (f.latest) return [engine.latest().config.id];
  if (f.all) {
    const recs = await engine.list({ all: !runningOnly });
    return recs.map((r) => r.config.id);
  }
  if (!refs.length) throw new FerryError('EINVAL', 'give at least one container name or ID, or use --all or --latest');
  for (const r of refs) engine.lookup(r); // fail before acting on any of them
  return refs;
}
