/**
 * Pods: containers that share namespaces (net, ipc, uts by default) held by an infra
 * container. The infra is an ordinary container record marked `infra`, running a static
 * busybox `sleep`; members join its namespaces by path, so a member can be checkpointed alone
 * and restored into the namespaces of another pod's infra.
 *
 * Hostname: CRIU writes a member's dumped hostname into the UTS namespace it joins, so after
 * restoring a member into a pod, Ferry sets the pod's own hostname again: every member of a
 * pod always sees the pod's hostname.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FerryError } from '../lib/errors.js';
import { run, runOk, which } from '../lib/exec.js';
import { mkdirp } from '../lib/fsutil.js';
import { newId, validName } from '../lib/ids.js';
import { withLock } from '../lib/lock.js';
import { processAlive, waitFor } from '../lib/proc.js';
import { versionAtLeast } from '../drivers/criu/criu.js';
import { holdTraffic } from '../drivers/network/cni.js';
import type { Engine } from './engine.js';
import { findPod, getPod, listPods, podNamespaces, removePodRecord, savePod, SHAREABLE, type PodRecord, type SharedNs } from './podstore.js';
import { toExited } from './state.js';
import type { ContainerRecord } from './types.js';

const INFRA_IMAGE = 'localhost/ferry-infra:latest';

export interface PodCreateOptions {
  name?: string;
  share?: string[];
  hostname?: string;
  publish?: string[];
  network?: string;
  /** The command line that creates it (Podman's CreateCommand). */
  createCommand?: string[];
}

/** Podman's minimum for restoring into a pod (CRIU 3.16), and a runc that joins namespaces by path on restore. */
const POD_CRIU = [3, 16] as const;
const POD_RUNC = [1, 1] as const;

/** Refuses when this host's CRIU or runc cannot restore a container into a pod's namespaces. */
export async function requirePodRestore(engine: Engine): Promise<void> {
  const criu = (await engine.criu()).version;
  if (!versionAtLeast(criu, POD_CRIU)) {
    throw new FerryError('EDEPEND', `restoring into a pod needs CRIU ${POD_CRIU.join('.')} or newer, this host has ${criu ?? 'none'}: upgrade CRIU (\`npm run setup\` installs one that works)`);
  }
  const runc = (await engine.runtimeVersion()).replace(/[^0-9.].*$/, '');
  if (!versionAtLeast(runc, POD_RUNC)) {
    throw new FerryError('EDEPEND', `restoring into a pod needs runc ${POD_RUNC.join('.')} or newer (it joins the pod's namespaces on restore), this host has ${runc || 'an unknown version'}: upgrade runc`);
  }
}

/** Every pod, each repaired first if a killed pod command left it half-way. */
export async function listPodsRepaired(engine: Engine): Promise<PodRecord[]> {
  const out: PodRecord[] = [];
  for (const p of listPods(engine)) out.push(p.op ? await repairPod(engine, p) : p);
  return out;
}

export function parseShare(share: string[] | undefined): SharedNs[] {
  const list = (share ?? ['net,ipc,uts']).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const s of list) {
    if (!SHAREABLE.includes(s as SharedNs)) throw new FerryError('EINVAL', `cannot share namespace "${s}" in a pod: use any of ${SHAREABLE.join(', ')}`);
  }
  return [...new Set(list as SharedNs[])].sort();
}

/** The infra image: a static busybox, made on first use from the host's busybox-static. */
async function infraImage(engine: Engine): Promise<string> {
  const have = engine.images.find(INFRA_IMAGE);
  if (have) return have.Id;
  const bb = ['/bin/busybox', which('busybox')].find((p) => p && fs.existsSync(p));
  if (!bb) throw new FerryError('EDEPEND', 'busybox-static is not installed (pods need it for their infra container): run `npm run setup`');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-infra-'));
  try {
    mkdirp(path.join(dir, 'rootfs', 'bin'));
    fs.copyFileSync(bb, path.join(dir, 'rootfs', 'bin', 'busybox'));
    fs.chmodSync(path.join(dir, 'rootfs', 'bin', 'busybox'), 0o755);
    for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp']) mkdirp(path.join(dir, 'rootfs', d));
    const tar = path.join(dir, 'infra.tar');
    await runOk(['tar', '--sort=name', '--mtime=2024-01-01 00:00Z', '--owner=0', '--group=0', '--numeric-owner', '-C', path.join(dir, 'rootfs'), '-cf', tar, '.'], { what: 'making the infra image' });
    return (await engine.importImage(tar, INFRA_IMAGE)).Id;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function createPod(engine: Engine, o: PodCreateOptions): Promise<PodRecord> {
  const share = parseShare(o.share);
  if (o.name !== undefined && !validName(o.name)) throw new FerryError('EINVAL', `invalid pod name "${o.name}": use letters, digits, '_', '.', '-'`);
  if ((o.publish?.length || o.network) && !share.includes('net')) throw new FerryError('EINVAL', '-p and --network need a pod that shares its network (--share net)');
  const id = newId();
  const name = o.name ?? `pod_${id.slice(0, 8)}`;
  const img = await infraImage(engine);
  return withLock(
    path.join(engine.paths.locks, 'pods.lock'),
    async () => {
      if (findPod(engine, name)) throw new FerryError('EEXIST', `the pod name "${name}" is already in use: choose another`);
      const infra = await engine.create({
        image: img,
        command: ['/bin/busybox', 'sleep', '2147483647'],
        name: `${id.slice(0, 12)}-infra`,
        hostname: o.hostname ?? name,
        network: share.includes('net') ? o.network : 'none',
        publish: o.publish,
        stopSignal: 'KILL',
        stopTimeout: 0,
        labels: { 'io.ferry.pod': id },
        infraOf: id,
        createCommand: o.createCommand,
      });
      const pod: PodRecord = { id, name, created: new Date().toISOString(), infraId: infra.config.id, share, hostname: o.hostname ?? name, ...(o.createCommand ? { createCommand: o.createCommand } : {}) };
      savePod(engine, pod);
      return pod;
    },
    { what: 'the pod registry' },
  );
}

export function podMembers(pod: PodRecord, recs: ContainerRecord[]): ContainerRecord[] {
  return recs.filter((r) => r.config.pod === pod.id && !r.config.infraOf);
}

/** Starts the pod's infra if it is not running; returns its current record. */
export async function ensureInfra(engine: Engine, pod: PodRecord): Promise<ContainerRecord> {
  const infra = engine.find(pod.infraId);
  if (!infra) throw new FerryError('ENOTFOUND', `the infra container of pod ${pod.name} is gone: remove the pod and create it again`);
  if (infra.state.status === 'running') return infra;
  return engine.start(pod.infraId);
}


/** CRIU restored a member's old hostname into the pod's UTS namespace: put the pod's back. */
export async function resetPodHostname(engine: Engine, pod: PodRecord): Promise<void> {
  if (!pod.share.includes('uts')) return;
  const infra = engine.find(pod.infraId);
  if (!infra || infra.state.status !== 'running') return;
  await run(['nsenter', `--uts=/proc/${infra.state.pid}/ns/uts`, '--', '/bin/sh', '-c', 'echo "$0" > /proc/sys/kernel/hostname', pod.hostname]);
}

/**
 * A pod checkpoint whose ferry died: before its dumps were all committed, thaw every member (the
 * pod runs on; a dump still in progress is waited for, as CRIU re-freezes what it dumped); after,
 * finish it: stop the members still frozen and the infra, and record the pod as checkpointed.
 * Idempotent, so two commands repairing at once agree.
 */
export async function repairPod(engine: Engine, pod: PodRecord): Promise<PodRecord> {
  const op = pod.op;
  if (!op || processAlive(op.pid, op.startTime)) return pod;
  const members = podMembers(pod, await engine.list({ all: true }));
  if (op.phase === 'stopping' && op.members) {
    for (const id of op.members) {
      await engine
        .withContainer(id, async (r) => {
          if (r.state.status === 'running' || r.state.status === 'paused') await takeDown(engine, r);
        })
        .catch(() => undefined);
    }
    await engine.stop(pod.infraId, 0).catch(() => undefined);
    pod.checkpoint = { at: new Date().toISOString(), members: op.members, address: op.address, tcpEstablished: !!op.tcpEstablished };
  } else {
    // Before thawing, let every runc the dead ferry started finish (a dump, or a `runc pause`
    // still on its way, which would otherwise freeze a member again after the thaw).
    await waitFor(() => members.every((m) => !engine.runtime.busy(m.config.id).length), 120_000, 50);
    for (const m of members) await engine.runtime.resume(m.config.id).catch(() => undefined);
  }
  delete pod.op;
  savePod(engine, pod);
  return pod;
}

/** Kills a member frozen or restored by a pod operation and records it as checkpointed-and-exited. */
export async function takeDown(engine: Engine, rec: ContainerRecord): Promise<void> {
  // Every process, while still frozen: killing only the init would let the others run on
  // for a moment after the thaw (until the PID namespace is torn down) and change files the
  // dump recorded (a child writing out what was still buffered: "File ... has bad size").
  await engine.runtime.kill(rec.config.id, 'KILL', true).catch(() => undefined);
  await engine.runtime.resume(rec.config.id).catch(() => undefined); // a frozen task dies once thawed
  await engine.waitExit(rec, 5000);
  await engine.releaseRuntime(rec);
  toExited(rec.state, 0);
  rec.state.restored = false;
  engine.save(rec);
}

export async function startPod(engine: Engine, ref: string): Promise<PodRecord> {
  const pod = await repairPod(engine, getPod(engine, ref));
  await ensureInfra(engine, pod);
  for (const m of podMembers(pod, await engine.list({ all: true }))) {
    if (m.state.status !== 'running' && !m.state.checkpointed) await engine.start(m.config.id);
  }
  return pod;
}

export async function stopPod(engine: Engine, ref: string, timeoutSec?: number): Promise<PodRecord> {
  const pod = await repairPod(engine, getPod(engine, ref));
  for (const m of podMembers(pod, await engine.list({ all: true }))) await engine.stop(m.config.id, timeoutSec);
  await engine.stop(pod.infraId, 0);
  return pod;
}

export async function killPod(engine: Engine, ref: string, signal: string): Promise<PodRecord> {
  const pod = await repairPod(engine, getPod(engine, ref));
  for (const m of podMembers(pod, await engine.list())) await engine.kill(m.config.id, signal);
  return pod;
}

export async function removePod(engine: Engine, ref: string, force: boolean): Promise<PodRecord> {
  const pod = await repairPod(engine, getPod(engine, ref));
  const members = podMembers(pod, await engine.list({ all: true }));
  if (members.length && !force) {
    throw new FerryError('ESTATE', `pod ${pod.name} has containers (${members.map((m) => m.config.name).join(', ')}): remove them first or use --force`);
  }
  for (const m of members) await engine.remove(m.config.id, { force: true });
  if (engine.find(pod.infraId)) await engine.remove(pod.infraId, { force: true });
  removePodRecord(engine, pod.id);
  return pod;
}

/**
 * Holds all traffic in a pod's network namespace while its members are restored one by one.
 * Two members connected over localhost are restored separately: without this, the first one
 * restored talks to a peer socket that does not exist yet, gets a reset, and the connection
 * dies. With the hold, packets are dropped until every member is back, and TCP retransmits
 * them then.
 */
export async function lockPodNetwork(pod: PodRecord, infra: ContainerRecord): Promise<() => Promise<void>> {
  const netns = podNamespaces(pod, infra).network;
  return netns ? holdTraffic(netns) : async () => undefined;
}

// ------------------------------------------------------------------------- status

/** A pod's status in Podman's words. */
export type PodStatus = 'Created' | 'Running' | 'Degraded' | 'Stopped' | 'Dead';

/**
 * Dead without its infra; Created or Stopped (with members) while the infra does not run;
 * Running when every member runs too, Degraded when some do not.
 */
export function podStatus(infra: ContainerRecord | undefined, members: ContainerRecord[]): PodStatus {
  if (!infra) return 'Dead';
  if (infra.state.status !== 'running') return members.length ? 'Stopped' : 'Created';
  return members.every((m) => m.state.status === 'running') ? 'Running' : 'Degraded';
}

/** A pod as `pod ps` and `pod inspect` show it: its record, containers and status. */
export interface PodView {
  pod: PodRecord;
  infra?: ContainerRecord;
  members: ContainerRecord[];
  status: PodStatus;
  /** The members plus the infra (when it exists). */
  containers: number;
}

function podView(pod: PodRecord, recs: ContainerRecord[]): PodView {
  const infra = recs.find((r) => r.config.id === pod.infraId);
  const members = podMembers(pod, recs);
  return { pod, infra, members, status: podStatus(infra, members), containers: members.length + (infra ? 1 : 0) };
}

/** Every pod, each repaired first if a killed pod command left it half-way. */
export async function listPodViews(engine: Engine): Promise<PodView[]> {
  const pods = await listPodsRepaired(engine);
  const recs = await engine.list({ all: true });
  return pods.map((p) => podView(p, recs));
}

/** The pods named (each must exist), each repaired first if a killed pod command left it half-way. */
export async function inspectPods(engine: Engine, refs: string[]): Promise<PodView[]> {
  const pods: PodRecord[] = [];
  for (const r of refs) pods.push(await repairPod(engine, getPod(engine, r)));
  const recs = await engine.list({ all: true });
  return pods.map((p) => podView(p, recs));
}
