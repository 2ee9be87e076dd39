// createNodes: the root project's name, one target per ops command running the
// resolved binary, and invalid options refused with their nx.json location.

import assert from 'node:assert/strict';
import { execSync } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

import { dist, script, tempDir, writeFile } from './helpers.mjs';

// This file runs in its own process: the binary is resolved (and cached) from this NXOPS_BIN.
const binDir = realpathSync(mkdtempSync(join(tmpdir(), "nxops bin's-")));
const binary = script(join(binDir, 'nxops'), 'for a in "$@"; do echo "$a"; done');
process.env.NXOPS_BIN = binary;
after(() => rmSync(binDir, { recursive: true, force: true }));

const { createNodes, shellQuote } = dist('create-nodes');
const [pattern, create] = createNodes;

const TARGETS = [
  ['ops-cache-stats', 'cache stats'],
  ['ops-cache-clean', 'cache clean'],
  ['ops-cache-reset', 'cache reset'],
  ['ops-cache-verify', 'cache verify'],
  ['ops-perf-optimize', 'perf optimize'],
  ['ops-system-info', 'system info'],
  ['ops-env-info', 'env info'],
  ['ops-monitor-start', 'monitor start'],
  ['ops-monitor-check', 'monitor check'],
];

function run(ws, options, plugins = [{ plugin: '@nxops/nx-plugin', options }]) {
  return create(['nx.json'], options, { workspaceRoot: ws, nxJsonConfiguration: { plugins } });
}

describe('createNodes', () => {
  test('matches nx.json and adds the ops targets to the root project', (t) => {
    const ws = tempDir(t);
    writeFile(join(ws, 'package.json'), '{"name": "acme"}');
    assert.equal(pattern, 'nx.json');
    const [[file, result]] = run(ws, undefined);
    assert.equal(file, 'nx.json');
    assert.deepEqual(Object.keys(result.projects), ['.']);
    const root = result.projects['.'];
    assert.equal(root.name, 'acme');
    assert.deepEqual(Object.keys(root.targets), TARGETS.map(([name]) => name));
    for (const [name, words] of TARGETS) {
      const target = root.targets[name];
      assert.equal(target.executor, 'nx:run-commands');
      assert.equal(target.cache, false);
      assert.deepEqual(target.options, {
        command: `${shellQuote(binary)} --workspace ${shellQuote(ws)} ${words}`,
        cwd: '{workspaceRoot}',
      });
      assert.equal(typeof target.metadata.description, 'string');
    }
  });

  test('the command reaches nxops with its arguments intact, quotes and spaces included', (t) => {
    const ws = join(tempDir(t), "my 'ws'");
    writeFile(join(ws, 'nx.json'), '{}');
    const { command } = run(ws, {})[0][1].projects['.'].targets['ops-cache-clean'].options;
    const args = execSync(`${command} --dry-run`, { encoding: 'utf-8' }).trim().split('\n');
    assert.deepEqual(args, ['--workspace', ws, 'cache', 'clean', '--dry-run']);
  });

  test('a workspace without a named root project gets nxops-workspace', (t) => {
    assert.equal(run(tempDir(t), {})[0][1].projects['.'].name, 'nxops-workspace');
  });

  test('invalid options throw with their nx.json location', (t) => {
    const ws = tempDir(t);
    const options = { cache: { maxSize: '10 gigs' } };
    assert.throws(() => run(ws, options, ['@nx/js', { plugin: '@nxops/nx-plugin', options }]), {
      name: 'OptionsError',
      message: /^nx\.json plugins\[1\]\.options\.cache\.maxSize: "10 gigs" is not valid \(unknown size unit "gigs"/,
    });
  });
});
