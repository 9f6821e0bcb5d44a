import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../../src/lib/errors.js';
import { scratchEngine } from '../helpers/records.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fy-volnet-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const einval = (re: RegExp) => (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && re.test(e.message);

test('volumes and networks: a volume without a name gets a random one; only bridge networks; the default network stays', async () => {
  const e = scratchEngine(dir, 'volnet');
  const v = e.createVolume(undefined, { k: 'v' });
  assert.match(v.Name, /^[0-9a-f]{64}$/);
  assert.deepEqual(e.volumes.get(v.Name).Labels, { k: 'v' });
  assert.notEqual(e.createVolume(undefined).Name, v.Name);
  assert.equal(e.createVolume('named').Name, 'named');
  assert.throws(() => e.createNetwork('n1', { driver: 'macvlan' }), einval(/^unsupported network driver "macvlan": only bridge$/));
  await assert.rejects(e.removeNetwork('ferry'), einval(/^the default network "ferry" cannot be removed$/));
});
