/**
 * The API on TCP with TLS (`--listen tcp://ADDR:PORT --tls-cert --tls-key --tls-verify CA`), with
 * the real docker CLI (DOCKER_TLS_VERIFY=1): a client certificate signed by the CA gets in (ps,
 * run, exec over the hijacked connection, logs); none, or one from another CA, is refused in
 * the handshake; tcp:// without all three files is refused before anything listens. The
 * certificates are made with openssl in the test's own dir; the service listens on loopback.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { FERRY_BIN, Host, LOOPER, ServiceProcess, eventually, skipWith } from '../helpers/ferry.js';
import { DOCKER, runTool } from '../helpers/api.js';

const h = new Host('apitls');
const SOCK = path.join(h.dir, 'ferry.sock');
const CERTS = path.join(h.dir, 'certs');
let port = 0;
let port2 = 0;
const DOCKER20 = ['/usr/local/lib/ferry/docker-20.10/docker'].find((f) => fs.existsSync(f));
let svc: ServiceProcess | undefined;

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: CERTS, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA (NAME/ca.pem, ca-key.pem) and a certificate it signs (NAME/cert.pem, key.pem) with the extensions given. */
function issue(dir: string, ca: string, cn: string, ext: string): void {
  fs.mkdirSync(path.join(CERTS, dir), { recursive: true });
  fs.writeFileSync(path.join(CERTS, dir, 'ext.cnf'), ext + '\n');
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/key.pem`, '-out', `${dir}/req.csr`, '-subj', `/CN=${cn}`]);
  openssl(['x509', '-req', '-in', `${dir}/req.csr`, '-CA', `${ca}/ca.pem`, '-CAkey', `${ca}/ca-key.pem`, '-CAcreateserial', '-out', `${dir}/cert.pem`, '-days', '2', '-extfile', `${dir}/ext.cnf`]);
  fs.copyFileSync(path.join(CERTS, ca, 'ca.pem'), path.join(CERTS, dir, 'ca.pem'));
}

function makeCa(dir: string): void {
  fs.mkdirSync(path.join(CERTS, dir), { recursive: true });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/ca-key.pem`, '-out', `${dir}/ca.pem`, '-days', '2', '-subj', `/CN=${dir}`]);
}

/** A free loopback port. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** The docker CLI over TCP with TLS, its client files from CERTS/dir. */
function docker(dir: string | undefined, args: string[], o: { bin?: string; port?: number } = {}): ReturnType<typeof runTool> {
  const env: Record<string, string> = { DOCKER_HOST: `tcp://127.0.0.1:${o.port ?? port}`, DOCKER_CONFIG: path.join(h.dir, 'docker-config') };
  if (dir) Object.assign(env, { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: path.join(CERTS, dir) });
  return runTool([o.bin ?? DOCKER!, ...args], env, undefined, 60_000);
}

before(async () => {
  if (!DOCKER) return;
  fs.mkdirSync(CERTS, { recursive: true });
  makeCa('ca');
  makeCa('other');
  issue('server', 'ca', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth');
  issue('client', 'ca', 'client', 'extendedKeyUsage=clientAuth');
  issue('stranger', 'other', 'client', 'extendedKeyUsage=clientAuth');
  // The stranger trusts the server (its ca.pem is the server's CA): only its own certificate is wrong.
  fs.copyFileSync(path.join(CERTS, 'ca', 'ca.pem'), path.join(CERTS, 'stranger', 'ca.pem'));
  // Without a client certificate: only the CA, to check the server's.
  fs.mkdirSync(path.join(CERTS, 'nocert'));
  fs.copyFileSync(path.join(CERTS, 'ca', 'ca.pem'), path.join(CERTS, 'nocert', 'ca.pem'));
  await h.importBusybox();
  port = await freePort();
  port2 = await freePort();
  const s = path.join(CERTS, 'server');
  svc = await new ServiceProcess(
    spawn(FERRY_BIN, [...h.args(), 'system', 'service', '--listen', `unix://${SOCK}`, '--listen', `tcp://127.0.0.1:${port}`, '--listen', `tcp://127.0.0.1:${port2}`, '--tls-cert', `${s}/cert.pem`, '--tls-key', `${s}/key.pem`, '--tls-verify', `${s}/ca.pem`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  ).listening();
  await eventually(() => svc!.log.includes(`tcp://127.0.0.1:${port}`), 10_000, 50);
});

after(async () => {
  await h.run(['rm', '-a', '-f', '-t', '0']);
  await svc?.stop(5000);
  await h.destroy();
});

test('docker over TCP with a client certificate from the CA: ps, run, exec, logs', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  const ps = await docker('client', ['ps', '--format', '{{.Names}}']);
  assert.equal(ps.code, 0, ps.stderr);
  const run = await docker('client', ['run', '-d', '--name', 'tlsrun', '--network', 'none', 'busybox', ...LOOPER]);
  assert.equal(run.code, 0, run.stderr);
  assert.match((await docker('client', ['ps', '--format', '{{.Names}}'])).stdout, /^tlsrun$/m);
  const exec = await docker('client', ['exec', 'tlsrun', 'echo', 'over-tls']);
  assert.equal(exec.code, 0, exec.stderr);
  assert.equal(exec.stdout.trim(), 'over-tls', 'exec hijacks the TLS connection');
  await eventually(async () => /^1$/m.test((await docker('client', ['logs', 'tlsrun'])).stdout), 10_000, 200);
  // The same container through the Unix socket: one state.
  assert.match(await h.ok(['ps', '--format', '{{.Names}}']), /^tlsrun$/m);
  // The second TCP listener, and Debian's docker CLI 20.10 (when setup extracted it).
  assert.match((await docker('client', ['ps', '--format', '{{.Names}}'], { port: port2 })).stdout, /^tlsrun$/m);
  if (DOCKER20) {
    const old = await docker('client', ['ps', '--format', '{{.Names}}'], { bin: DOCKER20 });
    assert.equal(old.code, 0, old.stderr);
    assert.match(old.stdout, /^tlsrun$/m);
    const refused = await docker('stranger', ['ps'], { bin: DOCKER20 });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /remote error: tls: (certificate required|unknown certificate authority|bad certificate)/);
  }
});

test('without a client certificate, or with one from another CA, or in plain HTTP: refused', async (t) => {
  if (!svc) return skipWith(t, 'the docker CLI is not installed');
  for (const dir of ['nocert', 'stranger']) {
    const r = await docker(dir, ['ps']);
    assert.notEqual(r.code, 0, `${dir}: ${r.stdout}`);
    assert.doesNotMatch(r.stdout, /CONTAINER ID/, `${dir}: no answer`);
    // Refused by the server in the handshake (not the client distrusting the server).
    assert.match(r.stderr, /remote error: tls: (certificate required|unknown certificate authority|bad certificate)/, `${dir}: ${r.stderr}`);
  }
  const plain = await docker(undefined, ['ps']);
  assert.notEqual(plain.code, 0);
  assert.doesNotMatch(plain.stdout, /CONTAINER ID/);
  // curl without a certificate: the handshake fails (no HTTP status at all).
  const curl = spawnSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', path.join(CERTS, 'ca', 'ca.pem'), `https://127.0.0.1:${port}/_ping`], { encoding: 'utf8' });
  if (curl.error === undefined) {
    assert.notEqual(curl.status, 0);
    assert.equal(curl.stdout, '000');
  }
  assert.ok(svc.running, 'the service still runs');
});

test('tcp:// without all of --tls-cert, --tls-key, --tls-verify: one line, nothing listens', async () => {
  const s = path.join(CERTS, 'server');
  for (const extra of [[], ['--tls-cert', `${s}/cert.pem`, '--tls-key', `${s}/key.pem`], ['--tls-cert', `${s}/cert.pem`, '--tls-key', `${s}/nonexistent.pem`, '--tls-verify', `${s}/ca.pem`]]) {
    const r = await h.run(['system', 'service', '--listen', 'tcp://127.0.0.1:1', ...extra], { timeoutMs: 10_000 });
    assert.equal(r.code, 125, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /--tls-cert FILE --tls-key FILE --tls-verify CA|cannot read --tls-key/);
  }
});
