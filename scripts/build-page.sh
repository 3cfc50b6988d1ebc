#!/usr/bin/env bash
# Builds the page (frontend/ -> dist/) with Trunk.
#
# Two routes to a wasm32 standard library:
# - rustup has the target (`rustup target add wasm32-unknown-unknown`): use it.
# - otherwise (these offline machines): Debian's rustc-web 1.96 builds std
#   from source (build-std). RUSTUP_TOOLCHAIN/RUSTC_BOOTSTRAP are set for this
#   one command only; leaked into the shell they break host builds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/wasm"

if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  (cd frontend && cargo fetch --target wasm32-unknown-unknown -q)
  exec trunk build "$@"
fi

export RUSTUP_TOOLCHAIN=/usr RUSTC_BOOTSTRAP=1
export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
# Trunk builds offline; fetch the page's crates (and std's) first.
(cd frontend && cargo fetch --target wasm32-unknown-unknown -q)
exec trunk build "$@"
