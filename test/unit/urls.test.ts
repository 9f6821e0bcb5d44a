// Where a migration goes: ssh://[user@]host[:port] (the destination ferry started over ssh)
// and ferry://host:port (a ferry service); what each accepts and what it refuses, and the
// quoting of the words Ferry adds to the remote command ssh hands to a shell, and the order in
// which ssh is asked to offer its ciphers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { parseSshUrl, preferAes, shellQuote, sshCipherOrder } from '../../src/drivers/transport/channel.js';
import { displayTarget, isServiceUrl, parseListenUrl, parseServiceUrl } from '../../src/drivers/transport/service.js';
import { FerryError } from '../../src/lib/errors.js';

const isErr = (message: string) => (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && e.message === message;

// ------------------------------------------------------------------------- ssh://

test('parseSshUrl: host, user, port, brackets for IPv6, a trailing slash', () => {
  const cases: [string, ReturnType<typeof parseSshUrl>][] = [
    ['ssh://hostb', { user: undefined, host: 'hostb', port: undefined }],
    ['ssh://hostb/', { user: undefined, host: 'hostb', port: undefined }],
    ['ssh://root@hostb', { user: 'root', host: 'hostb', port: undefined }],
    ['ssh://root@hostb:2222', { user: 'root', host: 'hostb', port: 2222 }],
    ['ssh://hostb:22/', { user: undefined, host: 'hostb', port: 22 }],
    ['ssh://deploy.user-1_x@host-b.example.com:65535', { user: 'deploy.user-1_x', host: 'host-b.example.com', port: 65535 }],
    ['ssh://10.0.0.2:1', { user: undefined, host: '10.0.0.2', port: 1 }],
    ['ssh://[fd00::2]', { user: undefined, host: 'fd00::2', port: undefined }],
    ['ssh://u@[fd00::2]:2222', { user: 'u', host: 'fd00::2', port: 2222 }],
  ];
  for (const [url, want] of cases) assert.deepEqual(parseSshUrl(url), want, url);
});

test('parseSshUrl refuses anything else, and hosts or users that ssh would take for options', () => {
  for (const url of [
    '', 'hostb', 'root@hostb', 'ssh:/hostb', 'ssh://', 'ssh:///', 'SSH://hostb', 'ferry://hostb:7797', ' ssh://hostb', 'ssh://hostb ',
    'ssh://u@', 'ssh://@hostb', 'ssh://a@b@c', 'ssh://u:pw@hostb', 'ssh://hostb:', 'ssh://hostb:123456', 'ssh://hostb:22:33', 'ssh://hostb:x',
    'ssh://hostb/path', 'ssh://hostb//', 'ssh://host b', 'ssh://hostb;id', 'ssh://$(id)', 'ssh://`id`', 'ssh://hostb\n', 'ssh://fd00::2', 'ssh://[fd00::2',
    'ssh://[hostb]', 'ssh://hôst',
    // A leading dash would reach ssh as an option (-F reads a config file, which may run a ProxyCommand).
    'ssh://-Fconfig', 'ssh://-oProxyCommand', 'ssh://-Fconfig@hostb', 'ssh://-l@hostb:22', 'ssh://--', 'ssh://-',
  ]) {
    assert.throws(() => parseSshUrl(url), isErr(`invalid destination "${url}": use ssh://[user@]host[:port]`), JSON.stringify(url));
  }
  for (const url of ['ssh://hostb:0', 'ssh://hostb:65536', 'ssh://u@hostb:99999', 'ssh://[fd00::2]:00000']) {
    assert.throws(() => parseSshUrl(url), isErr(`invalid port in "${url}"`), url);
  }
});

test('shellQuote: plain words as they are, anything else in single quotes that the shell gives back unchanged', () => {
  assert.equal(shellQuote('migrate-receive'), 'migrate-receive');
  assert.equal(shellQuote('--root=/var/lib/ferry'), '--root=/var/lib/ferry');
  assert.equal(shellQuote('user@host:22/x+y%z'), 'user@host:22/x+y%z');
  assert.equal(shellQuote('a b'), "'a b'");
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.equal(shellQuote(''), "''");
  const words = ['a b', "it's", "'", "''", '"', '$(id)', '`id`', '$HOME', 'a\nb', '*', '~', '-n', '', '\\', 'x;y', 'a|b', '&', '{a,b}', 'é'];
  for (const w of words) {
    const r = spawnSync('sh', ['-c', `printf '%s' ${shellQuote(w)}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, w, JSON.stringify(w));
  }
  // Several words stay several words.
  const r = spawnSync('sh', ['-c', `printf '[%s]' ${words.map(shellQuote).join(' ')}`], { encoding: 'utf8' });
  assert.equal(r.stdout, words.map((w) => `[${w}]`).join(''));
});

test('preferAes: ssh\'s built-in list with AES-GCM first, the same ciphers; a configured list, or one without it, is left alone', () => {
  const builtIn = 'chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com';
  const got = preferAes(builtIn, builtIn);
  assert.equal(got, 'aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes256-gcm@openssh.com');
  assert.deepEqual(got!.split(',').sort(), builtIn.split(',').sort());
  // The configuration for this host (or a system policy) chose its own list: it stays.
  assert.equal(preferAes('aes256-gcm@openssh.com,aes128-gcm@openssh.com', builtIn), undefined);
  assert.equal(preferAes('chacha20-poly1305@openssh.com', builtIn), undefined);
  // No AES-GCM to offer, AES-GCM first already, or no answer from ssh -G.
  assert.equal(preferAes('chacha20-poly1305@openssh.com,aes128-ctr', 'chacha20-poly1305@openssh.com,aes128-ctr'), undefined);
  assert.equal(preferAes('aes128-gcm@openssh.com,chacha20-poly1305@openssh.com', 'aes128-gcm@openssh.com,chacha20-poly1305@openssh.com'), undefined);
  assert.equal(preferAes(undefined, builtIn), undefined);
  assert.equal(preferAes(builtIn, undefined), undefined);
});

test('sshCipherOrder asks this machine\'s ssh; a Ciphers option of the user\'s wins', async () => {
  const aes = /^(flags|Features)\s*:.*\baes\b/m.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  const ciphers = (...config: string[]): string | undefined =>
    /^ciphers (\S+)$/m.exec(spawnSync('ssh', ['-G', ...config, '-p', '2222', 'root@10.77.0.9'], { encoding: 'utf8' }).stdout)?.[1];
  const builtIn = ciphers('-F', '/dev/null');
  assert.ok(builtIn, 'ssh -G printed no ciphers');
  const got = await sshCipherOrder({ user: 'root', host: '10.77.0.9', port: 2222 });
  // AES-GCM first only if this machine's ssh configuration chose no ciphers for that host.
  if (aes && ciphers() === builtIn) {
    assert.equal(got?.split(',')[0], 'aes128-gcm@openssh.com');
    assert.deepEqual(got!.split(',').sort(), builtIn.split(',').sort());
  } else assert.equal(got, undefined);
  // Options of the user's that choose no ciphers change nothing.
  assert.equal(await sshCipherOrder({ user: 'root', host: '10.77.0.9', port: 2222 }, { options: ['LogLevel=ERROR', 'StrictHostKeyChecking=no'] }), got);
  for (const opt of ['Ciphers=aes256-ctr', 'ciphers aes256-ctr', ' CIPHERS=+aes256-cbc']) {
    assert.equal(await sshCipherOrder({ host: '10.77.0.9' }, { options: ['LogLevel=ERROR', opt] }), undefined, opt);
  }
});

// ------------------------------------------------------------------------- ferry://

test('parseServiceUrl: the largest port, names with dots and dashes; the messages of its refusals', () => {
  assert.deepEqual(parseServiceUrl('ferry://hostb:65535'), { host: 'hostb', port: 65535 });
  assert.deepEqual(parseServiceUrl('tcp://host-b.example.com:7797/'), { host: 'host-b.example.com', port: 7797 });
  assert.deepEqual(parseServiceUrl('ferry://[::1]:7797'), { host: '::1', port: 7797 });
  for (const url of [
    'ferry://hostb', 'ferry://hostb:', 'ferry://:7797', 'ferry://hostb:123456', 'ferry://hostb:7797/x', 'ferry://fd00::2:7797', 'FERRY://hostb:7797',
    ' ferry://hostb:7797', 'ferry:/hostb:7797', 'hostb:7797', 'ferry://host b:7797', 'ferry://hostb:-1', 'udp://hostb:7797', 'ferry://[fd00::2]',
  ]) {
    assert.throws(() => parseServiceUrl(url), isErr(`invalid address "${url}": use ferry://host:port`), JSON.stringify(url));
  }
  for (const url of ['ferry://hostb:0', 'tcp://hostb:65536', 'ferry://[fd00::2]:99999']) {
    assert.throws(() => parseServiceUrl(url), isErr(`invalid port in "${url}"`), url);
  }
});

test('isServiceUrl: ferry:// and tcp:// only', () => {
  for (const u of ['ferry://hostb:7797', 'tcp://hostb:7797', 'ferry://', 'tcp://']) assert.equal(isServiceUrl(u), true, u);
  for (const u of ['ssh://hostb', 'FERRY://hostb:1', 'xferry://hostb:1', 'ferry:/hostb', ' ferry://hostb:1', 'hostb:7797', '']) assert.equal(isServiceUrl(u), false, u);
});

test('parseListenUrl: any address and IPv6 in brackets; the messages of its refusals', () => {
  assert.deepEqual(parseListenUrl('tcp://[::]:7797'), { host: '::', port: 7797 });
  assert.deepEqual(parseListenUrl('tcp://127.0.0.1:65535/'), { host: '127.0.0.1', port: 65535 });
  for (const url of ['ferry://0.0.0.0:7797', 'tcp://0.0.0.0', 'tcp://:7797', '0.0.0.0:7797', 'tcp://0.0.0.0:7797/x']) {
    assert.throws(() => parseListenUrl(url), isErr(`invalid --listen "${url}": use tcp://ADDR:PORT (e.g. tcp://0.0.0.0:7797)`), url);
  }
  for (const url of ['tcp://0.0.0.0:0', 'tcp://0.0.0.0:65536']) {
    assert.throws(() => parseListenUrl(url), isErr(`invalid port in --listen "${url}"`), url);
  }
});

test('displayTarget: brackets around IPv6 only, and it parses back', () => {
  assert.equal(displayTarget({ host: 'hostb', port: 7797 }), 'hostb:7797');
  assert.equal(displayTarget({ host: '10.0.0.2', port: 1 }), '10.0.0.2:1');
  assert.equal(displayTarget({ host: 'fd00::2', port: 7797 }), '[fd00::2]:7797');
  for (const url of ['ferry://hostb:7797', 'ferry://[fd00::2]:7797', 'ferry://10.0.0.2:1']) {
    assert.equal(`ferry://${displayTarget(parseServiceUrl(url))}`, url);
  }
});
