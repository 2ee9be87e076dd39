#!/usr/bin/env node
// The `nxops` command of the package: runs the nxops binary (found as the
// plugin finds it: NXOPS_BIN, @nxops/linux-x64, PATH) with the same arguments,
// stdio and exit code, so `pnpm ops:*` scripts skip Nx's start-up. Signals from
// the terminal reach the binary itself (same process group); this process only
// waits for it, and ends the way it ended.
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
