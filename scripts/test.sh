#!/usr/bin/env bash
# Sets up what is missing and runs every test: formatting and lints, unit and
# property tests, real-process integration tests, the browser test,
# py-consul's own suite against the embedded registry
# (scripts/consul-compat.sh), and a short run of every fuzz target
# (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDSCOPE_SETUP_TESTS=1 bash scripts/setup.sh
bash scripts/build-page.sh
. scripts/env.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -q -- -D warnings
cargo test
bash scripts/test-wasm.sh
bash scripts/consul-compat.sh
bash scripts/fuzz.sh
