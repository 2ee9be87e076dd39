/**
 * Nx's task hooks. They must never fail or slow a run: every error is caught,
 * said once per process (`[nxops]` on stderr), and the hook steps aside.
 *
 * - `preTasksExecution` points the tasks at the workspace's sidecar: when its
 *   socket exists, `NXOPS_SOCKET` is set (Nx passes env assignments made here
 *   on to the tasks). A stat of a path computed once per process (createNodes,
 *   which runs first in the same process, computes it): a few microseconds.
 * - `postTasksExecution` reports the run to the sidecar (see sidecar-client.ts),
 *   waiting at most {@link SIDECAR_TIMEOUT_MS}. When no sidecar listens it
 *   starts a detached one-shot `nxops maintain --if-due` instead, and nxops
 *   decides whether anything is due.
 */

import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';

import type { PostTasksExecutionContext, PreTasksExecutionContext } from 'nx/src/project-graph/plugins';

import { resolveNxopsBinary, type FoundBinary } from './binary';
import { buildTasksReport } from './report';
import { workspacePaths } from './runtime';
import { deliverTasksReport } from './sidecar-client';
import { PLUGIN_VERSION } from './version';
import { describe, warnOnce } from './warn';

/** The longest a run's end waits for the sidecar. */
export const SIDECAR_TIMEOUT_MS = 500;

export function preTasksExecution(_options: unknown, ctx: PreTasksExecutionContext): void {
  try {
    const { socket } = workspacePaths(ctx.workspaceRoot);
    if (isSocket(socket)) {
      process.env.NXOPS_SOCKET = socket;
    }
  } catch (error) {
    warnOnce('hook', `preTasksExecution stepped aside: ${describe(error)}`);
  }
}

export async function postTasksExecution(_options: unknown, ctx: PostTasksExecutionContext): Promise<void> {
  try {
    await reportRun(ctx);
  } catch (error) {
    warnOnce('hook', `postTasksExecution stepped aside: ${describe(error)}`);
  }
}

async function reportRun(ctx: PostTasksExecutionContext): Promise<void> {
  const { root, socket } = workspacePaths(ctx.workspaceRoot);
  if (isSocket(socket)) {
    const report = buildTasksReport(ctx, root);
    const delivery = await deliverTasksReport(socket, report, {
      timeoutMs: SIDECAR_TIMEOUT_MS,
      clientVersion: PLUGIN_VERSION,
    });
    if (delivery.kind === 'delivered') {
      return;
    }
    if (delivery.kind === 'failed') {
      warnOnce('sidecar', `the run was not reported to the sidecar at ${socket}: ${delivery.reason}`);
      return;
    }
    // A socket nobody listens on was left by a sidecar that died: maintain without one.
  }
  startMaintenance(root);
}

/** Starts `nxops maintain --if-due` for `root`, detached, and does not wait for it. */
export function startMaintenance(root: string): void {
  const binary = nxopsBinary();
  if (binary === undefined) {
    return;
  }
  const child = spawn(binary.path, ['maintain', '--if-due', '--workspace', root, '--quiet'], {
    cwd: root,
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', (error) => warnOnce('maintenance', `could not start ${binary.path}: ${describe(error)}`));
  child.unref();
}

/**
 * The nxops binary, with its problems said once per process. createNodes and
 * the hooks usually share a process (Nx's plugin worker), so the message says
 * what the absence means for both.
 */
export function nxopsBinary(): FoundBinary | undefined {
  const { found, problems } = resolveNxopsBinary();
  for (const problem of problems) {
    warnOnce('nxops-bin', problem);
  }
  if (found === undefined) {
    warnOnce(
      'binary',
      'no nxops binary found (NXOPS_BIN, the @nxops/linux-x64 package, PATH): ' +
        'the ops targets run `nxops` from PATH and no maintenance runs after tasks',
    );
  }
  return found;
}

function isSocket(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isSocket() ?? false;
}
