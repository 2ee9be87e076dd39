/**
 * Where the workspace's sidecar listens, computed exactly as the binary does
 * (`ownership::runtime_dir`, `Paths::for_workspace`, `config::workspace_key`):
 * `<runtime>/<key>.sock`, where `<key>` is the first 16 hex digits of sha256 of
 * the canonical workspace root and `<runtime>` is `$XDG_RUNTIME_DIR/nxops` when
 * that variable is set, non-empty, absolute and short enough to leave room for
 * the socket name within the 107-byte limit of a unix socket path, else
 * `/tmp/nxops-<uid>`. Nothing here creates folders: only the sidecar does.
 */

import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
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

/** `$XDG_RUNTIME_DIR/nxops` when usable, else `/tmp/nxops-<uid>`. */
export function runtimeDir({ env, uid }: RuntimeEnv): string {
  const xdg = env.XDG_RUNTIME_DIR;
  // Leave room for "/nxops" (6) and "/<16 hex>.sock" (22).
  if (xdg && xdg.startsWith('/') && Buffer.byteLength(xdg) + 6 + 22 <= MAX_SOCKET_PATH) {
    return join(xdg, 'nxops');
  }
  return `/tmp/nxops-${uid}`;
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
