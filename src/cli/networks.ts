import type { Command } from 'commander';
import { formatOutput, table } from './format.js';
import { collect, getEngine, out, type Ctx } from './context.js';

export function registerNetworkCommands(program: Command, ctx: Ctx): void {
  const net = program.command('network').description('manage networks');
  net
    .command('create')
    .description('create a bridge network')
    .argument('<name>')
    .option('--subnet <cidr>', 'IPv4 subnet, e.g. 10.90.3.0/24 (default: the next free /24 in 10.90.0.0/15)')
    .option('--gateway <ip>', 'gateway address (default: the subnet\'s first)')
    .option('-d, --driver <driver>', 'network driver (only bridge)', 'bridge')
    .option('--disable-dns', "no DNS server for the containers' names on this network")
    .option('-l, --label <k=v>', 'set a label (repeatable)', collect, [])
    .action((name: string, f: { subnet?: string; gateway?: string; driver: string; disableDns?: boolean; label: string[] }) => {
      const labels = Object.fromEntries(f.label.map((l) => (l.includes('=') ? [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] : [l, ''])));
      out(`${getEngine(ctx).createNetwork(name, { ...f, labels }).name}\n`);
    });
  net
    .command('ls')
    .alias('list')
    .option('-q, --quiet', 'print only names')
    .option('--format <format>', 'json or a Go template')
    .action((f: { quiet?: boolean; format?: string }) => {
      const nets = getEngine(ctx).networks.list();
      if (f.quiet) return out(nets.map((n) => `${n.name}\n`).join(''));
      out(formatOutput(f.format, nets, () => table(['NETWORK ID', 'NAME', 'DRIVER', 'SUBNET'], nets.map((n) => [n.id.slice(0, 12), n.name, n.driver, n.subnets[0]?.subnet ?? '']))));
    });
  net
    .command('inspect')
    .argument('<names...>')
    .action((names: string[]) => out(JSON.stringify(names.map((n) => getEngine(ctx).networks.get(n)), null, 4) + '\n'));
  net
    .command('rm')
    .alias('remove')
    .argument('<names...>')
    .option('-f, --force', 'also remove containers on the network')
    .action(async (names: string[], f: { force?: boolean }) => {
      const engine = getEngine(ctx);
      for (const n of names) {
        await engine.removeNetwork(n, !!f.force);
        out(`${n}\n`);
      }
    });
}
