/**
 * A tar member's header block(s), POSIX ustar plus a pax extended header where ustar has no room
 * (a long name or link target, a size of 8 GiB or more, xattrs as SCHILY.xattr.*; IDs beyond
 * octal's reach in base-256, as GNU tar writes them): what
 * the archive writer puts before a member whose bytes it hands to the kernel itself (sendfile),
 * so that they never pass through JavaScript. Read back by tar-stream and GNU tar alike.
 */
import type { Header } from './archive.js';

const BLOCK = 512;
const TYPEFLAG: Record<string, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
  'contiguous-file': '7',
};

/** Zero bytes that pad a member's bytes to a whole block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The two zero blocks that end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

/** An octal field of width bytes (digits, then NUL), or undefined when the value does not fit. */
function octal(n: number, width: number): string | undefined {
  const s = Math.max(0, Math.floor(n)).toString(8);
  return s.length <= width - 1 ? s.padStart(width - 1, '0') : undefined;
}

/** Splits a long name into ustar's prefix and name fields, if it can be. */
function splitName(name: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name };
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest) return { prefix, name: rest };
  }
  return undefined;
}

/** One pax record: "<length> <key>=<value>\n", its length counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body);
  let total = len + String(len).length;
  if (String(total).length !== String(len).length) total = len + String(total).length;
  return `${total}${body}`;
}

/** A numeric field: octal when it fits, else base-256 (GNU's: 0x80, then big-endian bytes). */
function numeric(b: Buffer, n: number, off: number, width: number): void {
  const o = octal(n, width);
  if (o !== undefined) {
    b.write(o, off, 'ascii');
    return;
  }
  b[off] = 0x80;
  for (let i = width - 1; i > 0; i--, n = Math.floor(n / 256)) b[off + i] = n % 256;
}

function ustarBlock(f: { name: string; prefix: string; mode: number; uid: number; gid: number; size: number; mtime: number; type: string; linkname: string; devmajor: number; devminor: number }): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, 100, 'utf8');
  b.write(octal(f.mode & 0o7777, 8)!, 100, 'ascii');
  numeric(b, f.uid, 108, 8);
  numeric(b, f.gid, 116, 8);
  b.write(octal(f.size, 12) ?? '00000000000', 124, 'ascii');
  b.write(octal(f.mtime, 12) ?? '00000000000', 136, 'ascii');
  b.write(f.type, 156, 1, 'ascii');
  b.write(f.linkname, 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'ascii');
  b.write(octal(f.devmajor, 8) ?? '0000000', 329, 'ascii');
  b.write(octal(f.devminor, 8) ?? '0000000', 337, 'ascii');
  b.write(f.prefix, 345, 155, 'utf8');
  // The checksum: the sum of the block's bytes with its own field as eight spaces.
  b.fill(' ', 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${octal(sum, 7)}\u0000 `, 148, 8, 'ascii');
  return b;
}

/** The header block(s) of h: a pax header first when ustar cannot hold it all. */
export function tarHeader(h: Header): Buffer {
  const type = TYPEFLAG[h.type ?? 'file'];
  if (!type) throw new Error(`cannot write a tar member of type ${String(h.type)}`);
  const size = type === '0' || type === '7' ? (h.size ?? 0) : 0;
  const mtime = Math.floor((h.mtime ?? new Date()).getTime() / 1000);
  const uid = h.uid ?? 0;
  const gid = h.gid ?? 0;
  const linkname = h.linkname ?? '';
  const pax: string[] = [];
  const split = splitName(h.name);
  if (!split) pax.push(paxRecord('path', h.name));
  if (Buffer.byteLength(linkname) > 100) pax.push(paxRecord('linkpath', linkname));
  if (octal(size, 12) === undefined) pax.push(paxRecord('size', String(size)));
  for (const [k, v] of Object.entries(h.pax ?? {})) if (k.startsWith('SCHILY.xattr.')) pax.push(paxRecord(k, String(v)));
  const name = split ?? { prefix: '', name: h.name.slice(0, 100) };
  const main = ustarBlock({ ...name, mode: h.mode ?? 0, uid, gid, size, mtime, type, linkname: linkname.slice(0, 100), devmajor: h.devmajor ?? 0, devminor: h.devminor ?? 0 });
  if (!pax.length) return main;
  const records = Buffer.from(pax.join(''), 'utf8');
  const paxName = `PaxHeader/${name.name}`.slice(0, 100);
  const paxHead = ustarBlock({ name: paxName, prefix: '', mode: 0o644, uid: 0, gid: 0, size: records.length, mtime, type: 'x', linkname: '', devmajor: 0, devminor: 0 });
  return Buffer.concat([paxHead, records, tarPadding(records.length), main]);
}
