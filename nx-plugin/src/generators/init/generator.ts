/**
 * `nx g @nxops/nx-plugin:init` (also what `nx add @nxops/nx-plugin` runs after
 * installing): registers the plugin in nx.json and adds `ops:*` scripts to the
 * root package.json, each running the matching inferred target
 * (`"ops:cache:stats": "nx run <root>:ops-cache-stats"`).
 *
 * What is already there is left alone: a registration in string or object form,
 * scripts with the same names. Files are edited in place (json-edit.ts), so the
 * rest of their bytes do not change, and a second run changes nothing.
 * Only the generator Tree API is used (`read`, `write`, `exists`).
 */

import type { Tree } from 'nx/src/generators/tree';

import { addItem, addMember, member, parseJsonc, parseTree } from '../../json-edit';
import { OPS_COMMANDS } from '../../ops-commands';
import { PLUGIN_NAME } from '../../options';
import { rootProjectName } from '../../root-project';

/** The generator takes no options (schema.json declares none). */
export type InitGeneratorOptions = Record<string, never>;

export async function initGenerator(tree: Tree, _options: InitGeneratorOptions = {}): Promise<void> {
  registerPlugin(tree);
  addScripts(tree);
}

/** The entry added to nx.json `plugins`. */
export const PLUGIN_ENTRY = { plugin: PLUGIN_NAME, options: {} };

function registerPlugin(tree: Tree): void {
  const text = tree.read('nx.json', 'utf-8') ?? '{}\n';
  const nxJson = parseJsonc(text) as { plugins?: unknown };
  const plugins = nxJson.plugins;
  if (plugins !== undefined && !Array.isArray(plugins)) {
    throw new Error('nx.json "plugins" is not an array: add {"plugin": "@nxops/nx-plugin"} to it by hand');
  }
  if (plugins?.some(isOurs)) {
    return;
  }
  const root = parseTree(text);
  const list = member(root, 'plugins');
  tree.write('nx.json', list ? addItem(text, list, PLUGIN_ENTRY) : addMember(text, root, 'plugins', [PLUGIN_ENTRY]));
}

function isOurs(entry: unknown): boolean {
  return entry === PLUGIN_NAME || (typeof entry === 'object' && entry !== null && (entry as { plugin?: unknown }).plugin === PLUGIN_NAME);
}

function addScripts(tree: Tree): void {
  if (!tree.exists('package.json')) {
    return;
  }
  let text = tree.read('package.json', 'utf-8')!;
  const manifest = parseJsonc(text) as { scripts?: unknown };
  const scripts = manifest.scripts;
  if (scripts !== undefined && (typeof scripts !== 'object' || scripts === null || Array.isArray(scripts))) {
    throw new Error('package.json "scripts" is not an object: the ops:* scripts were not added');
  }
  const existing = (manifest.scripts ?? {}) as Record<string, unknown>;
  const project = rootProjectName((path) => (tree.exists(path) ? (tree.read(path, 'utf-8') ?? undefined) : undefined));
  const missing: Record<string, string> = {};
  for (const ops of OPS_COMMANDS) {
    if (ops.script !== undefined && !(ops.script in existing)) {
      missing[ops.script] = `nx run ${project}:${ops.target}`;
    }
  }
  if (Object.keys(missing).length === 0) {
    return;
  }
  if (manifest.scripts === undefined) {
    text = addMember(text, parseTree(text), 'scripts', missing);
  } else {
    for (const [script, command] of Object.entries(missing)) {
      text = addMember(text, member(parseTree(text), 'scripts')!, script, command);
    }
  }
  tree.write('package.json', text);
}
