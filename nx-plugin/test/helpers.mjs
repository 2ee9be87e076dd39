// Shared pieces of the plugin's tests: the built modules, temporary folders,
// executables, an in-memory generator Tree and the real nxops binary (if built).

import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const pluginRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = join(pluginRoot, '..');
export const require = createRequire(import.meta.url);

/** A module of the built plugin: `dist('options')`. */
export function dist(module) {
  return require(join(pluginRoot, 'dist', module));
}

/** A fresh temporary folder (real path), removed when the test ends. */
export function tempDir(t, prefix = 'nxops-plugin-') {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes `text` to `path` (creating folders) and returns the path. */
export function writeFile(path, text, mode) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  if (mode !== undefined) chmodSync(path, mode);
  return path;
}

/** A shell script at `path` that runs `body`; executable unless `mode` says otherwise. */
export function script(path, body = 'exit 0', mode = 0o755) {
  return writeFile(path, `#!/bin/sh\n${body}\n`, mode);
}

/** A generator Tree over a plain object of path -> text, recording every write. */
export function memoryTree(files) {
  const writes = [];
  return {
    root: '/virtual',
    files,
    writes,
    read(path, encoding) {
      if (!(path in files)) return null;
      return encoding ? files[path] : Buffer.from(files[path]);
    },
    write(path, content) {
      writes.push(path);
      files[path] = String(content);
    },
    exists: (path) => path in files,
  };
}

/**
 * The nxops binary to compare against: NXOPS_BIN, else the repository's debug
 * or release build. Undefined when none is built (the comparison is skipped).
 */
export function realBinary() {
  const candidates = [process.env.NXOPS_BIN, join(repoRoot, 'target/debug/nxops'), join(repoRoot, 'target/release/nxops')];
  return candidates.find((path) => path && existsSync(path));
}

/** `process.env` without nxops's own variables, plus `extra`. */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('NXOPS_') && key !== 'XDG_RUNTIME_DIR') env[key] = value;
  }
  return { ...env, ...extra };
}

/**
 * Starts `nxops serve --stdio` attached to `workspace` (as an editor would) and
 * resolves once `socket` exists. The sidecar is ended when the test ends, even
 * when it fails, and the test then checks that it exited.
 */
export async function startSidecar(t, workspace, env, socket) {
  const { spawn } = await import('node:child_process');
  const child = spawn(realBinary(), ['serve', '--stdio'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(async () => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    const status = await exited;
    clearTimeout(timer);
    assert.notEqual(status.signal, 'SIGKILL', `the sidecar did not exit on end of input:\n${stderr}`);
  });
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { processId: process.pid, rootUri: `file://${workspace}`, capabilities: {}, clientInfo: { name: 'test' } },
  });
  child.stdin.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    assert.ok(Date.now() < deadline, `no socket at ${socket} after 10 s; sidecar stderr:\n${stderr}`);
    assert.equal(child.exitCode, null, `the sidecar exited: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return child;
}
