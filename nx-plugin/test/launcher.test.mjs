// bin/nxops, the package's `nxops` command (what the `ops:*` scripts run): it
// replaces itself with the binary from NXOPS_BIN or the platform package, found as
// node's require finds it in npm's and pnpm's layouts, with no node started; anything
// else goes to bin/nxops.js, which warns and searches PATH.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanEnv, pluginRoot, script, tempDir, writeFile } from './helpers.mjs';

/** A copy of the built plugin (bin and dist) at `dir`. */
function pluginAt(dir) {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  for (const file of ['nxops', 'nxops.js']) copyFileSync(join(pluginRoot, 'bin', file), join(dir, 'bin', file));
  cpSync(join(pluginRoot, 'dist'), join(dir, 'dist'), { recursive: true });
  return dir;
}

/** A stand-in binary that prints each argument in brackets and exits 7. */
function fakeBinary(path, name) {
  return script(path, `echo ${name}; for a in "$@"; do echo "[$a]"; done; exit 7`);
}

/** A stand-in platform package (package.json and bin/nxops) at `dir`. */
function platformAt(dir, name) {
  writeFile(join(dir, 'package.json'), '{"name": "@nxops/linux-x64", "version": "0.1.0"}\n');
  return fakeBinary(join(dir, 'bin', 'nxops'), name);
}

/** node_modules/.bin/nxops as npm links it: a symlink to the plugin's bin. */
function binLink(ws, target) {
  const link = join(ws, 'node_modules', '.bin', 'nxops');
  mkdirSync(dirname(link), { recursive: true });
  symlinkSync(target, link);
  return link;
}

/** A PATH with only what the script needs, and no node: using node would fail. */
function toolsWithoutNode(dir) {
  const tools = join(dir, 'tools');
  mkdirSync(tools);
  for (const tool of ['sh', 'readlink', 'uname']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf-8' }).stdout.trim();
    symlinkSync(found, join(tools, tool));
  }
  return tools;
}

function run(command, env) {
  return spawnSync(command, ['cache', 'stats', 'two words'], { env, encoding: 'utf-8' });
}

const ARGS = '[cache]\n[stats]\n[two words]\n';

describe('bin/nxops', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
  test('npm layout: the platform package beside the plugin, no node started', (t) => {
    const ws = tempDir(t);
    const modules = join(ws, 'node_modules', '@nxops');
    pluginAt(join(modules, 'nx-plugin'));
    platformAt(join(modules, 'linux-x64'), 'packaged');
    const bin = binLink(ws, '../@nxops/nx-plugin/bin/nxops');
    const out = run(bin, { PATH: toolsWithoutNode(ws) });
    assert.equal(out.status, 7, out.stderr);
    assert.equal(out.stdout, `packaged\n${ARGS}`);
    assert.equal(out.stderr, '');
  });

  test('npm layout, nested: the nearest platform package wins, as with require', (t) => {
    const ws = tempDir(t);
    const plugin = pluginAt(join(ws, 'node_modules', '@nxops', 'nx-plugin'));
    platformAt(join(plugin, 'node_modules', '@nxops', 'linux-x64'), 'nested');
    platformAt(join(ws, 'node_modules', '@nxops', 'linux-x64'), 'hoisted');
    const out = run(binLink(ws, '../@nxops/nx-plugin/bin/nxops'), { PATH: toolsWithoutNode(ws) });
    assert.equal(out.stdout, `nested\n${ARGS}`, out.stderr);
  });

  test('pnpm layout: the platform package in the plugin store folder, through the symlinks', (t) => {
    const ws = tempDir(t);
    const store = join(ws, 'node_modules', '.pnpm', '@nxops+nx-plugin@0.1.0', 'node_modules', '@nxops');
    pluginAt(join(store, 'nx-plugin'));
    platformAt(join(store, 'linux-x64'), 'store');
    mkdirSync(join(ws, 'node_modules', '@nxops'));
    symlinkSync(join(store, 'nx-plugin'), join(ws, 'node_modules', '@nxops', 'nx-plugin'));
    const out = run(binLink(ws, join(ws, 'node_modules', '@nxops', 'nx-plugin', 'bin', 'nxops')), {
      PATH: toolsWithoutNode(ws),
    });
    assert.equal(out.status, 7, out.stderr);
    assert.equal(out.stdout, `store\n${ARGS}`);
  });

  test('NXOPS_BIN wins; a bad one is warned about by nxops.js, which goes on to the platform package', (t) => {
    const ws = tempDir(t);
    const modules = join(ws, 'node_modules', '@nxops');
    pluginAt(join(modules, 'nx-plugin'));
    platformAt(join(modules, 'linux-x64'), 'packaged');
    const own = fakeBinary(join(ws, 'own', 'nxops'), 'own');
    const bin = binLink(ws, '../@nxops/nx-plugin/bin/nxops');
    const chosen = run(bin, { PATH: toolsWithoutNode(ws), NXOPS_BIN: own });
    assert.equal(chosen.stdout, `own\n${ARGS}`, chosen.stderr);

    const relative = run(bin, cleanEnv({ NXOPS_BIN: 'own/nxops' }));
    assert.equal(relative.status, 7, relative.stderr);
    assert.equal(relative.stdout, `packaged\n${ARGS}`);
    assert.equal(relative.stderr, '[nxops] NXOPS_BIN is ignored: own/nxops is not an absolute path\n');
  });

  test('a platform package without an executable binary is not passed over for another (as with require)', (t) => {
    const ws = tempDir(t);
    const plugin = pluginAt(join(ws, 'node_modules', '@nxops', 'nx-plugin'));
    writeFile(join(plugin, 'node_modules', '@nxops', 'linux-x64', 'package.json'), '{"name": "@nxops/linux-x64"}\n');
    platformAt(join(ws, 'node_modules', '@nxops', 'linux-x64'), 'hoisted');
    const pathDir = join(ws, 'path');
    fakeBinary(join(pathDir, 'nxops'), 'on-path');
    const env = cleanEnv();
    const out = run(binLink(ws, '../@nxops/nx-plugin/bin/nxops'), { ...env, PATH: `${pathDir}:${env.PATH}` });
    assert.equal(out.stdout, `on-path\n${ARGS}`, out.stderr);
  });

  test('no platform package: nxops.js finds the binary on PATH, or says none was found', (t) => {
    const ws = tempDir(t);
    pluginAt(join(ws, 'node_modules', '@nxops', 'nx-plugin'));
    const bin = binLink(ws, '../@nxops/nx-plugin/bin/nxops');
    const pathDir = join(ws, 'path');
    fakeBinary(join(pathDir, 'nxops'), 'on-path');
    const env = cleanEnv();
    const found = run(bin, { ...env, PATH: `${pathDir}:${env.PATH}` });
    assert.equal(found.stdout, `on-path\n${ARGS}`, found.stderr);
    const none = run(bin, env);
    assert.equal(none.status, 127);
    assert.match(none.stderr, /no nxops binary found/);
  });
});
