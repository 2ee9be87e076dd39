/**
 * Finding the nxops binary, in this order:
 *
 * 1. `NXOPS_BIN`, when set and non-empty. It must be an absolute path to an
 *    executable file; anything else is reported and the search goes on.
 * 2. The platform package installed beside the plugin as an optional dependency
 *    (`@nxops/linux-x64`, only on Linux x64): `bin/nxops` next to its
 *    package.json, resolved from the plugin's own folder the way esbuild and
 *    turbo find theirs.
 * 3. `nxops` on `PATH`.
 *
 * {@link resolveNxopsBinary} caches its answer for the life of the process;
 * {@link findNxopsBinary} is the uncached search with every input explicit.
 */

import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join } from 'node:path';

/** Where the binary was found. */
export type BinarySource = 'NXOPS_BIN' | 'platform-package' | 'PATH';

export interface FoundBinary {
  /** Absolute path of an executable file. */
  readonly path: string;
  readonly source: BinarySource;
}

/** The search's answer, with the problems met on the way (a bad `NXOPS_BIN`). */
export interface BinarySearch {
  readonly found: FoundBinary | undefined;
  readonly problems: readonly string[];
}

/** Everything the search depends on. */
export interface BinaryLookup {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly platform: string;
  readonly arch: string;
  /** The folder package resolution starts from (the plugin's own). */
  readonly resolveFrom: string;
}

/** The platform packages that ship a binary, by `<platform>-<arch>`. */
const PLATFORM_PACKAGES: Readonly<Record<string, string>> = { 'linux-x64': '@nxops/linux-x64' };

let cached: BinarySearch | undefined;

/** The binary for this process (searched once, then cached). */
export function resolveNxopsBinary(): BinarySearch {
  cached ??= findNxopsBinary({
    env: process.env,
    platform: process.platform,
    arch: process.arch,
    resolveFrom: __dirname,
  });
  return cached;
}

/** The uncached search. */
export function findNxopsBinary(lookup: BinaryLookup): BinarySearch {
  const problems: string[] = [];
  const fromEnv = lookup.env.NXOPS_BIN;
  if (fromEnv) {
    const problem = executableProblem(fromEnv);
    if (problem === undefined) {
      return { found: { path: fromEnv, source: 'NXOPS_BIN' }, problems };
    }
    problems.push(`NXOPS_BIN is ignored: ${problem}`);
  }
  const packaged = platformPackageBinary(lookup);
  if (packaged !== undefined) {
    return { found: { path: packaged, source: 'platform-package' }, problems };
  }
  const onPath = searchPath(lookup.env.PATH);
  return { found: onPath === undefined ? undefined : { path: onPath, source: 'PATH' }, problems };
}

function platformPackageBinary({ platform, arch, resolveFrom }: BinaryLookup): string | undefined {
  const name = PLATFORM_PACKAGES[`${platform}-${arch}`];
  if (name === undefined) {
    return undefined;
  }
  let manifest: string;
  try {
    manifest = require.resolve(`${name}/package.json`, { paths: [resolveFrom] });
  } catch {
    return undefined;
  }
  const binary = join(dirname(manifest), 'bin', 'nxops');
  return executableProblem(binary) === undefined ? binary : undefined;
}

function searchPath(pathVariable: string | undefined): string | undefined {
  for (const dir of (pathVariable ?? '').split(delimiter)) {
    // Empty and relative entries would make the answer depend on the current folder.
    if (dir !== '' && isAbsolute(dir)) {
      const candidate = join(dir, 'nxops');
      if (executableProblem(candidate) === undefined) {
        return candidate;
      }
    }
  }
  return undefined;
}

/** Why `path` is not an executable file we can use, or undefined when it is one. */
function executableProblem(path: string): string | undefined {
  if (!isAbsolute(path)) {
    return `${path} is not an absolute path`;
  }
  const stats = statSync(path, { throwIfNoEntry: false });
  if (stats === undefined) {
    return `${path} does not exist`;
  }
  if (!stats.isFile()) {
    return `${path} is not a file`;
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return `${path} is not executable`;
  }
  return undefined;
}
