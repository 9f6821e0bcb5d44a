/**
 * Opens the engine with every operation's repair handler wired in: the composition root that
 * the CLI and the API use. The Engine class itself imports no operation module, so none of them
 * is reached through a cycle.
 */
import { repairCheckpoint } from './checkpoint.js';
import { Engine, type EngineOptions } from './engine.js';
import { repairMigration } from './migrate/repair.js';
import { ensureInfra } from './pods.js';
import { repairRestore } from './restore.js';

export function openEngine(opts: EngineOptions): Engine {
  return new Engine(opts, { repairs: { checkpoint: repairCheckpoint, restore: repairRestore, migrate: repairMigration }, ensureInfra });
}
