#!/usr/bin/env bash
# Installs the extension's dependencies (vscode-languageclient, and to build and
# test it: typescript, @types/vscode, @vscode/vsce) exactly as the committed
# lock pins them, with `npm ci`. Idempotent: does nothing when the lock has not
# changed since the last install (sha256 stamp in node_modules).
set -euo pipefail

log() { printf 'editors/vscode/scripts/install.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ext_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
hash_lock() { sha256sum "$ext_dir/package-lock.json" | cut -d' ' -f1; }
stamp="$ext_dir/node_modules/.nxops-install-stamp"
if [ -x "$ext_dir/node_modules/.bin/tsc" ] && [ -x "$ext_dir/node_modules/.bin/vsce" ] \
  && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(hash_lock)" ]; then
  log "up to date: $ext_dir/node_modules"
  exit 0
fi
log "installing the extension's dependencies (npm ci --prefer-offline, from the committed lock)"
before="$(hash_lock)"
(cd "$ext_dir" && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts >&2) \
  || die "npm ci failed in $ext_dir (is the npm cache or registry reachable?)"
[ "$(hash_lock)" = "$before" ] || die "npm ci changed editors/vscode/package-lock.json: commit the new lock or restore it"
hash_lock >"$stamp"
