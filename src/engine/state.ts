/**
 * A container's state transitions, each in one place: every module that changes a container's
 * status calls one of these (and saves the record), instead of writing the fields by hand.
 */
import type { Started } from '../drivers/runtime/runc.js';
import type { ContainerState } from './types.js';

const now = (): string => new Date().toISOString();

/** conmon has started (or restored) the container: running, with fresh PIDs. */
export function toRunning(s: ContainerState, started: Started, extra: Partial<ContainerState> = {}): void {
  Object.assign(s, {
    status: 'running',
    pid: started.pid,
    conmonPid: started.conmonPid,
    conmonStartTime: started.conmonStartTime,
    exitCode: 0,
    startedAt: now(),
    finishedAt: undefined,
    error: undefined,
    checkpointed: false,
    restored: false,
    oomKilled: undefined,
    stoppedByUser: undefined,
    restarting: undefined,
    ...extra,
  });
}

/** A start or restore that a killed ferry left behind turned out to run: adopt runc's view. */
export function toAdopted(s: ContainerState, status: 'running' | 'paused', pid: number, conmonPid: number, conmonStartTime: number | undefined, restored: boolean): void {
  Object.assign(s, { status, pid, conmonPid, conmonStartTime });
  s.startedAt ??= now();
  // A restore's checkpoint directory stays (as with --keep): its options are unknown.
  if (restored) Object.assign(s, { restored: true, restoredAt: now(), checkpointed: false, exitCode: 0, finishedAt: undefined });
}

/** The container's processes are gone (stopped, killed, checkpointed, or died). */
export function toExited(s: ContainerState, exitCode: number, finishedAt = now()): void {
  Object.assign(s, { status: 'exited', exitCode, pid: 0, conmonPid: 0, finishedAt });
}

/** A start that got only as far as `runc create` was undone: back to what it was before. */
export function toStartUndone(s: ContainerState): void {
  s.status = s.checkpointed || s.startedAt ? 'exited' : 'created';
}

/** Frozen by the cgroup freezer (pause, or a migration's frozen copy). */
export function toPaused(s: ContainerState, error?: string): void {
  s.status = 'paused';
  if (error !== undefined) s.error = error;
}

/** Thawed: running again, with its traffic (if a migration held it) flowing. */
export function toUnpaused(s: ContainerState): void {
  Object.assign(s, { status: 'running', error: undefined, trafficHeld: undefined });
}

/** A checkpoint of the container is committed at dir. */
export function toCheckpointed(s: ContainerState, dir: string, o: { at?: string; log?: string; stopped: boolean }): void {
  Object.assign(s, { checkpointed: true, checkpointedAt: o.at ?? now(), checkpointPath: dir, checkpointLog: o.log, error: undefined });
  if (o.stopped) s.restored = false;
}

/** The container's checkpoint was used up by a restore or removed. */
export function withoutCheckpoint(s: ContainerState): void {
  Object.assign(s, { checkpointed: false, checkpointPath: undefined });
}
