// Runs one of the plugin's hooks in a fresh process (so "once per process" is
// real) and prints what a test needs as JSON on stdout; the hook's warnings go
// to stderr as they would in Nx.
//
//   node hook-runner.mjs pre|post CONTEXT_JSON_FILE CALLS [after-create-nodes]
//
// `after-create-nodes` runs createNodes first, as Nx does in the same process
// before any task hook.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const hooks = require('../dist/hooks.js');

const [which, contextFile, calls, first] = process.argv.slice(2);
const ctx = JSON.parse(readFileSync(contextFile, 'utf-8'));
if (first === 'after-create-nodes') {
  const [, createNodes] = require('../dist/create-nodes.js').createNodes;
  createNodes(['nx.json'], undefined, { workspaceRoot: ctx.workspaceRoot, nxJsonConfiguration: {} });
}
const durations = [];
for (let i = 0; i < Number(calls); i++) {
  const start = process.hrtime.bigint();
  const returned = which === 'pre' ? hooks.preTasksExecution(undefined, ctx) : await hooks.postTasksExecution(undefined, ctx);
  durations.push(Number(process.hrtime.bigint() - start) / 1e6);
  if (returned !== undefined) throw new Error(`the hook returned ${returned}`);
}
console.log(JSON.stringify({ durations, NXOPS_SOCKET: process.env.NXOPS_SOCKET ?? null }));
