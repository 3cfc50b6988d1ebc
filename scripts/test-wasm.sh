#!/usr/bin/env bash
# Runs shared/'s golden placement vectors compiled to wasm32, in Node, with
# wasm-bindgen-test: proof that the page computes what the backend does.
# Same toolchain routes as scripts/build-page.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm-test"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  export RUSTUP_TOOLCHAIN=/usr RUSTC_BOOTSTRAP=1
  export CARGO_UNSTABLE_BUILD_STD=std,panic_abort,test
fi
exec cargo test --target wasm32-unknown-unknown -p shardscope-shared --test golden
