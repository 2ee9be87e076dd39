// The packaged .vsix (made by `npm run package` just before this runs): it
// holds the compiled extension and its runtime dependencies, and its manifest
// declares every command the code registers, and no other.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { extRoot } from '../helpers.mjs';
import { readZip, registeredCommands, vsixProblems } from './vsix.mjs';

const manifest = JSON.parse(readFileSync(join(extRoot, 'package.json'), 'utf8'));
const vsixPath = join(extRoot, `nxops-${manifest.version}.vsix`);

describe('the .vsix', () => {
  test('holds the compiled extension, its dependencies and a manifest that matches the code', () => {
    assert.ok(existsSync(vsixPath), `${vsixPath} missing: run npm run package`);
    const files = readZip(vsixPath);
    assert.deepEqual(vsixProblems(files), []);
    assert.ok(files.has('extension/out/extension.js'));
    assert.ok(files.has('extension/out/core/client.js'));
    assert.ok(files.has('extension/node_modules/vscode-languageclient/lib/node/main.js'));
    assert.ok(files.has('extension.vsixmanifest'));
    const packaged = JSON.parse(files.get('extension/package.json')().toString('utf8'));
    assert.equal(packaged.engines.vscode, manifest.engines.vscode);
    const ids = registeredCommands(files.get('extension/out/extension.js')().toString('utf8'));
    assert.ok(ids.length >= 11, `only ${ids.length} commands found: ${ids}`);
    assert.ok(ids.includes('nxops.cacheClean') && ids.includes('nxops.showHealth'), String(ids));
  });

  test('engines.vscode matches the @types/vscode the code was compiled against', () => {
    const types = JSON.parse(readFileSync(join(extRoot, 'node_modules/@types/vscode/package.json'), 'utf8'));
    assert.equal(manifest.engines.vscode, `^${types.version}`);
  });

  test('the check fails on a manifest that misses a command, declares an extra one, or lacks the code', () => {
    const js = "vscode.commands.registerCommand('nxops.a', f);\nvscode.commands.registerCommand( \"nxops.b\", g);";
    const files = (commands, code = js) =>
      new Map([
        ['extension/package.json', () => Buffer.from(JSON.stringify({ main: './out/extension.js', contributes: { commands } }))],
        ...(code === null ? [] : [['extension/out/extension.js', () => Buffer.from(code)]]),
      ]);
    assert.deepEqual(vsixProblems(files([{ command: 'nxops.a', title: 'A' }, { command: 'nxops.b', title: 'B' }])), []);
    assert.deepEqual(vsixProblems(files([{ command: 'nxops.a', title: 'A' }])), ['nxops.b is registered but not declared in contributes.commands']);
    assert.deepEqual(vsixProblems(files([{ command: 'nxops.a', title: 'A' }, { command: 'nxops.b', title: 'B' }, { command: 'nxops.c', title: 'C' }])), [
      'nxops.c is declared in contributes.commands but never registered',
    ]);
    assert.deepEqual(vsixProblems(files([], null)), ['the compiled extension extension/out/extension.js is missing']);
  });
});
