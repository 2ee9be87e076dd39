#!/usr/bin/env node
// The two clients scripts/demo needs, with nothing but node:
//
//   demo-client.mjs sidecar NXOPS WORKSPACE EVENTS_FILE
//     Starts `NXOPS serve --stdio` for WORKSPACE the way an editor does (initialize,
//     initialized), subscribes to every event, and appends each notification to
//     EVENTS_FILE as one line: `+SECONDS method {params}` (without the workspace, and
//     without a health check's components and time). Writes
//     `ready <sidecar pid>` as the file's first line once subscribed. On SIGTERM or
//     SIGINT, or when its parent is gone, it ends the sidecar properly (shutdown,
//     exit; the sidecar stops what it supervises), SIGKILLs it after 10 s, and exits.
//
//   demo-client.mjs mcp-start ROUNDS -- CMD [ARGS...]
//     Starts CMD ROUNDS times as an agent starts an MCP stdio server and times spawn
//     -> `initialize` answered; then sends `notifications/initialized` and
//     `tools/list`, closes stdin and waits for the exit (SIGKILL of its process group
//     after 5 s). Prints `median MS (runs A, B, C), N tools`.
import { spawn } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [mode, ...args] = process.argv.slice(2);
if (mode === 'sidecar') await sidecar(...args);
else if (mode === 'mcp-start') await mcpStart(args);
else {
  console.error('usage: demo-client.mjs sidecar NXOPS WORKSPACE EVENTS_FILE | mcp-start ROUNDS -- CMD [ARGS...]');
  process.exit(2);
}

async function sidecar(nxops, workspace, eventsFile) {
  const child = spawn(nxops, ['serve', '--stdio'], { cwd: workspace, stdio: ['pipe', 'pipe', 'ignore'] });
  const started = Date.now();
  const pending = new Map();
  let nextId = 1;
  const send = (message) => {
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', ...message }));
    child.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
    child.stdin.write(body);
  };
  const request = (method, params) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      send({ id, method, params });
    });
  let buffer = Buffer.alloc(0);
  child.stdout.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/Content-Length: *(\d+)/i.exec(buffer.subarray(0, end).toString())?.[1]);
      if (buffer.length < end + 4 + length) return;
      const message = JSON.parse(buffer.subarray(end + 4, end + 4 + length).toString());
      buffer = buffer.subarray(end + 4 + length);
      if (message.id !== undefined && pending.has(message.id)) {
        const { resolve, reject } = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) reject(new Error(`${message.id}: ${JSON.stringify(message.error)}`));
        else resolve(message.result);
      } else if (message.method) {
        // The workspace is always the demo's; a health check's components are in `nxops monitor check`.
        const { workspace: _w, components: _c, checkedAt: _t, ...params } = message.params ?? {};
        const at = ((Date.now() - started) / 1000).toFixed(2);
        appendFileSync(eventsFile, `+${at}s ${message.method} ${JSON.stringify(params)}\n`);
      }
    }
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let ending = false;
  const end = async () => {
    if (ending) return;
    ending = true;
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      await Promise.race([request('shutdown', null), exited]);
      send({ method: 'exit' });
      child.stdin.end();
    } catch {
      child.kill('SIGTERM');
    }
    await exited;
    clearTimeout(kill);
    process.exit(0);
  };
  process.on('SIGTERM', end);
  process.on('SIGINT', end);
  // The demo's trap sends SIGTERM; if the demo itself dies, its end is noticed here.
  const parent = process.ppid;
  setInterval(() => process.ppid !== parent && end(), 500).unref();
  exited.then((code) => {
    if (!ending) {
      appendFileSync(eventsFile, `sidecar exited by itself (${code})\n`);
      process.exit(1);
    }
  });

  await request('initialize', {
    processId: process.pid,
    rootUri: pathToFileURL(workspace).href,
    capabilities: {},
    clientInfo: { name: 'demo', version: '1' },
  });
  send({ method: 'initialized', params: {} });
  const { available } = await request('nxops/subscribe', { events: ['processStarted'] });
  await request('nxops/subscribe', { events: available });
  writeFileSync(eventsFile, `ready ${child.pid}\n`);
}

async function mcpStart(args) {
  const rounds = Number(args[0]);
  const command = args.slice(args.indexOf('--') + 1);
  const times = [];
  let tools = 0;
  for (let i = 0; i < rounds; i++) {
    const { ms, toolCount } = await oneStart(command);
    times.push(ms);
    tools = toolCount;
  }
  const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
  const runs = times.map((t) => t.toFixed(1)).join(', ');
  console.log(`median ${median.toFixed(1)} ms (runs ${runs}), ${tools} tools`);
}

function oneStart([program, ...rest]) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(program, rest, { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    let ms = 0;
    let text = '';
    const write = (message) => child.stdin.write(JSON.stringify({ jsonrpc: '2.0', ...message }) + '\n');
    child.on('error', reject);
    child.stdout.on('data', (chunk) => {
      text += chunk;
      let newline;
      while ((newline = text.indexOf('\n')) >= 0) {
        const line = text.slice(0, newline).trim();
        text = text.slice(newline + 1);
        if (!line) continue;
        const message = JSON.parse(line);
        if (message.id === 1) {
          ms = Number(process.hrtime.bigint() - started) / 1e6;
          write({ method: 'notifications/initialized' });
          write({ id: 2, method: 'tools/list', params: {} });
        } else if (message.id === 2) {
          const toolCount = message.result?.tools?.length ?? 0;
          const kill = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), 5_000);
          child.on('exit', () => {
            clearTimeout(kill);
            resolve({ ms, toolCount });
          });
          child.stdin.end();
        }
      }
    });
    write({
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'demo', version: '1' } },
    });
  });
}
