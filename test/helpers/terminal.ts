/**
 * A real terminal for tests: a tmux server on a private socket, one session running a command
 * in a pane of a given size. The screen is read with capture-pane and keys are typed with
 * send-keys; the pane stays after its command exits so that its exit status can be read.
 * kill() stops the server and removes its files; call it in cleanup, even after a failure.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FERRY_BIN, sleep, type Host } from './ferry.js';

let serial = 0;

export class Terminal {
  private readonly socket: string;
  private readonly conf: string;
  private started = false;

  constructor(name = 'term') {
    this.socket = `fy-${name}-${process.pid}-${serial++}`;
    this.conf = path.join(os.tmpdir(), `${this.socket}.conf`);
    fs.writeFileSync(this.conf, 'set -g status off\nset -g history-limit 2000\n');
  }

  private tmux(args: string[]): string {
    const r = spawnSync('tmux', ['-L', this.socket, '-f', this.conf, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')} failed: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /**
   * Starts argv in a new pane of width x height. A fixed shell script runs it (argv passed as
   * its arguments) and then prints its exit status: tmux itself sometimes misses the exit of a
   * pane's command (it stays a zombie), so the status is read from the screen.
   */
  start(argv: string[], o: { width?: number; height?: number } = {}): this {
    if (this.started) throw new Error('terminal already started');
    const script = '"$@"; printf "\\n[exited %d]\\n" "$?"; exec sleep 3600';
    this.tmux(['new-session', '-d', '-s', 't', '-x', String(o.width ?? 100), '-y', String(o.height ?? 30), '--', 'sh', '-c', script, 'sh', ...argv]);
    this.started = true;
    return this;
  }

  /** Starts `ferry --root R --runroot RR ...args` of host h (under the suite's runtime). */
  ferry(h: Host, args: string[], o: { width?: number; height?: number } = {}): this {
    return this.start([FERRY_BIN, ...h.args(), ...args], o);
  }

  /** What the pane shows now (trailing blank lines dropped). */
  screen(): string {
    return this.tmux(['capture-pane', '-p', '-t', 't']).replace(/\s+$/, '');
  }

  /** Polls the screen until it matches; fails with the screen after timeoutMs. */
  async waitFor(want: RegExp | string, timeoutMs = 10_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      if (typeof want === 'string' ? s.includes(want) : want.test(s)) return s;
      if (Date.now() > end) throw new Error(`terminal did not show ${String(want)} within ${timeoutMs} ms; screen:\n${s}`);
      await sleep(50);
    }
  }

  /** Types text literally, then Enter. */
  line(text: string): void {
    this.tmux(['send-keys', '-t', 't', '-l', text]);
    this.tmux(['send-keys', '-t', 't', 'Enter']);
  }

  /** Sends tmux key names, e.g. keys('C-p', 'C-q'). */
  keys(...names: string[]): void {
    this.tmux(['send-keys', '-t', 't', ...names]);
  }

  resize(width: number, height: number): void {
    this.tmux(['resize-window', '-t', 't', '-x', String(width), '-y', String(height)]);
  }

  /**
   * Resizes the window and waits until a shell in it says so: tmux applies a resize to the
   * pane's terminal a moment later, so `stty size` is typed again until it shows the new size.
   */
  async resizeShell(width: number, height: number, timeoutMs = 10_000): Promise<void> {
    this.resize(width, height);
    const end = Date.now() + timeoutMs;
    const want = new RegExp(`^${height} ${width}$`, 'm');
    for (;;) {
      this.line('stty size');
      try {
        await this.waitFor(want, 500);
        return;
      } catch (e) {
        if (Date.now() > end) throw e;
      }
    }
  }

  /** The exit status of the command once it has exited; fails after timeoutMs. */
  async exitStatus(timeoutMs = 10_000): Promise<number> {
    const s = await this.waitFor(/^\[exited \d+\]$/m, timeoutMs);
    return Number(/^\[exited (\d+)\]$/m.exec(s)![1]);
  }

  /** Stops the tmux server (and the command in it) and removes its files. Idempotent. */
  kill(): void {
    spawnSync('tmux', ['-L', this.socket, 'kill-server'], { stdio: 'ignore' });
    fs.rmSync(this.conf, { force: true });
    fs.rmSync(path.join(process.env.TMUX_TMPDIR || '/tmp', `tmux-${process.getuid?.() ?? 0}`, this.socket), { force: true });
  }
}
