/**
 * The registry of nxops settings, read from `settings.json` at the package root.
 * That file is generated from the binary's own registry (`config::SETTINGS`) and
 * checked by the Rust test `tests/plugin_settings.rs`, so the plugin validates
 * exactly the settings the binary knows. Never edit it by hand.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export type SettingKind = 'size' | 'duration' | 'count';

/** One setting as the binary's registry declares it. */
export interface SettingDef {
  /** Dotted key: `cache.maxSize`. */
  readonly key: string;
  readonly kind: SettingKind;
  /** The default, as text the setting's parser accepts. */
  readonly default: string;
  readonly doc: string;
}

/** Every setting, in the registry's order. */
export const SETTINGS: readonly SettingDef[] = loadSettings();

/** What a valid value looks like, worded as the binary words it (`SettingDef::expected`). */
export function expected(kind: SettingKind): string {
  switch (kind) {
    case 'size':
      return 'a size such as "5GB", "512 MiB" or a number of bytes';
    case 'duration':
      return 'a duration such as "7d", "30s" or "500ms"';
    case 'count':
      return 'a whole number such as 3';
  }
}

/** The sections (`cache`, `health`, `processes`), in registry order. */
export function sections(): string[] {
  return [...new Set(SETTINGS.map((def) => def.key.split('.')[0]))];
}

function loadSettings(): SettingDef[] {
  const text = readFileSync(join(__dirname, '..', 'settings.json'), 'utf-8');
  const parsed = JSON.parse(text) as { settings: SettingDef[] };
  return parsed.settings;
}
