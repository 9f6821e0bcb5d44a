import * as fs from 'node:fs';
import type { ChildProcess } from 'node:child_process';

/** The start time of a process (clock ticks since boot), to tell a PID apart from a reused one. */
export function procStartTime(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[19]); // field 22 overall
  } catch {
    return undefined;
  }
}

/** True if the process exists, is not a zombie, and (when given) started at startTime. */
export function processAlive(pid: number | undefined, startTime?: number): boolean {
  if (!pid || pid <= 0) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return false;
    return startTime === undefined || Number(rest[19]) === startTime;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls cond every intervalMs until it is true or timeoutMs passes; returns the last result.
 * With firstIntervalMs, the first polls come sooner, the interval doubling up to intervalMs: for
 * what is usually there at once or within a few milliseconds.
 */
export async function waitFor(cond: () => boolean, timeoutMs: number, intervalMs = 20, firstIntervalMs = intervalMs): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  let interval = Math.min(firstIntervalMs, intervalMs);
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(interval);
    interval = Math.min(interval * 2, intervalMs);
  }
}

/** Resolves when the child has exited, killing it (SIGKILL) if it has not after ms. */
export function waitExit(p: ChildProcess, ms: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      resolve();
    }, ms);
    p.on('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
