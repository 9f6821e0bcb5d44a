// Bundles the CLI into one CommonJS file, so each `ferry` call loads a single script, and
// writes V8's code cache for it (bin/ferry hands it to V8: no parsing and compiling of the
// bundle on every command). The cache is an optimisation only: V8 rejects a stale one, and
// bin/ferry then compiles the bundle as usual.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/ferry.cjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: 'linked',
  minify: false,
  logLevel: 'warning',
});
for (const old of ['dist/ferry.mjs', 'dist/ferry.mjs.map', 'dist/ferry.cjs.cache']) fs.rmSync(old, { force: true });
// Run the CLI once so that the functions every command uses are compiled into the cache.
const r = spawnSync(process.execPath, ['bin/ferry', '--help'], { env: { ...process.env, FERRY_WRITE_CODE_CACHE: '1' }, stdio: ['ignore', 'ignore', 'inherit'] });
if (r.status !== 0 || !fs.existsSync('dist/ferry.cjs.cache')) {
  process.stderr.write('build: could not write the code cache (ferry still works, only starts slower)\n');
}
