#!/usr/bin/env bash
# Installs what ShardScope needs on a fresh Debian machine, skipping whatever
# is already there: the wasm32 toolchain route, trunk, wasm-bindgen-cli,
# Chromium + ChromeDriver (browser tests), redis-server (benchmarks), pyzmq.
# Idempotent; quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# ---- Debian packages -------------------------------------------------------
want_pkgs=()
need_wasm_std=1
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  need_wasm_std=0   # the user's rustup has the target: no build-std route needed
fi
if [ "$need_wasm_std" = 1 ]; then
  for p in rustc-web cargo-web rust-web-src rust-web-llvm lld-22; do
    dpkg -s "$p" >/dev/null 2>&1 || want_pkgs+=("$p")
  done
fi
if [ "${SHARDSCOPE_SETUP_TESTS:-0}" = 1 ]; then
  for p in chromium chromium-driver redis-server; do
    dpkg -s "$p" >/dev/null 2>&1 || want_pkgs+=("$p")
  done
  # scripts/consul-compat.sh runs py-consul's suite in a virtualenv.
  python3 -c 'import venv, ensurepip' 2>/dev/null || want_pkgs+=(python3-venv)
fi
if [ "${#want_pkgs[@]}" -gt 0 ]; then
  log "apt-get install ${want_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want_pkgs[@]}"
fi

# ---- cargo-installed tools -------------------------------------------------
# wasm-bindgen-cli must equal the wasm-bindgen crate the page is built with.
WB_VERSION=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"/\1/p' frontend/Cargo.toml)
if ! command -v wasm-bindgen >/dev/null 2>&1 || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$WB_VERSION" ]; then
  log "cargo install wasm-bindgen-cli $WB_VERSION"
  env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi
if ! command -v trunk >/dev/null 2>&1; then
  if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "cargo +nightly install trunk 0.22.1"
    env -u CARGO_TARGET_DIR cargo +nightly install trunk --version 0.22.1 --locked
  else
    log "cargo install trunk 0.21.14"
    env -u CARGO_TARGET_DIR cargo install trunk --version 0.21.14 --locked
  fi
fi

# ---- Python client for the cross-implementation protocol test --------------
if [ "${SHARDSCOPE_SETUP_TESTS:-0}" = 1 ]; then
  python3 -c 'import zmq' 2>/dev/null || { log "pip install pyzmq"; python3 -m pip install -q pyzmq; }
fi
log "setup done"
