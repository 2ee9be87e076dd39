// The task hooks: NXOPS_SOCKET for the tasks, the run reported over an
// LSP-framed socket (a fake sidecar here, a real one when a binary is built),
// the detached maintenance run when no sidecar listens, and stepping aside
// quietly, with one warning per process, whatever goes wrong.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanEnv, dist, pluginRoot, realBinary, script, startSidecar, tempDir, writeFile } from './helpers.mjs';

const { socketPath } = dist('runtime');
const { buildTasksReport } = dist('report');
const { SIDECAR_TIMEOUT_MS } = dist('hooks');
const recorded = JSON.parse(readFileSync(join(pluginRoot, 'test/fixtures/post-tasks-context.json'), 'utf-8'));
const version = JSON.parse(readFileSync(join(pluginRoot, 'package.json'), 'utf-8')).version;

/** A workspace, a private runtime folder, the socket path the plugin will use, and a context for the hooks. */
function setup(t) {
  const dir = tempDir(t, 'nxh-');
  const ws = join(dir, 'ws');
  writeFile(join(ws, 'nx.json'), '{}\n');
  const runtime = join(dir, 'run');
  mkdirSync(join(runtime, 'nxops'), { recursive: true, mode: 0o700 });
  const socket = socketPath(ws, { env: { XDG_RUNTIME_DIR: runtime }, uid: process.getuid() });
  const ctx = { ...recorded, workspaceRoot: ws };
  const ctxFile = writeFile(join(dir, 'ctx.json'), JSON.stringify(ctx));
  const env = cleanEnv({ XDG_RUNTIME_DIR: runtime, PATH: '/usr/bin:/bin' });
  return { dir, ws, runtime, socket, ctx, ctxFile, env };
}

/** Runs a hook `calls` times in a fresh process; resolves with its output, warnings and wall time. */
function runHook(which, { ctxFile, env }, calls = 1, first = 'cold') {
  const started = Date.now();
  const args = [join(pluginRoot, 'test/hook-runner.mjs'), which, ctxFile, String(calls), first];
  const child = spawn(process.execPath, args, {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += c));
  child.stderr.on('data', (c) => (stderr += c));
  return new Promise((resolve) => {
    child.on('exit', (code) => {
      assert.equal(code, 0, `hook runner failed:\n${stderr}`);
      const warnings = stderr.split('\n').filter((line) => line.startsWith('[nxops] '));
      assert.equal(stderr.trim(), warnings.join('\n'), 'only [nxops] warnings on stderr');
      resolve({ ...JSON.parse(stdout), warnings, wallMs: Date.now() - started });
    });
  });
}

/**
 * A fake sidecar on `path`: decodes LSP frames and records them; `behaviour`
 * answers `initialize` and the report (`answer`), never answers (`hang`), or
 * refuses the report (`refuse`).
 */
async function fakeSidecar(t, path, behaviour) {
  const received = [];
  const connections = [];
  let closed = 0;
  const server = createServer((socket) => {
    connections.push(socket);
    let buffer = Buffer.alloc(0);
    socket.on('close', () => (closed += 1));
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/Content-Length: (\d+)/.exec(buffer.subarray(0, end).toString())[1]);
        if (buffer.length < end + 4 + length) return;
        const message = JSON.parse(buffer.subarray(end + 4, end + 4 + length).toString('utf-8'));
        buffer = buffer.subarray(end + 4 + length);
        received.push(message);
        const reply = answer(behaviour, message);
        if (reply !== undefined) {
          send(socket, { jsonrpc: '2.0', id: message.id, ...reply }, message.method === 'initialize');
        }
      }
    });
  });
  await new Promise((resolve) => server.listen(path, resolve));
  t.after(() => {
    connections.forEach((c) => c.destroy());
    server.close();
  });
  return { received, closed: () => closed };
}

/**
 * Writes one frame. `awkwardly`: a notification first (the client must skip
 * it), then the frame cut in two writes (the client must reassemble it).
 */
function send(socket, message, awkwardly) {
  const body = Buffer.from(JSON.stringify(message));
  const frame = Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`), body]);
  if (!awkwardly) {
    socket.write(frame);
    return;
  }
  const note = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'window/logMessage', params: { type: 3, message: 'hi' } }));
  socket.write(Buffer.concat([Buffer.from(`content-length: ${note.length}\r\n\r\n`), note, frame.subarray(0, 10)]));
  setTimeout(() => socket.write(frame.subarray(10)), 20);
}

function answer(behaviour, message) {
  if (behaviour === 'hang' || message.id === undefined) return undefined;
  if (message.method === 'initialize') {
    return { result: { capabilities: {}, serverInfo: { name: 'fake', version: '0' } } };
  }
  if (behaviour === 'refuse') return { error: { code: -32601, message: 'unknown method nxops/tasks/report' } };
  return { result: { accepted: message.params.tasks.length } };
}

/** A fake nxops that records its arguments, process group and pid, then lingers. */
function recordingBinary(dir) {
  const record = join(dir, 'maintain.txt');
  const binary = script(
    join(dir, 'bin', 'nxops'),
    `printf '%s\\n' "$@" > ${record}.tmp; ps -o pgid= -p $$ | tr -d ' ' >> ${record}.tmp; echo $$ >> ${record}.tmp; mv ${record}.tmp ${record}; sleep 3`,
  );
  return { binary, record };
}

async function waitFor(path, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!existsSync(path)) {
    assert.ok(Date.now() < deadline, `${path} did not appear within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('preTasksExecution', () => {
  test('sets NXOPS_SOCKET when the sidecar socket exists, in well under a millisecond', async (t) => {
    const s = setup(t);
    await fakeSidecar(t, s.socket, 'answer');
    const { binary } = recordingBinary(s.dir);
    const env = { ...s.env, NXOPS_BIN: binary };
    const { NXOPS_SOCKET, durations, warnings } = await runHook('pre', { ...s, env }, 1000, 'after-create-nodes');
    assert.equal(NXOPS_SOCKET, s.socket);
    assert.deepEqual(warnings, []);
    const average = durations.reduce((a, b) => a + b, 0) / durations.length;
    assert.ok(durations[0] < 1, `first call took ${durations[0]} ms`);
    assert.ok(average < 0.1, `calls took ${average} ms on average`);
    // Without createNodes first (not how Nx calls it), the first call pays for the process's first sha256.
    const cold = await runHook('pre', { ...s, env }, 1);
    assert.equal(cold.NXOPS_SOCKET, s.socket);
    t.diagnostic(`first call ${durations[0].toFixed(3)} ms after createNodes, ${cold.durations[0].toFixed(3)} ms cold; average ${(average * 1000).toFixed(1)} us`);
  });

  test('leaves the environment alone without a socket', async (t) => {
    const s = setup(t);
    const { NXOPS_SOCKET, warnings } = await runHook('pre', s);
    assert.equal(NXOPS_SOCKET, null);
    assert.deepEqual(warnings, []);
  });

  test('steps aside with one warning when the workspace root is unusable', async (t) => {
    const s = setup(t);
    const ctxFile = writeFile(join(s.dir, 'bad.json'), JSON.stringify({ ...s.ctx, workspaceRoot: join(s.dir, 'gone') }));
    const { warnings } = await runHook('pre', { ...s, ctxFile }, 3);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /^\[nxops\] preTasksExecution stepped aside: ENOENT/);
  });
});

describe('postTasksExecution with a sidecar', () => {
  test('sends initialize, initialized, then the report, waits for the answer and closes', async (t) => {
    const s = setup(t);
    const { binary, record } = recordingBinary(s.dir);
    const server = await fakeSidecar(t, s.socket, 'answer');
    const { warnings } = await runHook('post', { ...s, env: { ...s.env, NXOPS_BIN: binary } });
    assert.deepEqual(warnings, []);
    const [initialize, initialized, report] = server.received;
    assert.equal(server.received.length, 3);
    assert.equal(initialize.method, 'initialize');
    assert.equal(typeof initialize.id, 'number');
    assert.equal(typeof initialize.params.processId, 'number');
    assert.notEqual(initialize.params.processId, process.pid);
    assert.deepEqual(initialize.params.capabilities, {});
    assert.deepEqual(initialize.params.clientInfo, { name: '@nxops/nx-plugin', version });
    assert.deepEqual(initialized, { jsonrpc: '2.0', method: 'initialized', params: {} });
    assert.equal(report.method, 'nxops/tasks/report');
    assert.notEqual(report.id, initialize.id);
    assert.deepEqual(report.params, buildTasksReport(s.ctx, s.ws));
    assert.equal(report.params.tasks.length, 6);
    assert.equal(server.closed(), 1, 'the connection is closed after the answer');
    assert.equal(existsSync(record), false, 'no maintenance run while a sidecar listens');
  });

  test('a sidecar that never answers costs at most the timeout, and one warning per process', async (t) => {
    const s = setup(t);
    await fakeSidecar(t, s.socket, 'hang');
    const { durations, warnings } = await runHook('post', s, 2);
    for (const ms of durations) {
      assert.ok(ms >= SIDECAR_TIMEOUT_MS - 5 && ms < SIDECAR_TIMEOUT_MS + 300, `the hook took ${ms} ms`);
    }
    assert.deepEqual(warnings, [
      `[nxops] the run was not reported to the sidecar at ${s.socket}: the sidecar did not answer within ${SIDECAR_TIMEOUT_MS} ms`,
    ]);
  });

  test('a sidecar that refuses the report is said once, and nothing else happens', async (t) => {
    const s = setup(t);
    await fakeSidecar(t, s.socket, 'refuse');
    const { warnings } = await runHook('post', s, 2);
    assert.deepEqual(warnings, [
      `[nxops] the run was not reported to the sidecar at ${s.socket}: the sidecar refused nxops/tasks/report: unknown method nxops/tasks/report (-32601)`,
    ]);
  });
});

describe('postTasksExecution without a sidecar', () => {
  test('starts a detached `nxops maintain --if-due` and does not wait for it', async (t) => {
    const s = setup(t);
    const { binary, record } = recordingBinary(s.dir);
    const { durations, warnings, wallMs } = await runHook('post', { ...s, env: { ...s.env, NXOPS_BIN: binary } });
    assert.deepEqual(warnings, []);
    assert.ok(durations[0] < 100, `the hook took ${durations[0]} ms`);
    assert.ok(wallMs < 2500, `the process lived ${wallMs} ms: it waited for the maintenance run`);
    await waitFor(record);
    const lines = readFileSync(record, 'utf-8').trim().split('\n');
    const [pgid, pid] = lines.slice(-2).map(Number);
    t.after(() => killGroup(pgid));
    assert.deepEqual(lines.slice(0, -2), ['maintain', '--if-due', '--workspace', s.ws, '--quiet']);
    assert.equal(pgid, pid, 'detached: the run leads its own process group');
  });

  test('a socket left by a dead sidecar counts as no sidecar', async (t) => {
    const s = setup(t);
    const { binary, record } = recordingBinary(s.dir);
    const stale = `require('net').createServer().listen(${JSON.stringify(s.socket)}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', stale]);
    assert.ok(existsSync(s.socket), 'the stale socket file is there');
    const { warnings } = await runHook('post', { ...s, env: { ...s.env, NXOPS_BIN: binary } });
    assert.deepEqual(warnings, []);
    await waitFor(record);
    const [pgid] = readFileSync(record, 'utf-8').trim().split('\n').slice(-2).map(Number);
    t.after(() => killGroup(pgid));
  });

  test('no binary: one warning per process, then nothing', async (t) => {
    const s = setup(t);
    const { durations, warnings } = await runHook('post', s, 3);
    assert.ok(Math.max(...durations) < 100, `the hook took ${durations} ms`);
    assert.deepEqual(warnings, [
      '[nxops] no nxops binary found (NXOPS_BIN, the @nxops/linux-x64 package, PATH): ' +
        'the ops targets run `nxops` from PATH and no maintenance runs after tasks',
    ]);
  });

  test('a bad NXOPS_BIN is named once, and PATH is used instead', async (t) => {
    const s = setup(t);
    const { binary, record } = recordingBinary(s.dir);
    const env = { ...s.env, NXOPS_BIN: join(s.dir, 'nope'), PATH: `${join(s.dir, 'bin')}:/usr/bin:/bin` };
    const { warnings } = await runHook('post', { ...s, env }, 1);
    assert.deepEqual(warnings, [`[nxops] NXOPS_BIN is ignored: ${join(s.dir, 'nope')} does not exist`]);
    await waitFor(record);
    const lines = readFileSync(record, 'utf-8').trim().split('\n');
    t.after(() => killGroup(Number(lines.at(-2))));
    assert.equal(lines[0], 'maintain');
    assert.ok(binary.startsWith(s.dir));
  });
});

describe('postTasksExecution with a real sidecar', { skip: realBinary() ? false : 'no nxops binary built' }, () => {
  test('the report is accepted and listed by nxops/tasks/runs', async (t) => {
    const s = setup(t);
    const env = cleanEnv({ HOME: s.dir, XDG_RUNTIME_DIR: s.runtime, PATH: '/usr/bin:/bin' });
    await startSidecar(t, s.ws, env, s.socket);
    const { warnings } = await runHook('post', { ...s, env });
    assert.deepEqual(warnings, []);
    const runs = spawnSync(realBinary(), ['call', 'nxops/tasks/runs', '{"limit": 1}', '--workspace', s.ws], {
      env,
      encoding: 'utf-8',
    });
    assert.equal(runs.status, 0, runs.stderr);
    const [run] = JSON.parse(runs.stdout).runs;
    assert.equal(run.runId, recorded.id);
    assert.equal(run.command, 'nx run-many -t build test');
    assert.deepEqual(run.tasks, buildTasksReport(s.ctx, s.ws).tasks);
  });
});

function killGroup(pgid) {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (error) {
    if (error.code !== 'ESRCH') throw error;
  }
}
