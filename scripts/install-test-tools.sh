#!/usr/bin/env bash
# Installs the third-party CLIs that integration tests run for real (today: Claude Code) into
# target/test-tools, idempotently. Tests find the binary at
# target/test-tools/node_modules/.bin/claude (or via NIGHTCRIER_TEST_CLAUDE_BIN).
#
# Plain `npm install`: the CLI ships its native binary in an optional platform package, so
# --ignore-scripts / --omit=optional would leave a stub that exits 1.
set -euo pipefail

# --- prlimit (util-linux), for tests/hostile_inputs.rs (lowers a running process's descriptor
# limit). Part of every Debian base system; installed only if missing.
if ! command -v prlimit >/dev/null 2>&1; then
    apt-get update
    apt-get install -y util-linux
fi
# --- end prlimit

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${NIGHTCRIER_TEST_TOOLS:-$root/target/test-tools}"
# Pinned to a version the claude preset's test is known to pass with (the headless flags drift
# between releases); override to try another.
package="${NIGHTCRIER_TEST_CLAUDE_PACKAGE:-@anthropic-ai/claude-code@2.1.197}"
bin="$prefix/node_modules/.bin/claude"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    echo "claude already installed: $("$bin" --version) ($bin)"
    exit 0
fi

mkdir -p "$prefix"
echo "installing $package into $prefix (several hundred MB)..."
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$package"

if ! "$bin" --version >/dev/null 2>&1; then
    echo "error: $bin does not run after install" >&2
    exit 1
fi
echo "claude installed: $("$bin" --version) ($bin)"
