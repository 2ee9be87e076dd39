// The plugin inside real Nx 24 (the nx devDependency): installed into a fresh
// workspace the way npm installs it, its init generator run twice through
// `nx g`, its targets in `nx show project`, no hook by default (tasks see no
// NXOPS_SOCKET, nothing is reported), then `init --hooks`: NXOPS_SOCKET reaching
// a task and the run's report reaching a (fake) sidecar; bad options stopping
// the graph.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanEnv, dist, pluginRoot, script, tempDir, writeFile } from './helpers.mjs';

const { socketPath } = dist('runtime');
const nxBin = join(pluginRoot, 'node_modules/nx/dist/bin/nx.js');

/** A workspace with one project whose task records NXOPS_SOCKET, and the plugin installed as npm would. */
function workspace(t) {
  const dir = tempDir(t, 'nxi-');
  const ws = join(dir, 'ws');
  writeFile(join(ws, 'nx.json'), '{\n  "namedInputs": {"default": ["{projectRoot}/**/*"]}\n}\n');
  writeFile(join(ws, 'package.json'), '{\n  "name": "itest",\n  "private": true\n}\n');
  const record = `require('fs').writeFileSync('sock.txt', process.env.NXOPS_SOCKET || 'unset')`;
  writeFile(
    join(ws, 'packages/a/project.json'),
    JSON.stringify({ name: 'a', targets: { sock: { command: `node -e "${record}"`, cache: false } } }),
  );
  const modules = join(ws, 'node_modules');
  mkdirSync(join(modules, '@nxops', 'nx-plugin'), { recursive: true });
  for (const entry of readdirSync(join(pluginRoot, 'node_modules'))) {
    if (!entry.startsWith('.') && entry !== '@nxops') symlinkSync(join(pluginRoot, 'node_modules', entry), join(modules, entry));
  }
  for (const file of ['package.json', 'settings.json', 'generators.json', 'generators', 'dist', 'hooks.js', 'bin']) {
    cpSync(join(pluginRoot, file), join(modules, '@nxops', 'nx-plugin', file), { recursive: true });
  }
  const runtime = join(dir, 'run');
  mkdirSync(join(runtime, 'nxops'), { recursive: true, mode: 0o700 });
  const binary = script(join(dir, 'bin', 'nxops'), 'echo "nxops $*"');
  const env = cleanEnv({
    HOME: dir,
    XDG_RUNTIME_DIR: runtime,
    NXOPS_BIN: binary,
    NX_DAEMON: 'false',
    NX_NO_CLOUD: 'true',
    NX_TUI: 'false',
  });
  return { ws, env, binary, socket: socketPath(ws, { env: { XDG_RUNTIME_DIR: runtime }, uid: process.getuid() }) };
}

function nx({ ws, env }, ...args) {
  const child = spawn(process.execPath, [nxBin, ...args], { cwd: ws, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** Records the JSON-RPC messages it receives and answers every request. */
async function recordingSidecar(t, path) {
  const methods = [];
  const server = createServer((socket) => {
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk;
      let match;
      while ((match = /^Content-Length: (\d+)\r\n\r\n/.exec(buffer)) && buffer.length >= match[0].length + Number(match[1])) {
        const message = JSON.parse(buffer.slice(match[0].length, match[0].length + Number(match[1])));
        buffer = buffer.slice(match[0].length + Number(match[1]));
        methods.push(message);
        if (message.id !== undefined) {
          const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { accepted: 1 } });
          socket.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        }
      }
    });
  });
  await new Promise((resolve) => server.listen(path, resolve));
  t.after(() => server.close());
  return methods;
}

describe('in real Nx 24', () => {
  test('init twice, targets on the root project, no hooks; with --hooks NXOPS_SOCKET in tasks and the run reported', async (t) => {
    const w = workspace(t);
    const first = await nx(w, 'g', '@nxops/nx-plugin:init');
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const files = () => ['nx.json', 'package.json'].map((f) => readFileSync(join(w.ws, f), 'utf-8'));
    const afterFirst = files();
    assert.deepEqual(JSON.parse(afterFirst[0]).plugins, [{ plugin: '@nxops/nx-plugin', options: {} }]);
    assert.equal(JSON.parse(afterFirst[1]).scripts['ops:cache:stats'], 'exec nxops cache stats');
    const second = await nx(w, 'g', '@nxops/nx-plugin:init');
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(files(), afterFirst);

    const shown = await nx(w, 'show', 'project', 'itest', '--json');
    assert.equal(shown.code, 0, shown.stderr);
    const { targets } = JSON.parse(shown.stdout);
    assert.equal(targets['ops-cache-stats'].options.command, `'${w.binary}' --workspace '${w.ws}' cache stats`);
    assert.equal(Object.keys(targets).filter((name) => name.startsWith('ops-')).length, 9);

    const stats = await nx(w, 'run', 'itest:ops-cache-stats');
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, new RegExp(`nxops --workspace ${w.ws} cache stats`));

    const received = await recordingSidecar(t, w.socket);
    const plain = await nx(w, 'run', 'a:sock');
    assert.equal(plain.code, 0, plain.stderr + plain.stdout);
    assert.equal(readFileSync(join(w.ws, 'sock.txt'), 'utf-8'), 'unset', 'no hook by default');
    assert.deepEqual(received, [], 'nothing reported by default');

    const hooks = await nx(w, 'g', '@nxops/nx-plugin:init', '--hooks');
    assert.equal(hooks.code, 0, hooks.stderr + hooks.stdout);
    const plugins = JSON.parse(readFileSync(join(w.ws, 'nx.json'), 'utf-8')).plugins;
    assert.deepEqual(plugins, [{ plugin: '@nxops/nx-plugin', options: {} }, '@nxops/nx-plugin/hooks']);
    const run = await nx(w, 'run', 'a:sock');
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.equal(readFileSync(join(w.ws, 'sock.txt'), 'utf-8'), w.socket);
    assert.deepEqual(received.map((m) => m.method), ['initialize', 'initialized', 'nxops/tasks/report']);
    const report = received[2].params;
    assert.equal(report.workspace, w.ws);
    assert.equal(report.command, 'nx run a:sock');
    assert.deepEqual(
      report.tasks.map((task) => [task.id, task.project, task.target, task.status, task.code]),
      [['a:sock', 'a', 'sock', 'success', 0]],
    );
    assert.doesNotMatch(run.stderr + run.stdout, /\[nxops\]/);
  });

  test('invalid options stop the project graph with their nx.json location', async (t) => {
    const w = workspace(t);
    const options = { cache: { maxSize: '10 gigs' } };
    writeFile(join(w.ws, 'nx.json'), JSON.stringify({ plugins: ['nx/plugins/package-json', { plugin: '@nxops/nx-plugin', options }] }));
    const shown = await nx(w, 'show', 'projects');
    assert.notEqual(shown.code, 0);
    assert.match(
      shown.stderr + shown.stdout,
      /nx\.json plugins\[1\]\.options\.cache\.maxSize: "10 gigs" is not valid \(unknown size unit "gigs"/,
    );
  });
});
