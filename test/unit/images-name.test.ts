import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeImageName } from '../../src/drivers/storage/images.js';
import { FerryError } from '../../src/lib/errors.js';

test('normalizeImageName: short names go to localhost with :latest', () => {
  const cases: [string, string][] = [
    ['busybox', 'localhost/busybox:latest'],
    ['busybox:1.36', 'localhost/busybox:1.36'],
    ['BusyBox', 'localhost/busybox:latest'],
    ['  busybox  ', 'localhost/busybox:latest'],
    ['library/busybox', 'localhost/library/busybox:latest'],
    ['localhost/busybox', 'localhost/busybox:latest'],
    ['localhost/busybox:v1', 'localhost/busybox:v1'],
    ['quay.io/org/img', 'quay.io/org/img:latest'],
    ['quay.io/org/img:tag', 'quay.io/org/img:tag'],
    ['registry:5000/img', 'registry:5000/img:latest'],
    ['registry:5000/img:2', 'registry:5000/img:2'],
    ['my-image_x.y', 'localhost/my-image_x.y:latest'],
    ['a__b', 'localhost/a__b:latest'],
    ['a--b', 'localhost/a--b:latest'],
    ['a.b.c/x', 'a.b.c/x:latest'],
  ];
  for (const [input, want] of cases) assert.equal(normalizeImageName(input), want, input);
});

test('normalizeImageName is idempotent', () => {
  for (const n of ['busybox', 'a/b:c', 'quay.io/x/y:1']) {
    const once = normalizeImageName(n);
    assert.equal(normalizeImageName(once), once);
  }
});

test('normalizeImageName rejects invalid names with EINVAL', () => {
  for (const bad of ['', ' ', 'a b', 'UPPER CASE', '-lead', 'trail-', 'a//b', 'a::b', 'x@y', 'a/', '/a', 'img:', ':tag', 'a:b:c', 'a..b', 'a/b:c/d', 'a:-tag']) {
    assert.throws(() => normalizeImageName(bad), (e: unknown) => e instanceof FerryError && e.code === 'EINVAL' && /invalid image name/.test(e.message), JSON.stringify(bad));
  }
});
