// Sidecar events → what the editor shows. Pure decisions, so the rules
// (warn once when a workspace turns Critical, say what follows a process
// failure) are tested without an editor.

import { baseName, formatBytes, formatDuration } from './format';
import type { HealthReport, ProcessFailure } from './protocol';

/** A button on a warning, and what it does. */
export type Choice =
  | { title: 'Show Report'; command: 'nxops.showHealth'; workspace: string }
  | { title: 'Show Logs'; command: 'nxops.processLogs'; workspace: string; name: string }
  | { title: 'Restart'; command: 'nxops.processRestart'; workspace: string; name: string };

/** What one event asks of the editor. */
export type UiAction =
  | { kind: 'health'; report: HealthReport }
  | { kind: 'warning'; message: string; choices: Choice[] }
  | { kind: 'log'; message: string }
  | { kind: 'refresh' }
  // A notification that is only true for a while ("restarting in 500ms"): shown
  // under `key`, replacing the one shown under the same key, until `settle`.
  | { kind: 'transient'; key: string; message: string }
  | { kind: 'settle'; key: string };

/**
 * Decides, event by event, what to show. It remembers each workspace's last
 * rating, so a Critical workspace is announced when it becomes Critical, not
 * on every check.
 */
export class EventDecider {
  private readonly ratings = new Map<string, string>();

  /** The actions for notification `method` (with or without the `nxops/` prefix). */
  decide(method: string, params: any): UiAction[] {
    switch (method.replace(/^nxops\//, '')) {
      case 'healthCheck':
        return this.health(params as HealthReport);
      case 'processFailure':
        return processFailure(params as ProcessFailure);
      case 'processStarted':
        return [{ kind: 'settle', key: processKey(params.workspace, params.name) }];
      case 'processMemoryLeak':
        return [memoryLeak(params)];
      case 'cacheCleanup':
        return [cacheCleanup(params)];
      case 'workspaceAttached':
      case 'workspaceDetached':
      case 'ownershipChanged':
        return [{ kind: 'refresh' }];
      default:
        return [];
    }
  }

  /** A report from a request (not an event): updates the remembered rating, same rules. */
  health(report: HealthReport): UiAction[] {
    const previous = this.ratings.get(report.workspace);
    this.ratings.set(report.workspace, report.rating);
    const actions: UiAction[] = [{ kind: 'health', report }];
    if (report.rating === 'Critical' && previous !== 'Critical') {
      const why = report.reasons.length ? `: ${report.reasons.join('; ')}` : '';
      actions.push({
        kind: 'warning',
        message: `nxops: ${baseName(report.workspace)} is Critical (${report.score}/100)${why}`,
        choices: [{ title: 'Show Report', command: 'nxops.showHealth', workspace: report.workspace }],
      });
    }
    return actions;
  }

  /** Forgets a workspace (detached). */
  forget(workspace: string): void {
    this.ratings.delete(workspace);
  }
}

/** The key of a process's transient notification. */
export function processKey(workspace: string, name: string): string {
  return `${workspace}\0${name}`;
}

/**
 * A failure that will be restarted is transient (closed when the process
 * starts again or fails for good); a final one replaces it with a warning.
 * `givenUp` already says "given up" (the sidecar's reason, docs/protocol.md).
 */
function processFailure(event: ProcessFailure): UiAction[] {
  const key = processKey(event.workspace, event.name);
  const failed = `nxops: process "${event.name}" failed (${event.reason})`;
  if (event.willRestart) {
    return [{ kind: 'transient', key, message: `${failed}; restarting in ${formatDuration(event.restartInMs ?? 0)}` }];
  }
  const logs: Choice = { title: 'Show Logs', command: 'nxops.processLogs', workspace: event.workspace, name: event.name };
  const restart: Choice = { title: 'Restart', command: 'nxops.processRestart', workspace: event.workspace, name: event.name };
  const next = event.givenUp ?? 'not restarted';
  return [{ kind: 'settle', key }, { kind: 'warning', message: `${failed}; ${next}`, choices: [restart, logs] }];
}

function memoryLeak(event: { workspace: string; name: string; bytesPerMinute: number; action: string }): UiAction {
  const what = event.action === 'restart' ? 'restarting it' : 'it keeps running';
  return {
    kind: 'warning',
    message: `nxops: process "${event.name}" is leaking memory (${formatBytes(event.bytesPerMinute)} a minute); ${what}`,
    choices: [{ title: 'Show Logs', command: 'nxops.processLogs', workspace: event.workspace, name: event.name }],
  };
}

function cacheCleanup(event: { workspace: string; trigger: string; entries: number; bytesFreed: number }): UiAction {
  return {
    kind: 'log',
    message: `${event.trigger} cache clean in ${event.workspace}: ${event.entries} entries, ${formatBytes(event.bytesFreed)} freed`,
  };
}
