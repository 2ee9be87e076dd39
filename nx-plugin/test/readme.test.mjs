// The README's settings table lists every setting of settings.json (the
// binary's registry), with its kind and default.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { pluginRoot } from './helpers.mjs';

test('the README lists every setting with its kind and default', () => {
  const readme = readFileSync(join(pluginRoot, 'README.md'), 'utf-8');
  const settings = JSON.parse(readFileSync(join(pluginRoot, 'settings.json'), 'utf-8')).settings;
  assert.ok(settings.length >= 10);
  const rows = readme.split('\n').filter((line) => /^\| `[a-z]+\.[a-zA-Z]+` \|/.test(line));
  assert.deepEqual(
    rows.map((row) => row.split('|').slice(1, 4).map((cell) => cell.trim())),
    settings.map((s) => [`\`${s.key}\``, s.kind, `\`${s.default}\``]),
  );
});
