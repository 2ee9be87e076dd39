// Binary resolution order: NXOPS_BIN, the platform package beside the plugin,
// PATH; bad NXOPS_BIN values are reported and skipped; the answer is cached.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanEnv, dist, pluginRoot, script, tempDir, writeFile } from './helpers.mjs';

const { findNxopsBinary } = dist('binary');

/** A folder laid out like an installed project: node_modules/@nxops/{nx-plugin,linux-x64}. */
function installed(dir, { withBinary = true, binaryMode = 0o755 } = {}) {
  const modules = join(dir, 'node_modules', '@nxops');
  const pluginDist = join(modules, 'nx-plugin', 'dist');
  writeFile(join(pluginDist, 'index.js'), '');
  writeFile(join(modules, 'linux-x64', 'package.json'), '{"name": "@nxops/linux-x64", "version": "0.1.0"}\n');
  const binary = join(modules, 'linux-x64', 'bin', 'nxops');
  if (withBinary) script(binary, 'echo packaged', binaryMode);
  return { pluginDist, binary };
}

function lookup(env, resolveFrom, platform = 'linux', arch = 'x64') {
  return { env, platform, arch, resolveFrom };
}

describe('findNxopsBinary', () => {
  test('NXOPS_BIN wins over the platform package and PATH', (t) => {
    const dir = tempDir(t);
    const { pluginDist } = installed(dir);
    const own = script(join(dir, 'own', 'nxops'));
    const pathDir = join(dir, 'path');
    script(join(pathDir, 'nxops'));
    const search = findNxopsBinary(lookup({ NXOPS_BIN: own, PATH: pathDir }, pluginDist));
    assert.deepEqual(search, { found: { path: own, source: 'NXOPS_BIN' }, problems: [] });
  });

  test('a bad NXOPS_BIN is reported and the search goes on', (t) => {
    const dir = tempDir(t);
    const { pluginDist, binary } = installed(dir);
    const notExecutable = script(join(dir, 'plain', 'nxops'), 'exit 0', 0o644);
    const cases = [
      [notExecutable, `NXOPS_BIN is ignored: ${notExecutable} is not executable`],
      [join(dir, 'missing'), `NXOPS_BIN is ignored: ${join(dir, 'missing')} does not exist`],
      [dir, `NXOPS_BIN is ignored: ${dir} is not a file`],
      ['bin/nxops', 'NXOPS_BIN is ignored: bin/nxops is not an absolute path'],
    ];
    for (const [value, problem] of cases) {
      const search = findNxopsBinary(lookup({ NXOPS_BIN: value }, pluginDist));
      assert.deepEqual(search, { found: { path: binary, source: 'platform-package' }, problems: [problem] });
    }
    // Empty means unset.
    assert.deepEqual(findNxopsBinary(lookup({ NXOPS_BIN: '' }, pluginDist)).problems, []);
  });

  test('the platform package is found from the plugin folder, only on linux x64', (t) => {
    const dir = tempDir(t);
    const { pluginDist, binary } = installed(dir);
    const pathDir = join(dir, 'path');
    const onPath = script(join(pathDir, 'nxops'));
    assert.deepEqual(findNxopsBinary(lookup({ PATH: pathDir }, pluginDist)).found, {
      path: binary,
      source: 'platform-package',
    });
    for (const [platform, arch] of [['darwin', 'x64'], ['linux', 'arm64']]) {
      const search = findNxopsBinary(lookup({ PATH: pathDir }, pluginDist, platform, arch));
      assert.deepEqual(search.found, { path: onPath, source: 'PATH' });
    }
  });

  test('a platform package without its binary (or not executable) is passed over', (t) => {
    const dir = tempDir(t);
    const pathDir = join(dir, 'path');
    const onPath = script(join(pathDir, 'nxops'));
    const { pluginDist } = installed(join(dir, 'a'), { withBinary: false });
    assert.equal(findNxopsBinary(lookup({ PATH: pathDir }, pluginDist)).found.path, onPath);
    const other = installed(join(dir, 'b'), { binaryMode: 0o644 });
    assert.equal(findNxopsBinary(lookup({ PATH: pathDir }, other.pluginDist)).found.path, onPath);
  });

  test('PATH is searched in order, skipping empty and relative entries and non-executables', (t) => {
    const dir = tempDir(t);
    script(join(dir, 'first', 'nxops'), 'exit 0', 0o644);
    const second = script(join(dir, 'second', 'nxops'));
    script(join(dir, 'third', 'nxops'));
    const PATH = ['', 'relative', join(dir, 'empty'), join(dir, 'first'), join(dir, 'second'), join(dir, 'third')].join(':');
    assert.deepEqual(findNxopsBinary(lookup({ PATH }, dir)).found, { path: second, source: 'PATH' });
  });

  test('nothing found', (t) => {
    const dir = tempDir(t);
    assert.deepEqual(findNxopsBinary(lookup({ PATH: dir }, dir)), { found: undefined, problems: [] });
    assert.deepEqual(findNxopsBinary(lookup({}, dir)), { found: undefined, problems: [] });
  });
});

describe('resolveNxopsBinary', () => {
  test('searches the real environment once per process and caches the answer', (t) => {
    const dir = tempDir(t);
    const first = script(join(dir, 'first', 'nxops'));
    const code = `
      const { resolveNxopsBinary } = require(${JSON.stringify(join(pluginRoot, 'dist', 'binary.js'))});
      const a = resolveNxopsBinary();
      process.env.NXOPS_BIN = '';
      process.env.PATH = '/nowhere';
      const b = resolveNxopsBinary();
      console.log(JSON.stringify([a.found, a === b]));`;
    const run = spawnSync(process.execPath, ['-e', code], {
      env: cleanEnv({ NXOPS_BIN: first, PATH: '/nowhere' }),
      encoding: 'utf-8',
    });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), [{ path: first, source: 'NXOPS_BIN' }, true]);
  });
});
