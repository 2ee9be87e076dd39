// The real extension inside real VS Code (code-server), driven through
// Debian's chromium with playwright-core, offline: what a user meets in a
// window on a filled Nx 24 workspace. Screenshots of each step go to
// target/vscode-e2e/ (printed at the end). Every process is ended, even on failure.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanup, envFor, extRoot, filledWorkspace, realBinary, repoRoot, scratchHome } from '../helpers.mjs';
import { launchChromium, machineSettings, startCodeServer } from './code-server.mjs';

const shots = join(repoRoot, 'target/vscode-e2e');

async function shot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`) }).catch(() => {});
}

/** The nxops status bar item (its id is `<extension id>.<item id>`). */
const statusItem = (page) => page.locator('[id="nxops.nxops.nxops.health"], .statusbar-item:has-text("nxops")').first();

async function palette(page, text) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor();
  await input.fill(`>${text}`);
}

/** The text of every frame (Markdown previews are webviews in nested iframes). */
async function frameTexts(page) {
  const texts = [];
  for (const frame of page.frames()) texts.push(await frame.evaluate(() => document.body?.innerText ?? '').catch(() => ''));
  return texts;
}

async function eventuallyText(page, pattern, what) {
  for (let i = 0; i < 100; i++) {
    const hit = (await frameTexts(page)).find((t) => pattern.test(t));
    if (hit) return hit;
    await page.waitForTimeout(200);
  }
  throw new Error(`${what}: no frame shows ${pattern}`);
}

describe('the extension in code-server', () => {
  test('status bar, palette, a report as Markdown preview, a crash loop\'s warnings and logs, a confirmed clean, a missing binary in red with Open Settings on the Remote tab', async (t) => {
    const home = scratchHome(t);
    const ws = filledWorkspace(home, 'ws');
    // A crash-looping process from a trusted nxops.json: fails after 4 s, restarted once after 3 s, then given up.
    const crashy = { command: 'sh', args: ['-c', 'echo starting; sleep 4; exit 3'], maxRestarts: 1, backoff: { initial: '3s' } };
    writeFileSync(join(ws, 'nxops.json'), JSON.stringify({ processes: { crashy } }));
    execFileSync(realBinary(), ['trust', '--workspace', ws, '--quiet'], { env: envFor(home), stdio: ['ignore', 'ignore', 'pipe'] });
    const vsix = execFileSync(join(extRoot, 'scripts/package.sh'), { encoding: 'utf8' }).trim();
    const server = await startCodeServer({ home, vsix, env: envFor(home), settings: { 'nxops.binaryPath': realBinary() } });
    cleanup(t, () => server.stop());
    const browser = await launchChromium();
    cleanup(t, () => browser.close());
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    let failed = true;
    cleanup(t, async () => {
      if (failed) await shot(page, 'failure');
      console.log(`# screenshots: ${shots}`);
    });
    // Every notification ever shown (the transient ones close by themselves).
    await page.addInitScript(() => {
      window.__toasts = new Set();
      new MutationObserver(() => {
        for (const el of document.querySelectorAll('.notification-toast')) window.__toasts.add(el.innerText);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    const opened = Date.now();
    await page.goto(`${server.url}/?folder=${encodeURIComponent(ws)}`);

    // Health in the status bar, with each workspace in its tooltip.
    const item = statusItem(page);
    await item.filter({ hasText: /nxops: (Excellent|Good|Fair|Poor|Critical)/ }).waitFor({ timeout: 60_000 });
    console.log(`# window opened to rating shown: ${Date.now() - opened} ms`);
    await shot(page, '1-status-bar');
    await item.hover();
    const hover = page.locator('.monaco-hover, .workbench-hover').filter({ hasText: 'nxops health' }).first();
    await hover.waitFor({ timeout: 10_000 });
    assert.match(await hover.innerText(), /ws: (Excellent|Good|Fair|Poor|Critical) \(\d+\/100\)/);
    await shot(page, '2-tooltip');

    // The 13 commands in the palette.
    await palette(page, 'nxops: ');
    const rows = page.locator('.quick-input-list .monaco-list-row');
    await rows.first().waitFor();
    const labels = await rows.allInnerTexts();
    await shot(page, '3-palette');
    assert.equal(labels.filter((l) => l.includes('nxops:')).length, 13, labels.join('\n'));

    // A report, opened as a Markdown preview: its rendered text.
    await page.locator('.quick-input-widget input').fill('>nxops: Show Health Report');
    await page.keyboard.press('Enter');
    const report = await eventuallyText(page, /nxops health: \w+ \(\d+\/100\)/, 'the health report');
    assert.match(report, /checked (just now|\d+(ms|s) ago)/);
    assert.match(report, /component\s+score\s+reasons/);
    await shot(page, '4-health-report');

    // The crash loop: a transient "restarting in 3s", replaced by the given-up warning with its buttons.
    const gaveUp = page.locator('.notification-toast').filter({ hasText: 'process "crashy" failed (exit code 3); restarted 1 time within 10m; given up' });
    await gaveUp.waitFor({ timeout: 40_000 });
    await shot(page, '5-given-up');
    const seen = await page.evaluate(() => [...window.__toasts]);
    assert.ok(seen.some((t) => t.includes('process "crashy" failed (exit code 3); restarting in 3s')), seen.join('\n---\n'));
    assert.equal(await page.locator('.notification-toast').filter({ hasText: 'restarting in' }).count(), 0, 'the transient one closed');
    assert.equal((await gaveUp.innerText()).match(/given up/g).length, 1, 'said once');
    await gaveUp.getByRole('button', { name: 'Restart' }).waitFor();
    await gaveUp.getByRole('button', { name: 'Show Logs' }).click();
    const logs = await eventuallyText(page, /--- run \d+, pid \d+ ---/, 'the process logs');
    const lines = logs.split('\n').map((l) => l.trim()).filter((l) => /^--- run|^starting$/.test(l));
    assert.ok(lines.length >= 4, logs);
    // Each run's header, then its output (stdout and stderr each have their headers).
    for (let i = 0; i + 1 < lines.length; i++) if (lines[i] === 'starting') assert.match(lines[i - 1] ?? '', /^--- run \d+, pid \d+ ---$/, logs);
    await shot(page, '6-logs');

    // A clean past the limit: the dry run's confirmation first, then the clean, and the rating shown again.
    machineSettings(server.userData, { 'nxops.binaryPath': realBinary(), 'nxops.cache.maxSize': '1KB' });
    await item.filter({ hasText: /nxops: (Excellent|Good|Fair|Poor|Critical)/ }).waitFor({ timeout: 30_000 });
    await page.waitForTimeout(2000); // the restart the settings change causes
    await item.filter({ hasText: /nxops: (Excellent|Good|Fair|Poor|Critical)/ }).waitFor({ timeout: 30_000 });
    await palette(page, 'nxops: Clean Cache');
    await page.keyboard.press('Enter');
    await page.locator('.quick-input-list .monaco-list-row').filter({ hasText: 'recent entries too' }).click();
    const dialog = page.locator('.monaco-dialog-box');
    await dialog.waitFor({ timeout: 30_000 });
    assert.match(await dialog.innerText(), /Remove \d+ cache entries/);
    await shot(page, '7-clean-confirmation');
    await dialog.getByRole('button', { name: 'Clean' }).click();
    const cleaned = page.locator('.notification-toast').filter({ hasText: /nxops removed \d+ cache entries/ });
    await cleaned.waitFor({ timeout: 30_000 });
    await item.filter({ hasText: /nxops: (Excellent|Good|Fair|Poor|Critical)/ }).waitFor({ timeout: 30_000 });
    await shot(page, '8-cleaned');

    // A missing binary: red status, an error whose Open Settings opens the Remote tab.
    machineSettings(server.userData, { 'nxops.binaryPath': join(home, 'no-such-nxops') });
    const error = page.locator('.notification-toast').filter({ hasText: 'no executable nxops' });
    await error.waitFor({ timeout: 30_000 });
    assert.match(await error.innerText(), /Remote or Workspace settings/);
    const red = await item.evaluate((el) => getComputedStyle(el.closest('.statusbar-item') ?? el).backgroundColor);
    await shot(page, '9-missing-binary');
    assert.match(await item.innerText(), /nxops/);
    assert.notEqual(red, 'rgba(0, 0, 0, 0)', 'the error background');
    await error.getByRole('button', { name: 'Open Settings' }).click();
    const remoteTab = page.locator('.settings-editor .settings-tabs-widget .action-label.checked, .settings-editor .action-item.checked');
    await remoteTab.first().waitFor({ timeout: 15_000 });
    assert.match(await remoteTab.first().innerText(), /Remote/);
    await shot(page, '10-remote-settings');
    failed = false;
  });
});
