import { LOOPER, eventually, lastCount, busyboxTarball } from '../test/helpers/ferry.js';
import { HostPair } from '../test/helpers/hosts.js';
const pair = new HostPair();
const { a, b } = pair;
try {
  await pair.setup();
  for (const h of [a, b]) await h.ok(['import', busyboxTarball(), 'busybox']);
  await a.ok(['run', '-d', '--network', 'none', '--name', 'lz', 'busybox', ...LOOPER]);
  await eventually(async () => (await lastCount(a, 'lz')) >= 2);
  for (const [from, to] of [[a, b], [b, a], [a, b]] as const) {
    const mode = process.argv[2] === 'sc' ? [] : ['--lazy'];
    const r = await from.run(['--log-level', 'debug', 'migrate', 'lz', to.url(), '--remote-command', `${to.remoteCommand()} --log-level debug`, ...pair.sshArgs(), ...mode, '--print-stats']);
    console.log(r.stdout);
    console.log(r.stderr.split('\n').filter((l) => /migrate|restore|conmon|dump|import|archive|criu|lazy|ran |ready|prepare|bundle/.test(l)).join('\n'));
  }
} finally {
  await pair.destroy();
}
