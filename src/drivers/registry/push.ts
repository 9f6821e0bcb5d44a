/**
 * Push: the image's blobs exactly as stored (so its digests and ID are the same at the
 * destination), those the repository lacks, then its manifest under the tag.
 */
import * as fs from 'node:fs';
import { FerryError } from '../../lib/errors.js';
import type { ImageRecord, ImageStore } from '../storage/images.js';
import { RegistryClient, type ClientOptions } from './client.js';
import { referenceString, type ImageReference } from './reference.js';

export async function pushImage(
  store: ImageStore,
  img: ImageRecord,
  dest: ImageReference,
  o: ClientOptions & { progress?: (line: string) => void; bytes?: (digest: string, sent: number, total: number) => void },
): Promise<string> {
  const say = o.progress ?? (() => undefined);
  const client = new RegistryClient(dest, { ...o, push: true });
  const manBlob = store.blob(img.Digest);
  const man = store.manifest(img);
  say('Getting image source signatures');
  for (const d of [...man.layers, man.config]) {
    const what = d === man.config ? 'config' : 'blob';
    if (!store.hasBlob(d.digest)) {
      throw new FerryError('ENOTFOUND', `${what} ${d.digest.slice(0, 19)}… of ${img.Names[0] ?? img.Id.slice(0, 12)} is not stored here (the image came by migration): pull or load it again to push it`);
    }
    if (await client.hasBlob(d.digest)) {
      say(`Copying ${what} ${d.digest.slice(7, 19)} skipped: already exists`);
      continue;
    }
    const file = store.blobFile(d.digest);
    const size = fs.statSync(file).size;
    const open = (): fs.ReadStream => {
      const s = fs.createReadStream(file);
      if (o.bytes && d !== man.config) {
        let n = 0;
        s.on('data', (c) => o.bytes!(d.digest, (n += c.length), size));
      }
      return s;
    };
    await client.putBlob(d.digest, { length: size, open });
    say(`Copying ${what} ${d.digest.slice(7, 19)} done`);
  }
  say('Writing manifest to image destination');
  await client.putManifest(dest.digest ?? dest.tag ?? 'latest', man.mediaType ?? img.ManifestType, manBlob);
  say(`Pushed ${referenceString(dest)}`);
  return img.Digest;
}
