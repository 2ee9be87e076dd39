#!/usr/bin/env bash
# Packages the compiled extension as nxops-<version>.vsix with @vscode/vsce.
# Runtime dependencies (vscode-languageclient and what it needs) go in from
# node_modules (vsce lists them with `npm list --production`): nothing is
# bundled, nothing is fetched. Prints the .vsix path on stdout.
set -euo pipefail

ext_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ext_dir"
[ -f out/extension.js ] || { echo "scripts/package.sh: out/extension.js missing: run npm run compile first" >&2; exit 1; }
version="$(node -p "require('./package.json').version")"
vsix="$ext_dir/nxops-$version.vsix"
rm -f "$vsix"
node_modules/.bin/vsce package --skip-license --allow-missing-repository --out "$vsix" >&2
echo "$vsix"
