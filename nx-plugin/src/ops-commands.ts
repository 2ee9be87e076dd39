/**
 * The nxops commands the plugin exposes: as inferred targets on the root
 * project (`ops-cache-stats`, no colons, which Nx reserves for
 * project:target:configuration) and, through the init generator, as root
 * package.json scripts (`ops:cache:stats` -> `nxops cache stats`, the package's bin).
 *
 * `perf optimize` and `monitor start|check` are not in the binary yet; their
 * targets exist already and print nxops's "unrecognized subcommand" until then.
 */

export interface OpsCommand {
  /** The inferred target's name. */
  readonly target: string;
  /** The nxops arguments it runs. */
  readonly args: readonly string[];
  /** The package.json script the init generator adds for it, if any. */
  readonly script: string | undefined;
  readonly description: string;
}

export const OPS_COMMANDS: readonly OpsCommand[] = [
  command('cache stats', true, "Show the Nx cache's size, age, hit rate and biggest consumers"),
  command('cache clean', true, 'Evict old and least recently used cache entries (nxops limits)'),
  command('cache reset', true, 'Run nx reset with a timeout and clean up by hand if it fails'),
  command('cache verify', false, 'Find cache entries Nx would restore wrong'),
  command('perf optimize', true, 'Suggest performance fixes for the workspace (coming in nxops)'),
  command('system info', true, "Facts about this machine and the workspace's toolchain"),
  command('env info', true, "Where the workspace's cache and state live, and every nxops setting"),
  command('monitor start', true, 'Start monitoring the workspace (coming in nxops)'),
  command('monitor check', true, "Check the workspace's health once (coming in nxops)"),
];

function command(words: string, withScript: boolean, description: string): OpsCommand {
  const args = words.split(' ');
  return {
    target: ['ops', ...args].join('-'),
    args,
    script: withScript ? ['ops', ...args].join(':') : undefined,
    description,
  };
}
