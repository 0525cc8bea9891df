#!/usr/bin/env bash
# The demo: tend updates four real MCP servers from npm, for real, inside .local/demo/.
#
#   bash examples/demo/run.sh            # adopt, check, stage, test, swap (or hold), prune; then status
#   bash examples/demo/run.sh --dry-run  # the same, showing what would change
#
# The first run adopts the servers of examples/demo/mcp.json (copied to .local/demo/.mcp.json,
# which tend then rewrites to start each server through its `current` release) and updates
# the two that are pinned to older versions. A second run finds everything current.
# Start over with `rm -rf .local/demo`.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .local/demo
[ -f .local/demo/.mcp.json ] || cp examples/demo/mcp.json .local/demo/.mcp.json
cargo build --release --quiet
tend=(target/release/tend --site examples/demo/tend.toml --token-file examples/demo/demo.token)
status=0
"${tend[@]}" run playbooks/update.rhai --var adopt=true "$@" || status=$?
echo
"${tend[@]}" status
exit "$status"
