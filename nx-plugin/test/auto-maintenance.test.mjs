// The automatic maintenance check createNodes starts: at most once per interval
// per process, and not while nxops's own stamp says it checked recently.

import assert from 'node:assert/strict';
import { mkdirSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';

import { dist, tempDir, writeFile } from './helpers.mjs';

const { maintainIfDue, stampPath } = dist('auto-maintenance');
const { canonicalRoot } = dist('runtime');

describe('maintainIfDue', () => {
  test('starts once per interval, and not while the stamp is younger than the interval', (t) => {
    const dir = tempDir(t, 'nxam-');
    const ws = join(dir, 'ws');
    mkdirSync(ws);
    const runtime = { env: { NXOPS_STATE_DIR: join(dir, 'state') }, uid: process.getuid() };
    const started = [];
    const start = (root) => started.push(root);
    const now = Date.now();
    assert.equal(maintainIfDue(ws, 1000, now, runtime, start), 'started');
    assert.equal(maintainIfDue(ws, 1000, now + 999, runtime, start), 'started-recently');
    const stamp = stampPath(canonicalRoot(ws), runtime);
    assert.equal(stamp, join(dir, 'state', 'workspaces', dirname(stamp).split('/').pop(), 'maintenance.json'));
    writeFile(stamp, '{}');
    utimesSync(stamp, (now + 1500) / 1000, (now + 1500) / 1000);
    assert.equal(maintainIfDue(ws, 1000, now + 2000, runtime, start), 'checked-recently');
    assert.equal(maintainIfDue(ws, 1000, now + 3000, runtime, start), 'started');
    assert.deepEqual(started, [canonicalRoot(ws), canonicalRoot(ws)]);
  });
});
