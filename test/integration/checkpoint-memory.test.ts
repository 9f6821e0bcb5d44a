// A container with 256 MiB of touched memory checkpoints and restores with its memory intact,
// as checked by the process itself (test/fixtures/memhog.c re-verifies its pattern every 200 ms).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Host, buildFixture, eventually } from '../helpers/ferry.js';

const MIB = 256;
const h = new Host('cpmem');
const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-memhog-'));

before(async () => {
  buildFixture('memhog', bin);
  await h.importBusybox();
});
after(async () => {
  await h.destroy();
  fs.rmSync(bin, { recursive: true, force: true });
});

/** The memhog's log: its "ok N" iterations, and whether it ever said CORRUPT. */
async function progress(ref: string): Promise<{ oks: number[]; corrupt: boolean; filled: number }> {
  const lines = await h.logs(ref);
  return {
    oks: lines.filter((l) => /^ok [0-9]+$/.test(l)).map((l) => Number(l.slice(3))),
    corrupt: lines.some((l) => l.includes('CORRUPT')),
    filled: lines.filter((l) => l.startsWith('filled ')).length,
  };
}

test(`${MIB} MiB of touched memory survives checkpoint and restore`, async () => {
  const id = await h.ok(['run', '-d', '--name', 'memhog', '-v', `${bin}:/opt:ro`, 'busybox', '/opt/memhog', String(MIB)]);
  await eventually(async () => (await progress('memhog')).oks.length >= 3, 30_000);

  const cp = JSON.parse(await h.ok(['container', 'checkpoint', '--print-stats', 'memhog'], { timeoutMs: 60_000 }));
  const written = cp.container_statistics[0].criu_statistics.pages_written as number;
  assert.ok(written * 4096 >= MIB * 1024 * 1024, `CRIU wrote the whole area (${written} pages)`);
  const pagesDir = path.join(h.root, 'containers', id, 'checkpoint');
  const size = fs.readdirSync(pagesDir).filter((f) => f.startsWith('pages-')).reduce((a, f) => a + fs.statSync(path.join(pagesDir, f)).size, 0);
  assert.ok(size >= MIB * 1024 * 1024, `page images hold ${size} bytes`);
  const at = await progress('memhog');
  assert.equal(at.corrupt, false);
  assert.equal((await h.inspect('memhog')).State.Checkpointed, true);

  const rs = JSON.parse(await h.ok(['container', 'restore', '--print-stats', 'memhog'], { timeoutMs: 60_000 }));
  assert.ok(rs.container_statistics[0].criu_statistics.pages_restored * 4096 >= MIB * 1024 * 1024, 'CRIU restored the whole area');
  const last = at.oks.at(-1)!;
  await eventually(async () => (await progress('memhog')).oks.length >= at.oks.length + 5, 30_000);
  const after = await progress('memhog');
  assert.equal(after.corrupt, false, 'the pattern verified after restore');
  assert.equal(after.filled, 1, 'the process was restored, not started again');
  const resumed = after.oks.slice(at.oks.length);
  assert.equal(resumed[0], last + 1, `iterations continue after restore: ...${last} then ${resumed.join(',')}`);
  assert.ok(resumed.every((n, i) => n === last + 1 + i));
  const ins = await h.inspect('memhog');
  assert.equal(ins.State.Running, true);
  assert.equal(ins.State.Restored, true);
  await h.ok(['rm', '-f', 'memhog']);
});
