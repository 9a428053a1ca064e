#!/usr/bin/env bash
# Runs Deno or Bun at the project's pinned versions, installing them from npm into .tools/
# when missing (the npm packages carry the real binaries). Called as scripts/deno or scripts/bun.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DENO_VERSION=2.9.6
BUN_VERSION=1.4.4
TOOLS="$ROOT/.tools"
BIN="$TOOLS/node_modules/.bin"

installed_version() { "$BIN/$1" --version 2>/dev/null | head -1 || true; }

if [[ "$(installed_version deno)" != "deno $DENO_VERSION"* || "$(installed_version bun)" != "$BUN_VERSION" ]]; then
  echo "tools: installing deno@$DENO_VERSION and bun@$BUN_VERSION from npm into .tools/" >&2
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "deno@$DENO_VERSION" "bun@$BUN_VERSION" >&2
fi
export PATH="$BIN:$PATH"
tool="$(basename "$0")"
exec "$BIN/$tool" "$@"
