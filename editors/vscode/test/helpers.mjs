// Shared pieces of the extension's node tests: the compiled core modules, a
// private HOME, real Nx fixture workspaces, and the real nxops sidecar driven
// through vscode-jsonrpc (the library vscode-languageclient is built on).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const extRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = join(extRoot, '../..');
export const require = createRequire(import.meta.url);
const rpc = require('vscode-jsonrpc/node');

const cleanups = new WeakMap();

/**
 * Runs `fn` when the test ends, after the cleanups registered later (last in,
 * first out: a sidecar stops before its HOME is removed; node:test runs its own
 * `after` hooks first in, first out). Every cleanup runs even if one fails.
 */
export function cleanup(t, fn) {
  if (!cleanups.has(t)) {
    cleanups.set(t, []);
    t.after(async () => {
      let failure;
      for (const step of cleanups.get(t).reverse()) {
        try {
          await step();
        } catch (error) {
          failure ??= error;
        }
      }
      if (failure) throw failure;
    });
  }
  cleanups.get(t).push(fn);
}

/** A compiled module of the extension: `core('health')`. */
export function core(module) {
  return require(join(extRoot, 'out/core', module));
}

/** The real binary: NXOPS_BIN, else the repository's debug build. Fails, saying how to build it. */
export function realBinary() {
  const path = process.env.NXOPS_BIN || join(repoRoot, 'target/debug/nxops');
  assert.ok(existsSync(path), `no nxops binary at ${path}: run \`cargo build --locked\` at the repository root first`);
  return path;
}

/**
 * A private HOME (with a runtime folder for sockets) under target/, outside
 * /tmp because Nx refuses a ~/.nx there. Removed when the test ends.
 */
export function scratchHome(t) {
  const base = join(repoRoot, 'target/tmp');
  mkdirSync(base, { recursive: true });
  const home = realpathSync(mkdtempSync(join(base, 'vscode-home-')));
  mkdirSync(join(home, 'run'));
  cleanup(t, () => rmSync(home, { recursive: true, force: true }));
  return home;
}

/** The environment of the sidecar and the fixture scripts: this HOME, no NX_/NXOPS_/XDG_ leftovers. */
export function envFor(home, extra = {}) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(NX_|NXOPS_|XDG_)/.test(key)) env[key] = value;
  }
  return { ...env, HOME: home, XDG_RUNTIME_DIR: join(home, 'run'), NX_DAEMON: 'false', NX_NO_CLOUD: 'true', ...extra };
}

/** When each workspace's cache was last used by Nx (the end of its filling). */
export const filledAt = new Map();

/** A fresh Nx 24 workspace `<home>/<name>` (no git) whose cache real Nx runs filled (8 entries). */
export function filledWorkspace(home, name = 'ws') {
  const fixture = join(repoRoot, 'fixtures/nx24/node_modules/nx/package.json');
  assert.ok(existsSync(fixture), 'the Nx fixture is not installed: run scripts/setup (or fixtures/setup.sh)');
  const ws = join(home, name);
  const env = envFor(home);
  execFileSync(join(repoRoot, 'fixtures/make-workspace.sh'), [ws, '--git', 'none'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  execFileSync(join(repoRoot, 'fixtures/fill-cache.sh'), [ws], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  filledAt.set(realpathSync(ws), Date.now());
  return realpathSync(ws);
}

/**
 * Starts the real sidecar the way the extension does (the command from
 * `serverCommand`, the settings as `initializationOptions`) and connects
 * vscode-jsonrpc to its stdio. Resolves after `initialize`/`initialized`, or
 * rejects with the initialize error. When the test ends it sends `shutdown` and
 * `exit` and checks that the sidecar exited with 0 by itself.
 */
export async function startSidecar(t, { home, folders, settings = {}, env = {} }) {
  const { serverCommand, initializationOptions } = core('settings');
  const { NxopsClient } = core('client');
  const fullEnv = envFor(home, env);
  const command = serverCommand(realBinary(), fullEnv);
  const startedAt = performance.now();
  const child = spawn(command.command, command.args, { env: fullEnv, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const connection = rpc.createMessageConnection(new rpc.StreamMessageReader(child.stdout), new rpc.StreamMessageWriter(child.stdin));
  const notifications = [];
  connection.onNotification((method, params) => notifications.push({ method, params }));
  connection.listen();
  const sidecar = { child, connection, client: new NxopsClient(connection), notifications, startedAt, stderr: () => stderr, exited };
  cleanup(t, () => stopSidecar(sidecar));
  sidecar.initializeResult = await connection.sendRequest('initialize', {
    processId: process.pid,
    clientInfo: { name: 'nxops-vscode-tests', version: '1' },
    rootUri: null,
    workspaceFolders: folders.map((f) => ({ uri: `file://${f}`, name: f.split('/').pop() })),
    capabilities: { window: { workDoneProgress: true }, workspace: { workspaceFolders: true } },
    initializationOptions: initializationOptions(settings),
  });
  await connection.sendNotification('initialized', {});
  return sidecar;
}

async function stopSidecar(sidecar) {
  const { child, connection, exited } = sidecar;
  if (child.exitCode === null && child.signalCode === null) {
    await Promise.race([connection.sendRequest('shutdown').catch(() => {}), sleep(5000)]);
    await connection.sendNotification('exit').catch(() => {});
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const status = await exited;
  clearTimeout(timer);
  connection.dispose();
  assert.notEqual(status.signal, 'SIGKILL', `the sidecar did not exit after shutdown/exit:\n${sidecar.stderr()}`);
}

/** Waits until `check()` returns something truthy (polling), or fails with `what`. */
export async function eventually(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True while `pid` runs (and is not a zombie). */
export function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}
