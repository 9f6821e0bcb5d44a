// The migration channel's frames survive any split of the byte stream: messages arrive whole
// and in order, archive data byte for byte, whatever sizes the transport reads in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, type Readable } from 'node:stream';
import { FrameReader, FrameWriter } from '../../src/drivers/transport/channel.js';

/** The frames' own minimum, for these tests: a JSON object with a type (the protocol's parsers check the rest). */
type Loose = { type: string; n?: number };
const loose = (json: unknown): Loose => {
  if (typeof json !== 'object' || json === null || typeof (json as Loose).type !== 'string') throw new Error('not a message');
  return json as Loose;
};

async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of s) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

/** Everything a FrameWriter writes for: hello, a data stream of `data`, done. */
async function encoded(data: Buffer, chunk: number): Promise<Buffer> {
  const out = new PassThrough();
  const bytes = readAll(out);
  const w = new FrameWriter<Loose>(out);
  await w.send({ type: 'hello', n: 1 });
  await w.send({ type: 'archive' });
  const d = w.dataStream();
  for (let i = 0; i < data.length; i += chunk) await new Promise<void>((r, j) => d.write(data.subarray(i, i + chunk), (e) => (e ? j(e) : r())));
  await new Promise<void>((r) => d.end(r));
  await w.send({ type: 'bye' });
  out.end();
  return bytes;
}

test('FrameReader: messages and data come through whatever the read sizes', async () => {
  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
  for (const chunk of [1000, 65_536, 1 << 20]) {
    const wire = await encoded(data, chunk);
    for (const read of [1, 3, 5, 6, 4096, 65_536, 70_001, wire.length]) {
      if (read === 1 && chunk !== 65_536) continue; // byte by byte once is enough
      const input = new PassThrough();
      const r = new FrameReader(input, loose);
      for (let i = 0; i < wire.length; i += read) input.write(wire.subarray(i, i + read));
      input.end();
      assert.deepEqual(await r.next(), { type: 'hello', n: 1 });
      assert.equal((await r.next())?.type, 'archive');
      const got = await readAll(r.archive());
      assert.ok(got.equals(data), `data intact (writes of ${chunk}, reads of ${read})`);
      assert.equal((await r.next())?.type, 'bye');
      assert.equal(await r.next(), undefined, 'then the end');
    }
  }
});

test('FrameReader: a source gone mid-archive fails the archive stream', async () => {
  const wire = await encoded(Buffer.alloc(100_000, 1), 65_536);
  const input = new PassThrough();
  const r = new FrameReader(input, loose);
  input.write(wire.subarray(0, 60_000));
  input.end();
  await r.next();
  await r.next();
  await assert.rejects(readAll(r.archive()), /closed the connection in the middle of the archive/);
});
