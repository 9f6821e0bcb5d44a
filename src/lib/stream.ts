import type { Writable } from 'node:stream';

/** Makes out call onBytes with the size of every chunk written to it; returns out. */
export function countingTap(out: Writable, onBytes: (n: number) => void): Writable {
  const origWrite = out.write.bind(out);
  (out as { write: Writable['write'] }).write = ((chunk: Buffer, ...rest: unknown[]) => {
    onBytes(chunk.length);
    return (origWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as Writable['write'];
  return out;
}
