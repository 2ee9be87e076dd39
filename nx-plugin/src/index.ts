/**
 * `@nxops/nx-plugin`: the Nx 24 plugin of nxops. Register it in nx.json as
 * `{"plugin": "@nxops/nx-plugin", "options": {...}}` (or run its init
 * generator). What each export does is documented in its module.
 */

export const name = '@nxops/nx-plugin';

export { createNodes } from './create-nodes';
export { preTasksExecution, postTasksExecution } from './hooks';
export type { NxopsPluginOptions } from './options';
