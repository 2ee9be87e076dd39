// The report sent to the sidecar, built from a postTasksExecution context
// recorded from a real nx 24 run (test/fixtures/post-tasks-context.json).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { dist, pluginRoot } from './helpers.mjs';

const { buildTasksReport, commandLine, MAX_TASKS } = dist('report');

const recorded = JSON.parse(readFileSync(join(pluginRoot, 'test/fixtures/post-tasks-context.json'), 'utf-8'));

describe('buildTasksReport', () => {
  test('carries the run and every task as Nx recorded them, without terminal output', () => {
    const report = buildTasksReport(recorded, '/work/ws');
    assert.deepEqual(Object.keys(report), ['workspace', 'runId', 'startTime', 'endTime', 'command', 'tasks']);
    assert.equal(report.workspace, '/work/ws');
    assert.equal(report.runId, recorded.id);
    assert.equal(report.startTime, recorded.startTime);
    assert.equal(report.endTime, recorded.endTime);
    assert.equal(report.command, 'nx run-many -t build test');
    assert.deepEqual(report.tasks, [
      task('alpha:build', 'local-cache', 0, recorded),
      task('alpha:test', 'local-cache-kept-existing', 0, recorded),
      task('beta:test', 'success', 0, recorded),
      task('beta:build', 'failure', 1, recorded),
      task('gamma:test', 'success', 0, recorded),
      task('alpha:build:production', 'success', 0, recorded),
    ]);
    assert.equal(report.tasks[5].configuration, 'production');
    assert.doesNotMatch(JSON.stringify(report), /terminalOutput|hashDetails|built alpha/);
  });

  test('malformed or missing values become null; results without project, target or status are left out', () => {
    const report = buildTasksReport(
      {
        id: 42,
        argv: [],
        startTime: -1,
        endTime: Number.NaN,
        taskResults: {
          'a:b': { task: { target: { project: 'a', target: 'b', configuration: '' }, hash: '' }, status: 'skipped' },
          'c:d': { task: { id: 'c:d', target: { project: 'c', target: 'd' }, startTime: 1.6 }, status: 'stopped', code: 1.5 },
          broken: { status: 'success' },
          'no-status': { task: { target: { project: 'x', target: 'y' } } },
        },
      },
      '/ws',
    );
    assert.deepEqual(report, {
      workspace: '/ws',
      runId: '42',
      startTime: null,
      endTime: null,
      command: null,
      tasks: [
        { id: 'a:b', project: 'a', target: 'b', configuration: null, hash: null, status: 'skipped', code: null, startTime: null, endTime: null },
        { id: 'c:d', project: 'c', target: 'd', configuration: null, hash: null, status: 'stopped', code: null, startTime: 2, endTime: null },
      ],
    });
  });

  test(`a run bigger than the sidecar takes is cut at ${MAX_TASKS} tasks`, () => {
    const taskResults = {};
    for (let i = 0; i < MAX_TASKS + 5; i++) {
      taskResults[`p${i}:build`] = { task: { id: `p${i}:build`, target: { project: `p${i}`, target: 'build' } }, status: 'success', code: 0 };
    }
    assert.equal(buildTasksReport({ id: '1', argv: [], taskResults }, '/ws').tasks.length, MAX_TASKS);
  });
});

describe('commandLine', () => {
  test('is nx and the arguments after node and the nx script, quoted where needed', () => {
    assert.equal(commandLine(['/usr/bin/node', '/ws/node_modules/.bin/nx', 'run', 'alpha:build:production']), 'nx run alpha:build:production');
    assert.equal(commandLine(['node', 'nx', 'run-many', '-t', 'build', '--exclude', 'a b', "it's"]), `nx run-many -t build --exclude 'a b' 'it'\\''s'`);
    assert.equal(commandLine(['node', 'nx']), 'nx');
    assert.equal(commandLine(undefined), null);
  });
});

function task(id, status, code, ctx) {
  const { task } = ctx.taskResults[id];
  return {
    id,
    project: task.target.project,
    target: task.target.target,
    configuration: task.target.configuration ?? null,
    hash: task.hash,
    status,
    code,
    startTime: task.startTime,
    endTime: task.endTime,
  };
}
