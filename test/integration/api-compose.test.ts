/**
 * Issue 17: Debian's docker-compose (1.29, on the Docker SDK for Python) drives Ferry's service:
 * `up -d`, `ps`, `logs` and `down` of a two-service project, a web server (busybox httpd) and a
 * client that fetches its page by the service's name, which the project network's DNS answers.
 */
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { eventually, Host, isRoot } from '../helpers/ferry.js';
import { runTool, Service, type Out } from '../helpers/api.js';

const COMPOSE = ['/usr/bin/docker-compose', '/usr/local/bin/docker-compose'].find((f) => fs.existsSync(f));
const SKIP = !isRoot() ? 'needs root' : !COMPOSE ? 'docker-compose is missing: run `npm run setup`' : !fs.existsSync('/usr/lib/cni/dnsname') ? 'the CNI dnsname plugin is missing: run `npm run setup`' : false;

describe('docker-compose against the service', { skip: SKIP }, () => {
  let h: Host;
  let svc: Service;
  let file = '';
  const project = `fc${process.pid}`;
  const net = `${project}_default`;
  // The project network's subnet, away from the automatic ones and random against other tests.
  const subnet = `10.93.${100 + Math.floor(Math.random() * 150)}.0/24`;
  let bridge = '';

  const compose = (args: string[]): Promise<Out> => runTool([COMPOSE!, '--ansi', 'never', '-p', project, '-f', file, ...args], { ...svc.dockerEnv(), COMPOSE_HTTP_TIMEOUT: '60' }, undefined, 90_000);
  const composeOk = async (args: string[]): Promise<string> => {
    const r = await compose(args);
    if (r.code !== 0) throw new Error(`docker-compose ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}\nservice log: ${svc.log}`);
    return r.stdout + r.stderr;
  };

  before(async () => {
    h = new Host('compose');
    await h.importBusybox();
    file = path.join(h.dir, 'docker-compose.yml');
    fs.writeFileSync(
      file,
      [
        'version: "3.7"',
        'services:',
        '  web:',
        '    image: busybox',
        '    command: ["sh", "-c", "mkdir -p /www && echo page-from-web > /www/index.html && exec httpd -f -p 80 -h /www"]',
        '  client:',
        '    image: busybox',
        '    command: ["sh", "-c", "while true; do wget -qO- http://web/index.html || echo fetch-failed; sleep 1; done"]',
        '    depends_on: [web]',
        'networks:',
        '  default:',
        '    ipam:',
        '      config:',
        `        - subnet: ${subnet}`,
        '',
      ].join('\n'),
    );
    svc = await Service.start(h);
  });
  after(async () => {
    if (svc && file) await compose(['down', '-t', '0']).catch(() => undefined);
    await svc?.stop();
    await h?.run(['network', 'rm', '-f', net]).catch(() => undefined);
    if (bridge && fs.existsSync(`/sys/class/net/${bridge}`)) spawnSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    await h?.destroy();
  });

  it('up -d makes the network and both services; the client gets the page by the service name', async () => {
    const out = await composeOk(['up', '-d']);
    assert.match(out, new RegExp(`Creating network "${net}"`));
    const n = JSON.parse(await h.ok(['network', 'inspect', net]))[0];
    bridge = n.network_interface;
    assert.equal(n.labels['com.docker.compose.project'], project, 'the network keeps compose\'s labels');
    assert.equal(n.subnets[0].subnet, subnet);
    assert.deepEqual(await h.names(), [`${project}_client_1`, `${project}_web_1`]);

    const ps = await composeOk(['ps']);
    for (const s of ['web', 'client']) assert.match(ps, new RegExp(`^${project}_${s}_1 .* Up`, 'm'), ps);

    // The client's log has the page: it reached web by its service name.
    const logs = await eventually(async () => {
      const l = await composeOk(['logs', '--no-color', 'client']);
      return /page-from-web/.test(l) ? l : '';
    }, 30_000, 500);
    assert.match(logs, new RegExp(`^client_1 +\\| page-from-web$`, 'm'));
    // The service name is an alias in Docker's shape (as compose reads it back), with the short ID.
    const id = (await h.inspect(`${project}_web_1`)).Id as string;
    const inspect = JSON.parse((await svc.request('GET', `/v1.41/containers/${project}_web_1/json`)).body);
    assert.deepEqual(inspect.NetworkSettings.Networks[net].Aliases, ['web', id.slice(0, 12)]);
    // A container joins one network, when it is created: connecting it again or elsewhere is refused clearly.
    const again = await svc.request('POST', `/v1.41/networks/${net}/connect`, JSON.stringify({ Container: `${project}_web_1` }));
    assert.equal(again.status, 403);
    assert.match(JSON.parse(again.body).message, new RegExp(`endpoint with name ${project}_web_1 already exists in network ${net}`));
    const other = await svc.request('POST', '/v1.41/networks/ferry/connect', JSON.stringify({ Container: `${project}_web_1` }));
    assert.equal(other.status, 400);
    assert.match(JSON.parse(other.body).message, /a container joins one network, when it is created: create it with --network ferry/);
  });

  it('a second up changes nothing; down removes the containers and the network', async () => {
    const again = await composeOk(['up', '-d']);
    assert.match(again, new RegExp(`${project}_web_1 is up-to-date`));
    assert.deepEqual(await h.names(), [`${project}_client_1`, `${project}_web_1`]);

    const out = await composeOk(['down', '-t', '1']);
    assert.match(out, new RegExp(`Removing network ${net}`));
    assert.deepEqual(await h.names(), []);
    assert.equal((await h.run(['network', 'inspect', net])).code, 125, 'the network is gone');
    assert.equal(fs.existsSync(`/sys/class/net/${bridge}`), false, 'its bridge is gone');
    await eventually(() => !h.processes().some((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dnsmasq')), 5_000);
    const ps = await composeOk(['ps']);
    assert.doesNotMatch(ps, new RegExp(project + '_'));
  });
});
