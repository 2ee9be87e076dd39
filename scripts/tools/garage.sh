#!/usr/bin/env bash
# Garage 2.5.0 (Deuxfleurs' distributed S3 store), which the team cache's tests start on loopback
# (tests/common/garage.rs), built from crates.io with `cargo install --locked` into ~/.cargo/bin.
# Skipped when `garage` 2.5.0 is already on PATH or in ~/.cargo/bin. The build takes 15-20 minutes
# on 2 cores, so scripts/setup starts it in the background before its other, network-bound steps
# and waits for it at the end:
#   scripts/tools/garage.sh start   # returns at once; builds in the background when missing
#   scripts/tools/garage.sh wait    # waits for that build; fails with its log if it failed
# Features: the sqlite metadata engine the tests use, with its bundled library (no lmdb, k2v or
# metrics, which the tests do not use and which would lengthen the build).
set -euo pipefail

log() { printf 'scripts/tools/garage.sh: %s\n' "$*" >&2; }
version=2.5.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
state="$root/target/garage-install"
present() {
  local bin
  for bin in "$(command -v garage 2>/dev/null || true)" "$HOME/.cargo/bin/garage"; do
    [ -n "$bin" ] && [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "cargo:$version" && return 0
  done
  return 1
}

case "${1:-}" in
  start)
    if present; then
      log "up to date: garage $version"
      exit 0
    fi
    mkdir -p "$state"
    rm -f "$state/rc"
    log "building garage $version in the background (log: $state/log)"
    (
      set +e
      nice -n 5 cargo install --locked --version "$version" garage \
        --no-default-features --features bundled-libs,sqlite \
        --target-dir "$state/build" >"$state/log" 2>&1
      echo $? >"$state/rc"
      rm -rf "$state/build"
    ) </dev/null &
    echo $! >"$state/pid"
    ;;
  wait)
    if present; then
      exit 0
    fi
    [ -f "$state/pid" ] || { log "ERROR: garage $version is missing and no build was started (run: $0 start)"; exit 1; }
    log "waiting for the garage $version build"
    while [ ! -f "$state/rc" ]; do sleep 2; done
    if [ "$(cat "$state/rc")" != 0 ] || ! present; then
      tail -n 40 "$state/log" >&2
      log "ERROR: building garage $version failed (log above, whole in $state/log)"
      exit 1
    fi
    started="$(stat -c %Y "$state/pid")"
    log "installed garage $version in $(( $(date +%s) - started ))s"
    ;;
  *)
    echo "usage: $0 start|wait" >&2
    exit 2
    ;;
esac
