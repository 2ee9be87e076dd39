// The pure parts of the extension's logic: settings, the binary, status bar
// views, event decisions and the clean preview's words.

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { core, scratchHome } from './helpers.mjs';

const { sidecarSettings, serverCommand, explainStartError, settingsTab, SIDECAR_SETTINGS, SettingsError } = core('settings');
const { statusView, worstReport } = core('health');
const { EventDecider } = core('events');
const { describePreview } = core('clean');
const { formatBytes, formatDuration } = core('format');

const report = (workspace, rating, score, reasons = []) => ({ workspace, rating, score, components: [], reasons, checkedAt: 0 });

describe('settings', () => {
  test('only the settings the user set are passed; numbers as text; a wrong type names the VS Code setting', () => {
    assert.deepEqual(sidecarSettings(() => undefined), {});
    assert.deepEqual(sidecarSettings((k) => ({ 'cache.autoCleanAt': 0, 'cache.maxAge': ' 3d ' })[k]), { 'cache.autoCleanAt': '0', 'cache.maxAge': '3d' });
    assert.throws(() => sidecarSettings((k) => (k === 'health.interval' ? { every: 3 } : undefined)), (e) => e instanceof SettingsError && /^nxops\.health\.interval must be text/.test(e.message));
  });

  test('every setting of `nxops env info` has a VS Code setting in the manifest', async () => {
    const manifest = (await import('../package.json', { with: { type: 'json' } })).default;
    const declared = Object.keys(manifest.contributes.configuration.properties);
    for (const { key } of SIDECAR_SETTINGS) assert.ok(declared.includes(`nxops.${key}`), `nxops.${key} missing from contributes.configuration`);
    assert.ok(declared.includes('nxops.binaryPath'));
  });

  test('the binary: the setting, ~/, a relative path from the folder, else PATH; a missing one says what to set', (t) => {
    const home = scratchHome(t);
    const bin = join(home, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'nxops'), '#!/bin/sh\n');
    chmodSync(join(bin, 'nxops'), 0o755);
    writeFileSync(join(bin, 'not-executable'), '');
    const env = { HOME: home, PATH: `/nonexistent:${bin}` };
    assert.deepEqual(serverCommand('', env), { command: join(bin, 'nxops'), args: ['serve', '--stdio'] });
    assert.equal(serverCommand(undefined, env).command, join(bin, 'nxops'));
    assert.equal(serverCommand('~/bin/nxops', env).command, join(bin, 'nxops'));
    assert.equal(serverCommand('bin/nxops', env, home).command, join(bin, 'nxops'));
    assert.throws(() => serverCommand('', { PATH: '/nonexistent' }), /no executable nxops on PATH \(\/nonexistent\): .* set nxops\.binaryPath/);
    assert.throws(() => serverCommand(join(bin, 'not-executable'), env), /no executable nxops at .*not-executable/);
    assert.throws(() => serverCommand(42, env), /nxops\.binaryPath must be a path, not 42/);
  });

  test('a start error without a setting to blame is passed on as it is', () => {
    assert.equal(explainStartError(new Error('spawn EACCES'), { 'cache.maxSize': '2GB' }), 'nxops could not start: spawn EACCES');
    assert.deepEqual(settingsTab(undefined), { command: 'workbench.action.openSettings', arg: 'nxops', hint: '' });
    const remote = settingsTab('ssh-remote');
    assert.equal(remote.command, 'workbench.action.openRemoteSettings', 'machine settings are read from the Remote tab in a remote window');
    assert.match(remote.hint, /ssh-remote: nxops\.binaryPath is read from the Remote or Workspace settings/);
  });
});

describe('status bar', () => {
  test('starting, stopped, no workspace, a health error', () => {
    assert.equal(statusView({ kind: 'starting' }).text, '$(sync~spin) nxops');
    const stopped = statusView({ kind: 'stopped', reason: 'no executable nxops on PATH' });
    assert.deepEqual([stopped.level, stopped.tooltip], ['error', 'nxops: no executable nxops on PATH']);
    assert.match(statusView({ kind: 'running', reports: new Map() }).tooltip, /no Nx workspace/);
    const unknown = statusView({ kind: 'running', reports: new Map([['/w/a', { error: 'owner unreachable' }]]) });
    assert.deepEqual([unknown.text, unknown.level], ['$(question) nxops', 'warning']);
    assert.match(unknown.tooltip, /a: health unknown \(owner unreachable\)/);
  });

  test('each rating has its icon and level; the worst workspace (then the lowest score) is shown', () => {
    const levels = { Excellent: ['$(pass)', 'ok'], Good: ['$(pass)', 'ok'], Fair: ['$(warning)', 'warning'], Poor: ['$(warning)', 'warning'], Critical: ['$(error)', 'error'] };
    for (const [rating, [icon, level]] of Object.entries(levels)) {
      const view = statusView({ kind: 'running', reports: new Map([['/w/a', report('/w/a', rating, 50)]]) });
      assert.deepEqual([view.text, view.level], [`${icon} nxops: ${rating}`, level]);
    }
    const a = report('/w/a', 'Fair', 70), b = report('/w/b', 'Fair', 55, ['cache at 97% of 5 GiB']), c = report('/w/c', 'Good', 80);
    assert.equal(worstReport([a, b, c]), b);
    const view = statusView({ kind: 'running', reports: new Map([['/w/a', a], ['/w/b', b], ['/w/c', c]]) });
    assert.match(view.tooltip, /\nb: Fair \(55\/100\): cache at 97% of 5 GiB/);
  });
});

describe('events', () => {
  test('Critical is announced when a workspace becomes Critical, again only after it recovered', () => {
    const decider = new EventDecider();
    const warnings = (r) => decider.decide('nxops/healthCheck', r).filter((a) => a.kind === 'warning');
    assert.equal(warnings(report('/w/a', 'Good', 80)).length, 0);
    const [first] = warnings(report('/w/a', 'Critical', 0, ['process "api" failed']));
    assert.equal(first.message, 'nxops: a is Critical (0/100): process "api" failed');
    assert.deepEqual(first.choices, [{ title: 'Show Report', command: 'nxops.showHealth', workspace: '/w/a' }]);
    assert.equal(warnings(report('/w/a', 'Critical', 0)).length, 0);
    assert.equal(warnings(report('/w/b', 'Critical', 10)).length, 1, 'another workspace has its own rating');
    assert.equal(warnings(report('/w/a', 'Fair', 60)).length, 0);
    assert.equal(warnings(report('/w/a', 'Critical', 0)).length, 1);
  });

  test('a failure that will restart is transient; a given-up one replaces it with Restart and Show Logs', () => {
    const decider = new EventDecider();
    const base = { workspace: '/w/a', name: 'api', pid: 7, reason: 'exit code 1', restarts: 1 };
    const key = '/w/a\0api';
    const retry = decider.decide('processFailure', { ...base, willRestart: true, restartInMs: 400, givenUp: null });
    assert.deepEqual(retry, [{ kind: 'transient', key, message: 'nxops: process "api" failed (exit code 1); restarting in 400ms' }]);
    assert.deepEqual(decider.decide('nxops/processStarted', { workspace: '/w/a', name: 'api', pid: 8, run: 2 }), [{ kind: 'settle', key }]);
    // The sidecar's own reason (src/supervisor/policy.rs) already says "given up".
    const givenUp = 'restarted 1 time within 10m; given up';
    const [settle, gaveUp] = decider.decide('processFailure', { ...base, willRestart: false, restartInMs: null, givenUp });
    assert.deepEqual(settle, { kind: 'settle', key });
    assert.equal(gaveUp.message, 'nxops: process "api" failed (exit code 1); restarted 1 time within 10m; given up');
    assert.deepEqual(gaveUp.choices.map((c) => c.title), ['Restart', 'Show Logs']);
  });

  test('leaks warn, attach/detach refresh, unknown events do nothing', () => {
    const decider = new EventDecider();
    const [leak] = decider.decide('nxops/processMemoryLeak', { workspace: '/w', name: 'api', bytesPerMinute: 2 * 1024 ** 2, action: 'report' });
    assert.equal(leak.message, 'nxops: process "api" is leaking memory (2.0 MiB a minute); it keeps running');
    assert.deepEqual(decider.decide('nxops/workspaceAttached', {}), [{ kind: 'refresh' }]);
    assert.deepEqual(decider.decide('nxops/tasksReported', {}), []);
  });
});

describe('clean preview and formats', () => {
  test('nothing to do needs no confirmation and says what was kept', () => {
    const preview = { removed: [], unlisted: 0, byReason: {}, skipped: [{ hash: '1', why: 'used in the last hour' }], maxSize: 5 * 1024 ** 3, maxAgeMs: 7 * 86_400_000, before: { entries: 1, bytes: 10 }, after: { entries: 1, bytes: 10 }, bytesFreed: 0 };
    const shown = describePreview(preview);
    assert.equal(shown.nothingToDo, true);
    assert.equal(shown.question, 'Nothing to clean (limits 5.0 GiB, 7d).');
    assert.match(shown.detail, /1 kept although they qualify \(1 used in the last hour\)/);
  });

  test('sizes and durations', () => {
    assert.deepEqual([formatBytes(0), formatBytes(1023), formatBytes(9497), formatBytes(null)], ['0 B', '1023 B', '9.3 KiB', '-']);
    assert.deepEqual([formatDuration(450), formatDuration(125_000), formatDuration(90_061_000)], ['450ms', '2m 5s', '1d 1h']);
  });
});
