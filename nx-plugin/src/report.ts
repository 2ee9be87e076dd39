/**
 * The params of `nxops/tasks/report`, built from what Nx 24 hands
 * `postTasksExecution`: `ctx.taskResults[taskId]` is a `TaskResult`
 * (`{task, status, code, terminalOutput?}`, nx/src/native/index.d.ts) whose
 * `task` carries `id`, `target: {project, target, configuration?}`, `hash?`,
 * `startTime?` and `endTime?`. Terminal output is never sent.
 *
 * The sidecar refuses unknown fields and wants integers for codes and times,
 * so every field is normalized here: absent or malformed values become null.
 */

import type { PostTasksExecutionContext } from 'nx/src/project-graph/plugins';

/** The statuses Nx 24 gives a task result (`TaskStatus` in nx/src/tasks-runner/tasks-runner.d.ts). */
export type NxTaskStatus =
  | 'success'
  | 'failure'
  | 'skipped'
  | 'stopped'
  | 'local-cache'
  | 'local-cache-kept-existing'
  | 'remote-cache';

export interface ReportedTask {
  readonly id: string;
  readonly project: string;
  readonly target: string;
  readonly configuration: string | null;
  readonly hash: string | null;
  readonly status: NxTaskStatus;
  readonly code: number | null;
  readonly startTime: number | null;
  readonly endTime: number | null;
}

export interface TasksReport {
  /** The canonical workspace root. */
  readonly workspace: string;
  readonly runId: string;
  readonly startTime: number | null;
  readonly endTime: number | null;
  /** The command line as the user typed it, best effort: `nx run-many -t build`. */
  readonly command: string | null;
  readonly tasks: readonly ReportedTask[];
}

/** The most tasks the sidecar takes in one report (docs/protocol.md); a bigger run is cut here. */
export const MAX_TASKS = 10_000;

/** What the report is built from: the parts of Nx's context it reads. */
export type RunContext = Pick<PostTasksExecutionContext, 'id' | 'taskResults' | 'argv' | 'startTime' | 'endTime'>;

export function buildTasksReport(ctx: RunContext, workspace: string): TasksReport {
  const tasks: ReportedTask[] = [];
  for (const [taskId, result] of Object.entries(ctx.taskResults ?? {})) {
    const task = reportedTask(taskId, result);
    if (task !== undefined) tasks.push(task);
    if (tasks.length === MAX_TASKS) break;
  }
  return {
    workspace,
    runId: String(ctx.id ?? ''),
    startTime: timestamp(ctx.startTime),
    endTime: timestamp(ctx.endTime),
    command: commandLine(ctx.argv),
    tasks,
  };
}

function reportedTask(taskId: string, result: unknown): ReportedTask | undefined {
  const r = (result ?? {}) as { task?: Record<string, unknown>; status?: unknown; code?: unknown };
  const task = r.task ?? {};
  const target = (task.target ?? {}) as Record<string, unknown>;
  if (typeof target.project !== 'string' || typeof target.target !== 'string' || typeof r.status !== 'string') {
    return undefined;
  }
  return {
    id: typeof task.id === 'string' ? task.id : taskId,
    project: target.project,
    target: target.target,
    configuration: nonEmptyString(target.configuration),
    hash: nonEmptyString(task.hash),
    status: r.status as NxTaskStatus,
    code: Number.isInteger(r.code) ? (r.code as number) : null,
    startTime: timestamp(task.startTime),
    endTime: timestamp(task.endTime),
  };
}

/**
 * `nx ` + the arguments after node and Nx's script. Arguments with spaces or
 * quotes are single-quoted so the line reads as it was typed.
 */
export function commandLine(argv: readonly string[] | undefined): string | null {
  if (!Array.isArray(argv) || argv.length < 2) {
    return null;
  }
  const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`);
  return ['nx', ...argv.slice(2).map(quote)].join(' ');
}

function timestamp(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.round(value) : null;
}

function nonEmptyString(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}
