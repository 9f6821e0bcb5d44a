/**
 * CRIU's page servers, and the tunnel ends that reach them, listen on 127.0.0.1 without any
 * authentication and take the first connection that comes. During a migration Ferry lets only
 * root connect to those ports: checked here in a network namespace of the test's own, with a
 * listener, an unprivileged client (setpriv to nobody) and a root one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { REPO, isRoot } from '../helpers/ferry.js';

const skip = !isRoot() ? 'needs root' : spawnSync('setpriv', ['--version']).status !== 0 ? 'setpriv (util-linux) is missing' : false;

/** Runs the scenario inside the namespace; prints one line per step. */
const SCENARIO = `
import * as net from 'node:net';
import { spawnSync } from 'node:child_process';
const cni = await import(process.argv[1]);
const port = 40000 + Math.floor(Math.random() * 20000);
const server = net.createServer((c) => c.end()).listen(port, '127.0.0.1');
await new Promise((r) => server.once('listening', r));
const connect = (asNobody) => {
  const js = "require('net').connect(" + port + ", '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))";
  const argv = asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', js] : [process.execPath, '-e', js];
  return spawnSync(argv[0], argv.slice(1)).status === 0 ? 'connects' : 'refused';
};
console.log('before', connect(true), connect(false));
const release = await cni.guardLoopbackPort(port, []);
console.log('guarded', connect(true), connect(false));
await release();
console.log('released', connect(true), connect(false));
// A guard whose ferry is gone is swept by the next migration.
await cni.guardLoopbackPort(port, []);
await cni.sweepLoopbackGuards((pid) => pid !== process.pid);
console.log('swept', connect(true), connect(false));
server.close();
`;

test('a guarded loopback port takes connections from root only, until released or swept', { skip }, () => {
  const ns = `fyguard-${randomBytes(3).toString('hex')}`;
  assert.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  try {
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '-e', SCENARIO, path.join(REPO, 'src/drivers/network/cni.ts')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['before connects connects', 'guarded refused connects', 'released connects connects', 'swept connects connects']);
    const left = spawnSync('nsenter', [`--net=/run/netns/${ns}`, 'iptables', '-w', '-S'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(left, /FERRY-LO-/, 'no guard chain left');
  } finally {
    spawnSync('ip', ['netns', 'delete', ns]);
  }
});
