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
  | { kind: 'refresh' };

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
        return [processFailure(params as ProcessFailure)];
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

function processFailure(event: ProcessFailure): UiAction {
  const next = event.willRestart
    ? `restarting in ${formatDuration(event.restartInMs ?? 0)}`
    : event.givenUp
      ? `given up: ${event.givenUp}`
      : 'not restarted';
  const logs: Choice = { title: 'Show Logs', command: 'nxops.processLogs', workspace: event.workspace, name: event.name };
  const restart: Choice = { title: 'Restart', command: 'nxops.processRestart', workspace: event.workspace, name: event.name };
  return {
    kind: 'warning',
    message: `nxops: process "${event.name}" failed (${event.reason}); ${next}`,
    choices: event.willRestart ? [logs] : [restart, logs],
  };
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
