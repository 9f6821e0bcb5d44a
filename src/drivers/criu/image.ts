/**
 * CRIU's image files: magic words, then protobuf entries, each preceded by its size (a 32-bit
 * little-endian word). The first word is IMG_COMMON or IMG_SERVICE followed by the image's own
 * magic (inventory.img: its own magic alone). Raw images (pages-N.img) have no framing at all.
 * The framing is read here; each entry is decoded by protobufjs from Ferry's message
 * definitions (messages.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';
import { decodeMessage, type MessageName, type Messages } from './messages.js';

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;

/** A CRIU image that cannot be decoded: names the file, and stops the inspection. */
export class ImageError extends FerryError {
  constructor(file: string, why: string) {
    super('EARCHIVE', `corrupt CRIU image ${path.basename(file)}: ${why}; the checkpoint cannot be inspected (or restored) as it is`);
  }
}

/** The raw entries of an image (after its magic words). A file cut short or not an image: an ImageError naming it. */
export function imageEntries(buf: Buffer, file: string): Buffer[] {
  if (buf.length < 4) throw new ImageError(file, 'it is too short to be an image');
  const m0 = buf.readUInt32LE(0);
  let pos = 4;
  if (m0 === IMG_COMMON_MAGIC || m0 === IMG_SERVICE_MAGIC) {
    if (buf.length < 8) throw new ImageError(file, 'it is cut short after its magic');
    pos = 8;
  } else if (path.basename(file) !== 'inventory.img') {
    throw new ImageError(file, `it does not start with CRIU's magic (0x${m0.toString(16)})`);
  }
  const out: Buffer[] = [];
  while (pos < buf.length) {
    if (pos + 4 > buf.length) throw new ImageError(file, `entry ${out.length + 1} is cut short (truncated?)`);
    const len = buf.readUInt32LE(pos);
    if (pos + 4 + len > buf.length) throw new ImageError(file, `entry ${out.length + 1} is cut short (truncated?)`);
    out.push(buf.subarray(pos + 4, pos + 4 + len));
    pos += 4 + len;
  }
  return out;
}

function readBytes(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new ImageError(file, `it cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Entry n (from 0) of file decoded as the named message; failure: an ImageError naming file and entry. */
export function decodeEntry<K extends MessageName>(name: K, entry: Buffer, file: string, n: number): Messages[K] {
  try {
    return decodeMessage(name, entry);
  } catch (e) {
    throw new ImageError(file, `entry ${n + 1} does not decode as ${name} (${(e as Error).message})`);
  }
}

/** Every entry of an image file, each decoded as the named message. */
export function readImage<K extends MessageName>(file: string, name: K): Messages[K][] {
  return imageEntries(readBytes(file), file).map((e, n) => decodeEntry(name, e, file, n));
}

/** An image made of a head and then entries of another message (pagemap-PID.img). */
export function readHeadedImage<H extends MessageName, K extends MessageName>(file: string, headName: H, name: K): { head: Messages[H]; entries: Messages[K][] } {
  const raw = imageEntries(readBytes(file), file);
  if (!raw[0]) throw new ImageError(file, 'it holds no header');
  return { head: decodeEntry(headName, raw[0], file, 0), entries: raw.slice(1).map((e, n) => decodeEntry(name, e, file, n + 1)) };
}
