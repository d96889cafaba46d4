#!/usr/bin/env bash
# Installs the third-party CLIs that integration tests run for real (Claude Code, Codex, Gemini
# CLI) into target/test-tools, idempotently. Tests find the binaries at
# target/test-tools/node_modules/.bin/<name> (or via NIGHTCRIER_TEST_<NAME>_BIN).
#
# Plain `npm install`: the CLIs ship their native binaries in optional platform packages, so
# --ignore-scripts / --omit=optional would leave stubs that exit 1.
set -euo pipefail

# --- prlimit (util-linux), for tests/it/hostile_inputs.rs (lowers a running process's descriptor
# limit). Part of every Debian base system; installed only if missing.
if ! command -v prlimit >/dev/null 2>&1; then
    apt-get update
    apt-get install -y util-linux
fi
# --- end prlimit

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --- systemd-analyze (tests/it/systemd_unit.rs verifies dist/nightcrier.service) -----------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "installing Debian's systemd package (for systemd-analyze)..."
    apt-get update
    apt-get install -y --no-install-recommends systemd
fi
echo "systemd-analyze: $(systemd-analyze --version | head -n 1)"
# --- end systemd-analyze -------------------------------------------------------------------------
# --- prometheus-alertmanager (Debian package) -------------------------------------------------
# The real Alertmanager for tests/it/e2e_alertmanager.rs (/usr/bin/prometheus-alertmanager). Runs
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

# install_cli <bin name> <package@version>
install_cli() {
    local name="$1" package="$2"
    local bin="$prefix/node_modules/.bin/$name"
    if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
        echo "$name already installed: $("$bin" --version 2>/dev/null | head -1) ($bin)"
        return 0
    fi
    mkdir -p "$prefix"
    echo "installing $package into $prefix (several hundred MB)..."
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$package"
    if ! "$bin" --version >/dev/null 2>&1; then
        echo "error: $bin does not run after install" >&2
        exit 1
    fi
    echo "$name installed: $("$bin" --version 2>/dev/null | head -1) ($bin)"
}

# --- Claude Code ---
# Pinned to a version the claude preset's tests are known to pass with (the headless flags drift
# between releases); override to try another.
install_cli claude "${NIGHTCRIER_TEST_CLAUDE_PACKAGE:-@anthropic-ai/claude-code@2.1.197}"

# --- Codex (tests/it/agent_mcp_cli.rs) ---
# 0.171.0: `exec --json`, `mcp_servers.<name>.url` + `bearer_token_env_var`, and
# `default_tools_approval_mode` verified against a scripted Responses API.
install_cli codex "${NIGHTCRIER_TEST_CODEX_PACKAGE:-@openai/codex@0.171.0}"

# --- Gemini CLI (tests/it/agent_mcp_cli.rs) ---
# 0.61.0: `mcpServers.<name>` with `type: http` and headers, `-o json`, verified against a
# scripted streamGenerateContent.
install_cli gemini "${NIGHTCRIER_TEST_GEMINI_PACKAGE:-@google/gemini-cli@0.61.0}"

# --- chromium + chromium-driver (tests/it/dashboard.rs) ----------------------------------------
# The dashboard's end-to-end tests drive Debian's headless Chromium over WebDriver
# (/usr/bin/chromium, /usr/bin/chromedriver; or NIGHTCRIER_CHROMIUM / NIGHTCRIER_CHROMEDRIVER).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver (apt)..."
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi
echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
echo "chromedriver installed: $(/usr/bin/chromedriver --version 2>/dev/null | head -n 1)"
# --- end chromium ----------------------------------------------------------------------------
# --- moto (tests/it/report_upload.rs: an S3-compatible server on loopback for expiring links) ---
# `python3 -m moto.server` needs the `server` extra (flask, flask-cors, werkzeug).
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]==5.2.1'
fi
python3 -c 'import moto; print("moto installed:", moto.__version__)'
# --- end moto ---
