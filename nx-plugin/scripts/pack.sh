#!/usr/bin/env bash
# Builds and packs the two npm packages of nxops: @nxops/nx-plugin (nx-plugin/)
# and @nxops/linux-x64 (npm/linux-x64/, which carries the binary).
#
#   nx-plugin/scripts/pack.sh [--binary PATH] [--out DIR]
#
# --binary PATH  the nxops binary to ship (default: target/release/nxops of the
#                repository, built by the caller: `cargo build --release`)
# --out DIR      where the tarballs go (default: target/npm of the repository)
#
# Installs the plugin's dev dependencies from the committed lock (npm install
# --prefer-offline) when package-lock.json changed since the last install (stamp
# in node_modules), builds
# it with tsc from a clean dist/, copies the binary stripped (`strip -o`: no
# symbols or debug info, about a sixth of the size) to npm/linux-x64/bin/nxops
# and runs `npm pack` in both folders. Refuses to pack when the versions of the
# crate, the binary, the two packages and the plugin's optional dependency differ.
# Prints the two tarball paths on stdout; progress on stderr. Works from any cwd.
set -euo pipefail

log() { printf 'nx-plugin/scripts/pack.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { die "usage: pack.sh [--binary PATH] [--out DIR]"; }

plugin_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
repo="$(dirname "$plugin_dir")"
platform_dir="$repo/npm/linux-x64"
binary="$repo/target/release/nxops"
out="$repo/target/npm"

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || usage; binary="$2"; shift 2 ;;
    --binary=*) binary="${1#--binary=}"; shift ;;
    --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" >&2; exit 0 ;;
    *) usage ;;
  esac
done

command -v node >/dev/null 2>&1 || die "node not found on PATH"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
command -v strip >/dev/null 2>&1 || die "strip not found on PATH (Debian: apt-get install binutils)"
[ -f "$binary" ] && [ -x "$binary" ] || die "no executable nxops at $binary (build it first: cargo build --release, or pass --binary PATH)"

json_field() { node -p "require(process.argv[1])$2" "$1"; }
plugin_version="$(json_field "$plugin_dir/package.json" '.version')"
platform_version="$(json_field "$platform_dir/package.json" '.version')"
optional_version="$(json_field "$plugin_dir/package.json" ".optionalDependencies['@nxops/linux-x64']")"
crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)"
binary_version="$("$binary" --version | awk '{print $2}')"
for pair in "Cargo.toml:$crate_version" "the binary:$binary_version" "npm/linux-x64:$platform_version" \
            "the optional dependency:$optional_version"; do
  [ "${pair##*:}" = "$plugin_version" ] \
    || die "version mismatch: the plugin is $plugin_version but ${pair%:*} says ${pair##*:}"
done

"$plugin_dir/scripts/install.sh"

log "building the plugin (tsc)"
rm -rf "$plugin_dir/dist"
(cd "$plugin_dir" && npm run --silent build >&2) || die "tsc failed"

log "copying $binary, stripped, to npm/linux-x64/bin/nxops"
mkdir -p "$platform_dir/bin"
rm -f "$platform_dir/bin/nxops"
strip -o "$platform_dir/bin/nxops" "$binary" || die "strip failed on $binary"
chmod 0755 "$platform_dir/bin/nxops"

mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
pack() { # $1 = package folder; prints the tarball's path
  local name
  name="$(cd "$1" && npm pack --silent --pack-destination "$out")" || die "npm pack failed in $1"
  printf '%s/%s\n' "$out" "$(printf '%s\n' "$name" | tail -n 1)"
}
plugin_tarball="$(pack "$plugin_dir")"
platform_tarball="$(pack "$platform_dir")"
log "packed @nxops/nx-plugin@$plugin_version and @nxops/linux-x64@$platform_version"
printf '%s\n%s\n' "$plugin_tarball" "$platform_tarball"
