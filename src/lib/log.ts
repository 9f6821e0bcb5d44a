/**
 * Debug logging (`--log-level debug`, or FERRY_LOG_LEVEL=debug, as Podman's --log-level): each
 * line says how long after this process started it was written, so a slow step shows up with
 * its cost. Off by default, and then free: nothing is formatted.
 */
import { writeErr } from './stdio.js';

let level: 'error' | 'warn' | 'info' | 'debug' = (process.env.FERRY_LOG_LEVEL as never) ?? 'error';
const LEVELS = ['error', 'warn', 'info', 'debug'] as const;

export function setLogLevel(l: string): void {
  if (!(LEVELS as readonly string[]).includes(l)) throw new Error(`invalid log level "${l}": use ${LEVELS.join(', ')}`);
  level = l as typeof level;
}

export function debugEnabled(): boolean {
  return level === 'debug';
}

/** A debug line: `ferry[PID] +123.4ms what`. */
export function debug(what: string | (() => string)): void {
  if (level !== 'debug') return;
  writeErr(`ferry[${process.pid}] +${performance.now().toFixed(1)}ms ${typeof what === 'string' ? what : what()}\n`);
}
