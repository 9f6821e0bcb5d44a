// Compiles the CLI into one executable, dist/ferry: Bun's runtime with the bundled CLI and its
// bytecode inside, so a command neither looks for a runtime nor parses JavaScript when it starts
// (every `ferry` command is a fresh process). bin/ferry runs it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

const OUT = 'dist/ferry';
fs.mkdirSync('dist', { recursive: true });
// What earlier builds (the Node bundle and its code cache) left behind.
for (const old of ['dist/ferry.cjs', 'dist/ferry.cjs.map', 'dist/ferry.cjs.cache', 'dist/ferry.mjs', 'dist/ferry.mjs.map']) fs.rmSync(old, { force: true });
// As an ES module: the same bundle compiled as CommonJS (Bun's default for --bytecode) starts
// slower on every command (as ESM: a missing container's checkpoint 0.80-0.83x, `ps` and
// `inspect` 0.93-0.94x; 100 pairs of whole processes).
const r = spawnSync(process.execPath, ['build', 'src/cli/main.ts', '--compile', '--bytecode', '--format=esm', '--target=bun', '--outfile', OUT], { stdio: ['ignore', 'ignore', 'inherit'] });
if (r.status !== 0) {
  process.stderr.write(`build: bun build failed (exit ${r.status ?? r.signal})\n`);
  process.exit(1);
}
const v = spawnSync(OUT, ['--version'], { encoding: 'utf8' });
if (v.status !== 0) {
  process.stderr.write(`build: the built ${OUT} does not run: ${v.stderr.trim()}\n`);
  process.exit(1);
}
