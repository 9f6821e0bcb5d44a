// Runs the unit tests, then the integration tests (real containers; root only), with node's
// own test runner on the compiled files in build/.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const dirs = ['build/test/unit', 'build/test/integration'].filter((d) => existsSync(d));
const extra = process.argv.slice(2);
// Ferry's default bridge, which every test root shares (and each leaves up for the next): the
// run removes it at the end unless it was there before.
const BRIDGE = 'ferry0';
const bridgeUp = () => existsSync(`/sys/class/net/${BRIDGE}`);
const hadBridge = bridgeUp();
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...extra, ...(extra.length ? [] : dirs)], {
  stdio: 'inherit',
  env: { ...process.env, FERRY_TEST: '1' },
});
if (!hadBridge && bridgeUp()) spawnSync('ip', ['link', 'delete', BRIDGE], { stdio: 'inherit' });
process.exit(r.status ?? 1);
