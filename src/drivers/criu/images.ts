/**
 * The few facts Ferry reads from CRIU's images themselves: what a checkpoint from another engine
 * does not say in its metadata. Undecodable images: nothing known (undefined), never an error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readImage } from './image.js';

const MACHINES: Record<number, string> = { 1: 'x64', 2: 'arm', 3: 'arm64', 4: 'ppc64', 5: 's390x', 6: 'mips', 7: 'loong64', 8: 'riscv64' };

/** The CPU architecture the images were dumped on (CoreEntry's mtype), in Node's names. */
export function dumpedArch(imageDir: string): string | undefined {
  const core = fs.readdirSync(imageDir).find((f) => /^core-[0-9]+\.img$/.test(f));
  if (!core) return undefined;
  try {
    const mtype = readImage(path.join(imageDir, core), 'CoreEntry')[0]?.mtype;
    return mtype === undefined ? undefined : (MACHINES[mtype] ?? `CRIU machine type ${mtype}`);
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
    for (const e of readImage(file, 'FileEntry')) {
      const mode = e.reg?.mode;
      if (e.type === 1 && e.reg && ['.', '/'].includes(e.reg.name) && mode !== undefined && (mode & 0o170000) === 0o040000) return mode & 0o7777;
    }
  } catch {
    /* not decodable: nothing known */
  }
  return undefined;
}
