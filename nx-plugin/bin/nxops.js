#!/usr/bin/env node
// The slow path of the package's `nxops` command (bin/nxops, a shell script, runs
// the binary itself when NXOPS_BIN or the platform package gives it): finds the
// nxops binary as the plugin does (NXOPS_BIN, @nxops/linux-x64, PATH), says what it
// found wrong, and runs it with the same arguments, stdio and exit code. Signals
// from the terminal reach the binary itself (same process group); this process
// only waits for it, and ends the way it ended.
'use strict';

const { spawnSync } = require('node:child_process');
const { resolveNxopsBinary } = require('../dist/binary.js');

const { found, problems } = resolveNxopsBinary();
for (const problem of problems) {
  process.stderr.write(`[nxops] ${problem}\n`);
}
if (found === undefined) {
  process.stderr.write('[nxops] no nxops binary found (NXOPS_BIN, the @nxops/linux-x64 package, PATH)\n');
  process.exit(127);
}
const forward = () => {};
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']) {
  process.on(signal, forward);
}
const result = spawnSync(found.path, process.argv.slice(2), { stdio: 'inherit' });
if (result.error) {
  process.stderr.write(`[nxops] could not run ${found.path}: ${result.error.message}\n`);
  process.exit(127);
}
if (result.signal) {
  process.removeAllListeners(result.signal);
  process.kill(process.pid, result.signal);
}
process.exit(result.status ?? 1);
