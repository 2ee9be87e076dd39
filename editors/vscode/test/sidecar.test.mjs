// The extension's logic (./out/core) against the real sidecar, over
// vscode-jsonrpc on the child's stdio: the same requests, events and progress
// the extension sees through vscode-languageclient, without an editor.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { alive, core, eventually, filledAt, filledWorkspace, scratchHome, sleep, startSidecar } from './helpers.mjs';

const { sidecarSettings, explainStartError } = core('settings');
const { statusView, renderHealth } = core('health');
const { EventDecider } = core('events');
const { cleanWithPreview, describeCleaned } = core('clean');
const { chooseWorkspace } = core('workspaces');
const render = core('render');
const { EVENTS, RATINGS } = core('protocol');

describe('start-up', () => {
  test('VS Code settings reach the sidecar as initializationOptions and win over the defaults', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const values = { 'cache.maxSize': '2GB', 'processes.maxRestarts': 5, 'cache.maxAge': '', 'health.interval': null };
    const settings = sidecarSettings((key) => values[key]);
    assert.deepEqual(settings, { 'cache.maxSize': '2GB', 'processes.maxRestarts': '5' });
    const sidecar = await startSidecar(t, { home, folders: [ws], settings });
    const info = await sidecar.client.request('nxops/env/info', { workspace: ws });
    const byKey = Object.fromEntries(info.settings.map((s) => [s.key, s]));
    assert.equal(byKey['cache.maxSize'].value, '2 GiB');
    assert.equal(byKey['cache.maxSize'].origin, 'initializationOptions cache.maxSize');
    assert.equal(byKey['processes.maxRestarts'].value, '5');
    assert.equal(byKey['cache.maxAge'].source, 'default');
    assert.equal(byKey['health.interval'].source, 'default');
    const stats = await sidecar.client.cacheStats(ws);
    assert.equal(stats.maxSize, 2 * 1024 ** 3);
  });

  test('an invalid setting fails the start with a message naming the VS Code setting', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const settings = { 'cache.maxSize': 'lots', 'cache.maxAge': '7d' };
    const error = await startSidecar(t, { home, folders: [ws], settings }).then(
      () => assert.fail('initialize accepted cache.maxSize = "lots"'),
      (e) => e,
    );
    assert.equal(error.code, -32602, String(error));
    const words = explainStartError(error, settings);
    assert.match(words, /check the setting nxops\.cache\.maxSize: /);
    assert.doesNotMatch(words, /nxops\.cache\.maxAge/);
    assert.match(words, /"lots" is not valid/);
  });

  test('the first health report becomes the status bar item; the report renders every component', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const sidecar = await startSidecar(t, { home, folders: [ws] });
    const [attached] = await sidecar.client.workspaces();
    assert.equal(attached.root, ws);
    assert.equal(attached.role.kind, 'owner');
    const report = await sidecar.client.health(ws);
    const view = statusView({ kind: 'running', reports: new Map([[ws, report]]) });
    const elapsed = performance.now() - sidecar.startedAt;
    t.diagnostic(`sidecar spawn -> initialize -> workspace/list -> health -> status bar text: ${elapsed.toFixed(0)} ms`);
    assert.equal(report.rating, 'Excellent', JSON.stringify(report));
    assert.equal(view.text, '$(pass) nxops: Excellent');
    assert.equal(view.level, 'ok');
    assert.match(view.tooltip, /ws: Excellent \(100\/100\)/);
    // The documented components at least (the sidecar may judge more).
    const names = report.components.map((c) => c.name);
    for (const name of ['cache', 'mcp', 'processes', 'sidecar']) assert.ok(names.includes(name), `${name} in ${names}`);
    const markdown = renderHealth(report, report.checkedAt + 2000);
    assert.match(markdown, /^# nxops health: Excellent \(100\/100\)/);
    for (const c of report.components) assert.match(markdown, new RegExp(`\\| ${c.name} \\| ${c.score} \\|`));
    assert.match(markdown, /checked 2s ago/);
    assert.match(renderHealth(report, report.checkedAt + 1), /checked just now\./, 'not "checked 1ms ago"');
  });
});

describe('cache commands', () => {
  test('clean: the dry run is shown first; declining removes nothing; confirming removes what it showed, with progress and an event', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const sidecar = await startSidecar(t, { home, folders: [ws] });
    await sidecar.client.subscribe(EVENTS);
    const params = { workspace: ws, maxSize: '1', force: true };
    // Even with `force`, entries Nx used in the last 10 seconds are kept (and a dry run
    // shows them kept), so let the freshly filled ones age first.
    await sleep(Math.max(0, filledAt.get(ws) + 11_000 - Date.now()));
    const asked = [];
    const declined = await cleanWithPreview(sidecar.client, params, async (preview) => (asked.push(preview), false));
    assert.equal(declined.kind, 'declined');
    assert.equal(asked.length, 1);
    assert.equal(asked[0].question, `Remove 8 cache entries, ${core('format').formatBytes(declined.preview.bytesFreed)}?`);
    assert.match(asked[0].detail, /By reason: size: 8 \(/);
    assert.equal((await sidecar.client.cacheStats(ws)).entries, 8, 'a declined clean removed entries');

    const progress = [];
    const cleaned = await cleanWithPreview(sidecar.client, params, async () => true, { onProgress: (v) => progress.push(v) });
    assert.equal(cleaned.kind, 'cleaned');
    assert.equal(cleaned.result.dryRun, false);
    assert.equal(cleaned.result.entries, cleaned.preview.removed.length, JSON.stringify(cleaned.result));
    assert.equal((await sidecar.client.cacheStats(ws)).entries, 0);
    assert.match(describeCleaned(cleaned.result), /^nxops removed 8 cache entries, .* the cache now holds 0 entries, 0 B\.$/);
    // One begin..end for the dry run, one for the clean, whose reports count up to 100%.
    const kinds = progress.map((p) => p.kind).join(' ');
    assert.match(kinds, /^begin (report )*end begin (report )+end$/, JSON.stringify(progress));
    assert.equal(progress[0].title, 'nxops: cleaning the Nx cache');
    assert.equal(progress.filter((p) => p.kind === 'report').at(-1).percentage, 100);
    const event = await eventually('nxops/cacheCleanup', () => sidecar.notifications.find((n) => n.method === 'nxops/cacheCleanup'));
    assert.deepEqual(new EventDecider().decide(event.method, event.params), [
      { kind: 'log', message: `manual cache clean in ${ws}: 8 entries, ${core('format').formatBytes(cleaned.result.bytesFreed)} freed` },
    ]);

    const again = await cleanWithPreview(sidecar.client, params, async () => assert.fail('asked to confirm an empty clean'));
    assert.equal(again.kind, 'nothing');
  });

  test('stats, verify, perf optimize and reset render the real answers', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const sidecar = await startSidecar(t, { home, folders: [ws] });
    const stats = await sidecar.client.cacheStats(ws);
    const statsDoc = render.renderCacheStats(stats);
    assert.match(statsDoc, /- entries: 8\n/);
    assert.match(statsDoc, /\| < 1h \| 8 \| /);
    assert.match(statsDoc, /\| gamma:build \| 2 \| /);

    const verify = await sidecar.client.cacheVerify({ workspace: ws });
    assert.equal(verify.checked, 8);
    assert.match(render.renderVerify(verify), /^# Cache check: 0 problem\(s\) in 8 entries/);

    const optimize = await sidecar.client.perfOptimize(ws);
    const optimizeDoc = render.renderOptimize(optimize);
    assert.match(optimizeDoc, /- cache: /);
    assert.match(optimizeDoc, /\| before \| Excellent \| 100 \| /);

    const progress = [];
    const reset = await sidecar.client.cacheReset({ workspace: ws }, { onProgress: (v) => progress.push(v) });
    assert.equal(reset.path, 'nx-reset', JSON.stringify(reset));
    assert.match(render.renderReset(reset), /- done: `.*nx reset --only-cache` in /);
    const after = await sidecar.client.cacheStats(ws).then((s) => s.entries, (e) => e.message);
    // `nx reset` removes the cache and its database: nxops then says Nx has not run here (yet, again).
    assert.ok(after === 0 || /does not exist|has not run in/.test(after), `after reset: ${after}`);
  });
});

describe('processes, events and several workspaces', () => {
  test('a failing process: a warning offering Restart, Critical announced once, the status bar shows the worst workspace', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home, 'ws');
    const other = filledWorkspace(home, 'other');
    const sidecar = await startSidecar(t, { home, folders: [ws, other], env: { NXOPS_HEALTH_INTERVAL: '100ms' } });
    const attached = await sidecar.client.workspaces();
    assert.deepEqual(attached.map((w) => w.root).sort(), [other, ws].sort());
    await sidecar.client.subscribe(EVENTS);
    const decider = new EventDecider();
    const spec = { workspace: ws, name: 'flaky', command: 'sh', args: ['-c', 'sleep 0.2; exit 3'], restart: 'never' };
    await sidecar.client.request('nxops/process/start', spec);

    const failure = await eventually('processFailure', () => sidecar.notifications.find((n) => n.method === 'nxops/processFailure'));
    assert.deepEqual(decider.decide(failure.method, failure.params), [
      { kind: 'settle', key: `${ws}\0flaky` },
      {
        kind: 'warning',
        message: 'nxops: process "flaky" failed (exit code 3); not restarted',
        choices: [
          { title: 'Restart', command: 'nxops.processRestart', workspace: ws, name: 'flaky' },
          { title: 'Show Logs', command: 'nxops.processLogs', workspace: ws, name: 'flaky' },
        ],
      },
    ]);

    const isCritical = (n) => n.method === 'nxops/healthCheck' && n.params.workspace === ws && n.params.rating === 'Critical';
    await eventually('a Critical healthCheck', () => sidecar.notifications.filter(isCritical).length >= 2);
    const checks = sidecar.notifications.filter((n) => n.method === 'nxops/healthCheck');
    const warnings = checks.flatMap((n) => decider.decide(n.method, n.params)).filter((a) => a.kind === 'warning');
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0].message, /^nxops: ws is Critical \(0\/100\): process "flaky" failed/);

    const reports = new Map();
    for (const w of attached) reports.set(w.root, await sidecar.client.health(w.root));
    const view = statusView({ kind: 'running', reports });
    assert.equal(view.text, '$(error) nxops: Critical');
    assert.equal(view.level, 'error');
    assert.match(view.tooltip, /\nws: Critical \(0\/100\): process "flaky" failed/);
    assert.match(view.tooltip, /\nother: Excellent \(100\/100\)/);

    const restarted = await sidecar.client.processRestart(ws, 'flaky');
    assert.equal(restarted.run, 2);
    assert.ok(restarted.pid > 0 && ['running', 'failed'].includes(restarted.state), JSON.stringify(restarted));
    const list = await sidecar.client.processes(ws);
    assert.match(render.renderProcesses(list), /\| flaky \| (running|failed) \| /);
    const logs = await sidecar.client.processLogs(ws, 'flaky');
    assert.match(render.renderLogs(logs), /--- run 2, pid \d+ ---/);
    const sidecarPid = sidecar.child.pid;
    assert.ok(alive(sidecarPid));
  });

  test('the workspace picker: the preferred one, the only one, or the one the user picks', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home, 'ws');
    const other = filledWorkspace(home, 'other');
    const sidecar = await startSidecar(t, { home, folders: [ws, other] });
    const attached = await sidecar.client.workspaces();
    const never = async () => assert.fail('asked although the answer was known');
    assert.equal(await chooseWorkspace(attached, never, other), other);
    assert.equal(await chooseWorkspace(attached.slice(0, 1), never), attached[0].root);
    let offered;
    const picked = await chooseWorkspace(attached, async (choices) => ((offered = choices), choices.find((c) => c.label === 'other')));
    assert.equal(picked, other);
    assert.deepEqual(offered.map((c) => c.label).sort(), ['other', 'ws']);
    assert.equal(await chooseWorkspace(attached, async () => undefined), undefined);
    await assert.rejects(chooseWorkspace([], never), /no Nx workspace is attached/);
  });

  test("sessions: the list renders the editor's own session and a script's named one", async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const sidecar = await startSidecar(t, { home, folders: [ws] });
    await sidecar.client.request('nxops/session/open', { workspace: ws, name: 'e2e', timeout: '30m' });
    await sidecar.client.request('nxops/process/start', { workspace: ws, name: 'db', command: 'sleep', args: ['1000'], session: 'e2e' });
    const list = await sidecar.client.sessions(ws);
    assert.equal(list.sidecar, true);
    const doc = render.renderSessions(list, list.sessions.find((s) => s.id === 'e2e').lastSeen);
    assert.match(doc, /^# Sessions of /);
    assert.match(doc, /\| \d+\.\d+ \| connection \| active \| /, doc);
    assert.match(doc, /\| e2e \| named \| active \| - \| db \| - \| in 30m \|/, doc);
    assert.match(doc, /0 expired in the last hour/);
  });

  test('MCP servers: the list renders what the sidecar found', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${ws}/.mcp.json`, JSON.stringify({ mcpServers: { remote: { type: 'http', url: 'http://127.0.0.1:9/mcp' } } }));
    const sidecar = await startSidecar(t, { home, folders: [ws] });
    const servers = await sidecar.client.mcpServers(ws);
    assert.equal(servers.servers.length, 1, JSON.stringify(servers));
    const doc = render.renderMcpServers(servers);
    assert.match(doc, /\| remote \| http \| no \(/);
    assert.ok(RATINGS.includes((await sidecar.client.health(ws)).rating));
  });
});
