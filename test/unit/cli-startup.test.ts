// The CLI defines only the commands a run can reach, and prints without process.stdout's stream
// set-up: what a user sees must not change (help lists every command, a mistyped one is named,
// `ferry container X` and `ferry X` both work, a closed pipe ends quietly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { commandWord } from '../../src/cli/context.js';

const FERRY = path.resolve(import.meta.dirname, '../../bin/ferry');
const ferry = (...args: string[]) => spawnSync(FERRY, args, { encoding: 'utf8', timeout: 20_000 });

test('commandWord skips the global options and their values', () => {
  assert.equal(commandWord(['ps']), 'ps');
  assert.equal(commandWord(['--root', '/r', '--runroot', '/x', 'container', 'ps']), 'container');
  assert.equal(commandWord(['--log-level', 'debug', '--runtime', '/usr/sbin/runc', 'run', 'img']), 'run');
  assert.equal(commandWord(['--root=/r', 'images']), 'images');
  assert.equal(commandWord(['--help']), undefined);
  assert.equal(commandWord([]), undefined);
});

test('help lists the commands of every group; each group and `container X` still parse', () => {
  const help = ferry('--help');
  assert.equal(help.status, 0, help.stderr);
  for (const c of ['run', 'ps', 'checkpoint', 'restore', 'pull', 'images', 'volume', 'network', 'system', 'migrate', 'pod', 'container']) {
    assert.match(help.stdout, new RegExp(`^  ${c}\\b`, 'm'), `ferry --help lists ${c}`);
  }
  for (const args of [['container', 'ps', '--help'], ['ps', '--help'], ['pod', 'ps', '--help'], ['image', 'ls', '--help'], ['--root', '/nonexistent', 'migrate', '--help']]) {
    const r = ferry(...args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: ferry /m, args.join(' '));
  }
  assert.match(ferry('container', '--help').stdout, /^  checkpoint\b/m);
});

test('a mistyped command is named with a suggestion; --version prints the version', () => {
  const r = ferry('chekpoint');
  assert.equal(r.status, 125);
  assert.match(r.stderr, /^Error: unknown command 'chekpoint'/);
  assert.match(r.stderr, /checkpoint/);
  const v = ferry('--version');
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+/);
});

test('a reader that goes away ends the command quietly', () => {
  // The reader (`true`) is gone before ferry writes: the write meets a closed pipe.
  const r = spawnSync('bash', ['-c', '{ sleep 0.3; "$0" --help; echo "status=$?" >&2; } | true', FERRY], { encoding: 'utf8', timeout: 20_000 });
  assert.match(r.stderr, /status=0/, r.stderr);
  assert.doesNotMatch(r.stderr, /Error|EPIPE/, r.stderr);
});
