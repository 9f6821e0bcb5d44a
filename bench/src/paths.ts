// Where things are: this file is bench/src/paths.ts, two levels below the repository.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** bench/: setup.sh, and results/ (the default --out). */
export const BENCH_DIR = path.join(REPO, 'bench');
export const FERRY_BIN = path.join(REPO, 'bin/ferry');
/** Ferry's CRIU wrapper (`npm run setup`): all three engines use it. */
export const CRIU = '/usr/local/lib/ferry/bin/criu';
