import * as fs from 'node:fs';

/** One entry of conmon's k8s-file log: `TIME STREAM F|P CONTENT`. */
export interface LogEntry {
  time: string;
  stream: 'stdout' | 'stderr';
  partial: boolean;
  content: string;
}

export function parseLogLine(line: string): LogEntry | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  const c = line.indexOf(' ', b + 1);
  if (a < 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  return { time: line.slice(0, a), stream, partial: tag === 'P', content: c < 0 ? '' : line.slice(c + 1) };
}

/**
 * Reads complete log lines from byte offset `from`; returns them and the offset after the last
 * complete line (a line still being written stays for the next read).
 */
export function readLogFrom(file: string, from: number): { entries: LogEntry[]; next: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return { entries: [], next: from };
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size <= from) return { entries: [], next: size < from ? 0 : from };
    const buf = Buffer.alloc(size - from);
    fs.readSync(fd, buf, 0, buf.length, from);
    const lastNl = buf.lastIndexOf(10);
    if (lastNl < 0) return { entries: [], next: from };
    const text = buf.subarray(0, lastNl).toString('utf8');
    const entries = text.split('\n').map(parseLogLine).filter((e): e is LogEntry => !!e);
    return { entries, next: from + lastNl + 1 };
  } finally {
    fs.closeSync(fd);
  }
}
