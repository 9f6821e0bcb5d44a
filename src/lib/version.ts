export const VERSION = '0.1.0';

/**
 * Bun's version when Bun runs Ferry (it reports a Node version of its own as process.version,
 * which is not the runtime in use), else undefined.
 */
export function bunVersion(): string | undefined {
  return (process.versions as Record<string, string | undefined>).bun;
}
