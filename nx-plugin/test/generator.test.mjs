// The init generator: what it adds to nx.json and package.json, what it leaves
// alone, that a second run changes nothing, and the same through Nx's own FsTree.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { dist, memoryTree, require, tempDir, writeFile } from './helpers.mjs';

const { initGenerator } = dist('generators/init/generator');

// fixtures/nx24's files, as a user's workspace would have them.
const NX_JSON = `{
  "$schema": "./node_modules/nx/schemas/nx-schema.json",
  "namedInputs": {
    "default": ["{projectRoot}/**/*"],
    "production": ["default"]
  },
  "targetDefaults": {
    "build": {
      "cache": true,
      "dependsOn": ["^build"]
    }
  }
}
`;
const PACKAGE_JSON = `{
  "name": "nx24-fixture",
  "version": "0.0.0",
  "private": true,
  "devDependencies": {
    "nx": "24.0.6"
  }
}
`;

const SCRIPTS = () => [
  ['ops:cache:stats', 'exec nxops cache stats'],
  ['ops:cache:clean', 'exec nxops cache clean'],
  ['ops:cache:reset', 'exec nxops cache reset'],
  ['ops:perf:optimize', 'exec nxops perf optimize'],
  ['ops:system:info', 'exec nxops system info'],
  ['ops:env:info', 'exec nxops env info'],
  ['ops:monitor:start', 'exec nxops monitor start'],
  ['ops:monitor:check', 'exec nxops monitor check'],
];

async function generate(files) {
  const tree = memoryTree(files);
  await initGenerator(tree, {});
  return tree;
}

describe('init generator', () => {
  test('registers the plugin and adds the ops scripts, leaving every other byte alone', async () => {
    const tree = await generate({ 'nx.json': NX_JSON, 'package.json': PACKAGE_JSON });
    assert.equal(
      tree.files['nx.json'],
      NX_JSON.replace(
        /\n  }\n}\n$/,
        '\n  },\n  "plugins": [\n    {\n      "plugin": "@nxops/nx-plugin",\n      "options": {}\n    }\n  ]\n}\n',
      ),
    );
    const scripts = SCRIPTS('nx24-fixture').map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
    assert.equal(
      tree.files['package.json'],
      PACKAGE_JSON.replace(/\n  }\n}\n$/, `\n  },\n  "scripts": {\n${scripts.join(',\n')}\n  }\n}\n`),
    );
  });

  test('a second run changes nothing', async () => {
    const tree = await generate({ 'nx.json': NX_JSON, 'package.json': PACKAGE_JSON });
    const after = { ...tree.files };
    const again = await generate(tree.files);
    assert.deepEqual(again.writes, []);
    assert.deepEqual(again.files, after);
  });

  test('an existing registration, string or object, is left alone', async () => {
    for (const entry of ['"@nxops/nx-plugin"', '{"plugin": "@nxops/nx-plugin", "options": {"cache": {"maxSize": "1GB"}}}']) {
      const nxJson = `{\n  "plugins": ["@nx/js", ${entry}]\n}\n`;
      const tree = await generate({ 'nx.json': nxJson });
      assert.deepEqual(tree.writes, []);
    }
  });

  test('appends to an existing plugins array in its own style', async () => {
    const multiLine = `{\n    "plugins": [\n        "@nx/js",\n        {\n            "plugin": "@nx/jest"\n        }\n    ]\n}`;
    assert.equal(
      (await generate({ 'nx.json': multiLine })).files['nx.json'],
      `{\n    "plugins": [\n        "@nx/js",\n        {\n            "plugin": "@nx/jest"\n        },\n        {\n            "plugin": "@nxops/nx-plugin",\n            "options": {}\n        }\n    ]\n}`,
    );
    const inline = `{\n  "plugins": ["@nx/js"]\n}\n`;
    assert.equal(
      (await generate({ 'nx.json': inline })).files['nx.json'],
      `{\n  "plugins": ["@nx/js", {"plugin": "@nxops/nx-plugin", "options": {}}]\n}\n`,
    );
    const empty = `{\n\t"plugins": []\n}\n`;
    assert.equal(
      (await generate({ 'nx.json': empty })).files['nx.json'],
      `{\n\t"plugins": [\n\t\t{\n\t\t\t"plugin": "@nxops/nx-plugin",\n\t\t\t"options": {}\n\t\t}\n\t]\n}\n`,
    );
  });

  test('keeps CRLF line endings', async () => {
    const { files } = await generate({ 'nx.json': NX_JSON.replace(/\n/g, '\r\n'), 'package.json': PACKAGE_JSON });
    assert.doesNotMatch(files['nx.json'], /[^\r]\n/);
    assert.deepEqual(JSON.parse(files['nx.json']).plugins, [{ plugin: '@nxops/nx-plugin', options: {} }]);
  });

  test('keeps comments and trailing commas in nx.json (Nx reads it as JSONC)', async () => {
    const nxJson = `{\n  // shared inputs\n  "namedInputs": {"default": ["{projectRoot}/**/*"]},\n  /* plugins */\n  "plugins": [\n    "@nx/js", // the js plugin\n  ],\n}\n`;
    const { files } = await generate({ 'nx.json': nxJson });
    assert.equal(
      files['nx.json'],
      `{\n  // shared inputs\n  "namedInputs": {"default": ["{projectRoot}/**/*"]},\n  /* plugins */\n  "plugins": [\n    "@nx/js", // the js plugin\n    {\n      "plugin": "@nxops/nx-plugin",\n      "options": {}\n    }\n  ],\n}\n`,
    );
    assert.deepEqual((await generate(files)).writes, []);
  });

  test('existing scripts are kept and the missing ones added after them', async () => {
    const packageJson = `{\n  "name": "@acme/root",\n  "scripts": {\n    "build": "nx run-many -t build",\n    "ops:cache:stats": "echo mine"\n  }\n}\n`;
    const { files } = await generate({ 'nx.json': '{}\n', 'package.json': packageJson });
    const added = SCRIPTS('@acme/root')
      .filter(([name]) => name !== 'ops:cache:stats')
      .map(([k, v]) => `,\n    ${JSON.stringify(k)}: ${JSON.stringify(v)}`)
      .join('');
    assert.equal(files['package.json'], packageJson.replace('"echo mine"', `"echo mine"${added}`));
  });

  test('--hooks also registers the opt-in hooks plugin, once', async () => {
    const tree = await generate({ 'nx.json': '{}\n' });
    assert.deepEqual(JSON.parse(tree.files['nx.json']).plugins, [{ plugin: '@nxops/nx-plugin', options: {} }]);
    await initGenerator(tree, { hooks: true });
    const plugins = JSON.parse(tree.files['nx.json']).plugins;
    assert.deepEqual(plugins, [{ plugin: '@nxops/nx-plugin', options: {} }, '@nxops/nx-plugin/hooks']);
    const again = memoryTree(tree.files);
    await initGenerator(again, { hooks: true });
    assert.deepEqual(again.writes, []);
  });

  test('without package.json only nx.json is written; without nx.json one is made', async () => {
    assert.deepEqual((await generate({ 'nx.json': '{}' })).writes, ['nx.json']);
    assert.equal(
      (await generate({})).files['nx.json'],
      '{\n  "plugins": [\n    {\n      "plugin": "@nxops/nx-plugin",\n      "options": {}\n    }\n  ]\n}\n',
    );
  });

  test('refuses plugins or scripts of the wrong type instead of guessing', async () => {
    await assert.rejects(generate({ 'nx.json': '{"plugins": {}}' }), /nx.json "plugins" is not an array/);
    await assert.rejects(
      generate({ 'nx.json': '{}', 'package.json': '{"scripts": []}' }),
      /package.json "scripts" is not an object/,
    );
  });

  test("through Nx's own FsTree: the files on disk, then no changes on the second run", async (t) => {
    const { FsTree, flushChanges } = require('nx/src/generators/tree');
    const dir = tempDir(t);
    writeFile(join(dir, 'nx.json'), NX_JSON);
    writeFile(join(dir, 'package.json'), PACKAGE_JSON);
    const first = new FsTree(dir, false);
    await initGenerator(first, {});
    assert.deepEqual(first.listChanges().map((c) => [c.path, c.type]), [
      ['nx.json', 'UPDATE'],
      ['package.json', 'UPDATE'],
    ]);
    flushChanges(dir, first.listChanges());
    const nxJson = readFileSync(join(dir, 'nx.json'), 'utf-8');
    assert.deepEqual(JSON.parse(nxJson).plugins, [{ plugin: '@nxops/nx-plugin', options: {} }]);
    const second = new FsTree(dir, false);
    await initGenerator(second, {});
    assert.deepEqual(second.listChanges(), []);
  });
});
