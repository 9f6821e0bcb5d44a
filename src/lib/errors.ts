/**
 * Errors a user sees. Every failure Ferry reports is a FerryError with a stable code and a
 * one-line message that says what to do. Drivers throw them too, so they live in lib.
 */
export type ErrorCode =
  | 'ENOTFOUND' // no such container, image, volume, checkpoint
  | 'EEXIST' // name already in use
  | 'EINVAL' // bad flag value or bad input
  | 'ESTATE' // operation not allowed in the container's current state
  | 'EPERM' // not root
  | 'EDEPEND' // host dependency missing
  | 'ERUNTIME' // runc/conmon failed
  | 'ECRIU' // CRIU failed
  | 'EUNSUPPORTED' // kernel/CRIU lacks a feature
  | 'ELOCK' // could not take a lock in time
  | 'EARCHIVE' // bad, corrupt or unsafe archive
  | 'EINTERNAL';

export class FerryError extends Error {
  readonly code: ErrorCode;
  /** Extra detail for logs and --log-level debug; never needed to understand the error. */
  readonly detail?: string;
  /** Exit code the CLI should use (Podman uses 125 for engine errors). */
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, opts: { detail?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'FerryError';
    this.code = code;
    this.detail = opts.detail;
    this.exitCode = opts.exitCode ?? 125;
  }
}

export function isFerryError(e: unknown, code?: ErrorCode): e is FerryError {
  return e instanceof FerryError && (code === undefined || e.code === code);
}
