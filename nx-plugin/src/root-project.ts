/**
 * The root project's name, decided the way Nx 24 decides it so the plugin's
 * targets land on the project Nx already has at `.` instead of renaming it:
 * `project.json` `name` wins, then package.json `nx.name`, then package.json
 * `name` (see nx's package-json plugin, `buildProjectConfigurationFromPackageJson`).
 * A workspace with none of those gets `nxops-workspace`.
 */

import { parseJsonc } from './json-edit';

/** Reads a workspace file's text, or undefined when it is absent. */
export type ReadFile = (path: string) => string | undefined;

export const FALLBACK_ROOT_NAME = 'nxops-workspace';

export function rootProjectName(read: ReadFile): string {
  const project = readJson(read, 'project.json');
  const manifest = readJson(read, 'package.json');
  const nxField = manifest?.nx as Record<string, unknown> | undefined;
  const candidates = [project?.name, nxField?.name, manifest?.name];
  const name = candidates.find((c): c is string => typeof c === 'string' && c !== '');
  return name ?? FALLBACK_ROOT_NAME;
}

function readJson(read: ReadFile, path: string): Record<string, unknown> | undefined {
  const text = read(path);
  if (text === undefined) {
    return undefined;
  }
  try {
    const value = parseJsonc(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
