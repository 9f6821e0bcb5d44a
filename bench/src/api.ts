// The API's figures (issue 17): `docker ps` against Ferry's `ferry system service` and against
// Podman's `podman system service` (each on a socket in the temporary dir, each engine's own
// private root, one running container on each), and checkpoint/restore in place through the
// libpod endpoints against the same through Ferry's CLI, interleaved on one container.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Aborted, checkAbort } from './abort.js';
import type { Cleanup } from './cleanup.js';
import { rmQuiet, uniq } from './engines/engine.js';
import type { FerryEngine } from './engines/ferry.js';
import type { PodmanEngine } from './engines/podman.js';
import { settle, type FigureKey, type Results } from './figures.js';
import type { Options } from './options.js';
import { errorMessage, exec, log, sleep } from './proc.js';
import { TINY, markOf, verifyRestored, waitStarted } from './workloads.js';

export const API = {
  ps: ['api.docker.ps', 'docker ps via the API (1 running)'],
  cliCheckpoint: ['api.cli.checkpoint', 'checkpoint tiny, CLI (same run)'],
  cliRestore: ['api.cli.restore', 'restore tiny, CLI (same run)'],
  checkpoint: ['api.checkpoint', 'checkpoint tiny via the libpod API'],
  restore: ['api.restore', 'restore tiny via the libpod API'],
} as const satisfies Record<string, FigureKey>;

/** The docker CLI the figures use: the one on PATH (it negotiates down to v1.41 with Ferry, v1.40 with Podman 4.3). */
export const DOCKER_CLI = ['/usr/local/bin/docker', '/usr/bin/docker'].find((f) => fs.existsSync(f));

/**
 * docker ps samples per service (at least). The services answer its two requests on a new
 * connection in ~1-2 ms (Ferry's 1.1 ms, Podman's 1.7) of a ~14 ms run that is mostly the
 * docker CLI's own start-up, which spreads 9-19 ms from run to run: five pairs made the verdict
 * a coin toss (0.92x-1.18x in three runs of unchanged code; 0.94x over 60 pairs timed from
 * outside). 31 pairs take about 11 s with the pauses.
 */
const DOCKER_PS_SAMPLES = 31;

/** A service process on a socket: started, waited for, stopped (and killed by the cleanup if the bench dies). */
class ServiceChild {
  private child: ChildProcess | undefined;
  private log = '';
  constructor(
    readonly name: string,
    readonly sock: string,
  ) {}

  async start(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
    fs.rmSync(this.sock, { force: true });
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
    this.child.stderr!.on('data', (b: Buffer) => (this.log += b.toString()));
    const end = performance.now() + 30_000;
    while (!(await ping(this.sock))) {
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited ${this.child.exitCode}: ${this.log.trim().split('\n').slice(-3).join(' | ')}`);
      if (performance.now() > end) throw new Error(`${this.name} did not answer on ${this.sock} within 30 s`);
      await sleep(100);
    }
  }

  /** Synchronous (the cleanup's last resort too): SIGTERM, SIGKILL after 5 s. */
  cleanup(): void {
    const c = this.child;
    if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
    try {
      process.kill(c.pid, 'SIGTERM');
    } catch {
      return;
    }
    const wait = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 50; i++) {
      try {
        process.kill(c.pid, 0);
      } catch {
        return;
      }
      Atomics.wait(wait, 0, 0, 100);
    }
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

function ping(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: sock, path: '/_ping', method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** One request over the socket, timed from the first byte sent to the last received. */
function timedRequest(sock: string, method: string, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({ socketPath: sock, method, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        const ms = performance.now() - t0;
        if ((res.statusCode ?? 0) >= 300) reject(new Error(`${method} ${p}: ${res.statusCode} ${body.trim().slice(0, 300)}`));
        else resolve(ms);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** `docker ps` against a socket, timed (the docker CLI's own start-up included, as for the CLIs' ps). */
async function dockerPs(sock: string, configDir: string): Promise<number> {
  const r = await exec([DOCKER_CLI!, 'ps'], { env: { ...process.env, DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: configDir } });
  if (r.code !== 0) throw new Error(`docker ps against ${sock} failed: ${r.stderr.trim().split('\n').pop()}`);
  if (!/CONTAINER ID/.test(r.stdout) || r.stdout.trim().split('\n').length !== 2) throw new Error(`docker ps against ${sock} did not list the one running container: ${JSON.stringify(r.stdout)}`);
  return r.ms;
}

export async function benchApi(R: Results, o: Options, tmp: string, ferry: FerryEngine, podman: PodmanEngine | undefined, cleanup: Cleanup): Promise<void> {
  if (!DOCKER_CLI) {
    R.fail([API.ps], 'ferry', 'no docker CLI on this machine');
    log('  api: no docker CLI on this machine: the docker ps figure is left out');
  }
  const dir = path.join(tmp, 'api');
  fs.mkdirSync(path.join(dir, 'docker-config'), { recursive: true });
  const fsvc = new ServiceChild('ferry system service', path.join(dir, 'ferry.sock'));
  const psvc = new ServiceChild('podman system service', path.join(dir, 'podman.sock'));
  cleanup.track('api-ferry', { name: 'api-ferry', cleanup: () => fsvc.cleanup() });
  cleanup.track('api-podman', { name: 'api-podman', cleanup: () => psvc.cleanup() });
  const fname = uniq('api');
  const pname = uniq('api');
  let prun = false;
  let frun = false;
  try {
    await fsvc.start([...ferry.argv0, 'system', 'service', '--listen', `unix://${fsvc.sock}`], ferry.env);
    await ferry.run(fname, TINY);
    frun = true;
    await waitStarted(ferry, fname, TINY);

    // docker ps: Ferry's service against Podman's, alternately, one running container each.
    if (DOCKER_CLI) {
      try {
        if (podman) {
          await psvc.start([...podman.argv0, 'system', 'service', '--time', '0', `unix://${psvc.sock}`], podman.env);
          await podman.run(pname, TINY);
          prun = true;
          await waitStarted(podman, pname, TINY);
        }
        const cfg = path.join(dir, 'docker-config');
        await dockerPs(fsvc.sock, cfg); // untimed: first requests pay for cold caches
        if (podman) await dockerPs(psvc.sock, cfg);
        for (let i = 0; i < Math.max(o.iterations, DOCKER_PS_SAMPLES); i++) {
          checkAbort();
          await settle(0);
          // Each service goes first in turn: the first command after the pause runs slower
          // (a cold CPU), and when Ferry's always went first it lost 1.16x over 15 pairs.
          const ferryPs = async (): Promise<void> => R.add(API.ps, 'ferry', await dockerPs(fsvc.sock, cfg));
          const podmanPs = async (): Promise<void> => {
            if (podman) R.add(API.ps, 'podman', await dockerPs(psvc.sock, cfg));
          };
          for (const sample of i % 2 ? [podmanPs, ferryPs] : [ferryPs, podmanPs]) await sample();
        }
      } catch (err) {
        if (err instanceof Aborted) throw err;
        R.fail([API.ps], 'ferry', errorMessage(err));
        log(`  api: docker ps: ${errorMessage(err)}`);
      }
    }

    // Checkpoint and restore of one container, the CLI's and the API's turn by turn.
    const keys = [API.cliCheckpoint, API.cliRestore, API.checkpoint, API.restore];
    try {
      const lib = `/v4.3.1/libpod/containers/${fname}`;
      const cycle = async (cp: () => Promise<number>, rs: () => Promise<number>): Promise<[number, number]> => {
        await settle(0);
        const a = await cp();
        const mark = await markOf(ferry, fname, TINY);
        const b = await rs();
        await verifyRestored(ferry, fname, TINY, mark);
        return [a, b];
      };
      const viaCli = (): Promise<[number, number]> => cycle(() => ferry.checkpoint(fname), () => ferry.restore(fname));
      const viaApi = (): Promise<[number, number]> => cycle(() => timedRequest(fsvc.sock, 'POST', `${lib}/checkpoint`), () => timedRequest(fsvc.sock, 'POST', `${lib}/restore`));
      await viaCli(); // untimed: the first checkpoint probes CRIU's features
      await viaApi();
      for (let i = 0; i < o.iterations; i++) {
        checkAbort();
        const [c1, r1] = await viaCli();
        R.add(API.cliCheckpoint, 'ferry', c1);
        R.add(API.cliRestore, 'ferry', r1);
        const [c2, r2] = await viaApi();
        R.add(API.checkpoint, 'ferry', c2);
        R.add(API.restore, 'ferry', r2);
      }
    } catch (err) {
      if (err instanceof Aborted) throw err;
      R.fail(keys, 'ferry', errorMessage(err));
      log(`  api: checkpoint/restore: ${errorMessage(err)}`);
    }
  } finally {
    if (frun) await rmQuiet(ferry, fname);
    if (prun && podman) await rmQuiet(podman, pname);
    fsvc.cleanup();
    psvc.cleanup();
  }
}
