#!/usr/bin/env bash
# Sets up what is missing, builds the page and the binary, and runs
# `shardscope serve` (backend + its nodes + the page) on loopback.
# Extra arguments go to `shardscope serve`. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-page.sh
. scripts/env.sh
cargo build --release --bin shardscope
exec "$CARGO_TARGET_DIR/release/shardscope" serve --static-dir dist "$@"
