// VS Code settings → how the sidecar is started: the binary (nxops.binaryPath)
// and the thresholds, passed as `initializationOptions.settings` (flat keys,
// docs/protocol.md "Lifecycle"). They override nx.json and NXOPS_* for the
// workspaces this window's sidecar owns.

import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** A sidecar setting the extension exposes as `nxops.<key>`. */
export interface SidecarSetting {
  key: string;
  kind: 'size' | 'duration' | 'percent' | 'count';
}

/** Every nxops setting (`nxops env info --json` lists the same keys). */
export const SIDECAR_SETTINGS: readonly SidecarSetting[] = [
  { key: 'cache.maxSize', kind: 'size' },
  { key: 'cache.maxAge', kind: 'duration' },
  { key: 'cache.autoCleanAt', kind: 'percent' },
  { key: 'cache.checkInterval', kind: 'duration' },
  { key: 'health.interval', kind: 'duration' },
  { key: 'processes.healthInterval', kind: 'duration' },
  { key: 'processes.maxRestarts', kind: 'count' },
  { key: 'processes.stopTimeout', kind: 'duration' },
  { key: 'sessions.timeout', kind: 'duration' },
  { key: 'sessions.namedTimeout', kind: 'duration' },
];

/** The VS Code configuration section; settings are `nxops.binaryPath`, `nxops.cache.maxSize`, ... */
export const SECTION = 'nxops';

/** A setting with a value of the wrong type; the message names the VS Code setting. */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

/**
 * The sidecar settings the user set, as `{"cache.maxSize": "2GB"}`. `read`
 * returns a setting's value under the `nxops` section (undefined, null or ""
 * when unset). Numbers are passed as text; the sidecar validates the values.
 */
export function sidecarSettings(read: (key: string) => unknown): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const { key } of SIDECAR_SETTINGS) {
    const value = read(key);
    if (value === undefined || value === null) continue;
    if (typeof value === 'number' && Number.isFinite(value)) {
      settings[key] = String(value);
    } else if (typeof value === 'string') {
      if (value.trim() !== '') settings[key] = value.trim();
    } else {
      throw new SettingsError(`${SECTION}.${key} must be text such as "5GB" or "7d", not ${JSON.stringify(value)}`);
    }
  }
  return settings;
}

/** `initializationOptions` for the sidecar's `initialize`. */
export function initializationOptions(settings: Record<string, string>): { settings: Record<string, string> } {
  return { settings };
}

/** The command that starts the sidecar. */
export interface ServerCommand {
  command: string;
  args: string[];
}

/**
 * Resolves `nxops.binaryPath` (empty: `nxops` on PATH; `~/` is the home folder;
 * a relative path is taken from the first workspace folder) to an executable,
 * or throws a SettingsError that says what to set.
 */
export function serverCommand(binaryPath: unknown, env: NodeJS.ProcessEnv, base?: string): ServerCommand {
  if (binaryPath !== undefined && binaryPath !== null && typeof binaryPath !== 'string') {
    throw new SettingsError(`${SECTION}.binaryPath must be a path, not ${JSON.stringify(binaryPath)}`);
  }
  const wanted = (binaryPath ?? '').trim() || 'nxops';
  const command = resolveExecutable(wanted, env, base);
  if (!command) {
    const where = wanted.includes('/') ? `at ${wanted}` : `on PATH (${env.PATH ?? ''})`;
    throw new SettingsError(
      `no executable nxops ${where}: install nxops (cargo install --path .) or set ${SECTION}.binaryPath to the nxops binary`,
    );
  }
  return { command, args: ['serve', '--stdio'] };
}

function resolveExecutable(wanted: string, env: NodeJS.ProcessEnv, base?: string): string | undefined {
  if (wanted.startsWith('~/') && env.HOME) return executable(join(env.HOME, wanted.slice(2)));
  if (isAbsolute(wanted)) return executable(wanted);
  if (wanted.includes('/')) return base ? executable(join(base, wanted)) : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const found = dir && executable(join(dir, wanted));
    if (found) return found;
  }
  return undefined;
}

function executable(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return undefined;
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

/**
 * Words for a failed `initialize`: the sidecar rejects an invalid setting with
 * -32602, and this names the VS Code setting(s) whose value or key it quotes.
 */
export function explainStartError(error: unknown, settings: Record<string, string>): string {
  const message = error instanceof Error ? error.message : String(error);
  const culprits = Object.entries(settings)
    .filter(([key, value]) => message.includes(key) || message.includes(JSON.stringify(value)))
    .map(([key]) => `${SECTION}.${key}`);
  if (culprits.length === 0) return `nxops could not start: ${message}`;
  return `nxops could not start: check the setting ${culprits.join(', ')}: ${message}`;
}

/** Where "Open Settings" goes, and what the start-up error adds about it. */
export interface SettingsTab {
  command: string;
  /** The command's argument: the settings search (code-server 4.139's Remote tab ignores it). */
  arg: string;
  hint: string;
}

/**
 * The settings tab where `nxops.binaryPath` (scope `machine-overridable`) can
 * be set. In a remote window (code-server, Remote-SSH, WSL, dev containers:
 * `vscode.env.remoteName` is set) VS Code ignores machine settings from the
 * User settings and reads them from the Remote settings (or the Workspace's),
 * so the button opens the Remote tab there.
 */
export function settingsTab(remoteName: string | undefined): SettingsTab {
  if (!remoteName) return { command: 'workbench.action.openSettings', arg: SECTION, hint: '' };
  return {
    command: 'workbench.action.openRemoteSettings',
    arg: SECTION,
    hint: ` (a remote window, ${remoteName}: ${SECTION}.binaryPath is read from the Remote or Workspace settings, not the User settings)`,
  };
}
