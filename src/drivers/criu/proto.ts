/**
 * CRIU's image files, read without CRIU: each is magic words, then protobuf entries, each
 * preceded by its size (a 32-bit little-endian word). The first word is IMG_COMMON or
 * IMG_SERVICE followed by the image's own magic (older images: the image's magic alone). Raw
 * images (pages-N.img) have no framing at all.
 *
 * The messages are proto2 (criu/images/*.proto); Message gives every occurrence of each field,
 * so repeated fields (packed or not) and sub-messages read naturally. Field numbers are named
 * where they are used.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;

/** A CRIU image that cannot be decoded: names the file, and stops the inspection. */
export class ImageError extends FerryError {
  constructor(file: string, why: string) {
    super('EARCHIVE', `corrupt CRIU image ${path.basename(file)}: ${why}; the checkpoint cannot be inspected (or restored) as it is`);
  }
}

type Value = number | Buffer;

/**
 * A varint. Up to 2^53 exactly; longer ones (ten bytes: a negative int32/int64) through BigInt,
 * values from 2^63 up read as the negative int64 they stand for.
 */
function varint(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let mul = 1;
  const start = pos;
  for (let i = 0; ; i++) {
    if (pos >= buf.length) throw new Error('truncated varint');
    if (i >= 10) throw new Error('varint too long');
    const b = buf[pos++]!;
    result += (b & 0x7f) * mul;
    if (!(b & 0x80)) {
      if (i < 7) return [result, pos];
      let big = 0n;
      for (let j = pos - 1; j >= start; j--) big = (big << 7n) | BigInt(buf[j]! & 0x7f);
      return [Number(BigInt.asIntN(64, big)), pos];
    }
    mul *= 128;
  }
}

/** One decoded protobuf message: field number -> every value it had, in order. */
export class Message {
  private readonly fields = new Map<number, Value[]>();

  constructor(buf: Buffer) {
    let pos = 0;
    while (pos < buf.length) {
      let key: number;
      [key, pos] = varint(buf, pos);
      const field = Math.floor(key / 8);
      const wire = key & 7;
      if (field === 0) throw new Error('field number 0');
      let v: Value;
      if (wire === 0) {
        [v, pos] = varint(buf, pos);
      } else if (wire === 2) {
        let len: number;
        [len, pos] = varint(buf, pos);
        if (pos + len > buf.length) throw new Error('truncated field');
        v = buf.subarray(pos, pos + len);
        pos += len;
      } else if (wire === 5) {
        if (pos + 4 > buf.length) throw new Error('truncated field');
        v = buf.readUInt32LE(pos);
        pos += 4;
      } else if (wire === 1) {
        if (pos + 8 > buf.length) throw new Error('truncated field');
        v = Number(buf.readBigUInt64LE(pos));
        pos += 8;
      } else {
        throw new Error(`unsupported wire type ${wire}`);
      }
      const list = this.fields.get(field);
      if (list) list.push(v);
      else this.fields.set(field, [v]);
    }
  }

  has(f: number): boolean {
    return this.fields.has(f);
  }

  /** Every field's last value (protobuf's rule for a field that is not repeated). */
  last(): Map<number, Value> {
    return new Map([...this.fields].map(([f, vs]) => [f, vs.at(-1)!]));
  }

  /** An integer field (the last occurrence wins, as in protobuf); def when absent. */
  num(f: number, def = 0): number {
    const v = this.fields.get(f)?.at(-1);
    return typeof v === 'number' ? v : def;
  }

  str(f: number): string | undefined {
    const v = this.fields.get(f)?.at(-1);
    return Buffer.isBuffer(v) ? v.toString('utf8') : undefined;
  }

  bytes(f: number): Buffer | undefined {
    const v = this.fields.get(f)?.at(-1);
    return Buffer.isBuffer(v) ? v : undefined;
  }

  msg(f: number): Message | undefined {
    const v = this.bytes(f);
    return v ? new Message(v) : undefined;
  }

  msgs(f: number): Message[] {
    return (this.fields.get(f) ?? []).filter(Buffer.isBuffer).map((b) => new Message(b));
  }

  /** A repeated integer field, packed or not. */
  nums(f: number): number[] {
    const out: number[] = [];
    for (const v of this.fields.get(f) ?? []) {
      if (typeof v === 'number') out.push(v);
      else for (let pos = 0; pos < v.length; ) {
        let n: number;
        [n, pos] = varint(v, pos);
        out.push(n);
      }
    }
    return out;
  }
}

/**
 * The entries of an image file as messages. A file that is not an image, an entry cut short
 * or an entry that does not decode: an ImageError naming the file.
 */
export function readImage(file: string): Message[] {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new ImageError(file, `it cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return decodeImage(buf, file);
}

export function decodeImage(buf: Buffer, file: string): Message[] {
  if (buf.length < 4) throw new ImageError(file, 'it is too short to be an image');
  const m0 = buf.readUInt32LE(0);
  let pos = 4;
  if (m0 === IMG_COMMON_MAGIC || m0 === IMG_SERVICE_MAGIC) {
    if (buf.length < 8) throw new ImageError(file, 'it is cut short after its magic');
    pos = 8;
  } else if (path.basename(file) !== 'inventory.img') {
    throw new ImageError(file, `it does not start with CRIU's magic (0x${m0.toString(16)})`);
  }
  const out: Message[] = [];
  while (pos < buf.length) {
    if (pos + 4 > buf.length) throw new ImageError(file, `entry ${out.length + 1} is cut short (truncated?)`);
    const len = buf.readUInt32LE(pos);
    if (pos + 4 + len > buf.length) throw new ImageError(file, `entry ${out.length + 1} is cut short (truncated?)`);
    try {
      out.push(new Message(buf.subarray(pos + 4, pos + 4 + len)));
    } catch (e) {
      throw new ImageError(file, `entry ${out.length + 1} does not decode (${(e as Error).message})`);
    }
    pos += 4 + len;
  }
  return out;
}
