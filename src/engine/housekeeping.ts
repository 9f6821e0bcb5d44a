/** `system df`, `container prune`, `system prune`: what Ferry's storage holds, and clearing what nothing uses. */
import { duBytes } from '../lib/fsutil.js';
import type { Engine } from './engine.js';

export interface DiskUsageRow {
  Type: 'Images' | 'Containers' | 'Local Volumes';
  Total: number;
  Active: number;
  Size: number;
  Reclaimable: number;
}

const live = (s: string): boolean => s === 'running' || s === 'paused';

/** Podman's `system df` summary: images, containers (their writable layer), volumes. */
export async function diskUsage(engine: Engine): Promise<DiskUsageRow[]> {
  const recs = await engine.list({ all: true });
  const used = new Set(recs.map((r) => r.config.imageId));
  const images = engine.images.list();
  const imgSize = images.reduce((n, i) => n + i.Size, 0);
  const ctrSizes = recs.map((r) => ({ live: live(r.state.status), size: duBytes(engine.paths.layer(r.config.id).upper) }));
  const volNames = new Set(recs.flatMap((r) => r.config.mounts.filter((m) => m.type === 'volume').map((m) => m.source)));
  const vols = engine.volumes.list().map((v) => ({ used: volNames.has(v.Name), size: duBytes(v.Mountpoint) }));
  return [
    { Type: 'Images', Total: images.length, Active: images.filter((i) => used.has(i.Id)).length, Size: imgSize, Reclaimable: images.filter((i) => !used.has(i.Id)).reduce((n, i) => n + i.Size, 0) },
    { Type: 'Containers', Total: recs.length, Active: ctrSizes.filter((c) => c.live).length, Size: ctrSizes.reduce((n, c) => n + c.size, 0), Reclaimable: ctrSizes.filter((c) => !c.live).reduce((n, c) => n + c.size, 0) },
    { Type: 'Local Volumes', Total: vols.length, Active: vols.filter((v) => v.used).length, Size: vols.reduce((n, v) => n + v.size, 0), Reclaimable: vols.filter((v) => !v.used).reduce((n, v) => n + v.size, 0) },
  ];
}

export interface PruneReport {
  containers: string[];
  images: string[];
  volumes: string[];
  /** Bytes freed (containers' writable layers, images, volumes). */
  reclaimed: number;
}

/**
 * Removes every container that is not running or paused (a checkpointed one too, with its
 * checkpoint, as Podman's prune); pod infra containers stay (`ferry pod rm` removes those).
 */
export async function pruneContainers(engine: Engine): Promise<{ ids: string[]; reclaimed: number }> {
  const ids: string[] = [];
  let reclaimed = 0;
  for (const r of await engine.list({ all: true })) {
    if (live(r.state.status) || r.config.infraOf) continue;
    const size = duBytes(engine.paths.layer(r.config.id).upper);
    try {
      await engine.remove(r.config.id);
    } catch {
      continue; // started or removed meanwhile
    }
    ids.push(r.config.id);
    reclaimed += size;
  }
  return { ids, reclaimed };
}

/** `system prune`: stopped containers, then dangling images (all unused with `all`), then unused volumes with `volumes`. */
export async function systemPrune(engine: Engine, o: { all?: boolean; volumes?: boolean } = {}): Promise<PruneReport> {
  const c = await pruneContainers(engine);
  const sizes = new Map(engine.images.list().map((i) => [i.Id, i.Size]));
  const images = await engine.pruneImages(!!o.all);
  const volumes: string[] = [];
  let volBytes = 0;
  if (o.volumes) {
    const recs = await engine.list({ all: true });
    const usedVols = new Set(recs.flatMap((r) => r.config.mounts.filter((m) => m.type === 'volume').map((m) => m.source)));
    for (const v of engine.volumes.list()) {
      if (usedVols.has(v.Name)) continue;
      const size = duBytes(v.Mountpoint);
      try {
        await engine.removeVolume(v.Name);
      } catch {
        continue;
      }
      volumes.push(v.Name);
      volBytes += size;
    }
  }
  return { containers: c.ids, images, volumes, reclaimed: c.reclaimed + images.reduce((n, id) => n + (sizes.get(id) ?? 0), 0) + volBytes };
}
