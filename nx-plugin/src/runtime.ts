/**
 * Where the workspace's sidecar listens, computed exactly as the binary does
 * (`ownership::runtime_dir`, `Paths::for_workspace`, `config::workspace_key`):
 * `<runtime>/<key>.sock`, where `<key>` is the first 16 hex digits of sha256 of
 * the canonical workspace root and `<runtime>` is `$XDG_RUNTIME_DIR/nxops` when
 * that variable is set, non-empty, absolute and short enough to leave room for
 * the socket name within the 107-byte limit of a unix socket path, else
 * `<tmp>/nxops-<uid>` (`<tmp>` is `$TMPDIR` when absolute and short enough, else
 * `/tmp`). When that folder is not ours (a symlink, a file, or another user's
 * folder in its place), the sidecar uses `<state base>/run` instead, and so does
 * this. Nothing here creates folders: only the sidecar does.
 */

import { createHash } from 'node:crypto';
import { lstatSync, realpathSync } from 'node:fs';
import { join } from 'node:path';

/** The longest unix socket path the binary accepts (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/** What the socket path depends on besides the workspace root. */
export interface RuntimeEnv {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly uid: number;
}

/** The workspace root as the binary names it: the real path, symlinks resolved. */
export function canonicalRoot(workspaceRoot: string): string {
  return realpathSync.native(workspaceRoot);
}

/** `<key>`: 16 hex digits of sha256 of the canonical root's bytes. */
export function workspaceKey(canonical: string): string {
  return createHash('sha256').update(Buffer.from(canonical, 'utf-8')).digest('hex').slice(0, 16);
}

/** The preferred folder: `$XDG_RUNTIME_DIR/nxops` when usable, else `<tmp>/nxops-<uid>`. */
export function preferredRuntimeDir({ env, uid }: RuntimeEnv): string {
  // Leave room for "/<16 hex>.sock" (22).
  const fits = (dir: string | undefined, extra: number): dir is string =>
    !!dir && dir.startsWith('/') && Buffer.byteLength(dir) + extra + 22 <= MAX_SOCKET_PATH;
  const xdg = env.XDG_RUNTIME_DIR;
  if (fits(xdg, '/nxops'.length)) {
    return join(xdg, 'nxops');
  }
  const name = `nxops-${uid}`;
  const tmp = env.TMPDIR;
  return join(fits(tmp, name.length + 1) ? tmp : '/tmp', name);
}

/** The nxops state folder, as `config::state_base` names it. */
export function stateBase({ env }: RuntimeEnv): string | undefined {
  if (env.NXOPS_STATE_DIR) return env.NXOPS_STATE_DIR;
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, 'nxops');
  return env.HOME ? join(env.HOME, '.local/state/nxops') : undefined;
}

/** The preferred folder, unless it is not ours; then `<state base>/run`. */
export function runtimeDir(runtime: RuntimeEnv): string {
  const preferred = preferredRuntimeDir(runtime);
  const base = stateBase(runtime);
  return isOurs(preferred, runtime.uid) || base === undefined ? preferred : join(base, 'run');
}

/** A missing folder counts as ours: the sidecar creates it. */
function isOurs(dir: string, uid: number): boolean {
  try {
    const stat = lstatSync(dir);
    return stat.isDirectory() && stat.uid === uid;
  } catch {
    return true;
  }
}

/** The sidecar socket of the workspace whose canonical root is `canonical`. */
export function socketPath(canonical: string, runtime: RuntimeEnv = currentRuntime()): string {
  return join(runtimeDir(runtime), `${workspaceKey(canonical)}.sock`);
}

/** This process's environment and user id. */
export function currentRuntime(): RuntimeEnv {
  return { env: process.env, uid: process.getuid?.() ?? 0 };
}

const pathsByRoot = new Map<string, { root: string; socket: string }>();

/**
 * The canonical root and sidecar socket of a workspace, computed once per
 * process and workspace (the first sha256 of a process costs about half a
 * millisecond, which the task hooks must not pay on every run).
 */
export function workspacePaths(workspaceRoot: string): { root: string; socket: string } {
  let paths = pathsByRoot.get(workspaceRoot);
  if (paths === undefined) {
    const root = canonicalRoot(workspaceRoot);
    paths = { root, socket: socketPath(root) };
    pathsByRoot.set(workspaceRoot, paths);
  }
  return paths;
}
