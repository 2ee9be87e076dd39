/**
 * `nx g @nxops/nx-plugin:init` (also what `nx add @nxops/nx-plugin` runs after
 * installing): registers the plugin in nx.json and adds `ops:*` scripts to the
 * root package.json, each running the nxops command directly through the
 * package's `nxops` bin (`"ops:cache:stats": "nxops cache stats"`: no Nx
 * start-up). The inferred `ops-*` targets do the same through Nx.
 * `--hooks` also registers the opt-in task hooks (`@nxops/nx-plugin/hooks`,
 * whose cost the README states).
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

/** schema.json's options. */
export interface InitGeneratorOptions {
  /** Also register the task hooks plugin (default false). */
  readonly hooks?: boolean;
}

export async function initGenerator(tree: Tree, options: InitGeneratorOptions = {}): Promise<void> {
  registerPlugin(tree, PLUGIN_NAME, PLUGIN_ENTRY);
  if (options.hooks === true) {
    registerPlugin(tree, HOOKS_PLUGIN_NAME, HOOKS_PLUGIN_NAME);
  }
  addScripts(tree);
}

/** The entry added to nx.json `plugins`. */
export const PLUGIN_ENTRY = { plugin: PLUGIN_NAME, options: {} };
/** The opt-in hooks plugin. */
export const HOOKS_PLUGIN_NAME = '@nxops/nx-plugin/hooks';

function registerPlugin(tree: Tree, name: string, entry: unknown): void {
  const text = tree.read('nx.json', 'utf-8') ?? '{}\n';
  const nxJson = parseJsonc(text) as { plugins?: unknown };
  const plugins = nxJson.plugins;
  if (plugins !== undefined && !Array.isArray(plugins)) {
    throw new Error(`nx.json "plugins" is not an array: add {"plugin": "${name}"} to it by hand`);
  }
  if (plugins?.some((p) => isNamed(p, name))) {
    return;
  }
  const root = parseTree(text);
  const list = member(root, 'plugins');
  tree.write('nx.json', list ? addItem(text, list, entry) : addMember(text, root, 'plugins', [entry]));
}

function isNamed(entry: unknown, name: string): boolean {
  return entry === name || (typeof entry === 'object' && entry !== null && (entry as { plugin?: unknown }).plugin === name);
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
  const missing: Record<string, string> = {};
  for (const ops of OPS_COMMANDS) {
    if (ops.script !== undefined && !(ops.script in existing)) {
      // `exec`: the shell npm and pnpm run a script in would otherwise die of a Ctrl-C
      // the binary handles (exit 0), and the script would be reported as failed.
      missing[ops.script] = ['exec', 'nxops', ...ops.args].join(' ');
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
