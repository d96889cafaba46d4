#!/usr/bin/env bash
# Installs the third-party CLIs that integration tests run for real (today: Claude Code) into
# target/test-tools, idempotently. Tests find the binary at
# target/test-tools/node_modules/.bin/claude (or via NIGHTCRIER_TEST_CLAUDE_BIN).
#
# Plain `npm install`: the CLI ships its native binary in an optional platform package, so
# --ignore-scripts / --omit=optional would leave a stub that exits 1.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- prometheus-alertmanager (Debian package) -------------------------------------------------
# The real Alertmanager for tests/e2e_alertmanager.rs (/usr/bin/prometheus-alertmanager). Runs
# as root (CI); `install-test-tools.sh alertmanager` installs only this and stops here.
if [ ! -x /usr/bin/prometheus-alertmanager ]; then
    echo "installing prometheus-alertmanager (apt)..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-alertmanager
fi
echo "alertmanager installed: $(/usr/bin/prometheus-alertmanager --version 2>&1 | head -n 1)"
if [ "${1:-}" = "alertmanager" ]; then
    exit 0
fi
# --- end prometheus-alertmanager --------------------------------------------------------------
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
