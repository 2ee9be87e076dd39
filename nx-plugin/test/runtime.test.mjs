// The sidecar socket path: the runtime folder rule (with its length fallback),
// the workspace key, and a real sidecar listening exactly where the plugin looks.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanEnv, dist, realBinary, startSidecar, tempDir, writeFile } from './helpers.mjs';

const { runtimeDir, socketPath, workspaceKey, canonicalRoot } = dist('runtime');

const at = (XDG_RUNTIME_DIR) => ({ env: { XDG_RUNTIME_DIR }, uid: 1234 });

describe('runtime folder', () => {
  test('is $XDG_RUNTIME_DIR/nxops when set, non-empty and absolute', () => {
    assert.equal(runtimeDir(at('/run/user/1234')), '/run/user/1234/nxops');
  });

  test('falls back to /tmp/nxops-<uid> when unset, empty or relative', () => {
    assert.equal(runtimeDir({ env: {}, uid: 1234 }), '/tmp/nxops-1234');
    assert.equal(runtimeDir(at('')), '/tmp/nxops-1234');
    assert.equal(runtimeDir(at('run/user/1234')), '/tmp/nxops-1234');
  });

  test('falls back when the socket path would pass 107 bytes (XDG length + 6 + 22 > 107)', () => {
    const longest = '/' + 'x'.repeat(78); // 79 bytes: 79 + 28 = 107
    assert.equal(runtimeDir(at(longest)), `${longest}/nxops`);
    assert.equal(socketPath('/ws', at(longest)).length, 107);
    assert.equal(runtimeDir(at(longest + 'x')), '/tmp/nxops-1234');
    // Bytes, not characters: "é" is two bytes in UTF-8.
    assert.equal(runtimeDir(at('/' + 'x'.repeat(76) + 'é')), `/${'x'.repeat(76)}é/nxops`);
    assert.equal(runtimeDir(at('/' + 'x'.repeat(77) + 'é')), '/tmp/nxops-1234');
  });
});

describe('a runtime folder taken by someone else', () => {
  test('is left for <state base>/run, as the binary does', (t) => {
    const dir = tempDir(t);
    const xdg = join(dir, 'xdg');
    mkdirSync(join(dir, 'elsewhere'), { recursive: true });
    mkdirSync(xdg);
    symlinkSync(join(dir, 'elsewhere'), join(xdg, 'nxops'));
    const uid = process.getuid();
    assert.equal(runtimeDir({ env: { XDG_RUNTIME_DIR: xdg, HOME: dir }, uid }), join(dir, '.local/state/nxops/run'));
    assert.equal(runtimeDir({ env: { XDG_RUNTIME_DIR: xdg, NXOPS_STATE_DIR: join(dir, 's') }, uid }), join(dir, 's/run'));
    // A real folder of ours is used as it is; one of another uid is not.
    mkdirSync(join(dir, 'mine', 'nxops'), { recursive: true });
    assert.equal(runtimeDir({ env: { XDG_RUNTIME_DIR: join(dir, 'mine'), HOME: dir }, uid }), join(dir, 'mine/nxops'));
    assert.equal(
      runtimeDir({ env: { XDG_RUNTIME_DIR: join(dir, 'mine'), HOME: dir }, uid: uid + 1 }),
      join(dir, '.local/state/nxops/run'),
    );
  });

  test('without XDG_RUNTIME_DIR, the preferred folder is under $TMPDIR when usable', () => {
    assert.equal(runtimeDir({ env: { TMPDIR: '/var/tmp/x' }, uid: 1234 }), '/var/tmp/x/nxops-1234');
    assert.equal(runtimeDir({ env: { TMPDIR: 'rel' }, uid: 1234 }), '/tmp/nxops-1234');
  });
});

describe('socket path', () => {
  test('is <runtime>/<first 16 hex of sha256(canonical root)>.sock', () => {
    const key = createHash('sha256').update('/work/ws').digest('hex').slice(0, 16);
    assert.equal(workspaceKey('/work/ws'), key);
    assert.equal(socketPath('/work/ws', at('/run/user/1234')), `/run/user/1234/nxops/${key}.sock`);
  });

  test('uses the real path of the workspace root', (t) => {
    const dir = tempDir(t);
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    assert.equal(canonicalRoot(join(dir, 'link')), join(dir, 'real'));
  });
});

describe('agreement with the nxops binary', { skip: realBinary() ? false : 'no nxops binary built' }, () => {
  test('a real sidecar listens where the plugin looks, for a workspace reached through a symlink', async (t) => {
    const dir = tempDir(t, 'nxrt-');
    const ws = join(dir, 'real-ws');
    writeFile(join(ws, 'nx.json'), '{}\n');
    symlinkSync(ws, join(dir, 'link'));
    const runtime = join(dir, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    const expected = socketPath(canonicalRoot(join(dir, 'link')), { env: { XDG_RUNTIME_DIR: runtime }, uid: 0 });
    await startSidecar(t, join(dir, 'link'), cleanEnv({ HOME: dir, XDG_RUNTIME_DIR: runtime }), expected);
  });
});
