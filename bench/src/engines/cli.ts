// Ferry and Podman share one CLI shape (Podman's): the same commands, a few flags apart.
import type { EngineName } from '../options.js';
import { cmdError, exec, ok, peakRssMiB, type ExecOptions, type ExecResult } from '../proc.js';
import type { BenchContext, ImageName, Workload } from '../workloads.js';
import { criuWriteMsIn, type Engine } from './engine.js';

export abstract class CliEngine implements Engine {
  version: string | undefined;

  /** argv0: the command and its global flags; imageRefs: the workloads' images' names in its store. */
  constructor(
    readonly name: EngineName,
    readonly argv0: readonly string[],
    readonly env: NodeJS.ProcessEnv,
    readonly imageRefs: Readonly<Record<ImageName, string>>,
  ) {}

  abstract setup(ctx: BenchContext): Promise<void>;
  abstract cleanup(): void;

  x(args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return exec([...this.argv0, ...args], { env: this.env, ...opts });
  }

  /** Runs a command that must succeed; returns its time. */
  async timed(args: readonly string[], what: string): Promise<number> {
    const r = await this.x(args);
    if (r.code !== 0) throw cmdError(`${this.name} ${what}`, r);
    return r.ms;
  }

  /** No network, as for bare runc (an empty network namespace). */
  protected runArgs(name: string, w: Workload): string[] {
    return ['run', '-d', '--network', 'none', '--name', name, ...(w.opt ? ['-v', `${w.opt}:/opt:ro`] : []), this.imageRefs[w.image ?? 'busybox'], ...w.argv];
  }

  /** Imports the workloads' images: busybox, and Redis's when a Redis figure is measured. */
  protected async importImages(ctx: BenchContext): Promise<void> {
    await ok([...this.argv0, 'import', ctx.tarball, this.imageRefs.busybox], { env: this.env });
    if (ctx.redisTarball) await ok([...this.argv0, 'import', ctx.redisTarball, this.imageRefs.redis], { env: this.env, timeoutMs: 300_000 });
  }

  protected importArgs(file: string, newName: string, _w: Workload): string[] {
    return ['container', 'restore', '--import', file, '-n', newName];
  }

  run(name: string, w: Workload): Promise<number> {
    return this.timed(this.runArgs(name, w), 'run -d');
  }
  rm(name: string): Promise<number> {
    return this.timed(['rm', '-f', name], 'rm -f');
  }
  ps(): Promise<number> {
    return this.timed(['ps'], 'ps');
  }
  inspect(name: string): Promise<number> {
    return this.timed(['inspect', name], 'inspect');
  }
  images(): Promise<number> {
    return this.timed(['images'], 'images');
  }
  checkpoint(name: string): Promise<number> {
    return this.timed(['container', 'checkpoint', name], 'container checkpoint');
  }
  psPeakMiB(): Promise<number | undefined> {
    return peakRssMiB([...this.argv0, 'ps'], { env: this.env });
  }

  /** CRIU writes stats-dump into the container's userdata dir (inspect's StaticDir), Ferry's and Podman's alike. */
  async criuWriteMs(name: string): Promise<number | undefined> {
    const r = await this.x(['inspect', '--format', '{{.StaticDir}}', name]);
    const dir = r.code === 0 ? r.stdout.trim() : '';
    return dir ? criuWriteMsIn(dir) : undefined;
  }

  restore(name: string): Promise<number> {
    return this.timed(['container', 'restore', name], 'container restore');
  }
  export(name: string, file: string): Promise<number> {
    return this.timed(['container', 'checkpoint', '--export', file, '--compress', 'zstd', name], 'container checkpoint --export');
  }
  import(file: string, newName: string, w: Workload): Promise<number> {
    return this.timed(this.importArgs(file, newName, w), 'container restore --import');
  }
  async output(name: string): Promise<string> {
    const r = await this.x(['logs', name]);
    return r.stdout + r.stderr;
  }
  async exec(name: string, argv: readonly string[]): Promise<string> {
    const r = await this.x(['exec', name, ...argv]);
    if (r.code !== 0) throw cmdError(`${this.name} exec`, r);
    return r.stdout;
  }
}
