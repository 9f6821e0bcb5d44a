import { randomBytes } from './lazy.js';

export function newId(): string {
  return randomBytes(32).toString('hex');
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Podman's rule for container, pod and volume names. */
export function validName(name: string): boolean {
  return name.length <= 253 && NAME_RE.test(name);
}

const ADJ = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'proud', 'quiet', 'rapid', 'sharp', 'tender', 'vivid', 'witty', 'zealous', 'bold'];
const NOUN = ['albatross', 'beaver', 'cormorant', 'dolphin', 'egret', 'falcon', 'gannet', 'heron', 'ibis', 'jackal', 'kestrel', 'lemur', 'marlin', 'narwhal', 'osprey', 'pelican', 'quokka', 'raven', 'seal', 'tern'];

/** A readable random name like Podman's (adjective_noun). */
export function randomName(): string {
  const b = randomBytes(2);
  return `${ADJ[b[0]! % ADJ.length]}_${NOUN[b[1]! % NOUN.length]}`;
}
