#!/usr/bin/env bash
# Installs the plugin's dev dependencies (typescript, @types/node, nx for its
# types and tests) from the committed lock. Idempotent: does nothing when the
# lock has not changed since the last install (sha256 stamp in node_modules).
#
# `npm ci` cannot be used until @nxops/linux-x64 is on the registry: it wants every
# dependency, optional ones included, in the lock, and an unpublished package cannot
# be there. `npm install` with the committed lock installs exactly the locked versions
# and skips the missing optional package; the lock must come out unchanged.
set -euo pipefail

log() { printf 'nx-plugin/scripts/install.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

plugin_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
hash_lock() { sha256sum "$plugin_dir/package-lock.json" | cut -d' ' -f1; }
stamp="$plugin_dir/node_modules/.nxops-pack-stamp"
if [ -x "$plugin_dir/node_modules/.bin/tsc" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(hash_lock)" ]; then
  log "up to date: $plugin_dir/node_modules"
  exit 0
fi
log "installing the plugin's dev dependencies (npm install --prefer-offline, from the committed lock)"
before="$(hash_lock)"
(cd "$plugin_dir" && npm install --prefer-offline --no-audit --no-fund --ignore-scripts >&2) \
  || die "npm install failed in $plugin_dir (is the npm cache or registry reachable?)"
[ "$(hash_lock)" = "$before" ] || die "npm install changed nx-plugin/package-lock.json: commit the new lock or restore it"
hash_lock >"$stamp"
