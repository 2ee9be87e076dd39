/**
 * The plugin's options are the nxops settings, nested by section:
 * `{"cache": {"maxSize": "10GB"}, "processes": {"maxRestarts": 5}}`.
 *
 * Validation is a port of the binary's `Settings::resolve` for the nx.json
 * layer (`plugin_options`, `raw_text`, `lookup` in src/config/mod.rs): the same
 * checks in the same order (sections first, then each value; keys in sorted
 * order, as serde_json's map iterates them) and the same problem wording.
 * Only the location differs in form: `nx.json plugins[0].options.cache.maxSize`.
 */

import { SETTINGS, expected, sections, type SettingDef } from './settings';
import { suggest } from './suggest';
import { parseCount, parseDuration, parseSize, rustDebug, type Parsed } from './units';

/** The options object as written in nx.json. */
export type NxopsPluginOptions = Record<string, Record<string, string | number>>;

/** One validated setting: its key, where it was written, and its value in bytes, ms or a count. */
export interface OptionValue {
  readonly key: string;
  readonly location: string;
  readonly value: number;
}

/** An invalid option: where it is and what is wrong with it. */
export class OptionsError extends Error {
  constructor(
    readonly location: string,
    readonly problem: string,
  ) {
    super(`${location}: ${problem}`);
    this.name = 'OptionsError';
  }
}

export const PLUGIN_NAME = '@nxops/nx-plugin';

/**
 * Checks `options` (given at `nx.json <pointer>`, e.g. `plugins[0].options`)
 * and returns every setting it sets. Throws an {@link OptionsError} for the
 * first mistake.
 */
export function validateOptions(options: unknown, pointer: string): OptionValue[] {
  if (options === undefined) {
    return [];
  }
  const where = (path: string) => `nx.json ${path}`;
  if (!isObject(options)) {
    throw new OptionsError(where(pointer), 'must be an object');
  }
  const known = sections();
  const leaves: Array<{ key: string; leaf: unknown; location: string }> = [];
  for (const section of sortedKeys(options)) {
    const path = `${pointer}.${section}`;
    if (!known.includes(section)) {
      throw new OptionsError(where(path), `unknown section ${rustDebug(section)}${hint(section, known)}`);
    }
    const body = options[section];
    if (!isObject(body)) {
      throw new OptionsError(where(path), `must be an object, got ${JSON.stringify(body)}`);
    }
    for (const field of sortedKeys(body)) {
      leaves.push({ key: `${section}.${field}`, leaf: body[field], location: where(`${path}.${field}`) });
    }
  }
  return leaves.map(({ key, leaf, location }) => checkValue(key, leaf, location));
}

/**
 * Where this plugin's entry sits in nx.json, as `plugins[<i>].options`: the
 * entry named `@nxops/nx-plugin` whose options are `options` (Nx hands each
 * entry its own copy), else the first entry with those options, else the first
 * entry with our name.
 */
export function optionsPointer(nxJson: { plugins?: unknown[] } | undefined, options: unknown): string {
  const plugins = Array.isArray(nxJson?.plugins) ? nxJson!.plugins : [];
  const named = (entry: unknown) => entry === PLUGIN_NAME || (isObject(entry) && entry.plugin === PLUGIN_NAME);
  const sameOptions = (entry: unknown) => isObject(entry) && sameJson(entry.options, options);
  let index = plugins.findIndex((entry) => named(entry) && sameOptions(entry));
  if (index < 0) index = plugins.findIndex(sameOptions);
  if (index < 0) index = plugins.findIndex(named);
  return index < 0 ? 'plugins[?].options' : `plugins[${index}].options`;
}

function checkValue(key: string, leaf: unknown, location: string): OptionValue {
  const def = lookup(key, location);
  const text = rawText(leaf);
  if (text === undefined) {
    throw new OptionsError(location, `the JSON value ${JSON.stringify(leaf)} is not valid: expected ${expected(def.kind)}`);
  }
  const parsed = parse(def, text);
  if (!parsed.ok) {
    throw new OptionsError(location, `${rustDebug(text)} is not valid (${parsed.why}): expected ${expected(def.kind)}`);
  }
  return { key, location, value: parsed.value };
}

function lookup(key: string, location: string): SettingDef {
  const def = SETTINGS.find((d) => d.key === key);
  if (def === undefined) {
    const keys = SETTINGS.map((d) => d.key);
    throw new OptionsError(location, `unknown setting ${rustDebug(key)}${hint(key, keys)} (known: ${keys.join(', ')})`);
  }
  return def;
}

/** Setting text from a JSON leaf: strings as they are, non-negative integers in decimal; nothing else. */
function rawText(leaf: unknown): string | undefined {
  if (typeof leaf === 'string') {
    return leaf;
  }
  if (typeof leaf === 'number' && Number.isInteger(leaf) && leaf >= 0 && leaf < 2 ** 64) {
    return BigInt(leaf).toString();
  }
  return undefined;
}

function parse(def: SettingDef, text: string): Parsed {
  switch (def.kind) {
    case 'size':
      return parseSize(text);
    case 'duration':
      return parseDuration(text);
    case 'count':
      return parseCount(text);
  }
}

function hint(given: string, known: string[]): string {
  const best = suggest(given, known);
  return best === undefined ? '' : `; did you mean ${rustDebug(best)}?`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Keys in the order Rust's `BTreeMap<String, _>` keeps them (by code point). */
function sortedKeys(object: Record<string, unknown>): string[] {
  const codePoints = (s: string) => Array.from(s, (c) => c.codePointAt(0)!);
  return Object.keys(object).sort((a, b) => {
    const [x, y] = [codePoints(a), codePoints(b)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i] - y[i];
    }
    return x.length - y.length;
  });
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}
