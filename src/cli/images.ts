import type { Command } from 'commander';
import { humanDuration, imageEntry, imageHistory, imageInspectEntry } from '../engine/shapes.js';
import { formatOutput, humanSize, renderTemplate, table } from './format.js';
import { normalizeImageName, type ImageRecord } from '../drivers/storage/images.js';
import { boolValue, getEngine, out, type Ctx } from './context.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { SaveFormat } from '../drivers/storage/transfer.js';
import { FerryError } from '../lib/errors.js';
import { defaultAuthFile, parseCreds, removeCredentials } from '../drivers/registry/auth.js';
import { registryDomain } from '../drivers/registry/reference.js';
import type { PullOptions } from '../drivers/registry/pull.js';
import { isTerminal, stdoutStream } from '../lib/stdio.js';
import { TerminalProgress } from './progress.js';

export interface RegistryFlags {
  tlsVerify: string | boolean;
  creds?: string;
  authfile?: string;
  platform?: string;
}

/** --tls-verify, --creds, --authfile, --platform, as pull, run and create take them. */
export function registryFlags(c: Command): Command {
  return c
    .option('--tls-verify [bool]', 'require HTTPS with a verified certificate', true)
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
    // Per-layer progress on a terminal only (each blob's row redrawn in place as its bytes
    // arrive): piped, an error stays one line.
    ...(quiet || !isTerminal(2) ? {} : terminalProgress()),
  };
}

function terminalProgress(): Pick<PullOptions, 'progress' | 'bytes'> {
  const t = new TerminalProgress(process.stderr);
  return { progress: (line) => t.line(line), bytes: (digest, n, total) => t.bytes(digest, n, total) };
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
      .argument('[reference]', 'only images with this name (NAME or NAME:TAG)')
      .option('-a, --all', 'all images (Ferry keeps no intermediate images)')
      .option('-q, --quiet', 'print only IDs')
      .option('--no-trunc', 'do not truncate IDs')
      .option('--digests', 'show digests')
      .option('--format <format>', 'json or a Go template')
      .action((ref: string | undefined, f: { quiet?: boolean; trunc: boolean; digests?: boolean; format?: string }) => {
        const engine = getEngine(ctx);
        let imgs = engine.images.list().sort((a, b) => b.Created.localeCompare(a.Created) || a.Id.localeCompare(b.Id));
        if (ref !== undefined) {
          // As Podman: an image any of whose names matches (in full, by repository, or by a
          // trailing path such as app/x for REGISTRY/app/x); all its names are then shown.
          const hasTag = /:[^/]*$/.test(ref);
          const repoOf = (n: string): string => n.slice(0, n.lastIndexOf(':'));
          const norm = normalizeImageName(ref);
          const match = (n: string): boolean =>
            n === norm || (hasTag ? n.endsWith(`/${ref}`) : repoOf(n) === repoOf(norm) || repoOf(n).endsWith(`/${ref}`));
          imgs = imgs.filter((i) => i.Names.some(match));
        }
        const id = (i: ImageRecord): string => (f.trunc ? i.Id.slice(0, 12) : `sha256:${i.Id}`);
        if (f.quiet) return out([...new Set(imgs.map(id))].map((x) => `${x}\n`).join(''));
        const users = engine.imageUsers();
        out(
          formatOutput(f.format, imgs.map((i) => imageEntry(i, users.get(i.Id)?.length ?? 0)), () =>
            table(
              ['REPOSITORY', 'TAG', ...(f.digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'],
              imgs.flatMap((i) =>
                (i.Names.length ? i.Names : ['<none>:<none>']).map((n) => {
                  const c = n.lastIndexOf(':');
                  return [n.slice(0, c), n.slice(c + 1), ...(f.digests ? [i.Digest] : []), id(i), `${humanDuration(Date.now() - Date.parse(i.Created))} ago`, humanSize(i.Size)];
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
      .argument('[images...]')
      .option('-a, --all', 'remove every image')
      .option('-f, --force', 'also remove containers that use the image')
      .action(async (refs: string[], f: { force?: boolean; all?: boolean }) => {
        if (f.all && refs.length) throw new FerryError('EINVAL', 'give either images or --all, not both');
        if (!f.all && !refs.length) throw new FerryError('EINVAL', 'give at least one image, or --all');
        const engine = getEngine(ctx);
        for (const ref of f.all ? engine.images.list().map((i) => i.Id) : refs) {
          const r = await engine.removeImage(ref, !!f.force, !!f.all);
          out(r.untagged.map((n) => `Untagged: ${n}\n`).join('') + (r.deleted ? `Deleted: ${r.deleted}\n` : ''));
        }
      });

  const tag = (parent: Command): Command =>
    parent
      .command('tag')
      .description('give an image more names')
      .argument('<image>')
      .argument('<targets...>', 'NAME[:TAG] (a short name becomes localhost/NAME)')
      .action(async (ref: string, targets: string[]) => {
        await getEngine(ctx).tagImage(ref, targets);
      });

  const inspect = (parent: Command): Command =>
    parent
      .command('inspect')
      .description('show images as JSON (Podman\'s shape)')
      .argument('<images...>')
      .option('-f, --format <format>', 'Go template such as {{.Id}}')
      .action((refs: string[], f: { format?: string }) => {
        const store = getEngine(ctx).images;
        const entries = refs.map((r) => {
          const img = store.get(r);
          const m = store.manifest(img);
          return imageInspectEntry(img, store.config(img), img.Layers.map((l) => store.layers.diffDir(l)), (m as { annotations?: Record<string, string> }).annotations ?? {});
        });
        out(f.format ? renderTemplate(f.format, entries) : JSON.stringify(entries, null, 4) + '\n');
      });

  const history = (parent: Command): Command =>
    parent
      .command('history')
      .description("show an image's history")
      .argument('<image>')
      .option('-q, --quiet', 'print only IDs')
      .option('--no-trunc', 'do not truncate')
      .option('-H, --human [bool]', 'human-readable sizes and dates', true)
      .option('--format <format>', 'json or a Go template')
      .action((ref: string, f: { quiet?: boolean; trunc: boolean; format?: string }) => {
        const store = getEngine(ctx).images;
        const img = store.get(ref);
        const rows = imageHistory(img, store.config(img), (d) => store.layers.get(d.replace(/^sha256:/, ''))?.Size ?? 0);
        const id = (x: string): string => (x === '<missing>' || !f.trunc ? x : x.slice(0, 12));
        if (f.quiet) return out(rows.map((r) => `${id(r.id)}\n`).join(''));
        const json = rows.map((r) => ({ id: r.id, created: r.created, CreatedBy: r.createdBy, size: r.size, ...(r.comment ? { comment: r.comment } : {}), Created: r.created }));
        out(
          formatOutput(f.format, json, () =>
            table(
              ['ID', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'],
              rows.map((r) => [id(r.id), `${humanDuration(Date.now() - Date.parse(r.created))} ago`, f.trunc && r.createdBy.length > 45 ? `${r.createdBy.slice(0, 42)}...` : r.createdBy, humanSize(r.size), r.comment]),
            ),
          ),
        );
      });

  const prune = (parent: Command): Command =>
    parent
      .command('prune')
      .description('remove images without a name that no container uses (-a: every unused image)')
      .option('-a, --all', 'every image no container uses')
      .option('-f, --force', 'do not ask (Ferry never asks)')
      .action(async (f: { all?: boolean }) => {
        const gone = await getEngine(ctx).pruneImages(!!f.all);
        out(gone.map((g) => `${g}\n`).join(''));
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

  const push = (parent: Command): Command =>
    parent
      .command('push')
      .description('push an image to a registry')
      .argument('<image>')
      .argument('[destination]', 'REGISTRY[:PORT]/NAME[:TAG] (default: the image\'s own name)')
      .option('--tls-verify [bool]', 'require HTTPS with a verified certificate', true)
      .option('--creds <user:pass>', 'credentials for the registry')
      .option('--authfile <file>', 'the auth file')
      .option('-q, --quiet', 'no progress')
      .option('--digestfile <file>', 'write the manifest digest to this file')
      .action(async (ref: string, dest: string | undefined, f: RegistryFlags & { quiet?: boolean; digestfile?: string }) => {
        const o = pullOptions(f, !!f.quiet);
        const digest = await getEngine(ctx).pushImage(ref, dest, o);
        if (f.digestfile) fs.writeFileSync(f.digestfile, digest);
      });

  program
    .command('login')
    .description('log in to a registry (credentials go to the auth file)')
    .argument('<registry>', 'HOST[:PORT]')
    .option('-u, --username <user>')
    .option('-p, --password <pass>')
    .option('--password-stdin', 'read the password from stdin')
    .option('--authfile <file>', 'the auth file (default: Podman\'s auth.json)')
    .option('--tls-verify [bool]', 'require HTTPS with a verified certificate', true)
    .action(async (registry: string, f: { username?: string; password?: string; passwordStdin?: boolean; authfile?: string; tlsVerify: string | boolean }) => {
      if (!f.username) throw new FerryError('EINVAL', 'give the user name with -u/--username');
      let password = f.password;
      if (f.passwordStdin) {
        if (password !== undefined) throw new FerryError('EINVAL', 'give either -p/--password or --password-stdin');
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      }
      if (password === undefined) throw new FerryError('EINVAL', 'give the password with -p/--password or --password-stdin');
      await getEngine(ctx).login(registry, { username: f.username, password }, { tlsVerify: boolValue(f.tlsVerify), authfile: f.authfile });
      out('Login Succeeded!\n');
    });

  program
    .command('logout')
    .description('remove the credentials of a registry from the auth file')
    .argument('[registry]', 'HOST[:PORT]')
    .option('-a, --all', 'remove every registry\'s credentials')
    .option('--authfile <file>', 'the auth file (default: Podman\'s auth.json)')
    .action((registry: string | undefined, f: { all?: boolean; authfile?: string }) => {
      if (!registry && !f.all) throw new FerryError('EINVAL', 'give a registry, or --all');
      const domain = f.all ? undefined : registryDomain(registry!);
      const file = f.authfile ?? defaultAuthFile();
      if (!removeCredentials(file, domain)) {
        if (f.all) return out('Removed login credentials for all registries\n');
        throw new FerryError('ENOTFOUND', `not logged into ${domain}`);
      }
      out(f.all ? 'Removed login credentials for all registries\n' : `Removed login credentials for ${domain}\n`);
    });

  const save = (parent: Command): Command =>
    parent
      .command('save')
      .description('save images to an archive (docker-archive, oci-archive) or an OCI layout directory (oci-dir)')
      .argument('<images...>')
      .option('-o, --output <file>', 'the archive (or directory for oci-dir); stdout when omitted')
      .option('--format <format>', 'docker-archive (default), oci-archive or oci-dir', 'docker-archive')
      .option('-q, --quiet', 'no progress')
      .action(async (refs: string[], f: { output?: string; format: string }) => {
        const engine = getEngine(ctx);
        const format = f.format as SaveFormat;
        if (format === 'oci-dir') {
          if (!f.output) throw new FerryError('EINVAL', '--format oci-dir needs -o DIR');
          if (fs.existsSync(f.output)) throw new FerryError('EEXIST', `${f.output} exists: give a new directory`);
          await engine.saveImages(refs, format, { dir: f.output });
          return;
        }
        if (!f.output) {
          if (isTerminal(1)) throw new FerryError('EINVAL', 'refusing to write an archive to a terminal: give -o FILE or redirect the output');
          await engine.saveImages(refs, format, { out: stdoutStream() });
          return;
        }
        const dir = path.dirname(path.resolve(f.output));
        if (!fs.existsSync(dir)) throw new FerryError('ENOTFOUND', `${dir} does not exist: create it first`);
        const tmp = path.join(dir, `.${path.basename(f.output)}.tmp-${process.pid}`);
        const w = fs.createWriteStream(tmp, { mode: 0o644 });
        try {
          await engine.saveImages(refs, format, { out: w });
          await new Promise<void>((resolve, reject) => w.end((e?: Error | null) => (e ? reject(e) : resolve())));
          fs.renameSync(tmp, f.output);
        } catch (e) {
          w.destroy();
          fs.rmSync(tmp, { force: true });
          throw e;
        }
      });

  const load = (parent: Command): Command =>
    parent
      .command('load')
      .description('load images from a docker-archive, an OCI archive or an OCI layout directory')
      .option('-i, --input <file>', 'the archive or directory; stdin when omitted')
      .option('-q, --quiet', 'no progress')
      .action(async (f: { input?: string }) => {
        let input: { dir: string } | { stream: Readable };
        if (f.input === undefined) {
          if (isTerminal(0)) throw new FerryError('EINVAL', 'give -i FILE, or pipe an archive to stdin');
          input = { stream: process.stdin };
        } else if (!fs.existsSync(f.input)) throw new FerryError('ENOTFOUND', `${f.input}: no such file`);
        else input = fs.statSync(f.input).isDirectory() ? { dir: f.input } : { stream: fs.createReadStream(f.input) };
        const imgs = await getEngine(ctx).loadImages(input);
        out(imgs.flatMap((i) => (i.names.length ? i.names : [`sha256:${i.img.Id}`]).map((n) => `Loaded image: ${n}\n`)).join(''));
      });

  pull(program);
  push(program);
  save(program);
  load(program);
  importCmd(program);
  ls(program, 'images');
  rm(program, 'rmi');
  tag(program);
  const image = program.command('image').description('manage images');
  importCmd(image);
  pull(image);
  push(image);
  save(image);
  load(image);
  ls(image, 'ls').alias('list');
  rm(image, 'rm');
  tag(image);
  inspect(image);
  history(image);
  prune(image);
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
