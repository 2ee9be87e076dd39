/**
 * `@nxops/nx-plugin`: the Nx 24 plugin of nxops. Register it in nx.json as
 * `{"plugin": "@nxops/nx-plugin", "options": {...}}` (or run its init
 * generator). It has no task hooks, so it adds nothing to an Nx run: the
 * opt-in hooks are the separate plugin `@nxops/nx-plugin/hooks`
 * (hooks-plugin.ts). What each export does is documented in its module.
 */

export const name = '@nxops/nx-plugin';

export { createNodes } from './create-nodes';
export type { NxopsPluginOptions } from './options';
