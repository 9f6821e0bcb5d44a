/**
 * `--user` / an image's User resolved as runc and Podman do, from the container's own
 * /etc/passwd and /etc/group: NAME|UID[:GROUP|GID]; a numeric UID needs no entry (GID 0 then);
 * supplementary groups are those of /etc/group that list the user.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError } from '../../lib/errors.js';

export interface ExecUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

const MAX_FILE = 4 << 20;

/** Reads ROOTFS/etc/NAME without following a link out of the rootfs (the file is the image's). */
function readEtc(rootfs: string, name: string): string | undefined {
  const p = path.join(rootfs, 'etc', name);
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch {
    return undefined;
  }
  const root = fs.realpathSync(rootfs);
  if (real !== root && !real.startsWith(`${root}/`)) return undefined; // a link out: as if absent
  try {
    const st = fs.statSync(real);
    if (!st.isFile() || st.size > MAX_FILE) return undefined;
    return fs.readFileSync(real, 'utf8');
  } catch {
    return undefined;
  }
}

const isId = (s: string): boolean => /^[0-9]+$/.test(s) && Number(s) < 2 ** 32;

export function resolveUser(rootfs: string, spec: string): ExecUser {
  const [u = '', g] = spec.split(':', 2) as [string, string | undefined];
  const passwd = (readEtc(rootfs, 'passwd') ?? '').split('\n').map((l) => l.split(':')).filter((f) => f.length >= 7 && f[0]);
  const groups = (readEtc(rootfs, 'group') ?? '').split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4 && f[0]);
  const user = u === '' ? '0' : u;
  const entry = isId(user) ? passwd.find((f) => f[2] === user) : passwd.find((f) => f[0] === user);
  if (!entry && !isId(user)) throw new FerryError('EINVAL', `unable to find user ${user}: no matching entries in the container's /etc/passwd; give a user that exists or a numeric UID`);
  const uid = entry ? Number(entry[2]) : Number(user);
  let gid = entry && isId(entry[3]!) ? Number(entry[3]) : 0;
  if (g !== undefined && g !== '') {
    if (isId(g)) gid = Number(g);
    else {
      const ge = groups.find((f) => f[0] === g);
      if (!ge || !isId(ge[2]!)) throw new FerryError('EINVAL', `unable to find group ${g}: no matching entries in the container's /etc/group; give a group that exists or a numeric GID`);
      gid = Number(ge[2]);
    }
  }
  const name = entry?.[0];
  const additionalGids = name
    ? groups.filter((f) => f[3]!.split(',').includes(name) && isId(f[2]!)).map((f) => Number(f[2])).filter((x) => x !== gid)
    : [];
  return { uid, gid, additionalGids: [...new Set(additionalGids)], home: entry?.[5] || '/' };
}
