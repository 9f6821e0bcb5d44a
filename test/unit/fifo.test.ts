import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FifoReader, makeFifo, mkfifoInProcess } from '../../src/lib/fifo.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-fifo-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A FIFO's read end (non-blocking) and a writer's end, as runc.ts opens them. */
function fifo(name: string, writeOnly = false): { rd: number; wr: number } {
  const f = path.join(dir, name);
  assert.equal(spawnSync('mkfifo', ['-m', '600', f]).status, 0);
  const rd = fs.openSync(f, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wr = fs.openSync(f, writeOnly ? fs.constants.O_WRONLY : fs.constants.O_RDWR);
  fs.rmSync(f);
  return { rd, wr };
}

test('reads what a child writes later, up to what is enough', async () => {
  const { rd, wr } = fifo('a');
  const child = spawn('sh', ['-c', 'sleep 0.2; printf \'{"data": 42}\\nmore\' >&3; sleep 0.3'], { stdio: ['ignore', 'ignore', 'ignore', wr] });
  fs.closeSync(wr);
  const r = await new FifoReader(rd, (d) => d.includes(10)).result;
  assert.equal(r.eof, false);
  assert.match(r.data.toString(), /^\{"data": 42\}\n/);
  await new Promise((res) => child.on('close', res));
});

test('reports EOF when every writer closes without enough', async () => {
  const { rd, wr } = fifo('b');
  spawn('sh', ['-c', 'printf partial >&3; sleep 0.1'], { stdio: ['ignore', 'ignore', 'ignore', wr] });
  fs.closeSync(wr);
  const r = await new FifoReader(rd, (d) => d.includes(10)).result;
  assert.equal(r.eof, true);
  assert.equal(r.data.toString(), 'partial');
});

test('keepOpen leaves the read end open until cancel, so a later write does not fail', async () => {
  const { rd, wr } = fifo('c', true);
  const reader = new FifoReader(rd, undefined, { keepOpen: true });
  fs.writeSync(wr, 'x');
  const r = await reader.result;
  assert.equal(r.data.toString(), 'x');
  fs.writeSync(wr, 'y'); // a FIFO without readers would raise EPIPE here
  reader.cancel();
  reader.cancel();
  assert.throws(() => fs.writeSync(wr, 'z'), { code: 'EPIPE' });
  fs.closeSync(wr);
});

test('readNow: what a writer left before the next poll, with what was read before', async () => {
  const { rd, wr } = fifo('d', true);
  const reader = new FifoReader(rd, (d) => d.includes(10)); // its first poll finds nothing
  fs.writeSync(wr, 'ok\n');
  fs.closeSync(wr); // the writer is gone before the reader's next poll (an attach helper that exited)
  assert.equal(reader.readNow().toString(), 'ok\n');
  assert.equal(reader.readNow().toString(), 'ok\n', 'nothing more, nothing lost');
  reader.cancel();
  assert.equal(reader.readNow().toString(), 'ok\n', 'after cancel: what was read');
});

test('makeFifo: a FIFO of mode 0600 made in this process; a path in the way is a clear error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-mkfifo-'));
  try {
    const f = path.join(dir, 'sync.fifo');
    assert.ok(mkfifoInProcess(), 'Bun calls libc: no mkfifo process per container start');
    makeFifo(f);
    const st = fs.statSync(f);
    assert.ok(st.isFIFO());
    assert.equal(st.mode & 0o777, 0o600);
    assert.throws(() => makeFifo(f), /mkfifo .*sync\.fifo failed: .*File exists/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
