// Smoke test of the benchmark (bench/src/main.ts; issue 8): one
// iteration, tiny workload only, Ferry and bare runc only. It checks that the bench runs end to
// end, writes its JSON with every figure, and leaves nothing behind. The timings themselves are
// not judged here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from '../helpers/ferry.js';

const FIGURES = ['cli.run', 'cli.rm', 'cli.ps', 'cli.inspect', 'cr.tiny.checkpoint', 'cr.tiny.restore', 'export.tiny.export', 'export.tiny.import'];

function benchMounts(): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && m.startsWith(path.join(os.tmpdir(), 'fyb-')));
}

test('bench --smoke runs Ferry and bare runc and writes every figure', { timeout: 90_000 }, async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-bench-out-'));
  const mountsBefore = new Set(benchMounts());
  try {
    const started = Date.now();
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(REPO, 'bench/src/main.ts'), '--smoke', '--iterations', '1', '--only', 'ferry,bare', '--out', out], {
        cwd: REPO,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const t = setTimeout(() => child.kill('SIGINT'), 80_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, stdout, stderr });
      });
    });
    const took = Date.now() - started;
    assert.equal(r.code, 0, `bench exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    assert.ok(took < 60_000, `the smoke run took ${took} ms (limit 60 s)`);
    assert.match(r.stdout, /checkpoint tiny/, 'the table is printed');

    const latest = path.join(out, 'latest.json');
    assert.ok(fs.existsSync(latest), 'latest.json written');
    assert.equal(fs.readdirSync(out).filter((f) => /^\d{4}-.*\.json$/.test(f)).length, 1, 'a timestamped copy written');
    const doc = JSON.parse(fs.readFileSync(latest, 'utf8'));
    assert.equal(doc.mode, 'smoke');
    assert.deepEqual(doc.engines, ['ferry', 'bare']);
    const byId = new Map<string, any>(doc.figures.map((f: any) => [f.id, f]));
    for (const id of FIGURES) {
      const f = byId.get(id);
      assert.ok(f, `figure ${id} present`);
      for (const e of ['ferry', 'bare']) {
        const s = f.engines[e];
        assert.ok(s, `${id}: ${e} measured`);
        assert.equal(s.error, undefined, `${id}: ${e} failed: ${s.error}`);
        assert.equal(s.samples.length, 1, `${id}: ${e} has one sample`);
        assert.ok(s.median > 0 && s.min > 0, `${id}: ${e} has a time`);
      }
      assert.equal(typeof f.ratios.ferry_bare, 'number', `${id}: Ferry/bare ratio`);
    }
    assert.ok(byId.get('export.tiny.export').engines.ferry.sizeBytesMedian > 0, 'archive size recorded');
    const rss = byId.get('cli.ps.rss');
    assert.equal(rss?.unit, 'MiB', 'the peak RSS of ps is a MiB figure');
    for (const e of ['ferry', 'bare']) assert.ok(rss.engines[e]?.median > 1, `${e}: peak RSS of ps recorded (${JSON.stringify(rss.engines[e])})`);
    for (const e of ['ferry', 'bare']) assert.equal(byId.get('cr.tiny.checkpoint').engines[e].criuWriteMs?.length, 1, `${e}: CRIU's page-writing time read from its stats-dump`);
    assert.ok(byId.get('cr.tiny.checkpoint').target?.text, 'targets reported');
    assert.deepEqual(benchMounts().filter((m) => !mountsBefore.has(m)), [], 'no mount left behind');
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
