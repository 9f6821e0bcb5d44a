import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { COMPRESSIONS, type Compression } from '../drivers/archive/compress.js';
import { migrate, type Progress } from '../engine/migrate/source.js';
import { badPreCopyRounds } from '../engine/migrate/precopy.js';
import { receiveMigration } from '../engine/migrate/destination.js';
import { collect, getEngine, out, uninterruptible, type Ctx } from './context.js';
import { humanSize } from './format.js';
import { isTerminal, stdoutStream, writeErr } from '../lib/stdio.js';

const HELP_AFTER = `
Modes:
  (default)   stop-and-copy: freeze; CRIU sends the memory straight to a page server on the
              destination while it dumps (no copy of it on this host's disk), the rest of the
              checkpoint follows as a stream; restore there. Until the destination runs it, the
              container stays frozen here, and any failure thaws it.
  --lazy      post-copy: the destination runs the container before its memory has moved; pages
              follow on demand through the ssh tunnel (or the ferry service's authenticated
              tunnel). Caveat: until every page has been sent, part of the container's memory
              lives only on the source — if the source dies then, the container is lost.
  --pre-copy[=N]
              pre-copy: up to N rounds (default 3) of memory sent while the container runs,
              each only what changed since the round before; the rounds stop early once they
              stop shrinking. The final dump then sends only the rest. Needs soft-dirty memory
              tracking (\`criu check --feature mem_dirty_track\`). Combines with --lazy.

Destinations:
  ssh://[user@]host[:port]   the destination runs \`ferry\` from its PATH (or --remote-command)
                             over the system's ssh client, which applies your ssh configuration.
  ferry://host:port          a \`ferry system service\` listening there (tcp://host:port works
                             too): mutual TLS with certificates derived from --secret-file
                             (the same file the service was started with); no ssh needed.

The container runs in exactly one place in the end: if anything fails before the destination
runs it, it runs again here.`;

export function registerMigrateCommands(program: Command, ctx: Ctx): void {
  program
    .command('migrate')
    .description('move a running container to another host, with minimal downtime')
    .argument('<container>')
    .argument('<destination>', 'ssh://[user@]host[:port] or ferry://host:port')
    .option('--lazy', 'post-copy: run on the destination first, move memory on demand')
    .option('--pre-copy [rounds]', 'send memory in rounds while running (at most N, default 3), then freeze')
    .option('--remote-command <cmd>', 'the destination\'s ferry command line (default: ferry)')
    .option('--identity <file>', 'ssh private key')
    .option('--ssh-option <KEY=VALUE>', 'extra ssh -o option (repeatable)', collect, [])
    .option('--secret-file <file>', 'ferry:// only: the shared secret of the destination\'s ferry service')
    .option('--tcp-established', 'move established TCP connections (the IP address moves too)')
    .option('-c, --compress <method>', 'compression of the checkpoint stream (a stop-and-copy sends memory uncompressed, straight to the page server): zstd, gzip or none', 'zstd')
    .option('--with-image', 'send the image too if the destination lacks it')
    .option('--print-stats', 'print the figures as JSON')
    .addHelpText('after', HELP_AFTER)
    .action(async (ref: string, dest: string, f: { lazy?: boolean; preCopy?: string | boolean; remoteCommand?: string; identity?: string; sshOption: string[]; secretFile?: string; tcpEstablished?: boolean; compress: string; printStats?: boolean; withImage?: boolean }) => {
      if (!COMPRESSIONS.includes(f.compress as Compression)) throw new FerryError('EINVAL', `invalid --compress "${f.compress}": use zstd, gzip or none`);
      // The number only: migrate() checks that it is a number of rounds it takes.
      let preCopy: number | undefined;
      if (f.preCopy !== undefined) {
        preCopy = f.preCopy === true ? 3 : Number(f.preCopy);
        if (Number.isNaN(preCopy) || (typeof f.preCopy === 'string' && !f.preCopy.trim())) throw badPreCopyRounds(String(f.preCopy));
      }
      const tty = isTerminal(2) && !f.printStats;
      let last = '';
      const onProgress = (p: Progress): void => {
        if (!tty) return;
        const line = `\r\x1b[K${p.phase.padEnd(12)} ${humanSize(p.bytes)}`;
        if (line !== last) writeErr(line);
        last = line;
      };
      try {
        // A migration cut half-way is how a container gets lost: the step in progress finishes first.
        const r = await uninterruptible('migration step', () => migrate(getEngine(ctx), ref, {
          destination: dest,
          lazy: f.lazy,
          preCopy,
          remoteCommand: f.remoteCommand,
          identity: f.identity,
          sshOptions: f.sshOption,
          secretFile: f.secretFile,
          tcpEstablished: f.tcpEstablished,
          compression: f.compress as Compression,
          withImage: f.withImage,
          onProgress,
        }));
        if (tty) writeErr('\r\x1b[K');
        if (f.printStats) {
          const rounds = r.preCopyRounds.map((p) => ({ pages: p.pages, bytes: p.bytes, ms: Math.round(p.ms) }));
          out(JSON.stringify({ container: r.container, destination: r.destination, mode: r.mode, downtime_ms: Math.round(r.downtimeMs), total_ms: Math.round(r.totalMs), bytes_sent: r.bytesSent, id: r.newId, pre_copy_rounds: rounds }, null, 4) + '\n');
        } else {
          const rounds = r.preCopyRounds.length ? ` after ${r.preCopyRounds.length} pre-copy round${r.preCopyRounds.length > 1 ? 's' : ''}` : '';
          out(`migrated ${r.container} to ${r.destination} (${r.mode}): downtime ${Math.round(r.downtimeMs)} ms${rounds}, total ${(r.totalMs / 1000).toFixed(2)} s, ${humanSize(r.bytesSent)} sent\n`);
        }
      } finally {
        if (tty) writeErr('\r\x1b[K');
      }
    });

  const system = program.commands.find((c) => c.name() === 'system');
  (system ?? program)
    .command('migrate-receive', { hidden: true })
    .description('the destination end of `ferry migrate` (started over ssh)')
    .action(async () => {
      // SIGHUP (ssh gone) must not kill us before we have removed an uncommitted container.
      process.on('SIGHUP', () => undefined);
      process.on('SIGPIPE', () => undefined);
      process.exitCode = await receiveMigration(getEngine(ctx), process.stdin, stdoutStream());
    });
}
