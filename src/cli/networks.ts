import type { Command } from 'commander';
import { FerryError } from '../lib/errors.js';
import { DEFAULT_NETWORK } from '../drivers/network/cni.js';
import { formatOutput, table } from './format.js';
import { getEngine, out, type Ctx } from './context.js';

export function registerNetworkCommands(program: Command, ctx: Ctx): void {
  const net = program.command('network').description('manage networks');
  net
    .command('create')
    .description('create a bridge network')
    .argument('<name>')
    .option('--subnet <cidr>', 'IPv4 subnet, e.g. 10.90.3.0/24 (default: the next free /24 in 10.90.0.0/15)')
    .option('--gateway <ip>', 'gateway address (default: the subnet\'s first)')
    .option('-d, --driver <driver>', 'network driver (only bridge)', 'bridge')
    .action((name: string, f: { subnet?: string; gateway?: string; driver: string }) => {
      if (f.driver !== 'bridge') throw new FerryError('EINVAL', `unsupported network driver "${f.driver}": only bridge`);
      out(`${getEngine(ctx).networks.create(name, f).name}\n`);
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
        // Refused before looking at users: -f must not remove the default network's containers.
        if (n === DEFAULT_NETWORK) throw new FerryError('EINVAL', `the default network "${DEFAULT_NETWORK}" cannot be removed`);
        engine.networks.get(n);
        const users = (await engine.list({ all: true })).filter((r) => r.config.network?.mode === 'bridge' && r.config.network.name === n);
        if (users.length && !f.force) throw new FerryError('ESTATE', `network ${n} is used by container ${users.map((u) => u.config.name).join(', ')}: remove them first or use --force`);
        for (const u of users) await engine.remove(u.config.id, { force: true });
        engine.networks.remove(n);
        out(`${n}\n`);
      }
    });
}
