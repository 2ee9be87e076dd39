/**
 * `@nxops/nx-plugin/hooks`: the opt-in second plugin with Nx's task hooks
 * (hooks.ts). Register it beside `@nxops/nx-plugin` only when tasks need
 * `NXOPS_SOCKET` or the run must reach the sidecar from inside Nx: Nx 24 starts
 * a worker process for a plugin with task hooks on every run and waits for it
 * (+250 to +770 ms measured per `nx run-many`, daemon on). Without it the
 * sidecar still learns of every run, from Nx's own records.
 */

export const name = '@nxops/nx-plugin/hooks';

export { preTasksExecution, postTasksExecution } from './hooks';
