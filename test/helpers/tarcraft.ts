/**
 * Crafting tar archives for the refusal tests: read an archive's members (headers and bytes),
 * change them, and pack them again exactly as given (names, types and links however hostile).
 */
import * as fs from 'node:fs';
import tar from 'tar-stream';

/** A tar member's header as tar-stream reads and writes it. */
export type Hdr = Partial<tar.Header> & { name: string; pax?: Record<string, string> | null };
export interface Entry {
  header: Hdr;
  data: Buffer;
}

/** Every member of a tar file (uncompressed), in order. */
export async function readEntries(file: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const ex = tar.extract();
  const done = (async () => {
    for await (const e of ex) {
      const parts: Buffer[] = [];
      for await (const b of e) parts.push(b as Buffer);
      out.push({ header: { ...(e.header as Hdr) }, data: Buffer.concat(parts) });
    }
  })();
  fs.createReadStream(file).pipe(ex as unknown as NodeJS.WritableStream);
  await done;
  return out;
}

/** A tar of exactly these members, in this order; a file's size is its data's. */
export async function pack(entries: Entry[]): Promise<Buffer> {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  p.on('data', (b: unknown) => chunks.push(b as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    p.on('end', () => resolve());
    p.on('error', reject);
  });
  for (const e of entries) {
    const isFile = (e.header.type ?? 'file') === 'file';
    await new Promise<void>((resolve, reject) => {
      const h = { ...e.header, size: isFile ? e.data.length : 0 };
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (isFile) p.entry(h, e.data, cb);
      else p.entry(h, cb);
    });
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}
