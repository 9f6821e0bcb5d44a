// Podman's SpecGenerator and PodSpecGenerator (what `podman --remote run/create/pod create`
// send) mapped onto Ferry's create options: what maps, and what is refused rather than dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podSpecOptions, specOptions } from '../../src/api/libpod.js';

// As podman --remote 4.3.1 sends it for: run -d --name pr1 --network none -e A=1 -l k=v -p 8080:80 busybox sleep 100
const RUN = {
  name: 'pr1', command: ['sleep', '100'], httpproxy: true, env: { A: '1' }, labels: { k: 'v' }, annotations: { 'io.kubernetes.cri-o.TTY': 'false' }, stop_timeout: 10,
  log_configuration: {}, raw_image_name: 'busybox', systemd: 'true', sdnotifyMode: 'container', pidns: {}, utsns: {}, init_container_type: '', manage_password: true,
  image: 'busybox', image_volume_mode: 'anonymous', ipcns: {}, seccomp_policy: 'default', userns: {}, umask: '0022', cgroupns: {}, cgroups_mode: 'enabled',
  netns: { nsmode: 'none' }, portmappings: [{ host_ip: '', container_port: 80, host_port: 8080, range: 1, protocol: '' }], Networks: {}, use_image_hosts: false,
};

test('SpecGenerator: what podman run sends maps onto create options', () => {
  const o = specOptions(RUN);
  assert.equal(o.image, 'busybox');
  assert.equal(o.name, 'pr1');
  assert.deepEqual(o.command, ['sleep', '100']);
  assert.deepEqual(o.env, ['A=1']);
  assert.deepEqual(o.labels, { k: 'v' });
  assert.equal(o.network, 'none');
  assert.deepEqual(o.publish, ['8080:80/tcp']);
  assert.equal(o.stopTimeout, 10);
  assert.equal(o.entrypoint, undefined);
  assert.equal(o.pull, 'never', 'the client pulled first, as its policy said');
  const more = specOptions({
    ...RUN,
    entrypoint: ['/bin/sh', '-c'],
    stop_signal: 2,
    terminal: true,
    stdin: true,
    remove: true,
    user: '1000:1000',
    work_dir: '/tmp',
    netns: { nsmode: 'bridge' },
    Networks: { mynet: {} },
    mounts: [{ destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro'] }, { destination: '/scratch', type: 'tmpfs', options: ['size=1m'] }],
    volumes: [{ Name: 'vol1', Dest: '/v', Options: [] }],
    restart_policy: 'on-failure',
    restart_tries: 3,
    pod: 'p1',
  });
  assert.equal(more.entrypoint, '["/bin/sh","-c"]');
  assert.equal(more.stopSignal, 'SIGINT');
  assert.equal(more.tty, true);
  assert.equal(more.interactive, true);
  assert.equal(more.autoRemove, true);
  assert.equal(more.user, '1000:1000');
  assert.equal(more.workdir, '/tmp');
  assert.equal(more.network, 'mynet');
  assert.deepEqual(more.volumes, ['/srv/data:/data:ro', 'vol1:/v']);
  assert.deepEqual(more.tmpfs, ['/scratch:size=1m']);
  assert.equal(more.restart, 'on-failure:3');
  assert.equal(more.pod, 'p1');
});

test('SpecGenerator: resource limits as podman run --memory 64m --memory-swap 128m --cpus 0.5 --cpu-shares 512 --pids-limit 50 --ulimit nofile=100:200 --shm-size 32m sends them', () => {
  const o = specOptions({
    ...RUN,
    resource_limits: { memory: { limit: 67108864, swap: 134217728 }, cpu: { shares: 512, quota: 50000, period: 100000 }, pids: { limit: 50 } },
    r_limits: [{ type: 'nofile', hard: 200, soft: 100 }],
    shm_size: 33554432,
  });
  assert.deepEqual(o.resources, { memory: '67108864', memorySwap: '134217728', cpus: '0.5', cpuShares: '512', pidsLimit: '50', ulimit: ['nofile=100:200'], shmSize: '33554432' });
  assert.equal(specOptions(RUN).resources, undefined);
});

test('SpecGenerator: what Ferry cannot honour is refused, bad types are 400', () => {
  for (const [k, v] of [['cap_add', ['SYS_ADMIN']], ['privileged', true], ['devices', [{ path: '/dev/kvm' }]]] as const) {
    assert.throws(() => specOptions({ ...RUN, [k]: v }), (e: Error & { status?: number }) => e.status === 400 && e.message.includes(`${k} is not supported`));
  }
  assert.throws(() => specOptions({ ...RUN, image: undefined, raw_image_name: undefined }), /image is required/);
  assert.throws(() => specOptions({ ...RUN, portmappings: [{ container_port: 80, host_port: 8080, range: 5 }] }), /port ranges/);
  assert.throws(() => specOptions({ ...RUN, netns: { nsmode: 'container:x' } }), /network mode "container:x" is not supported/);
  assert.throws(() => specOptions({ ...RUN, Networks: { a: {}, b: {} } }), /one network/);
  assert.throws(() => specOptions({ ...RUN, env: { A: 1 } }), /invalid env/);
  assert.throws(() => specOptions({ ...RUN, mounts: [{ destination: '/x', type: 'devpts' }] }), /mount type "devpts"/);
  assert.throws(() => specOptions({ ...RUN, stop_signal: 'x y' }), /invalid stop_signal/);
  assert.throws(() => specOptions({ ...RUN, resource_limits: { blockIO: { weight: 10 } } }), /resource_limits.blockIO is not supported/);
  assert.throws(() => specOptions({ ...RUN, resource_limits: { memory: { reservation: 10 } } }), /resource_limits.memory.reservation is not supported/);
  // Empty values of those fields are what podman sends by default: not refused.
  assert.doesNotThrow(() => specOptions({ ...RUN, cap_add: [], privileged: false, resource_limits: {} }));
});

test('PodSpecGenerator: podman pod create maps onto pod create options', () => {
  const o = podSpecOptions({ name: 'pod1', exit_policy: 'continue', shared_namespaces: ['ipc', 'net', 'uts'], share_parent: true, pidns: { nsmode: 'private' }, netns: {}, Networks: null, resource_limits: { cpu: {} } });
  assert.deepEqual(o, { name: 'pod1', hostname: undefined, share: ['ipc', 'net', 'uts'], publish: undefined, network: undefined });
  assert.deepEqual(podSpecOptions({ name: 'p', portmappings: [{ container_port: 80, host_port: 8080, host_ip: '127.0.0.1', protocol: 'udp' }] }).publish, ['127.0.0.1:8080:80/udp']);
  assert.throws(() => podSpecOptions({ name: 'p', no_infra: true }), /no_infra is not supported/);
  assert.throws(() => podSpecOptions({ name: 'p', labels: { a: 'b' } }), /labels is not supported/);
});
