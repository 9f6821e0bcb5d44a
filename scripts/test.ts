// Runs the unit tests, then the integration tests (real containers; root only), with Bun's test
// runner on the TypeScript sources: the unit files in one process, each integration file in a
// process of its own (they start and stop real containers, and nothing may leak between them).
// `bun scripts/test.ts FILE...` runs only those files.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const list = (dir: string): string[] =>
  existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort().map((f) => `./${dir}/${f}`) : [];
const given = process.argv.slice(2).map((f) => (f.startsWith('/') || f.startsWith('./') ? f : `./${f}`));
const groups: string[][] = given.length ? given.map((f) => [f]) : [list('test/unit'), ...list('test/integration').map((f) => [f])].filter((g) => g.length);

// Ferry's default bridge, which every test root shares (and each leaves up for the next): the
// run removes it at the end unless it was there before.
const BRIDGE = 'ferry0';
const bridgeUp = (): boolean => existsSync(`/sys/class/net/${BRIDGE}`);
const hadBridge = bridgeUp();

const failed: string[] = [];
const started = Date.now();
for (const files of groups) {
  // No per-test limit from the runner: the tests set their own deadlines where they wait.
  const r = spawnSync(process.execPath, ['test', '--timeout', '1800000', ...files], {
    stdio: 'inherit',
    env: { ...process.env, FERRY_TEST: '1' },
  });
  if (r.status !== 0) failed.push(...(files.length > 1 ? [`${files.length} unit files`] : files));
}
if (!hadBridge && bridgeUp()) spawnSync('ip', ['link', 'delete', BRIDGE], { stdio: 'inherit' });
const took = `${((Date.now() - started) / 60_000).toFixed(1)} min`;
if (failed.length) {
  process.stderr.write(`\ntests FAILED (${took}): ${failed.join(', ')}\n`);
  process.exit(1);
}
process.stderr.write(`\nall test files passed (${groups.length} runs, ${took})\n`);
