export const VERSION = '0.1.0';

/**
 * The version of Bun, the runtime compiled into ferry. (Bun also reports a Node version of its
 * own as process.version, which is not the runtime in use.)
 */
export function bunVersion(): string {
  return (process.versions as Record<string, string | undefined>).bun ?? 'unknown';
}
