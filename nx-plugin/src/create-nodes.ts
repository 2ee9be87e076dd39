/**
 * `createNodes`: validates the plugin's options (an invalid option throws, and
 * Nx shows the error with its nx.json location), adds one `nx:run-commands`
 * target per nxops command to the root project, and starts the automatic
 * maintenance check when it is due (auto-maintenance.ts: detached, rate-limited).
 *
 * Each target runs `'<absolute nxops>' --workspace '<root>' <command>` from the
 * workspace root, uncached. The workspace is passed as an absolute path because
 * Nx only replaces `{workspaceRoot}` at the start of an option. Extra arguments
 * reach nxops: `nx run <root>:ops-cache-clean --dry-run`.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { CreateNodes, CreateNodesResult } from 'nx/src/project-graph/plugins';

import { nxopsBinary } from './hooks';
import { OPS_COMMANDS } from './ops-commands';
import { optionsPointer, validateOptions, type NxopsPluginOptions } from './options';
import { rootProjectName } from './root-project';
import { maintainIfDue } from './auto-maintenance';
import { describe, warnOnce } from './warn';

type TargetConfiguration = NonNullable<NonNullable<CreateNodesResult['projects']>[string]['targets']>[string];

export const createNodes: CreateNodes<NxopsPluginOptions> = [
  'nx.json',
  (files, options, ctx) => {
    const values = validateOptions(options, optionsPointer(ctx.nxJsonConfiguration, options));
    const binary = nxopsBinary()?.path ?? 'nxops';
    const name = rootProjectName((path) => readIfPresent(join(ctx.workspaceRoot, path)));
    const targets = opsTargets(binary, ctx.workspaceRoot);
    maintain(ctx.workspaceRoot, values.find((v) => v.key === 'cache.checkInterval')?.value);
    return files.map((file) => [file, { projects: { '.': { name, targets } } }] as const);
  },
];

/** The ops targets for a binary and a workspace root. */
export function opsTargets(binary: string, workspaceRoot: string): Record<string, TargetConfiguration> {
  const targets: Record<string, TargetConfiguration> = {};
  for (const ops of OPS_COMMANDS) {
    const command = [shellQuote(binary), '--workspace', shellQuote(workspaceRoot), ...ops.args].join(' ');
    targets[ops.target] = {
      executor: 'nx:run-commands',
      options: { command, cwd: '{workspaceRoot}' },
      cache: false,
      metadata: { description: ops.description, technologies: ['nxops'] },
    };
  }
  return targets;
}

/** POSIX single quotes (run-commands hands the command to a shell). */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Starts the maintenance check when due; never fails the graph. */
function maintain(workspaceRoot: string, intervalMs: number | undefined): void {
  try {
    maintainIfDue(workspaceRoot, intervalMs);
  } catch (error) {
    warnOnce('maintenance', `the automatic maintenance check was not started: ${describe(error)}`);
  }
}

function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf-8');
  } catch {
    return undefined;
  }
}
