// Ctrl-C: the first signal only sets a flag; each step checks it between commands, so the bench
// finishes the step it is in and then removes everything it made.

let aborted = false;

export class Aborted extends Error {}

export function abort(): void {
  aborted = true;
}

export function isAborted(): boolean {
  return aborted;
}

export function checkAbort(): void {
  if (aborted) throw new Aborted('interrupted');
}
