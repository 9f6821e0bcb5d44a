import type { Command } from 'commander';
import { humanDuration, imageEntry } from '../engine/shapes.js';
import { formatOutput, humanSize, table } from './format.js';
import { boolValue, getEngine, out, type Ctx } from './context.js';
import { parseCreds } from '../drivers/registry/auth.js';
import type { PullOptions } from '../drivers/registry/pull.js';

export interface RegistryFlags {
  tlsVerify: string | boolean;
  creds?: string;
  authfile?: string;
  platform?: string;
}

/** --tls-verify, --creds, --authfile, --platform, as pull, run and create take them. */
export function registryFlags(c: Command): Command {
  return c
    .option('--tls-verify [bool]', 'require HTTPS with a verified certificate (default true)', true)
    .option('--creds <user:pass>', 'credentials for the registry')
    .option('--authfile <file>', 'the auth file (default: Podman\'s auth.json, then Docker\'s config.json)')
    .option('--platform <os/arch>', 'the platform to pull from a multi-platform image (default: this host\'s)');
}

export function pullOptions(f: RegistryFlags, quiet: boolean): PullOptions & { authfile?: string } {
  return {
    tlsVerify: boolValue(f.tlsVerify),
    creds: f.creds !== undefined ? parseCreds(f.creds) : undefined,
    authfile: f.authfile,
    platform: f.platform,
    // Per-layer progress on a terminal only: piped, an error stays one line.
    progress: quiet || !process.stderr.isTTY ? undefined : (line: string) => process.stderr.write(`${line}\n`),
  };
}

export function registerImageCommands(program: Command, ctx: Ctx): void {
  const importCmd = (parent: Command): Command =>
    parent
      .command('import')
      .description('make an image from a rootfs tarball')
      .argument('<tarball>', 'a tar archive of a root filesystem (compressed or not)')
      .argument('[name]', 'image name, e.g. busybox or busybox:1.36')
      .option('-q, --quiet', 'print only the image ID')
      .action(async (tarball: string, name: string | undefined) => {
        const img = await getEngine(ctx).importImage(tarball, name);
        out(`${img.Id}\n`);
      });

  const ls = (parent: Command, name: string): Command =>
    parent
      .command(name)
      .description('list images')
      .option('-q, --quiet', 'print only IDs')
      .option('--no-trunc', 'do not truncate IDs')
      .option('--format <format>', 'json or a Go template')
      .action((f: { quiet?: boolean; trunc: boolean; format?: string }) => {
        const imgs = getEngine(ctx).images.list().sort((a, b) => b.Created.localeCompare(a.Created));
        if (f.quiet) return out(imgs.map((i) => `${f.trunc ? i.Id.slice(0, 12) : i.Id}\n`).join(''));
        out(
          formatOutput(f.format, imgs.map(imageEntry), () =>
            table(
              ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'],
              imgs.flatMap((i) =>
                (i.Names.length ? i.Names : ['<none>:<none>']).map((n) => {
                  const c = n.lastIndexOf(':');
                  return [n.slice(0, c), n.slice(c + 1), f.trunc ? i.Id.slice(0, 12) : i.Id, `${humanDuration(Date.now() - Date.parse(i.Created))} ago`, humanSize(i.Size)];
                }),
              ),
            ),
          ),
        );
      });

  const rm = (parent: Command, name: string): Command =>
    parent
      .command(name)
      .description('remove images')
      .argument('<images...>')
      .option('-f, --force', 'also remove containers that use the image')
      .action(async (refs: string[], f: { force?: boolean }) => {
        for (const ref of refs) {
          const r = await getEngine(ctx).removeImage(ref, !!f.force);
          out(r.untagged.map((n) => `Untagged: ${n}\n`).join('') + (r.deleted ? `Deleted: ${r.deleted}\n` : ''));
        }
      });

  const pull = (parent: Command): Command =>
    registryFlags(
      parent
        .command('pull')
        .description('pull an image from a registry')
        .argument('<reference>', 'REGISTRY[:PORT]/REPOSITORY[:TAG|@DIGEST]')
        .option('-q, --quiet', 'print only the image ID'),
    ).action(async (ref: string, f: RegistryFlags & { quiet?: boolean }) => {
      const img = await getEngine(ctx).pullImage(ref, pullOptions(f, !!f.quiet));
      out(`${img.Id}\n`);
    });

  pull(program);
  importCmd(program);
  ls(program, 'images');
  rm(program, 'rmi');
  const image = program.command('image').description('manage images');
  importCmd(image);
  pull(image);
  ls(image, 'ls').alias('list');
  rm(image, 'rm');
  image
    .command('inspect')
    .argument('<images...>')
    .action((refs: string[]) => out(JSON.stringify(refs.map((r) => imageEntry(getEngine(ctx).images.get(r))), null, 4) + '\n'));
}

export function registerVolumeCommands(program: Command, ctx: Ctx): void {
  const vol = program.command('volume').description('manage named volumes');
  vol
    .command('create')
    .argument('[name]')
    .option('-l, --label <k=v>', 'label (repeatable)', (v: string, p: string[]) => [...p, v], [] as string[])
    .action((name: string | undefined, f: { label: string[] }) => {
      const labels = Object.fromEntries(f.label.map((l) => [l.split('=')[0]!, l.split('=').slice(1).join('=')]));
      const v = getEngine(ctx).createVolume(name, labels);
      out(`${v.Name}\n`);
    });
  vol
    .command('ls')
    .alias('list')
    .option('-q, --quiet', 'print only names')
    .option('--format <format>', 'json or a Go template')
    .action((f: { quiet?: boolean; format?: string }) => {
      const vols = getEngine(ctx).volumes.list();
      if (f.quiet) return out(vols.map((v) => `${v.Name}\n`).join(''));
      out(formatOutput(f.format, vols, () => table(['DRIVER', 'VOLUME NAME'], vols.map((v) => [v.Driver, v.Name]))));
    });
  vol
    .command('inspect')
    .argument('<names...>')
    .action((names: string[]) => out(JSON.stringify(names.map((n) => getEngine(ctx).volumes.get(n)), null, 4) + '\n'));
  vol
    .command('rm')
    .alias('remove')
    .argument('<names...>')
    .option('-f, --force', 'also remove containers that use the volume')
    .action(async (names: string[], f: { force?: boolean }) => {
      for (const n of names) {
        await getEngine(ctx).removeVolume(n, !!f.force);
        out(`${n}\n`);
      }
    });
}
