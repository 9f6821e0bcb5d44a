import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, Router, boolParam, muxFrame } from '../../src/api/http.js';
import { createOptions, logsOptions, parseFilters } from '../../src/api/docker.js';
import { DEFAULT_API_SOCKET, checkServiceOptions, parseUnixUrl } from '../../src/api/service.js';
import { checkNetworkFilters, matchesFilters, matchesNetworkFilters } from '../../src/engine/select.js';
import type { NetworkRecord } from '../../src/drivers/network/cni.js';
import { initialState, type ContainerRecord } from '../../src/engine/types.js';
import { FerryError } from '../../src/lib/errors.js';

const apiErr = (status: number, re: RegExp) => (e: unknown) => e instanceof ApiError && e.status === status && re.test(e.message);

test('Router: params, 404 for an unknown path, 405 for a known path with another method, HEAD as GET', () => {
  const r = new Router();
  const h = (): void => undefined;
  r.on('GET', '/containers/:id/json', h).on('DELETE', '/containers/:id/checkpoints/:name', h);
  const m = r.match('GET', '/containers/abc%2Fx/json');
  assert.ok(typeof m === 'object');
  assert.deepEqual(m.params, { id: 'abc/x' });
  assert.ok(typeof r.match('HEAD', '/containers/a/json') === 'object');
  assert.equal(r.match('POST', '/containers/a/json'), 405);
  assert.equal(r.match('GET', '/containers/a'), 404);
  assert.equal(r.match('GET', '/containers/%E0%A4%A/json'), 404, 'a bad escape is no match, not a crash');
  const d = r.match('DELETE', '/containers/c1/checkpoints/cp1');
  assert.ok(typeof d === 'object');
  assert.deepEqual(d.params, { id: 'c1', name: 'cp1' });
});

test('createOptions: Docker create JSON as Ferry create options; what Ferry would not honour is refused', () => {
  const o = createOptions(
    {
      Image: 'busybox',
      Entrypoint: ['sh', '-c'],
      Cmd: ['echo hi'],
      Env: ['A=1'],
      WorkingDir: '/tmp',
      Labels: { a: 'b' },
      User: '',
      HostConfig: { Binds: ['/src:/dst:ro'], NetworkMode: 'default', AutoRemove: true, PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }] }, Tmpfs: { '/run': 'size=1m' }, RestartPolicy: { Name: 'no' }, Mounts: [] },
    },
    'web',
  );
  assert.deepEqual(o.command, ['echo hi'], 'Cmd replaces the image\'s Cmd');
  assert.equal(o.entrypoint, '["sh","-c"]', 'Entrypoint replaces the image\'s Entrypoint');
  assert.equal(o.user, undefined);
  assert.equal(o.name, 'web');
  assert.deepEqual(o.env, ['A=1']);
  assert.equal(o.workdir, '/tmp');
  assert.deepEqual(o.labels, { a: 'b' });
  assert.deepEqual(o.volumes, ['/src:/dst:ro']);
  assert.equal(o.network, undefined, 'default is the bridge');
  assert.equal(o.autoRemove, true);
  assert.deepEqual(o.publish, ['8080:80/tcp']);
  assert.deepEqual(o.tmpfs, ['/run:size=1m']);
  assert.deepEqual(createOptions({ Image: 'busybox', Cmd: 'true' }, undefined).command, ['true']);
  assert.deepEqual(createOptions({ Image: 'busybox' }, undefined).command, [], "the image's command");
  assert.equal(createOptions({ Image: 'busybox', HostConfig: { NetworkMode: 'none' } }, undefined).network, 'none');
  assert.throws(() => createOptions({}, undefined), apiErr(400, /Image is required/));
  assert.equal(createOptions({ Image: 'b', User: 'nobody:users' }, undefined).user, 'nobody:users');
  assert.equal(createOptions({ Image: 'b', Entrypoint: null, Cmd: ['x'] }, undefined).entrypoint, undefined, "null: the image's Entrypoint");
  const hc = createOptions(
    {
      Image: 'b',
      HostConfig: {
        Memory: 67108864, MemorySwap: -1, NanoCpus: 1500000000, CpuShares: 512, PidsLimit: 100, ShmSize: 1048576,
        Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
        RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 3 },
        PublishAllPorts: true,
        SecurityOpt: ['seccomp=unconfined'],
        Mounts: [
          { Type: 'bind', Source: '/srv', Target: '/data', ReadOnly: true },
          { Type: 'volume', Source: 'vol1', Target: '/vol' },
          { Type: 'tmpfs', Target: '/scratch', TmpfsOptions: { SizeBytes: 1048576, Mode: 0o1777 } },
        ],
        PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }], '53/udp': [{}] },
      },
    },
    undefined,
  );
  assert.deepEqual(hc.resources, { memory: '67108864', memorySwap: '-1', cpus: '1.5', cpuShares: '512', pidsLimit: '100', shmSize: '1048576', ulimit: ['nofile=1024:2048'] });
  assert.equal(hc.restart, 'on-failure:3');
  assert.equal(hc.publishAll, true);
  assert.deepEqual(hc.securityOpt, ['seccomp=unconfined']);
  assert.deepEqual(hc.volumes, ['/srv:/data:ro', 'vol1:/vol']);
  assert.deepEqual(hc.tmpfs, ['/scratch:size=1048576,mode=1777']);
  assert.deepEqual(hc.publish, ['127.0.0.1::80/tcp', '53/udp'], 'no HostPort: a free one is picked');
  assert.equal(createOptions({ Image: 'b', HostConfig: { RestartPolicy: { Name: 'always' } } }, undefined).restart, 'always');
  assert.throws(() => createOptions({ Image: 'b', Env: 'A=1' }, undefined), apiErr(400, /invalid Env/));
  assert.throws(() => createOptions({ Image: 'b', Labels: { a: 1 } }, undefined), apiErr(400, /invalid Labels/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Privileged: true } }, undefined), apiErr(400, /Privileged/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Mounts: [{}] } }, undefined), apiErr(400, /Mounts/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Mounts: [{ Type: 'npipe', Target: '/x' }] } }, undefined), apiErr(400, /type "npipe"/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Mounts: [{ Type: 'bind', Source: 'rel', Target: '/x' }] } }, undefined), apiErr(400, /absolute/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Mounts: [{ Type: 'volume', Source: 'v', Target: '/x', VolumeOptions: { NoCopy: true } }] } }, undefined), apiErr(400, /VolumeOptions/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Memory: -5 } }, undefined), apiErr(400, /Memory/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { Ulimits: [{ Name: 'nofile' }] } }, undefined), apiErr(400, /Ulimits/));
  assert.throws(() => createOptions({ Image: 'b', HostConfig: { PortBindings: { '80/sctp': [] } } }, undefined), apiErr(400, /invalid port/));
  assert.throws(() => createOptions({ Image: 'b', StopTimeout: -1 }, undefined), apiErr(400, /StopTimeout/));
});

const rec = (name: string, labels: Record<string, string>, status: ContainerRecord['state']['status']): ContainerRecord => ({
  config: { id: `${name}`.padEnd(64, '0'), name, created: '', imageId: '', imageName: '', command: [], env: [], workdir: '/', hostname: '', mounts: [], autoRemove: false, labels, stopSignal: 'TERM', stopTimeout: 10 },
  state: { ...initialState(), status },
});

test('filters: Docker JSON (both forms), label/name/status/id, refusals', () => {
  const a = rec('abc', { app: 'web', tier: '1' }, 'running');
  const b = rec('bcd', {}, 'stopped');
  assert.deepEqual(parseFilters('{"label":{"app=web":true}}'), { label: ['app=web'] });
  const pick = (f: string): string[] => [a, b].filter((r) => matchesFilters(r, parseFilters(f))).map((r) => r.config.name);
  assert.deepEqual(pick('{"label":["app=web"]}'), ['abc']);
  assert.deepEqual(pick('{"label":["tier"]}'), ['abc']);
  assert.deepEqual(pick('{"label":["app=db"]}'), []);
  assert.deepEqual(pick('{"label":["app=web","tier=1"]}'), ['abc'], 'labels: every one must match (as compose asks)');
  assert.deepEqual(pick('{"label":["app=web","tier=2"]}'), []);
  assert.deepEqual(pick('{"name":["abc","bcd"]}'), ['abc', 'bcd'], 'other keys: any value');
  assert.deepEqual(pick('{"name":["/bc"]}'), ['abc', 'bcd']);
  assert.deepEqual(pick('{"name":["^bc"]}'), ['bcd'], 'anchored at the start');
  assert.deepEqual(pick('{"name":["bc$"]}'), ['abc'], 'anchored at the end');
  assert.deepEqual(pick('{"name":["^/abc$"]}'), ['abc'], 'that name only, with Docker\'s slash');
  assert.deepEqual(pick('{"name":["^ab$"]}'), []);
  assert.deepEqual(pick('{"status":["exited"]}'), ['bcd'], "Ferry's stopped is Docker's exited");
  assert.deepEqual(pick('{"id":["bcd"]}'), ['bcd']);
  assert.deepEqual(pick('{"status":["running"],"name":["bcd"]}'), []);
  assert.deepEqual(pick(''), ['abc', 'bcd']);
  assert.throws(() => parseFilters('{'), apiErr(400, /invalid filters/));
  assert.throws(() => parseFilters('{"colour":["x"]}'), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL');
  assert.throws(() => parseFilters('{"status":["sleeping"]}'), /invalid filter status/);
});

test('query parameters: booleans, logs options (Unix seconds, RFC 3339, Go zero time, tail)', () => {
  const q = (s: string): URLSearchParams => new URLSearchParams(s);
  assert.equal(boolParam(q('a=1'), 'a'), true);
  assert.equal(boolParam(q('a=false'), 'a'), false);
  assert.equal(boolParam(q(''), 'a', true), true);
  assert.throws(() => boolParam(q('a=yes'), 'a'), apiErr(400, /invalid a=yes/));
  assert.deepEqual(logsOptions(q('follow=1&tail=all&since=0')), { follow: true, tail: undefined, since: undefined, until: undefined });
  assert.equal(logsOptions(q('tail=5')).tail, 5);
  assert.equal(logsOptions(q('since=1700000000.5')).since?.getTime(), 1_700_000_000_500);
  assert.equal(logsOptions(q('since=2026-01-02T03:04:05Z')).since?.toISOString(), '2026-01-02T03:04:05.000Z');
  assert.equal(logsOptions(q('until=0001-01-01T00:00:00Z')).until, undefined);
  assert.throws(() => logsOptions(q('since=yesterday')), apiErr(400, /invalid since/));
  assert.throws(() => logsOptions(q('tail=-5')), apiErr(400, /invalid tail/));
});

test('muxFrame: Docker multiplexed stream header', () => {
  const f = muxFrame('stderr', Buffer.from('hi\n'));
  assert.deepEqual([...f.subarray(0, 8)], [2, 0, 0, 0, 0, 0, 0, 3]);
  assert.equal(f.subarray(8).toString(), 'hi\n');
  assert.equal(muxFrame('stdout', Buffer.alloc(0))[0], 1);
});

test('service options: the API socket by default; TCP only with a secret; unix paths checked', () => {
  assert.deepEqual(checkServiceOptions({}), { sockets: ['/run/ferry/ferry.sock'], apiTcp: [], tls: undefined });
  assert.equal(DEFAULT_API_SOCKET, 'unix:///run/ferry/ferry.sock');
  assert.throws(() => checkServiceOptions({ listen: ['tcp://0.0.0.0:7797'] }), /never runs unauthenticated on TCP: give --tls-cert FILE --tls-key FILE --tls-verify CA/);
  assert.throws(() => checkServiceOptions({ listen: ['unix:///run/x.sock'], secretFile: '/x' }), /--secret-file only applies with --listen tcp:/);
  assert.throws(() => checkServiceOptions({ listen: ['http://x:1'] }), /invalid --listen "http:\/\/x:1": use unix:\/\/\/PATH/);
  assert.throws(() => checkServiceOptions({ listen: ['unix:///a.sock', 'unix:///a.sock'] }), /twice/);
  assert.throws(() => checkServiceOptions({ listen: ['tcp://127.0.0.1:2376'], tlsCert: '/c', tlsKey: '/k' }), /needs all of --tls-cert FILE --tls-key FILE --tls-verify CA/);
  assert.throws(() => checkServiceOptions({ listen: ['tcp://127.0.0.1:2376'], tlsCert: '/c', tlsKey: '/k', tlsVerify: '/ca', secretFile: '/s' }), /run one `ferry system service` for each/);
  assert.throws(() => checkServiceOptions({ listen: ['unix:///a.sock'], tlsCert: '/c', tlsKey: '/k', tlsVerify: '/ca' }), /only apply with --listen tcp:/);
  assert.throws(() => checkServiceOptions({ listen: ['tcp://127.0.0.1:2376'], tlsCert: '/nonexistent/c', tlsKey: '/k', tlsVerify: '/ca' }), /cannot read --tls-cert \/nonexistent\/c: ENOENT/);
  assert.equal(parseUnixUrl('unix:///run/ferry/ferry.sock'), '/run/ferry/ferry.sock');
  for (const bad of ['unix://relative.sock', 'unix:///a/../b.sock', 'unix:///dir/', `unix:///${'x'.repeat(120)}`]) {
    assert.throws(() => parseUnixUrl(bad), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL', bad);
  }
});

test('createOptions: NetworkingConfig (compose): the network, its aliases and address; one network only', () => {
  const ep = (eps: Record<string, unknown>, mode?: string) => createOptions({ Image: 'b', HostConfig: mode ? { NetworkMode: mode } : {}, NetworkingConfig: { EndpointsConfig: eps } }, undefined);
  const o = ep({ p_default: { Aliases: ['web', 'www'], IPAMConfig: {} } }, 'p_default');
  assert.equal(o.network, 'p_default');
  assert.deepEqual(o.networkAliases, ['web', 'www']);
  assert.equal(o.ip, undefined);
  assert.equal(ep({ net1: { IPAMConfig: { IPv4Address: '10.90.0.9' } } }).network, 'net1', 'the endpoint names the network when NetworkMode does not');
  assert.equal(ep({ net1: { IPAMConfig: { IPv4Address: '10.90.0.9' } } }).ip, '10.90.0.9');
  assert.equal(ep({ net1: null }, 'default').network, 'net1');
  assert.equal(ep({}, 'net2').network, 'net2');
  assert.equal(ep({ net1: {} }).networkAliases, undefined);
  assert.throws(() => ep({ a: {}, b: {} }), apiErr(400, /joins one network, not 2/));
  assert.throws(() => ep({ a: {} }, 'b'), apiErr(400, /names network "a" but HostConfig.NetworkMode is "b"/));
  assert.throws(() => ep({ a: { Aliases: 'web' } }), apiErr(400, /invalid Aliases/));
  assert.throws(() => ep({ a: { IPAMConfig: { IPv6Address: 'fd00::2' } } }), apiErr(400, /IPv6/));
  assert.throws(() => ep({ a: { Links: ['x:y'] } }), apiErr(400, /links are not supported/));
});

test('network filters: name (part), id (prefix), label (every one), driver, type', () => {
  const net = (name: string, id: string, labels?: Record<string, string>): NetworkRecord => ({
    name, id, driver: 'bridge', network_interface: 'x', created: '', subnets: [], ipv6_enabled: false, internal: false, dns_enabled: true, ...(labels ? { labels } : {}), ipam_options: { driver: 'host-local' },
  });
  const nets = [net('ferry', 'aaa1'), net('p_default', 'bbb2', { 'com.docker.compose.project': 'p', 'com.docker.compose.network': 'default' }), net('q_default', 'ccc3', { 'com.docker.compose.project': 'q' })];
  const pick = (f: Record<string, unknown>): string[] => nets.filter((n) => matchesNetworkFilters(n, checkNetworkFilters(f))).map((n) => n.name);
  assert.deepEqual(pick({}), ['ferry', 'p_default', 'q_default']);
  assert.deepEqual(pick({ name: ['default'] }), ['p_default', 'q_default']);
  assert.deepEqual(pick({ id: ['bb'] }), ['p_default']);
  assert.deepEqual(pick({ label: ['com.docker.compose.project=p', 'com.docker.compose.network'] }), ['p_default']);
  assert.deepEqual(pick({ label: ['com.docker.compose.project=q', 'com.docker.compose.network'] }), []);
  assert.deepEqual(pick({ label: ['com.docker.compose.project'] }), ['p_default', 'q_default']);
  assert.deepEqual(pick({ type: ['builtin'] }), ['ferry']);
  assert.deepEqual(pick({ type: ['custom'], driver: ['bridge'] }), ['p_default', 'q_default']);
  assert.throws(() => checkNetworkFilters({ scope: ['local'] }), (e: unknown) => e instanceof FerryError && /invalid filter "scope"/.test(e.message));
  assert.throws(() => checkNetworkFilters({ type: ['other'] }), (e: unknown) => e instanceof FerryError && /invalid filter type/.test(e.message));
  assert.throws(() => checkNetworkFilters({ name: 'x' }), (e: unknown) => e instanceof FerryError && /list of strings/.test(e.message));
});
