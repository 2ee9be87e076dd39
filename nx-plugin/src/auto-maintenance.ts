/**
 * Automatic maintenance without a sidecar and without task hooks: createNodes
 * (which runs when Nx computes the project graph: every `nx` command with the
 * daemon off, each graph recomputation with it on) starts a detached
 * `nxops maintain --if-due` at most once per check interval. It never waits for
 * it, so no run gets longer.
 *
 * Rate limit, in this order, all without spawning anything:
 * - once per process and interval (Nx's plugin worker lives across many graph
 *   computations with the daemon on);
 * - not while the last check's stamp (`<state>/maintenance.json`, written by
 *   nxops) is younger than the interval.
 * nxops checks the interval itself too (`--if-due`), so a race of two Nx
 * processes starts two checks of which one does nothing.
 */

import { statSync } from 'node:fs';
import { join } from 'node:path';

import { startMaintenance } from './hooks';
import { currentRuntime, stateBase, workspaceKey, workspacePaths, type RuntimeEnv } from './runtime';

/** `cache.checkInterval`'s default (settings.json), in ms. */
export const DEFAULT_INTERVAL_MS = 5 * 60 * 1000;

/** Why a call started a check or not. */
export type MaintenanceDecision = 'started' | 'started-recently' | 'checked-recently';

const startedAt = new Map<string, number>();

/** Starts `nxops maintain --if-due` for the workspace unless one ran or started within `intervalMs`. */
export function maintainIfDue(
  workspaceRoot: string,
  intervalMs: number = DEFAULT_INTERVAL_MS,
  now: number = Date.now(),
  runtime: RuntimeEnv = currentRuntime(),
  start: (root: string) => void = startMaintenance,
): MaintenanceDecision {
  const { root } = workspacePaths(workspaceRoot);
  const last = startedAt.get(root);
  if (last !== undefined && now - last < intervalMs) {
    return 'started-recently';
  }
  const stamp = stampPath(root, runtime);
  const checked = stamp === undefined ? undefined : statSync(stamp, { throwIfNoEntry: false })?.mtimeMs;
  if (checked !== undefined && now - checked < intervalMs) {
    return 'checked-recently';
  }
  startedAt.set(root, now);
  start(root);
  return 'started';
}

/** `<state base>/workspaces/<key>/maintenance.json`, as `config::state_dir` names it. */
export function stampPath(canonicalRoot: string, runtime: RuntimeEnv): string | undefined {
  const base = stateBase(runtime);
  return base === undefined ? undefined : join(base, 'workspaces', workspaceKey(canonicalRoot), 'maintenance.json');
}
