/**
 * The few facts Ferry reads from CRIU's images themselves (protobuf entries after two magic
 * words, each preceded by its size): what a checkpoint from another engine does not say in its
 * metadata.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeMessage } from './stats.js';

/** The entries of an image file (after its magic words); stops quietly at a cut-short entry. */
function entries(file: string): Map<number, number | Buffer>[] {
  const buf = fs.readFileSync(file);
  const out: Map<number, number | Buffer>[] = [];
  for (let pos = 8; pos + 4 <= buf.length; ) {
    const len = buf.readUInt32LE(pos);
    if (pos + 4 + len > buf.length) break;
    out.push(decodeMessage(buf.subarray(pos + 4, pos + 4 + len)));
    pos += 4 + len;
  }
  return out;
}

const MACHINES: Record<number, string> = { 1: 'x64', 2: 'arm', 3: 'arm64', 4: 'ppc64', 5: 's390x', 6: 'mips', 7: 'loong64', 8: 'riscv64' };

/** The CPU architecture the images were dumped on (CoreEntry's mtype), in Node's names. */
export function dumpedArch(imageDir: string): string | undefined {
  const core = fs.readdirSync(imageDir).find((f) => /^core-[0-9]+\.img$/.test(f));
  if (!core) return undefined;
  try {
    const mtype = entries(path.join(imageDir, core))[0]?.get(1);
    return typeof mtype === 'number' ? (MACHINES[mtype] ?? `CRIU machine type ${mtype}`) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The mode CRIU recorded for the root directory of the container's file system (a process's
 * root or working directory "."), which it checks on restore; undefined when not recorded.
 */
export function dumpedRootMode(imageDir: string): number | undefined {
  const file = path.join(imageDir, 'files.img');
  if (!fs.existsSync(file)) return undefined;
  try {
    for (const e of entries(file)) {
      const reg = e.get(3); // FileEntry.reg (type REG)
      if (e.get(1) !== 1 || !Buffer.isBuffer(reg)) continue;
      const r = decodeMessage(reg);
      const name = r.get(6);
      const mode = r.get(10);
      if (Buffer.isBuffer(name) && ['.', '/'].includes(name.toString()) && typeof mode === 'number' && (mode & 0o170000) === 0o040000) return mode & 0o7777;
    }
  } catch {
    /* not decodable: nothing known */
  }
  return undefined;
}
